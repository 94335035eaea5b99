"""The HDF5 feature cache: the writer a run holds under a lock, and the reader.

Schema 2 (``features.store``) is written; schema 1 files (``features.legacy``) are read as
they are and upgraded by :func:`vidcache.features.maintenance.migrate`. Both are
documented in ``docs/cache-format.md``.

Opening is where crashes are healed: a file whose writer was killed still carries HDF5's
"open for write" flag. A writer (which holds :class:`CacheLock`) clears it before opening;
a reader clears it when the lock shows no writer is alive and the file is writable, and
otherwise opens the file in SWMR-read mode, which sees every committed video (also while a
run is writing the file).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from vidcache.features import store
from vidcache.features.buffer import FeatureBuffer
from vidcache.features.entry import CacheEntry, decode_key, encode_key
from vidcache.features.errors import CacheDamaged, CacheFormatError, CacheLocked
from vidcache.features.h5recover import clear_write_flags, read_superblock
from vidcache.features.legacy import LegacyReader
from vidcache.features.settings import FeatureSettings

FORMAT = store.FORMAT
SCHEMA_VERSION = store.SCHEMA_VERSION

__all__ = [
    "CacheEntry",
    "CacheLock",
    "CacheReader",
    "FeatureCache",
    "SCHEMA_VERSION",
    "decode_key",
    "encode_key",
    "read_settings",
]

# What h5py raises on a damaged file: the wrapped HDF5 error, or a lookup that found garbage.
_DAMAGE = (OSError, KeyError, ValueError, TypeError, AttributeError, RuntimeError, IndexError)


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


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def recover_if_crashed(path: Path) -> bool:
    """Clear the flags a killed writer left on ``path``, if no writer is alive now.

    Returns:
        True when a crashed writer's flags were cleared.
    """
    block = read_superblock(path)
    if block is None or not block.open_for_write or not os.access(path, os.W_OK):
        return False
    try:
        lock = CacheLock(path).acquire()
    except (CacheLocked, OSError):
        return False  # a live writer (its file is valid for SWMR readers), or no lock dir
    try:
        return clear_write_flags(path)
    finally:
        lock.release()


def _open_read(path: Path) -> h5py.File:
    """Open for reading, healing or working around a crashed or live writer.

    Raises:
        CacheFormatError: missing, not HDF5, or damaged past opening.
    """
    if not path.is_file():
        raise CacheFormatError(f"{path}: no such cache file")
    options = {"rdcc_nbytes": store.READ_CACHE_BYTES, "rdcc_nslots": 10007}
    try:
        return h5py.File(path, "r", **options)
    except _DAMAGE as exc:
        first = exc
    try:
        block = read_superblock(path)
    except OSError as exc:
        raise CacheFormatError(f"{path}: cannot be read ({_first_line(exc)})") from None
    if block is not None and block.open_for_write:
        if recover_if_crashed(path):
            try:
                return h5py.File(path, "r", **options)
            except _DAMAGE as exc:
                first = exc
        try:  # a run is writing it, or it cannot be healed from here: SWMR read
            return h5py.File(path, "r", swmr=True, **options)
        except _DAMAGE as exc:
            first = exc
    elif block is not None and not block.checksum_ok:
        raise CacheDamaged(f"{path}: damaged cache (the HDF5 superblock fails its checksum)")
    text = _first_line(first)
    if "signature" in text.lower():
        raise CacheFormatError(f"{path} is not a readable HDF5 file (no HDF5 signature)")
    if "truncated" in text.lower():
        raise CacheDamaged(f"{path}: damaged cache (the file is truncated: {text})")
    raise CacheDamaged(f"{path}: damaged cache, HDF5 cannot open it ({text})")


#: How long a writer waits for readers that hold the file open without SWMR (seconds).
READER_WAIT_SECONDS = 10.0


def _open_for_write(path: Path, wait: float | None = None) -> h5py.File:
    """Open ``path`` read-write, waiting a while for other processes that have it open.

    HDF5 locks a file that a process opened before the writer switched to SWMR mode: a
    reader polling it, a training run loading it, a viewer. Such a lock is usually gone in
    moments; one held longer is refused with a clear message instead of a crash.

    Raises:
        CacheLocked: another process kept the file open for ``wait`` seconds.
    """
    wait = READER_WAIT_SECONDS if wait is None else wait
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        try:
            return h5py.File(path, "r+", libver="latest")
        except BlockingIOError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if time.monotonic() >= deadline:
                raise CacheLocked(
                    f"{path.name} is open in another process (a training run, a reader or a "
                    f"viewer) and stayed open for {wait:g} s; close it and run again"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class FeatureCache:
    """A schema-2 cache opened for writing. Use :meth:`open` under a :class:`CacheLock`.

    Args:
        writer: the open :class:`~vidcache.features.store.StoreWriter`.
    """

    def __init__(self, writer: store.StoreWriter) -> None:
        self._writer = writer
        self.path = writer.path

    @classmethod
    def open(
        cls, path: Path, settings: FeatureSettings, versions: dict, fsync: bool = False
    ) -> FeatureCache:
        """Open ``path`` for writing, creating it with ``settings`` if it does not exist.

        The caller holds the lock and compares ``settings`` with :func:`read_settings`
        first; a file a killed run left is healed here.

        Args:
            path: the cache.
            settings: the settings of a new file.
            versions: library versions stamped on a new file.
            fsync: make every commit durable against power loss. Defaults to False.

        Raises:
            CacheFormatError: the file is not a vidcache cache of schema 2 (schema 1 files
                are upgraded with ``vidcache migrate``), or is damaged.
        """
        path = Path(path)
        if not path.exists():
            store.create(path, settings, versions)
        clear_write_flags(path)
        try:
            handle = _open_for_write(path)
        except _DAMAGE as exc:
            raise CacheDamaged(f"{path}: damaged cache, HDF5 cannot open it ({_first_line(exc)})")
        try:
            version = store.check_header(handle, path)
            if version != SCHEMA_VERSION:
                raise CacheFormatError(
                    f"{path} is a schema {version} cache; upgrade it with "
                    f"'vidcache migrate {path}' first"
                )
            handle.swmr_mode = True
            writer = store.StoreWriter(path, handle, fsync)
        except CacheDamaged as exc:
            handle.close()
            raise CacheDamaged(f"{path}: damaged cache ({exc})") from None
        except CacheFormatError:
            handle.close()
            raise
        except _DAMAGE as exc:
            handle.close()
            raise CacheDamaged(f"{path}: damaged cache index ({_first_line(exc)})") from None
        return cls(writer)

    def entries(self) -> dict[str, CacheEntry]:
        """The videos in the cache by id (their latest records)."""
        entries = self._writer.index.entries()
        return {video_id: entries[video_id] for video_id in sorted(entries, key=encode_key)}

    def write_video(self, entry: CacheEntry, buffer: FeatureBuffer, dtype: str | None = None):
        """Commit one finished video (replacing an older version of it).

        Raises:
            DiskFull: no room for it; the videos committed before are kept.
        """
        entry.extracted_at = entry.extracted_at or store.now()
        self._writer.append(entry, buffer.blocks(), buffer.timestamps, buffer.frame_indices)

    def write_rows(self, entry: CacheEntry, features, timestamps, frame_indices) -> None:
        """Commit one video from arrays (migration, compaction, benchmarks)."""
        entry.extracted_at = entry.extracted_at or store.now()
        self._writer.append(entry, [features], timestamps, frame_indices)

    def write_batch(self, entries: list[CacheEntry], batch: list[store.Rows]) -> None:
        """Commit many videos in one step (whole-file rewrites)."""
        for entry in entries:
            entry.extracted_at = entry.extracted_at or store.now()
        self._writer.append_batch(entries, batch)

    def touch_video(self, entry: CacheEntry) -> None:
        """Record a new path/mtime for an unchanged video (same fingerprint, same rows)."""
        position = self._writer.index.live[entry.video_id]
        self._writer.append(entry, None, reuse_from=position)

    def delete_videos(self, video_ids: Iterable[str]) -> int:
        """Tombstone videos by id; returns how many were removed."""
        index = self._writer.index
        removed = 0
        for video_id in video_ids:
            position = index.live.get(video_id)
            if position is not None:
                self._writer.append(index.entry(position), None, deleted=True)
                removed += 1
        return removed

    def close(self) -> None:
        self._writer.close()

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
    """Read-only access to a cache of either schema; the way stage two reads features.

    Opening reads the whole video index (a handful of reads at any size). Features are
    checked against their CRC-32 on every read of a schema-2 file.

    Args:
        path: the HDF5 file.

    Raises:
        CacheFormatError: the file is missing, not HDF5, not a vidcache cache, of another
            schema version, or damaged (:class:`CacheDamaged`).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = _open_read(self.path)
        try:
            self.schema_version = store.check_header(self._file, self.path)
            attrs = self._file.attrs
            self.settings = FeatureSettings.from_json(attrs["settings"])
            self.versions = json.loads(attrs.get("versions", "{}"))
            self.created = str(attrs.get("created", ""))
            if self.schema_version == 1:
                self._legacy = LegacyReader(self._file, self.path)
                self._index = None
                self.updated = str(attrs.get("updated", ""))
            else:
                self._legacy = None
                try:
                    self._index = store.Index(self._file)
                except CacheDamaged as exc:
                    raise CacheDamaged(f"{self.path}: damaged cache ({exc})") from None
                times = self._index.text["extracted_at"]
                self.updated = max(times) if times else self.created
        except CacheFormatError:
            self._file.close()
            raise
        except _DAMAGE as exc:
            self._file.close()
            raise CacheDamaged(f"{self.path}: damaged cache ({_first_line(exc)})") from None

    def entries(self) -> dict[str, CacheEntry]:
        """Videos by id, in the order of :func:`encode_key`."""
        if self._legacy is not None:
            return self._legacy.entries()
        return self._index.entries()

    def __contains__(self, video_id: str) -> bool:
        if self._legacy is not None:
            return video_id in self._legacy.entries()
        return video_id in self._index.live

    def rows(self, video_id: str, verify: bool = True) -> store.Rows:
        """Features, timestamps and frame indices of one video.

        Raises:
            KeyError: not in the cache.
            CacheDamaged: its rows fail their checksum or cannot be read.
        """
        if self._legacy is not None:
            return store.Rows(*self._legacy.rows(video_id))
        position = self._index.live.get(video_id)
        if position is None:
            raise KeyError(f"{video_id!r} is not in {self.path}")
        return store.read_rows(self._file, self._index, position, self.path, verify)

    def features_many(self, video_ids: list[str]) -> dict[str, np.ndarray]:
        """Features of many videos (stored dtype), read in large sequential blocks in file
        order; each checked against its checksum. The fast way to load a training set.

        Raises:
            KeyError: a video is not in the cache.
            CacheDamaged: a video fails its checksum.
        """
        return {video_id: rows.features for video_id, rows in self.rows_many(video_ids)}

    def rows_many(self, video_ids: list[str]):
        """Yield ``(video_id, Rows)`` for many videos, in file order, read in large
        sequential blocks (schema 2) and checked against their checksums.

        Raises:
            KeyError: a video is not in the cache.
            CacheDamaged: a video fails its checksum.
        """
        if self._legacy is not None:
            for video_id in video_ids:
                yield video_id, store.Rows(*self._legacy.rows(video_id))
            return
        live, ids = self._index.live, self._index.text["video_id"]
        missing = [v for v in video_ids if v not in live]
        if missing:
            raise KeyError(f"{missing[0]!r} is not in {self.path}")
        positions = [live[v] for v in video_ids]
        for position, rows in store.read_many(self._file, self._index, positions, self.path):
            yield ids[position], rows

    def features(self, video_id: str) -> np.ndarray:
        """``(T, 2048)`` features of one video, in the stored dtype."""
        return self.rows(video_id).features

    def timestamps(self, video_id: str) -> np.ndarray:
        """``(T,)`` seconds of each stored frame."""
        return self.rows(video_id).timestamps

    def holds_folders(self) -> bool:
        """Whether any video of the cache is a folder of numbered frames."""
        if self._legacy is not None:
            return any(entry.kind == "frames" for entry in self.entries().values())
        kinds = self._index.text["kind"]  # one column of the index: no entries are built
        return any(kinds[position] == "frames" for position in self._index.live.values())

    def stats(self) -> dict:
        """Records, live videos, rows stored and rows in use (schema 2; waste = 1 - used)."""
        if self._legacy is not None:
            entries = self._legacy.entries()
            rows = sum(e.num_frames for e in entries.values())
            return {
                "records": len(entries),
                "videos": len(entries),
                "rows": rows,
                "live_rows": rows,
            }
        index = self._index
        return {
            "records": index.count,
            "videos": len(index.live),
            "rows": index.rows_end(),
            "live_rows": index.live_rows(),
        }

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def common_settings(readers: list[CacheReader]):
    """The settings that describe all of ``readers`` (the shards of one dataset, the caches
    of one training run), and the first cache that disagrees with them.

    Settings only folders of frames use are compared between caches that both hold such
    folders; the settings returned are those of a cache holding folders when one does.

    Returns:
        ``(base reader, disagreeing reader or None, differences)``.
    """
    base = next((r for r in readers if r.holds_folders()), readers[0])
    base_folders = base.holds_folders()
    for reader in readers:
        if reader is not base:
            folders = base_folders and reader.holds_folders()
            diffs = base.settings.differences(reader.settings, folders=folders)
            if diffs:
                return base, reader, diffs
    return base, None, []


def cache_schema(path: Path) -> int:
    """The schema version of an existing cache (1 or 2).

    Raises:
        CacheFormatError: not a readable vidcache cache.
    """
    with CacheReader(path) as reader:
        return reader.schema_version
