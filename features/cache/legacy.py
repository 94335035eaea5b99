"""Schema 1 of the feature cache (vidcache 0.1): one HDF5 group per video.

Kept to read old caches as they are, to upgrade them (``vidcache migrate``), and, as a
minimal writer, so tests can make a schema-1 file exactly as vidcache 0.1 did::

    /videos/<key>                attrs: the CacheEntry fields (meta as JSON)
    /videos/<key>/features       (T, D)
    /videos/<key>/timestamps     (T,) float64
    /videos/<key>/frame_indices  (T,) int64

``<key>`` is :func:`~vidcache.features.cache.entry.encode_key` of the video id.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from vidcache.features.cache.entry import CacheEntry, encode_key
from vidcache.features.cache.store import FORMAT, now
from vidcache.features.errors import CacheDamaged, CacheFormatError


def _complete(group: h5py.Group) -> bool:
    """A commit interrupted by a crash can leave a group without all its parts."""
    try:
        n = int(group.attrs["num_frames"])
        return (
            group["features"].shape[0] == n
            and group["timestamps"].shape[0] == n
            and "fingerprint" in group.attrs
        )
    except (KeyError, OSError, ValueError, AttributeError):
        return False


class LegacyReader:
    """Reads a schema-1 file (complete groups only, in key order)."""

    schema_version = 1

    def __init__(self, handle: h5py.File, path: Path) -> None:
        self.file = handle
        self.path = path
        if "videos" not in handle:
            raise CacheFormatError(f"{path} lacks the /videos group")

    def entries(self) -> dict[str, CacheEntry]:
        found = {}
        for group in self.file["videos"].values():
            if group is not None and _complete(group):
                entry = CacheEntry.from_attrs(group.attrs)
                found[entry.video_id] = entry
        return found

    def _group(self, video_id: str) -> h5py.Group:
        try:
            return self.file["videos"][encode_key(video_id)]
        except KeyError:
            raise KeyError(f"{video_id!r} is not in {self.path}") from None

    def rows(self, video_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        group = self._group(video_id)
        try:
            return (
                group["features"][()],
                group["timestamps"][()],
                group["frame_indices"][()],
            )
        except (OSError, ValueError) as exc:
            raise CacheDamaged(f"{self.path}: video {video_id!r} cannot be read ({exc})") from None


def write_schema1(path: Path, settings, videos: list[tuple[CacheEntry, np.ndarray, np.ndarray]]):
    """Write a schema-1 cache as vidcache 0.1 did (tests and fixtures only).

    Args:
        path: the new file.
        settings: its :class:`~vidcache.features.settings.FeatureSettings`.
        videos: ``(entry, features, timestamps)`` per video.
    """
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = 1
        f.attrs["settings"] = settings.to_json()
        f.attrs["settings_sha256"] = settings.digest()
        f.attrs["versions"] = json.dumps({"vidcache": "0.1.0"})
        f.attrs["created"] = f.attrs["updated"] = now()
        group = f.create_group("videos")
        for entry, features, timestamps in videos:
            video = group.create_group(encode_key(entry.video_id))
            video.create_dataset("features", data=features)
            video.create_dataset("timestamps", data=np.asarray(timestamps, np.float64))
            video.create_dataset("frame_indices", data=np.arange(len(features), dtype=np.int64))
            entry.num_frames = len(features)
            entry.extracted_at = entry.extracted_at or now()
            video.attrs.update(entry.to_attrs())
