"""Whole-file operations on a cache: verify, repair, compact, migrate.

Every operation that rewrites a cache writes a new file beside it and renames it over the
old one only when complete (after ``fsync``), under the cache's lock: a crash at any moment
leaves the old file as it was.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vidcache.features.cache import (
    CacheLock,
    CacheReader,
    FeatureCache,
    common_settings,
    read_settings,
)
from vidcache.features.errors import (
    CacheDamaged,
    CacheFormatError,
    SettingsMismatch,
    VidcacheError,
)
from vidcache.features.h5recover import clear_write_flags
from vidcache.features.store import fsync_path


class DuplicateVideo(VidcacheError):
    """Two caches hold one video id with different content."""


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
    """What :func:`compact`, :func:`migrate` or :func:`merge` did."""

    videos: int
    bytes_before: int
    bytes_after: int
    seconds: float = 0.0
    feature_bytes: int = 0  # bytes of feature rows copied

    @property
    def gb_per_second(self) -> float:
        return self.feature_bytes / 1e9 / self.seconds if self.seconds else 0.0


def _rewrite(sources: list[Path], target: Path, progress=None) -> RewriteReport:
    """Copy the live videos of ``sources`` (either schema, same settings) into a new
    schema-2 ``target``, reading each in large sequential blocks, through a temporary file
    renamed into place when complete. Videos are written in key order.

    Raises:
        SettingsMismatch: the sources hold features made with other settings.
        DuplicateVideo: two sources hold one video id with different content.
    """
    from vidcache.features import store

    started = time.perf_counter()
    temporary = target.with_name(f".{target.name}.rewrite-{os.getpid()}")
    if temporary.exists():
        temporary.unlink()
    readers = []
    try:
        for source in sources:
            readers.append(CacheReader(source))
        first, other, diffs = common_settings(readers)
        if other is not None:
            raise SettingsMismatch(
                f"{other.path} and {first.path} hold features made with other settings "
                f"({'; '.join(diffs)}); only caches of one kind can be merged"
            )
        owner: dict[str, int] = {}  # video id -> the reader whose copy is kept
        entries = [reader.entries() for reader in readers]
        for number, found in enumerate(entries):
            for video_id, entry in found.items():
                kept = owner.get(video_id)
                if kept is None:
                    owner[video_id] = number
                elif entries[kept][video_id].fingerprint != entry.fingerprint:
                    raise DuplicateVideo(
                        f"video {video_id!r} is in {readers[kept].path} and {readers[number].path} "
                        "with different content (fingerprints differ); merge the caches of "
                        "one dataset only, or re-extract it"
                    )
        store.create(temporary, first.settings, first.versions)
        cache = FeatureCache.open(temporary, first.settings, {})
        done, feature_bytes = 0, 0
        try:
            cache._writer.bulk = True  # one flush at the end: the file is not in place yet
            for number, reader in enumerate(readers):
                mine = [v for v in entries[number] if owner[v] == number]
                batch, batch_entries, batch_rows = [], [], 0
                for video_id, rows in reader.rows_many(mine):
                    batch_entries.append(entries[number][video_id])
                    batch.append(rows)
                    batch_rows += len(rows.features)
                    feature_bytes += rows.features.nbytes
                    done += 1
                    if batch_rows >= store.BLOCK_ROWS or len(batch) >= 1024:
                        cache.write_batch(batch_entries, batch)
                        batch, batch_entries, batch_rows = [], [], 0
                    if progress is not None and (done % 256 == 0 or done == len(owner)):
                        progress(done)
                cache.write_batch(batch_entries, batch)
        finally:
            cache.close()
        before = sum(Path(source).stat().st_size for source in sources)
        for reader in readers:
            reader.close()
        fsync_path(temporary)
        os.replace(temporary, target)
        fsync_path(target.parent)
    finally:
        for reader in readers:
            reader.close()
        if temporary.exists():
            temporary.unlink()
    seconds = time.perf_counter() - started
    return RewriteReport(len(owner), before, target.stat().st_size, seconds, feature_bytes)


def merge(sources: list[Path], target: Path, progress=None) -> RewriteReport:
    """Merge caches of one kind (shards of a dataset) into a new cache ``target``.

    Settings must be identical (refused otherwise, naming the difference). A video id in
    several sources is kept once when its fingerprint agrees, refused when it does not.
    Rows are copied in large sequential blocks; ``target`` appears only when complete.

    Raises:
        CacheFormatError: ``target`` exists, or a source is not a readable cache.
        SettingsMismatch: the sources were made with other settings.
        DuplicateVideo: one id with different content in two sources.
    """
    target = Path(target)
    if target.exists():
        raise CacheFormatError(f"{target} exists; merge into a new file")
    with CacheLock(target):
        return _rewrite([Path(s) for s in sources], target, progress)


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
        return _rewrite([source], target, progress)
    finally:
        if lock is not None:
            lock.release()


def absorb(
    target: Path,
    sources: list[Path],
    versions: dict | None = None,
    progress=None,
    locked: bool = False,
) -> int:
    """Add the videos of ``sources`` (shard caches of one kind) to the cache ``target``,
    in place, creating it when missing; a video already in ``target`` is replaced.

    Each batch is one commit of ``target``, so a crash at any moment keeps every batch
    committed before it and the sources are untouched: absorbing them again is safe (the
    caller deletes a source once this returns). Rows are read in large sequential blocks.

    Args:
        target: the cache to add to.
        sources: caches made with the same settings as ``target``.
        versions: library versions stamped on a new ``target``. Defaults to those of the
            first source.
        progress: called with the number of videos added so far, now and then.
        locked: the caller already holds the lock of ``target``. Defaults to False.

    Returns:
        The number of videos added.

    Raises:
        CacheLocked: a run is writing ``target``.
        SettingsMismatch: a source was made with other settings.
    """
    from vidcache.features import store

    target = Path(target)
    done = 0
    lock = None if locked else CacheLock(target).acquire()
    try:
        cache = None
        try:
            for source in sources:
                with CacheReader(source) as reader:
                    if cache is None:
                        settings = reader.settings
                        if target.exists():
                            settings = read_settings(target)
                        cache = FeatureCache.open(target, settings, versions or reader.versions)
                    diffs = settings.differences(reader.settings, folders=reader.holds_folders())
                    if diffs:
                        raise SettingsMismatch(
                            f"{source} holds features made with other settings than {target} "
                            f"({'; '.join(diffs)})"
                        )
                    entries = reader.entries()
                    batch, batch_entries, batch_rows = [], [], 0
                    for video_id, rows in reader.rows_many(list(entries)):
                        batch_entries.append(entries[video_id])
                        batch.append(rows)
                        batch_rows += len(rows.features)
                        done += 1
                        if batch_rows >= store.BLOCK_ROWS or len(batch) >= 1024:
                            cache.write_batch(batch_entries, batch)
                            batch, batch_entries, batch_rows = [], [], 0
                            if progress is not None:
                                progress(done)
                    if batch:
                        cache.write_batch(batch_entries, batch)
                    if progress is not None:
                        progress(done)
        finally:
            if cache is not None:
                cache.close()
    finally:
        if lock is not None:
            lock.release()
    return done
