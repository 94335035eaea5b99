"""Opening a cache file: for reading (healing or working around a crashed or live
writer, SWMR) and for writing (waiting a while for readers), each failure one line."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import h5py

from vidcache.features.cache import store
from vidcache.features.cache.h5recover import read_superblock
from vidcache.features.cache.lock import recover_if_crashed
from vidcache.features.cache.store import HDF5_ERRORS, first_line
from vidcache.features.errors import (
    CacheDamaged,
    CacheFormatError,
    CacheLocked,
    VidcacheError,
    unwritable,
)


def open_read(path: Path) -> h5py.File:
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


def open_for_write(path: Path, wait: float | None = None) -> h5py.File:
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
                raise hdf5_write_error(exc, path) from None
            if time.monotonic() >= deadline:
                raise CacheLocked(
                    f"{path.name} is open in another process (a training run, a reader or a "
                    f"viewer) and stayed open for {wait:g} s; close it and run again"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        except HDF5_ERRORS as exc:
            raise hdf5_write_error(exc, path) from None


def hdf5_write_error(exc: Exception, path: Path) -> VidcacheError:
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
