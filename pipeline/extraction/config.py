"""What an extraction run is: its options (:class:`ExtractConfig`), the settings of a cache
or run it copies (``--like``), and the provenance a new cache records."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vidcache.features.backbone import WeightsSpec
from vidcache.features.backbones import DEFAULT_BACKBONE, get_backbone
from vidcache.features.cache import read_settings
from vidcache.features.cache.buffer import DEFAULT_SPILL_ROWS
from vidcache.features.errors import CacheFormatError
from vidcache.features.fusion import FusedSettings, settings_of
from vidcache.features.settings import FeatureSettings, SamplingSpec

__all__ = ["CHOSEN", "ExtractConfig", "library_versions", "run_settings", "settings_like"]


#: The fields of :class:`FeatureSettings` a run chooses (the rest come from the backbone's
#: registry entry, the weights and their checksum).
CHOSEN = (
    "image_size", "resize", "sampling", "folder_fps", "precision", "dtype", "backbone", "pooling",
    "audio_span",
)  # fmt: skip


@dataclass(frozen=True, init=False)
class ExtractConfig:
    """Options of one extraction run: the :class:`FeatureSettings` it makes (held, not
    copied), where the weights come from, and how the run goes.

    Built either from settings, ``ExtractConfig(features=settings, weights=spec)``, or from
    the settings' fields by keyword, ``ExtractConfig(image_size=75, sampling=...)``; not
    both. The settings are checked when the config is made.

    Args:
        weights: where the backbone weights come from. Defaults to ImageNet.
        features: the settings to make (their ``weights`` and checksum are replaced by
            ``weights``' identity and the loaded weights' checksum; their pooling,
            dimension and preprocessing are the registered backbone's).
        batch_size: frames per CNN call. Defaults to 32.
        overwrite: replace an existing cache instead of adding to it. Defaults to False.
        prune: drop cached videos whose source file is gone. Defaults to False.
        strict: stop at the first bad video. Defaults to False.
        queue_batches: batches decoded ahead of the CNN. Defaults to 4.
        spill_rows: feature rows per video kept in memory before spilling to a temporary
            file. Defaults to 512.
        decode_workers: videos decoded at once; 0 picks :func:`default_decode_workers`.
            Defaults to 0.
        fsync: ``fsync`` the cache at every commit, so committed videos survive power
            loss too (a killed process never loses them either way). Defaults to False.
        expect_weights_sha256: the checksum the loaded weights must have (``--like``: the
            same weights as another cache or run). Defaults to "" (any).
        grid: an audio backbone's run: a cache of the same sampling whose rows give each
            file's kept frames, so the pictures are not decoded again
            (:mod:`features.audio.grid`). Defaults to None.
        **chosen: without ``features``, the settings' fields a run chooses
            (:data:`CHOSEN`): ``image_size`` (299), ``resize`` ("center-crop"),
            ``sampling`` (up to 5 fps), ``folder_fps`` (25.0), ``precision`` ("float32"),
            ``dtype`` ("float32"), ``backbone`` (InceptionV3), ``pooling`` (the backbone's
            default; a clip backbone's ``"window"`` or ``"frame"``), ``audio_span`` (an
            audio backbone's frame rows: 0.96 s). An audio backbone takes no
            ``image_size`` (0) and a weightless one (``logmel``) takes the default
            weights as none.

    Raises:
        TypeError: both ``features`` and its fields, or an unknown keyword.
        ValueError: a setting out of range, or an unknown backbone.
    """

    features: FeatureSettings
    weights: WeightsSpec
    batch_size: int
    overwrite: bool
    prune: bool
    strict: bool
    queue_batches: int
    spill_rows: int
    decode_workers: int
    fsync: bool
    expect_weights_sha256: str
    grid: Path | None

    def __init__(
        self,
        weights: WeightsSpec = WeightsSpec("imagenet"),
        features: FeatureSettings | None = None,
        *,
        batch_size: int = 32,
        overwrite: bool = False,
        prune: bool = False,
        strict: bool = False,
        queue_batches: int = 4,
        spill_rows: int = DEFAULT_SPILL_ROWS,
        decode_workers: int = 0,
        fsync: bool = False,
        expect_weights_sha256: str = "",
        grid: Path | None = None,
        **chosen: Any,
    ) -> None:
        unknown = sorted(set(chosen) - set(CHOSEN))
        if unknown:
            raise TypeError(f"ExtractConfig got unexpected keyword arguments: {unknown}")
        if features is not None:
            if chosen:
                raise TypeError(
                    f"ExtractConfig takes features or their fields, not both: {sorted(chosen)}"
                )
            chosen = {name: getattr(features, name) for name in CHOSEN}
        backbone = chosen.pop("backbone", DEFAULT_BACKBONE)
        if get_backbone(backbone).weightless and weights.kind == "imagenet":
            weights = WeightsSpec("none")  # the default, for a backbone without weights
        settings = FeatureSettings.for_backbone(
            backbone, weights=weights.identity, weights_sha256="", **chosen
        )
        for name, value in (
            ("features", settings),
            ("weights", weights),
            ("batch_size", batch_size),
            ("overwrite", overwrite),
            ("prune", prune),
            ("strict", strict),
            ("queue_batches", queue_batches),
            ("spill_rows", spill_rows),
            ("decode_workers", decode_workers),
            ("fsync", fsync),
            ("expect_weights_sha256", expect_weights_sha256),
            ("grid", Path(grid) if grid is not None else None),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def for_settings(
        cls, settings: FeatureSettings, weights: WeightsSpec, batch_size: int = 32
    ) -> ExtractConfig:
        """The config that makes features with ``settings`` (the inverse of :meth:`settings`)."""
        return cls(weights, settings, batch_size=batch_size)

    def settings(self, weights_sha256: str = "") -> FeatureSettings:
        """The feature settings this run makes, with the loaded weights' checksum."""
        return replace(self.features, weights_sha256=weights_sha256)

    @property
    def image_size(self) -> int:
        """Side of the square backbone input (``features.image_size``)."""
        return self.features.image_size

    @property
    def resize(self) -> str:
        """``"center-crop"`` or ``"stretch"`` (``features.resize``)."""
        return self.features.resize

    @property
    def sampling(self) -> SamplingSpec:
        """Which frames are kept (``features.video.sampling``)."""
        return self.features.sampling

    @property
    def folder_fps(self) -> float:
        """Frame rate of folders of frames (``features.folder_fps``)."""
        return self.features.folder_fps

    @property
    def precision(self) -> str:
        """Backbone compute precision (``features.precision``)."""
        return self.features.precision

    @property
    def dtype(self) -> str:
        """Storage dtype (``features.dtype``)."""
        return self.features.dtype

    @property
    def backbone(self) -> str:
        """The registered backbone's name (``features.backbone``)."""
        return self.features.backbone

    @property
    def pooling(self) -> str:
        """How rows are pooled (``features.pooling``)."""
        return self.features.pooling

    @property
    def units_per_batch(self) -> int:
        """What one CNN call takes: ``batch_size`` frames, or for windows as many windows
        as hold ``batch_size`` frames (at least one)."""
        window = self.sampling.window
        return self.batch_size if window is None else max(1, self.batch_size // window)


def library_versions() -> dict[str, str]:
    """Versions recorded in a new cache as provenance."""
    from importlib.metadata import PackageNotFoundError, version

    from vidcache import __version__

    found = {"python": sys.version.split()[0], "vidcache": __version__}
    for name in ("tensorflow", "keras", "h5py", "numpy", "av", "pillow"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def settings_like(path: Path) -> FeatureSettings:
    """The feature settings of a cache file or a run folder (``extract --like``).

    Raises:
        CacheFormatError: neither a readable cache nor a run folder.
    """
    settings = run_settings(path)
    if isinstance(settings, FusedSettings):
        raise CacheFormatError(
            f"{path} was trained on fused feature sets ({settings.backbone}); --like copies "
            "one: give the cache of the part to match"
        )
    return settings


def run_settings(path: Path) -> FeatureSettings | FusedSettings:
    """The feature settings of a cache file or a run folder; a run trained on fused feature
    sets gives its :class:`FusedSettings`.

    Raises:
        CacheFormatError: neither a readable cache nor a run folder.
    """
    path = Path(path)
    if path.is_dir():
        config = path / "config.json"
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            return settings_of(data["feature_settings"])
        except (OSError, ValueError, KeyError, TypeError):
            raise CacheFormatError(
                f"{path} is not a vidcache run (no readable config.json with feature settings)"
            ) from None
    return read_settings(path)
