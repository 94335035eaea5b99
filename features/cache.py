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
import glob
import json
import os
import struct
import time
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from vidcache.features import store
from vidcache.features.buffer import FeatureBuffer
from vidcache.features.entry import CacheEntry, decode_key, encode_key
from vidcache.features.errors import (
    CacheDamaged,
    CacheFormatError,
    CacheLocked,
    VidcacheError,
    unwritable,
)
from vidcache.features.h5recover import clear_write_flags, read_superblock
from vidcache.features.legacy import LegacyReader
from vidcache.features.settings import FeatureSettings
from vidcache.features.store import HDF5_ERRORS, first_line

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

# A byte far past any data: its lock (an open-file-description lock, which HDF5's own
# flock never touches) marks the cache file itself as held by a writer.
_WRITER_BYTE = 1 << 62
_FLOCK = "@hhqqixxxx"  # struct flock on Linux: type, whence, start, len, pid, padding
_held: dict[tuple[int, int], list] = {}  # (device, inode) -> [fd, holders] in this process


def _same_file(path: Path, fd: int) -> bool:
    try:
        named, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def hold_file(path: Path, name: Path | None = None) -> tuple[int, int]:
    """Mark the cache file at ``path`` as held by a writer of this process, whatever name
    other processes reach it by (symlinks, hard links, bind mounts: one inode, one lock).

    Returns:
        The key to give :func:`release_file`.

    Raises:
        CacheLocked: another process holds the file.
        CacheUnwritable: the file cannot be opened for writing.
    """
    name = name or path
    while True:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise unwritable(exc, name, "opening it for writing") from None
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino)
        if key in _held:
            os.close(fd)
            _held[key][1] += 1
            return key
        request = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, _WRITER_BYTE, 1, 0)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise CacheLocked(
                    f"{Path(name).name} is being written by another vidcache run (through "
                    "another name: a link or another mount of the same file); wait for it "
                    "to finish or write to another file"
                ) from None
            raise unwritable(exc, name, "locking it") from None
        if _same_file(path, fd):
            _held[key] = [fd, 1]
            return key
        os.close(fd)  # replaced by a rename since it was opened: lock the new file


def release_file(key: tuple[int, int]) -> None:
    """Undo one :func:`hold_file`."""
    held = _held.get(key)
    if held is not None:
        held[1] -= 1
        if not held[1]:
            del _held[key]
            os.close(held[0])


def rewrite_path(target: Path) -> Path:
    """The temporary file beside ``target`` (its real path) that a rewrite builds and then
    renames over it; :func:`remove_leftovers` removes those a killed run left."""
    real = Path(os.path.realpath(target))
    return real.with_name(f".{real.name}.rewrite-{os.getpid()}")


def remove_leftovers(target: Path) -> list[Path]:
    """Remove the temporary files that killed runs on ``target`` left beside it (a
    rewrite's ``.NAME.rewrite-PID``, a creation's ``.NAME.creating-PID``). Call it only
    under ``target``'s lock, where no run that owns one can be alive.

    Returns:
        The files removed.
    """
    name = glob.escape(target.name)
    removed = []
    for pattern in (f"*.{name}.rewrite-*", f".{name}.creating-*"):
        for leftover in target.parent.glob(pattern):
            try:
                leftover.unlink()
            except OSError:
                continue  # not ours to remove (permissions); harmless
            removed.append(leftover)
    return removed


class CacheLock:
    """Exclusive lock for the lifetime of a writing run, one per file whatever its name.

    Two locks: ``flock`` on ``<cache's real path>.lock`` (symlinks and ``..`` resolved; the
    cache need not exist yet), and :func:`hold_file` on the cache file itself when it
    exists (hard links and bind mounts of one file are one inode). Both vanish with the
    process, so a killed run never leaves a stale lock.

    Raises:
        CacheLocked: another process holds the lock.
        CacheUnwritable: the lock file cannot be made (read-only place, no permission).
        DiskFull: no room for the lock file.
    """

    def __init__(self, cache_path: Path) -> None:
        self.name = Path(cache_path)
        self.target = Path(os.path.realpath(cache_path))
        self.path = Path(str(self.target) + ".lock")
        self._handle = None
        self._file_key = None

    def acquire(self) -> CacheLock:
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise unwritable(exc, self.name, f"its lock file {self.path.name}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise CacheLocked(
                        f"{self.name.name} is being written by another vidcache run "
                        f"(pid {owner}); wait for it to finish or write to another file"
                    ) from None
                raise
            # A run releasing its lock unlinks the file before unlocking it: the lock held
            # is the lock only while the name still leads to it.
            if _same_file(self.path, fd):
                break
            os.close(fd)
        try:  # for the message of a refused run only: a full disk leaves it empty
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._handle = fd
        remove_leftovers(self.target)
        if self.target.exists():
            try:
                self._file_key = hold_file(self.target, self.name)
            except VidcacheError:
                self.release()
                raise
        return self

    def release(self) -> None:
        if self._file_key is not None:
            release_file(self._file_key)
            self._file_key = None
        if self._handle is not None:
            try:
                self.path.unlink()
            except OSError:
                pass
            os.close(self._handle)  # closing the last descriptor releases the flock
            self._handle = None

    def __enter__(self) -> CacheLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


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
    except (VidcacheError, OSError):
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
    except HDF5_ERRORS as exc:
        first = exc
    try:
        block = read_superblock(path)
    except OSError as exc:
        raise CacheFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if block is None:
        raise CacheFormatError(f"{path} is not a readable HDF5 file (no HDF5 signature)")
    if not block.checksum_ok:
        raise CacheDamaged(f"{path}: damaged cache (the HDF5 superblock fails its checksum)")
    if block.open_for_write:
        if recover_if_crashed(path):
            try:
                return h5py.File(path, "r", **options)
            except HDF5_ERRORS as exc:
                first = exc
        try:  # a run is writing it, or it cannot be healed from here: SWMR read
            return h5py.File(path, "r", swmr=True, **options)
        except HDF5_ERRORS as exc:
            first = exc
    text = first_line(first)
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
        CacheUnwritable, DiskFull: the file cannot be written.
        CacheDamaged: HDF5 cannot open it.
    """
    wait = READER_WAIT_SECONDS if wait is None else wait
    deadline = time.monotonic() + wait
    delay = 0.02
    while True:
        try:
            return h5py.File(path, "r+", libver="latest")
        except BlockingIOError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise _hdf5_write_error(exc, path) from None
            if time.monotonic() >= deadline:
                raise CacheLocked(
                    f"{path.name} is open in another process (a training run, a reader or a "
                    f"viewer) and stayed open for {wait:g} s; close it and run again"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        except HDF5_ERRORS as exc:
            raise _hdf5_write_error(exc, path) from None


def _hdf5_write_error(exc: Exception, path: Path) -> VidcacheError:
    """What an HDF5 error while opening or starting to write ``path`` means to a user."""
    code = getattr(exc, "errno", None)
    text = first_line(exc)
    if code in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM):
        return unwritable(exc, path, "opening it")
    if "no space left" in str(exc).lower():
        return unwritable(OSError(errno.ENOSPC, "No space left on device"), path, "opening it")
    if "read-only" in str(exc).lower():
        return unwritable(OSError(errno.EROFS, "Read-only file system"), path, "opening it")
    return CacheDamaged(f"{path}: damaged cache, HDF5 cannot open it for writing ({text})")


class FeatureCache:
    """A schema-2/3 cache opened for writing. Use :meth:`open` under a :class:`CacheLock`.

    Args:
        writer: the open :class:`~vidcache.features.store.StoreWriter`.
        file_key: the :func:`hold_file` key released on close.
    """

    def __init__(self, writer: store.StoreWriter, file_key=None) -> None:
        self._writer = writer
        self._file_key = file_key
        self.path = writer.path

    @classmethod
    def open(
        cls, path: Path, settings: FeatureSettings, versions: dict, fsync: bool = False
    ) -> FeatureCache:
        """Open ``path`` for writing, creating it with ``settings`` if it does not exist.

        The caller holds the lock and compares ``settings`` with :func:`read_settings`
        first; a file a killed run left is healed here. A schema-2 file is extended as it
        is (its new records unchecked, like its old ones); new files are schema 3.

        Args:
            path: the cache.
            settings: the settings of a new file.
            versions: library versions stamped on a new file.
            fsync: make every commit durable against power loss. Defaults to False.

        Raises:
            CacheFormatError: the file is not a vidcache cache of schema 2 or 3 (schema 1
                files are upgraded with ``vidcache migrate``), or is damaged.
            CacheUnwritable, DiskFull: it cannot be written.
        """
        path = Path(os.path.realpath(path))  # a symlink is written through, never replaced
        if not path.exists():
            store.create(path, settings, versions)
        key = hold_file(path)
        try:
            clear_write_flags(path)
            handle = _open_for_write(path)
            try:
                version = store.check_header(handle, path)
                if version == 1:
                    raise CacheFormatError(
                        f"{path} is a schema {version} cache; upgrade it with "
                        f"'vidcache migrate {path}' first"
                    )
                # Every object is opened and the index read and checked before SWMR mode:
                # in SWMR mode HDF5 retries a damaged object's checksum for minutes.
                writer = store.StoreWriter(path, handle, fsync)
                try:
                    handle.swmr_mode = True
                except HDF5_ERRORS as exc:
                    raise _hdf5_write_error(exc, path) from None
            except BaseException:
                handle.close()
                raise
        except BaseException:
            release_file(key)
            raise
        return cls(writer, key)

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
        if self._file_key is not None:
            release_file(self._file_key)
            self._file_key = None

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

    def __init__(self, path: Path, tolerant: bool = False) -> None:
        self.path = Path(path)
        self._file = _open_read(self.path)
        try:
            self.schema_version = store.check_header(self._file, self.path)
            attrs = store.read_attrs(self._file, self.path)
            try:
                self.settings = FeatureSettings.from_json(attrs["settings"])
                self.versions = json.loads(attrs.get("versions", "{}"))
            except (KeyError, TypeError, ValueError) as exc:
                raise CacheDamaged(
                    f"{self.path}: damaged cache (its settings cannot be read: {first_line(exc)})"
                ) from None
            self.created = str(attrs.get("created", ""))
            if self.schema_version == 1:
                self._legacy = LegacyReader(self._file, self.path)
                self._index = None
                self.updated = str(attrs.get("updated", ""))
            else:
                self._legacy = None
                self._index = store.Index(self._file, self.path, tolerant)
                times = self._index.text["extracted_at"]
                self.updated = max(times) if times else self.created
        except BaseException:
            self._file.close()
            raise

    @property
    def checked(self) -> bool:
        """Whether the index carries record checks (schema 3)."""
        return self._index is not None and self._index.checked

    @property
    def index(self) -> store.Index | None:
        """The schema-2/3 index (``None`` for schema 1)."""
        return self._index

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
