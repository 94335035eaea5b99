"""Who may write a cache: the lock a writer holds (a lock file beside the cache and a
lock on the file's own inode, whatever name it is reached by), the temporary names of
rewrites, and healing a file whose writer was killed."""

from __future__ import annotations

import errno
import fcntl
import glob
import os
import re
import struct
from pathlib import Path

from vidcache.features.cache.h5recover import clear_write_flags, read_superblock
from vidcache.features.errors import (
    CacheLocked,
    VidcacheError,
    unwritable,
)

# A byte far past any data: its lock (an open-file-description lock, which HDF5's own
# flock never touches) marks the cache file itself as held by a writer.
_WRITER_BYTE = 1 << 62
_FLOCK = "@hhqqixxxx"  # struct flock on Linux: type, whence, start, len, pid, padding
_held: dict[tuple[int, int], list] = {}  # (device, inode) -> [fd, holders] in this process
# Lock files this process has open, from creating one until giving it back: fd -> [path,
# whether it holds the flock]. What an interruption (Ctrl-C, SIGTERM: ``KeyboardInterrupt``
# at any instruction, in the middle of taking or giving back a lock) leaves here is given
# back as the process ends (:func:`release_abandoned`).
_lock_files: dict[int, list] = {}


def release_abandoned() -> list[Path]:
    """Give back the lock files this process still has open: those an interruption caught
    between taking a lock and its owner being able to give it back. Call it only as the
    process ends (every lock it holds is then abandoned). Returns the files removed."""
    removed = []
    for fd, (path, locked) in list(_lock_files.items()):
        if locked and _same_file(path, fd):
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
        try:
            os.close(fd)
        except OSError:
            pass
        _lock_files.pop(fd, None)
    return removed


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
    # Exactly ``.NAME.rewrite-PID``: the looser ``*.NAME.rewrite-*`` also matched
    # ``.a.NAME.rewrite-PID``, the live rewrite of the cache ``a.NAME`` beside this one.
    # A rewrite's own creation leaves ``..NAME.rewrite-PID.creating-PID``.
    name = re.escape(target.name)
    own = re.compile(rf"\.{name}\.(?:rewrite|creating)-\d+|\.\.{name}\.rewrite-\d+\.creating-\d+")
    removed = []
    for leftover in target.parent.glob(f"*.{glob.escape(target.name)}.*"):
        if own.fullmatch(leftover.name):
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
                _lock_files[fd] = [self.path, False]
            except OSError as exc:
                raise unwritable(exc, self.name, f"its lock file {self.path.name}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _lock_files[fd][1] = True
            except OSError as exc:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                _lock_files.pop(fd, None)
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
            _lock_files.pop(fd, None)
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
            _lock_files.pop(self._handle, None)
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
