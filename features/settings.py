"""The settings that determine cached features, as one frozen, hashable record.

"Same settings" is one comparison: two runs may write to one cache only when their
:class:`FeatureSettings` are equal. Library versions are provenance, not identity: they are
recorded beside the settings but do not take part in the comparison.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from vidcache.features.backbones.registry import get_backbone
from vidcache.features.errors import SettingsDiffer
from vidcache.features.settings_record import DEFAULT_AUDIO_SPAN, MAX_AUDIO_SPAN, MAX_WINDOW
from vidcache.features.settings_record import record_problems as _record_problems

RESIZE_POLICIES = ("center-crop", "stretch")
PRECISIONS = ("float32", "bfloat16")
STORAGE_DTYPES = ("float32", "float16")
MIN_IMAGE_SIZE = 75  # the smallest input InceptionV3 (the default backbone) accepts
#: ``weights`` of features made by another tool and brought in by ``vidcache import``:
#: ``import:<backbone name>``; vidcache cannot make more of them from videos.
IMPORTED = "import:"


def _normalise(settings, floats: tuple[str, ...], ints: tuple[str, ...]) -> None:
    """Store the named fields of a frozen dataclass as ``float`` / ``int`` (``None`` kept;
    an integral float for an int field, like ``299.0``, becomes ``299``)."""
    for names, kind in ((floats, float), (ints, int)):
        for name in names:
            value = getattr(settings, name)
            if value is None or type(value) is kind or isinstance(value, bool):
                continue
            if kind is int and float(value) != int(value):
                continue  # left for the range checks to refuse with their own message
            object.__setattr__(settings, name, kind(value))


@dataclass(frozen=True)
class SamplingSpec:
    """Which frames of a video are kept.

    Args:
        fps: keep frames at most this many per second (never more than the video has).
            Defaults to 5.0. ``None`` keeps every frame.
        num_frames: keep exactly this many frames evenly spaced over the whole clip
            (the centre of each of ``num_frames`` equal segments). Excludes ``fps``.
        max_frames: keep at most this many frames (the first ones after ``fps`` sampling).
        keyframes: keep only keyframes (thinned by ``fps``, capped by ``max_frames``):
            decoding nothing else. Excludes ``num_frames``. Defaults to False, and then it
            is left out of :meth:`to_dict`, so settings written before it existed keep
            their JSON and hash.
        window: group the kept frames into windows of this many consecutive kept frames,
            one row per window (or per frame of a window: the backbone's pooling); see
            :func:`features.video.sampling.windows`. ``None`` (the default) makes one row
            per kept frame, and then ``window`` and ``stride`` are left out of
            :meth:`to_dict`, so frame settings keep their JSON and hash.
        stride: kept frames from one window's start to the next's; defaults to ``window``
            (windows side by side). Only with ``window``.
    """

    fps: float | None = 5.0
    num_frames: int | None = None
    max_frames: int | None = None
    keyframes: bool = False
    window: int | None = None
    stride: int | None = None

    def __post_init__(self) -> None:
        # Numbers in one canonical type, so equal settings hash equal (fps=5 is fps=5.0).
        _normalise(self, floats=("fps",), ints=("num_frames", "max_frames", "window", "stride"))
        object.__setattr__(self, "keyframes", bool(self.keyframes))
        if self.stride is not None and self.window is None:
            raise ValueError(f"stride needs a window. Received: stride={self.stride}")
        for name in ("window", "stride"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= MAX_WINDOW:
                raise ValueError(
                    f"{name} must be a whole number in 1..{MAX_WINDOW}. Received: {name}={value}"
                )
        if self.window is not None and self.stride is None:
            object.__setattr__(self, "stride", self.window)
        if self.num_frames is not None and self.fps is not None:
            raise ValueError(
                f"num_frames and fps exclude each other. Received: num_frames={self.num_frames}, "
                f"fps={self.fps}"
            )
        if self.num_frames is not None and self.max_frames is not None:
            raise ValueError(
                f"num_frames and max_frames exclude each other. Received: "
                f"num_frames={self.num_frames}, max_frames={self.max_frames}"
            )
        if self.keyframes and self.num_frames is not None:
            raise ValueError(
                f"keyframes and num_frames exclude each other. Received: "
                f"num_frames={self.num_frames}"
            )
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be positive. Received: fps={self.fps}")
        for name in ("num_frames", "max_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1. Received: {name}={value}")

    def describe(self) -> str:
        """A short human-readable description, e.g. ``"5 fps, at most 64 frames"``."""
        if self.num_frames is not None:
            return f"{self.num_frames} frames evenly spaced"
        if self.keyframes:
            text = "keyframes" if self.fps is None else f"keyframes up to {self.fps:g} fps"
        else:
            text = "every frame" if self.fps is None else f"up to {self.fps:g} fps"
        if self.max_frames is not None:
            text += f", at most {self.max_frames} frames"
        if self.window is not None:
            text += f", windows of {self.window} frames every {self.stride}"
        return text

    @property
    def windowed(self) -> bool:
        """Whether rows cover windows of frames (``window`` is set)."""
        return self.window is not None


@dataclass(frozen=True)
class FeatureSettings:
    """Everything that determines the feature vectors stored in a cache.

    Args:
        weights: identity of the backbone weights: ``"imagenet"``, ``"file:NAME"`` or
            ``"random:seed=S"``.
        weights_sha256: SHA-256 of the loaded weight tensors (in layer order), so two files
            with the same name but other contents never pass as the same weights.
        image_size: side of the square backbone input in pixels. Defaults to 299.
        resize: how a frame becomes square: ``"center-crop"`` (scale the short side to
            ``image_size``, crop the centre) or ``"stretch"``. Defaults to ``"center-crop"``.
        sampling: which frames are kept. Defaults to ``SamplingSpec()`` (up to 5 fps).
        folder_fps: frame rate assumed for folders of numbered images. Defaults to 25.0.
        precision: compute precision of the backbone. Defaults to ``"float32"``.
        dtype: storage dtype of the features. Defaults to ``"float32"``.
        sample_rate: an audio backbone's rate (from its registry entry); ``None`` for
            pictures, and then left out of :meth:`to_dict` (as ``audio_span``).
        audio_span: seconds of sound a frame row hears (:mod:`features.audio.rows`);
            ``None`` for pictures and for audio rows of windows, which hear their window.
    """

    weights: str
    weights_sha256: str
    image_size: int = 299
    resize: str = "center-crop"
    sampling: SamplingSpec = SamplingSpec()
    folder_fps: float = 25.0
    precision: str = "float32"
    dtype: str = "float32"
    backbone: str = "InceptionV3"
    pooling: str = "avg"
    feature_dim: int = 2048
    interpolation: str = "bilinear"
    preprocess: str = "keras.applications.inception_v3.preprocess_input"
    color: str = "RGB"
    sample_rate: int | None = None
    audio_span: float | None = None

    @classmethod
    def for_backbone(cls, backbone: str, **fields: Any) -> FeatureSettings:
        """Settings of features made with the registered ``backbone``: its name, pooling,
        feature dimension and preprocessing filled in from the registry.

        A clip backbone's ``pooling`` may be given (one of its poolings); otherwise, and
        always for a frame backbone, it is the entry's.

        Raises:
            ValueError: no backbone has that name, or a field is out of range.
        """
        entry = get_backbone(backbone)
        fixed = entry.settings_fields()
        pooling = fields.pop("pooling", None)
        if pooling is not None and entry.takes_windows:
            fixed["pooling"] = pooling
        if entry.hears:
            fields.setdefault("image_size", 0)
            if fields.get("audio_span") is None and not fields["sampling"].windowed:
                fields["audio_span"] = DEFAULT_AUDIO_SPAN
        return cls(**fields, **fixed)

    def __post_init__(self) -> None:
        _normalise(
            self,
            floats=("folder_fps", "audio_span"),
            ints=("image_size", "feature_dim", "sample_rate"),
        )
        if self.imported:  # another tool's features: what made them is not vidcache's
            return
        try:
            backbone = get_backbone(self.backbone)
        except ValueError:
            backbone = None  # read a cache of a backbone this install lacks; not make one
        if backbone is not None:
            backbone.check_image_size(self.image_size)
            backbone.check_sampling(self.sampling.window, self.pooling)
        for name, allowed in (
            ("resize", RESIZE_POLICIES),
            ("precision", PRECISIONS),
            ("dtype", STORAGE_DTYPES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {allowed}. Received: {name}={getattr(self, name)}"
                )
        if not self.folder_fps > 0:
            raise ValueError(f"folder_fps must be positive. Received: {self.folder_fps}")
        self._check_audio(backbone)

    def _check_audio(self, backbone) -> None:
        """An audio backbone's settings hear: its rate, and a span for frame rows only."""
        hears = self.sample_rate is not None
        if backbone is not None and backbone.hears and self.sample_rate != backbone.sample_rate:
            raise ValueError(
                f"{backbone.name} hears at {backbone.sample_rate} Hz. Received: "
                f"sample_rate={self.sample_rate}"
            )
        if self.audio_span is not None:
            if not hears:
                raise ValueError("audio_span is for audio backbones")
            if self.sampling.windowed:
                raise ValueError(
                    "audio_span is for frame rows; a window row hears its window. Received: "
                    f"audio_span={self.audio_span}"
                )
            if not 0 < self.audio_span <= MAX_AUDIO_SPAN:
                raise ValueError(
                    f"audio_span must be in (0, {MAX_AUDIO_SPAN:g}] seconds. Received: "
                    f"audio_span={self.audio_span}"
                )
        elif hears and not self.sampling.windowed:
            raise ValueError("an audio backbone's frame rows need audio_span")

    @property
    def hears(self) -> bool:
        """Features of sound (an audio backbone), not of pictures."""
        return self.sample_rate is not None

    @property
    def has_spans(self) -> bool:
        """Whether each row records its span (cache schema 4): rows of windows, whose
        span is their frames, and rows of sound, whose span is the sound they heard."""
        return self.sampling.windowed or self.hears

    @property
    def imported(self) -> bool:
        """Features another tool made (``vidcache import``), not vidcache's CNN."""
        return self.weights.startswith(IMPORTED)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``sampling`` nested; its ``keyframes`` only when set, its
        ``window`` and ``stride`` only with a window)."""
        data = dataclasses.asdict(self)
        if not self.sampling.keyframes:
            del data["sampling"]["keyframes"]
        if self.sampling.window is None:
            del data["sampling"]["window"], data["sampling"]["stride"]
        for name in ("sample_rate", "audio_span"):
            if data[name] is None:
                del data[name]
        return data

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, so equal settings give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> FeatureSettings:
        """Parse what :meth:`to_json` wrote, checking every field's type and range first.

        Raises:
            ValueError: not JSON, or fields of the wrong type or out of range (every
                problem named, ``; ``-separated).
        """
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("the settings JSON is nested too deeply") from None
        problems = record_problems(data)
        if problems:
            raise ValueError("; ".join(problems))
        data["sampling"] = SamplingSpec(**data["sampling"])
        return cls(**data)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: the settings hash stored in the cache."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def differences(
        self, other: FeatureSettings, *, ignore: tuple[str, ...] = (), folders: bool = True
    ) -> list[str]:
        """Human-readable ``name: mine != theirs`` lines for every field that differs.

        Args:
            other: the settings to compare with.
            ignore: field names left out.
            folders: both sides may hold folders of frames. When not, the fields that only
                folders of frames use (:data:`FOLDER_ONLY`) cannot change a feature and are
                left out. Defaults to True.
        """
        if not folders:
            ignore = (*ignore, *FOLDER_ONLY)
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{key}: {theirs[key]!r} != {mine[key]!r}"
            for key in sorted(mine)
            if key not in ignore and mine[key] != theirs[key]
        ]


#: Settings that only folders of numbered frames use: two caches that differ in them make
#: the same features unless both sides hold such folders.
FOLDER_ONLY = ("folder_fps",)


def check_compatible(
    cached: FeatureSettings,
    requested: FeatureSettings,
    *,
    cache_name: str,
    ignore=(),
    folders: bool = True,
) -> None:
    """Raise :class:`SettingsMismatch` unless ``requested`` would make the same features.

    Args:
        cached: settings stored in the cache.
        requested: settings of this run.
        cache_name: the file, named in the message.
        ignore: field names left out of the comparison (``weights_sha256`` before the
            model is built).
        folders: the cache and the run both hold folders of frames. Defaults to True.
    """
    diffs = requested.differences(cached, ignore=ignore, folders=folders)
    if diffs:
        raise SettingsDiffer(
            f"{cache_name} holds features made with other settings ({'; '.join(diffs)}, "
            "cached != requested)"
        )


def record_problems(data: Any) -> list[str]:
    """Every problem of a settings record as read from JSON (empty when it is sound)."""
    return _record_problems(data, {f.name for f in dataclasses.fields(FeatureSettings)})
