"""What an extraction run is: its options (:class:`ExtractConfig`), the settings of a cache
or run it copies (``--like``), and the provenance a new cache records."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from vidcache.features.backbone import WeightsSpec
from vidcache.features.backbones import DEFAULT_BACKBONE
from vidcache.features.cache import read_settings
from vidcache.features.cache.buffer import DEFAULT_SPILL_ROWS
from vidcache.features.errors import CacheFormatError
from vidcache.features.fusion import FusedSettings, settings_of
from vidcache.features.settings import FeatureSettings, SamplingSpec

__all__ = ["ExtractConfig", "library_versions", "run_settings", "settings_like"]


@dataclass(frozen=True)
class ExtractConfig:
    """Options of one extraction run.

    Args:
        weights: where the backbone weights come from. Defaults to ImageNet.
        image_size: side of the square CNN input. Defaults to 299.
        resize: ``"center-crop"`` or ``"stretch"``. Defaults to ``"center-crop"``.
        sampling: which frames are kept. Defaults to up to 5 fps.
        folder_fps: frame rate of folders of frames. Defaults to 25.0.
        precision: ``"float32"`` or ``"bfloat16"``. Defaults to ``"float32"``.
        dtype: storage dtype, ``"float32"`` or ``"float16"``. Defaults to ``"float32"``.
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
        backbone: the registered backbone (:mod:`vidcache.features.backbones`). Defaults
            to InceptionV3.
    """

    weights: WeightsSpec = WeightsSpec("imagenet")
    image_size: int = 299
    resize: str = "center-crop"
    sampling: SamplingSpec = SamplingSpec()
    folder_fps: float = 25.0
    precision: str = "float32"
    dtype: str = "float32"
    batch_size: int = 32
    overwrite: bool = False
    prune: bool = False
    strict: bool = False
    queue_batches: int = 4
    spill_rows: int = DEFAULT_SPILL_ROWS
    decode_workers: int = 0
    fsync: bool = False
    expect_weights_sha256: str = ""
    backbone: str = DEFAULT_BACKBONE

    @classmethod
    def for_settings(
        cls, settings: FeatureSettings, weights: WeightsSpec, batch_size: int = 32
    ) -> ExtractConfig:
        """The config that makes features with ``settings`` (the inverse of :meth:`settings`)."""
        return cls(
            weights=weights,
            image_size=settings.image_size,
            resize=settings.resize,
            sampling=settings.sampling,
            folder_fps=settings.folder_fps,
            precision=settings.precision,
            dtype=settings.dtype,
            batch_size=batch_size,
            backbone=settings.backbone,
        )

    def settings(self, weights_sha256: str = "") -> FeatureSettings:
        """The feature settings this run requests (validated)."""
        return FeatureSettings.for_backbone(
            self.backbone,
            weights=self.weights.identity,
            weights_sha256=weights_sha256,
            image_size=self.image_size,
            resize=self.resize,
            sampling=self.sampling,
            folder_fps=self.folder_fps,
            precision=self.precision,
            dtype=self.dtype,
        )


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
