"""Whole-file operations on a cache: verify, repair, compact, migrate.

Every operation that rewrites a cache writes a new file beside it and renames it over the
old one only when complete (after ``fsync``), under the cache's lock: a crash at any moment
leaves the old file as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vidcache.features.cache import CacheLock, CacheReader, FeatureCache
from vidcache.features.errors import CacheDamaged
from vidcache.features.h5recover import clear_write_flags
from vidcache.features.store import StoreWriter


@dataclass
class VerifyReport:
    """What :func:`verify` found."""

    path: Path
    schema_version: int
    videos: int
    rows: int = 0
    bytes_read: int = 0
    damaged: dict[str, str] = field(default_factory=dict)  # video id -> reason


def verify(path: Path, progress=None) -> VerifyReport:
    """Read every video of a cache and check it against its checksum (schema 2) or that
    it reads at all (schema 1).

    Args:
        path: the cache.
        progress: called with the number of videos checked so far, now and then.

    Raises:
        CacheFormatError: the file cannot be opened as a cache at all.
    """
    with CacheReader(path) as reader:
        entries = reader.entries()
        report = VerifyReport(Path(path), reader.schema_version, len(entries))
        for done, video_id in enumerate(entries, 1):
            try:
                rows = reader.rows(video_id)
            except CacheDamaged as exc:
                report.damaged[video_id] = str(exc).split(": ", 1)[-1]
            else:
                report.rows += len(rows.features)
                report.bytes_read += rows.features.nbytes
            if progress is not None and (done % 256 == 0 or done == len(entries)):
                progress(done)
    return report


def repair(path: Path, video_ids) -> int:
    """Drop damaged videos (tombstones), so the next ``extract-features`` extracts them
    again. Returns how many were dropped."""
    with CacheLock(path):
        with CacheReader(path) as reader:
            settings = reader.settings
        with FeatureCache.open(path, settings, {}) as cache:
            return cache.delete_videos(video_ids)


@dataclass
class RewriteReport:
    """What :func:`compact` or :func:`migrate` did."""

    videos: int
    bytes_before: int
    bytes_after: int
    seconds: float = 0.0


def _rewrite(source: Path, target: Path, progress=None) -> RewriteReport:
    """Copy the live videos of ``source`` (either schema) into a new schema-2 ``target``,
    through a temporary file renamed into place when complete."""
    import time

    from vidcache.features import store

    started = time.perf_counter()
    temporary = target.with_name(f".{target.name}.rewrite-{os.getpid()}")
    if temporary.exists():
        temporary.unlink()
    try:
        with CacheReader(source) as reader:
            entries = reader.entries()
            store.create(temporary, reader.settings, reader.versions)
            cache = FeatureCache.open(temporary, reader.settings, {})
            try:
                writer: StoreWriter = cache._writer
                writer.bulk = True  # one flush at the end: the file is not in place yet
                for done, (video_id, entry) in enumerate(entries.items(), 1):
                    rows = reader.rows(video_id)
                    cache.write_rows(entry, rows.features, rows.timestamps, rows.frame_indices)
                    if progress is not None and (done % 256 == 0 or done == len(entries)):
                        progress(done)
            finally:
                cache.close()
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        before = source.stat().st_size
        os.replace(temporary, target)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        if temporary.exists():
            temporary.unlink()
    return RewriteReport(len(entries), before, target.stat().st_size, time.perf_counter() - started)


def compact(path: Path, progress=None, locked: bool = False) -> RewriteReport:
    """Rewrite a cache without the rows of replaced and deleted videos.

    Args:
        path: the cache.
        progress: called with the number of videos copied so far, now and then.
        locked: the caller already holds the cache's lock. Defaults to False.
    """
    return migrate(path, path, progress, locked)


def migrate(
    source: Path, target: Path | None = None, progress=None, locked: bool = False
) -> RewriteReport:
    """Upgrade a schema-1 cache to schema 2 (or rewrite a schema-2 one), in place or into
    ``target``; the old file is untouched until the new one is complete.

    Raises:
        CacheLocked: a run is writing the target.
        CacheFormatError: the source is not a readable cache.
    """
    source = Path(source)
    target = Path(target) if target is not None else source
    lock = None if locked else CacheLock(target).acquire()
    try:
        clear_write_flags(source)  # a crashed writer's file, now that no writer can be alive
        return _rewrite(source, target, progress)
    finally:
        if lock is not None:
            lock.release()
