"""Exclusive use of one cache: what every command that writes a cache does first, once.

A :class:`CacheSession` is taken by both extraction engines, by ``import`` and by every
maintenance operation that writes (``verify --repair``, ``compact``, ``migrate``, ``merge``,
``absorb``). Entering it:

1. takes the cache's :class:`~vidcache.features.cache.CacheLock` (one writer per file,
   whatever its name), unless the caller already holds it;
2. heals a writer that was killed: the HDF5 "open for write" flags it left are cleared
   (safe now, since no writer can be alive), so every read after sees a clean file;
3. and then answers what the file holds (:meth:`settings`, :meth:`schema`) and opens it
   for writing (:meth:`open`), schema checked, in the file's own layout.

Read-only commands (``inspect``, ``verify`` without ``--repair``, training) never take it:
they read through SWMR while a run writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from vidcache.features.cache.h5recover import clear_write_flags
from vidcache.features.cache.lock import CacheLock
from vidcache.features.cache.reader import cache_schema, read_settings
from vidcache.features.cache.writer import FeatureCache
from vidcache.features.errors import CacheDamaged
from vidcache.features.settings import FeatureSettings

__all__ = ["CacheSession"]


class CacheSession:
    """The lock on one cache, a crashed writer healed, and the file opened for writing.

    Use as a context manager: ``with CacheSession(path) as session: ...``.

    Args:
        path: the cache (it need not exist yet; a symlink is written through).
        locked: the caller already holds the cache's lock (a session inside a session,
            such as ``compact`` run by an extraction). Defaults to False.

    Attributes:
        path: the path as given, for messages.
        target: the cache's real path.
        healed: entering cleared the flags a killed writer left.

    Raises (on entering):
        CacheLocked: another process writes the cache.
        CacheUnwritable, DiskFull: the lock file cannot be made.
    """

    def __init__(self, path: Path, *, locked: bool = False) -> None:
        self.path = Path(path)
        self.target = Path(os.path.realpath(path))
        self.healed = False
        self._lock = None if locked else CacheLock(self.path)

    def __enter__(self) -> CacheSession:
        if self._lock is not None:
            self._lock.acquire()
        try:
            self.healed = self._heal()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock (a session entered with ``locked`` leaves it to its caller)."""
        if self._lock is not None:
            self._lock.release()

    def _heal(self) -> bool:
        """Clear a killed writer's flags. A file that cannot be written or read, or whose
        superblock is damaged, is left as it is: reading it reports that in one line, and
        ``--overwrite`` replaces it without reading it."""
        if not self.target.is_file() or not os.access(self.target, os.W_OK):
            return False
        try:
            return clear_write_flags(self.target)
        except (OSError, CacheDamaged):
            return False

    @property
    def exists(self) -> bool:
        """Whether the cache file exists."""
        return self.target.exists()

    def settings(self) -> FeatureSettings | None:
        """The settings stamped on the cache; None when there is no cache yet.

        Raises:
            CacheFormatError: the file is not a readable vidcache cache.
        """
        return read_settings(self.path) if self.exists else None

    def schema(self) -> int | None:
        """The cache's schema version; None when there is no cache yet.

        Raises:
            CacheFormatError: the file is not a readable vidcache cache.
        """
        return cache_schema(self.path) if self.exists else None

    def open(
        self,
        settings: FeatureSettings,
        versions: dict | None = None,
        *,
        fsync: bool = False,
        into: Path | None = None,
    ) -> FeatureCache:
        """Open the cache for writing, creating it with ``settings`` (and ``versions`` as
        provenance) when missing; see :meth:`FeatureCache.open`.

        Args:
            into: write this file instead, one that is to replace the cache (a new cache
                made beside it, ``--overwrite``). Defaults to the cache.

        Raises:
            CacheFormatError: not a vidcache cache of schema 2 or 3, or damaged.
            CacheUnwritable, DiskFull: it cannot be written.
        """
        return FeatureCache.open(into or self.path, settings, versions or {}, fsync=fsync)
