"""What a settings record read from a file may hold: each field's type and range.

Files are untrusted, so :func:`record_problems` checks a record (as parsed from JSON)
before :class:`~vidcache.features.settings.FeatureSettings` is built from it.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["DEFAULT_AUDIO_SPAN", "MAX_AUDIO_SPAN", "MAX_WINDOW", "record_problems"]

#: The longest window (``SamplingSpec.window``/``stride``), in kept frames.
MAX_WINDOW = 4096
#: The longest sound a frame row may hear (``audio_span``), in seconds.
MAX_AUDIO_SPAN = 60.0
#: Seconds of sound a frame row hears unless ``--audio-span`` says otherwise (VGGish's
#: example length; see :mod:`features.audio.rows`).
DEFAULT_AUDIO_SPAN = 0.96

# What a settings record read from a file may hold: each field's type and range. Files are
# untrusted, so a record is checked before anything is built from it.
_TEXT_FIELDS = ("weights", "weights_sha256", "resize", "precision", "dtype", "backbone",
                "pooling", "interpolation", "preprocess", "color")  # fmt: skip
_INT_RANGES = {"image_size": (0, 1 << 16), "feature_dim": (1, 1 << 20)}
_OPTIONAL_INTS = {"sample_rate": (1000, 384000)}
_SAMPLING_INTS = {
    "num_frames": (1, 1 << 20),
    "max_frames": (1, 1 << 40),
    "window": (1, MAX_WINDOW),
    "stride": (1, MAX_WINDOW),
}
_MAX_FPS = 1e6


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def record_problems(data: Any, known: set[str]) -> list[str]:
    """Every problem of a settings record as read from JSON (empty when it is sound);
    ``known`` are the field names a record may have."""
    if not isinstance(data, dict):
        return [f"the settings are a JSON {type(data).__name__}, not an object"]
    problems = [f"unknown field {key!r}" for key in sorted(data) if key not in known]
    for key in ("weights", "weights_sha256", "sampling"):
        if key not in data:
            problems.append(f"{key} is missing")
    for key in _TEXT_FIELDS:
        if key in data and not isinstance(data[key], str):
            problems.append(f"{key} is {data[key]!r:.40}, not text")
    for key, (low, high) in _INT_RANGES.items():
        if key in data and not (_is_int(data[key]) and low <= data[key] <= high):
            problems.append(f"{key} is {data[key]!r:.40}, not a whole number in {low}..{high}")
    for key, (low, high) in _OPTIONAL_INTS.items():
        value = data.get(key)
        if value is not None and not (_is_int(value) and low <= value <= high):
            problems.append(f"{key} is {value!r:.40}, not a whole number in {low}..{high}")
    span = data.get("audio_span")
    if span is not None and not (_is_number(span) and 0 < span <= MAX_AUDIO_SPAN):
        problems.append(f"audio_span is {span!r:.40}, not seconds in (0, {MAX_AUDIO_SPAN:g}]")
    if "folder_fps" in data and not (
        _is_number(data["folder_fps"]) and 0 < data["folder_fps"] <= _MAX_FPS
    ):
        problems.append(
            f"folder_fps is {data['folder_fps']!r:.40}, not a rate in (0, {_MAX_FPS:g}]"
        )
    sampling = data.get("sampling", {})
    if not isinstance(sampling, dict):
        return problems + [f"sampling is {sampling!r:.40}, not an object"]
    allowed = {"fps", "num_frames", "max_frames", "keyframes", "window", "stride"}
    problems += [
        f"unknown sampling field {key!r}" for key in sorted(sampling) if key not in allowed
    ]
    fps = sampling.get("fps")
    if fps is not None and not (_is_number(fps) and 0 < fps <= _MAX_FPS):
        problems.append(f"sampling.fps is {fps!r:.40}, not a rate in (0, {_MAX_FPS:g}]")
    for key, (low, high) in _SAMPLING_INTS.items():
        value = sampling.get(key)
        if value is not None and not (_is_int(value) and low <= value <= high):
            problems.append(f"sampling.{key} is {value!r:.40}, not a whole number in {low}..{high}")
    if sampling.get("stride") is not None and sampling.get("window") is None:
        problems.append("sampling.stride is set without sampling.window")
    if not isinstance(sampling.get("keyframes", False), bool):
        problems.append(f"sampling.keyframes is {sampling['keyframes']!r:.40}, not true or false")
    return problems
