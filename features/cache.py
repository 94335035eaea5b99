"""The HDF5 feature cache: one file, one group per video, settings stamped on the file.

The layout is documented in ``docs/cache-format.md``. In short::

    /                       attrs: format, schema_version, settings (JSON), settings_sha256,
                                   versions (JSON), created, updated
    /videos/<key>           attrs: video_id, path, label, size, mtime, fingerprint, ...
    /videos/<key>/features       (T, 2048) float32 or float16
    /videos/<key>/timestamps     (T,) float64, seconds from the start of the video
    /videos/<key>/frame_indices  (T,) int64, index of the frame in the decoded stream

``<key>`` is the video id with ``%`` and ``/`` percent-encoded (see :func:`encode_key`).

Crash safety: a video is written in one short commit (group, datasets, attributes) that
ends with a flush, after all its frames went through the CNN; until then its features
live outside the file (``features.buffer``). HDF5 writes metadata only at a flush, so a
process killed between commits leaves the file as of the last commit, and a group that is
incomplete for any reason is ignored by readers and re-extracted by the next run.
Replacing a video deletes and flushes first, so freed space is never reused under data the
file still points at. One writer at a time: :class:`CacheLock` (``<file>.lock``, ``flock``).
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from vidcache.features.buffer import FeatureBuffer
from vidcache.features.errors import CacheFormatError, CacheLocked
from vidcache.features.settings import FeatureSettings

FORMAT = "vidcache-features"
SCHEMA_VERSION = 1


def encode_key(video_id: str) -> str:
    """HDF5 name of a video's group: the id with ``%`` and ``/`` percent-encoded."""
    return video_id.replace("%", "%25").replace("/", "%2F")


def decode_key(key: str) -> str:
    """Inverse of :func:`encode_key`."""
    return key.replace("%2F", "/").replace("%25", "%")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class CacheEntry:
    """What the cache records about one video (its group's attributes).

    Attributes:
        video_id: stable id (relative path), the cache key.
        path: absolute path of the source at extraction time.
        label: class label, ``""`` for none.
        kind: ``"file"`` or ``"frames"``.
        size: bytes of the source.
        mtime: modification time of the source (seconds since the epoch).
        fingerprint: ``"sha256:<hex>"`` of the source's content.
        num_frames: sampled frames stored (rows of ``features``).
        fps: frame rate of the source.
        duration: seconds declared by the container, ``nan`` if unknown.
        source_frames: frames declared in (or counted from) the source, ``-1`` if unknown.
        width: source frame width.
        height: source frame height.
        codec: source codec name.
        meta: extra columns of a labels CSV.
        extracted_at: ISO time of extraction (UTC).
    """

    video_id: str
    path: str
    label: str
    kind: str
    size: int
    mtime: float
    fingerprint: str
    num_frames: int
    fps: float
    duration: float = math.nan
    source_frames: int = -1
    width: int = 0
    height: int = 0
    codec: str = ""
    meta: dict = field(default_factory=dict)
    extracted_at: str = ""

    def to_attrs(self) -> dict:
        attrs = asdict(self)
        attrs["meta"] = json.dumps(self.meta, sort_keys=True)
        return attrs

    @classmethod
    def from_attrs(cls, attrs) -> CacheEntry:
        values = {name: attrs[name] for name in cls.__dataclass_fields__ if name in attrs}
        for name, value in values.items():
            if isinstance(value, bytes):
                values[name] = value.decode()
            elif isinstance(value, np.generic):
                values[name] = value.item()
        values["meta"] = json.loads(values.get("meta") or "{}")
        return cls(**values)


class CacheLock:
    """Exclusive lock on ``<cache>.lock`` for the lifetime of a writing run.

    ``flock`` locks vanish with the process, so a killed run never leaves a stale lock.

    Raises:
        CacheLocked: another process holds the lock.
    """

    def __init__(self, cache_path: Path) -> None:
        self.path = Path(str(cache_path) + ".lock")
        self._handle = None

    def acquire(self) -> CacheLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise CacheLocked(
                    f"{self.path.name[:-5]} is being written by another vidcache run "
                    f"(pid {owner}); wait for it to finish or write to another file"
                ) from None
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            try:
                self.path.unlink()
            except OSError:
                pass
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> CacheLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _open_h5(path: Path, mode: str) -> h5py.File:
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        text = str(exc)
        if "lock" in text.lower():
            raise CacheLocked(f"{path} is open for writing in another process") from None
        raise CacheFormatError(
            f"{path} is not a readable HDF5 file ({text.splitlines()[0]})"
        ) from None


def _check_format(handle: h5py.File, path: Path) -> None:
    found = handle.attrs.get("format")
    if isinstance(found, bytes):
        found = found.decode()
    if found != FORMAT:
        raise CacheFormatError(
            f"{path} is an HDF5 file but not a vidcache feature cache (format={found!r})"
        )
    version = int(handle.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise CacheFormatError(
            f"{path} has cache schema version {version}; this vidcache reads version "
            f"{SCHEMA_VERSION} (re-extract with --overwrite, or use a matching vidcache)"
        )
    if "videos" not in handle:
        raise CacheFormatError(f"{path} lacks the /videos group")


def _group_complete(group: h5py.Group) -> bool:
    """A commit interrupted by a crash can leave a group without all its parts."""
    try:
        n = int(group.attrs["num_frames"])
        return (
            group["features"].shape[0] == n
            and group["timestamps"].shape[0] == n
            and "fingerprint" in group.attrs
        )
    except (KeyError, OSError, ValueError):
        return False


class FeatureCache:
    """A cache opened for writing. Use :meth:`open`; hold a :class:`CacheLock` around it.

    Args:
        path: the HDF5 file.
        handle: the open ``h5py.File``.
    """

    def __init__(self, path: Path, handle: h5py.File) -> None:
        self.path = Path(path)
        self._file = handle

    @classmethod
    def open(cls, path: Path, settings: FeatureSettings, versions: dict) -> FeatureCache:
        """Open ``path`` for writing, creating it with ``settings`` if it does not exist.

        The caller compares ``settings`` with :func:`read_settings` first; an existing file
        is opened as it is.

        Raises:
            CacheFormatError: the file exists but is not a vidcache cache of this schema.
        """
        path = Path(path)
        if path.exists():
            handle = _open_h5(path, "r+")
            try:
                _check_format(handle, path)
            except CacheFormatError:
                handle.close()
                raise
            return cls(path, handle)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = _open_h5(path, "w")
        handle.attrs["format"] = FORMAT
        handle.attrs["schema_version"] = SCHEMA_VERSION
        handle.attrs["settings"] = settings.to_json()
        handle.attrs["settings_sha256"] = settings.digest()
        handle.attrs["versions"] = json.dumps(versions, sort_keys=True)
        handle.attrs["created"] = handle.attrs["updated"] = _now()
        handle.create_group("videos")
        handle.flush()
        return cls(path, handle)

    def entries(self) -> dict[str, CacheEntry]:
        """The complete videos in the cache by id; incomplete groups are removed."""
        found, broken = {}, []
        for key, group in self._file["videos"].items():
            if _group_complete(group):
                entry = CacheEntry.from_attrs(group.attrs)
                found[entry.video_id] = entry
            else:
                broken.append(key)
        if broken:
            for key in broken:
                del self._file["videos"][key]
            self._file.flush()
        return found

    def write_video(self, entry: CacheEntry, buffer: FeatureBuffer, dtype: str) -> None:
        """Commit one finished video (replacing an older version of it) and flush."""
        videos = self._file["videos"]
        key = encode_key(entry.video_id)
        if key in videos:
            del videos[key]
            self._file.flush()
        n = len(buffer)
        group = videos.create_group(key)
        features = group.create_dataset("features", shape=(n, buffer.dim), dtype=dtype)
        row = 0
        for block in buffer.blocks():
            features[row : row + len(block)] = block.astype(dtype, copy=False)
            row += len(block)
        group.create_dataset("timestamps", data=np.asarray(buffer.timestamps, np.float64))
        group.create_dataset("frame_indices", data=np.asarray(buffer.frame_indices, np.int64))
        entry.num_frames = n
        entry.extracted_at = entry.extracted_at or _now()
        group.attrs.update(entry.to_attrs())
        self._file.attrs["updated"] = _now()
        self._file.flush()

    def touch_video(self, entry: CacheEntry) -> None:
        """Record a new size/mtime for an unchanged video (same fingerprint)."""
        group = self._file["videos"][encode_key(entry.video_id)]
        group.attrs["mtime"] = entry.mtime
        group.attrs["path"] = entry.path
        self._file.flush()

    def delete_videos(self, video_ids: Iterable[str]) -> int:
        """Delete videos by id; returns how many were removed."""
        videos = self._file["videos"]
        removed = 0
        for video_id in video_ids:
            key = encode_key(video_id)
            if key in videos:
                del videos[key]
                removed += 1
        if removed:
            self._file.attrs["updated"] = _now()
            self._file.flush()
        return removed

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_settings(path: Path) -> FeatureSettings:
    """The settings stamped on an existing cache.

    Raises:
        CacheFormatError: not a readable vidcache cache.
    """
    with CacheReader(path) as reader:
        return reader.settings


class CacheReader:
    """Read-only access to a cache; the way stage two reads features.

    Args:
        path: the HDF5 file.

    Raises:
        CacheFormatError: the file is missing, not HDF5, not a vidcache cache, or of
            another schema version.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CacheFormatError(f"{self.path}: no such cache file")
        self._file = _open_h5(self.path, "r")
        try:
            _check_format(self._file, self.path)
            self.settings = FeatureSettings.from_json(self._file.attrs["settings"])
        except (KeyError, TypeError, ValueError) as exc:
            self._file.close()
            raise CacheFormatError(f"{self.path}: damaged settings record ({exc})") from None
        except CacheFormatError:
            self._file.close()
            raise
        self.versions = json.loads(self._file.attrs.get("versions", "{}"))
        self.created = str(self._file.attrs.get("created", ""))
        self.updated = str(self._file.attrs.get("updated", ""))

    def entries(self) -> dict[str, CacheEntry]:
        """Complete videos by id, in key order."""
        return {
            entry.video_id: entry
            for entry in (
                CacheEntry.from_attrs(g.attrs)
                for g in self._file["videos"].values()
                if _group_complete(g)
            )
        }

    def _group(self, video_id: str) -> h5py.Group:
        try:
            return self._file["videos"][encode_key(video_id)]
        except KeyError:
            raise KeyError(f"{video_id!r} is not in {self.path}") from None

    def features(self, video_id: str) -> np.ndarray:
        """``(T, 2048)`` features of one video, in the stored dtype."""
        return self._group(video_id)["features"][()]

    def features_dataset(self, video_id: str) -> h5py.Dataset:
        """The open ``features`` dataset of one video, for repeated reads without lookups."""
        return self._group(video_id)["features"]

    def timestamps(self, video_id: str) -> np.ndarray:
        """``(T,)`` seconds of each stored frame."""
        return self._group(video_id)["timestamps"][()]

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
