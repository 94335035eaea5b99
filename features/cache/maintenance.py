"""Whole-file operations on a cache: verify, repair, compact, migrate.

Every operation that writes a cache does so in a
:class:`~vidcache.features.cache.session.CacheSession` (the cache's lock, a crashed writer
healed). One that rewrites a cache writes a new file beside it and renames it over the old
one only when complete (after ``fsync``): a crash at any moment leaves the old file as it
was.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vidcache.features.cache import CacheReader, FeatureCache, common_settings, rewrite_path
from vidcache.features.cache import rows as block_rows
from vidcache.features.cache.session import CacheSession
from vidcache.features.cache.store import fsync_path
from vidcache.features.errors import (
    CacheDamaged,
    CacheFormatError,
    DiskFull,
    SettingsMismatch,
    VidcacheError,
)


class DuplicateVideo(VidcacheError):
    """Two caches hold one video id with different content."""


@dataclass
class VerifyReport:
    """What :func:`verify` found.

    Attributes:
        damaged: video id -> reason, for videos whose rows fail their checksum.
        damaged_records: ``(position, id as read)`` of index records failing their check.
        count_damaged: the commit count failed its check.
        checked: the index carries record checks (schema 3); else its records are
            unverified (only the rows are checked).
    """

    path: Path
    schema_version: int
    videos: int
    rows: int = 0
    bytes_read: int = 0
    damaged: dict[str, str] = field(default_factory=dict)
    damaged_records: list[tuple[int, str]] = field(default_factory=list)
    count_damaged: bool = False
    checked: bool = False

    @property
    def index_damaged(self) -> bool:
        return bool(self.damaged_records) or self.count_damaged

    @property
    def whole(self) -> bool:
        return not (self.damaged or self.index_damaged)


def verify(path: Path, progress=None) -> VerifyReport:
    """Check every index record against its check (schema 3) and read every video,
    checking its rows against their checksum (schemas 2 and 3) or that they read at all
    (schema 1).

    Args:
        path: the cache.
        progress: called with the number of videos checked so far, now and then.

    Raises:
        CacheFormatError: the file cannot be opened as a cache at all.
    """
    with CacheReader(path, tolerant=True) as reader:
        entries = reader.entries()
        report = VerifyReport(Path(path), reader.schema_version, len(entries))
        index = reader.index
        if index is not None:
            report.checked = index.checked
            report.count_damaged = index.count_damaged
            ids = index.text["video_id"]
            report.damaged_records = [(p, ids[p]) for p in index.damaged]
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


def repair(path: Path, report) -> int:
    """Drop what :func:`verify` found damaged (its :class:`VerifyReport`, or the ids of
    videos whose rows are damaged), so the next ``extract-features`` extracts those videos
    again. Returns how many videos were dropped.

    Damaged rows: the videos are tombstoned in place. A damaged index (records or commit
    count): the cache is rewritten (like ``compact``) from the records that check out,
    leaving out the damaged records and the videos whose rows are damaged; a damaged
    record's rows are not copied, since nothing that checks out says what they are.
    """
    path = Path(path)
    if not isinstance(report, VerifyReport):
        report = VerifyReport(path, 0, 0, damaged={video_id: "" for video_id in report})
    if not report.index_damaged:
        with CacheSession(path) as session:
            with session.open(session.settings()) as cache:
                return cache.delete_videos(report.damaged)
    with CacheSession(path) as session:
        _rewrite([session.target], session.target, tolerant=True, skip=frozenset(report.damaged))
    return len(set(report.damaged) | {video_id for _, video_id in report.damaged_records})


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


def _rewrite(
    sources: list[Path],
    target: Path,
    progress=None,
    tolerant: bool = False,
    skip: frozenset[str] = frozenset(),
) -> RewriteReport:
    """Copy the live videos of ``sources`` (any schema, same settings) into a new
    schema-3 ``target`` (its real path: a symlink is written through), reading each in
    large sequential blocks, through a temporary file renamed into place when complete.
    Videos are written in key order.

    Args:
        tolerant: read the sources leaving out index records that fail their checks
            (``verify --repair``); otherwise such a source is refused. Defaults to False.
        skip: video ids to leave out. Defaults to none.

    Raises:
        SettingsMismatch: the sources hold features made with other settings.
        DuplicateVideo: two sources hold one video id with different content.
        DiskFull: no room for the new file; the sources are untouched.
    """

    started = time.perf_counter()
    named, target = target, Path(os.path.realpath(target))
    temporary = rewrite_path(target)
    if temporary.exists():
        temporary.unlink()
    readers = []
    try:
        for source in sources:
            readers.append(CacheReader(source, tolerant=tolerant))
        first, other, diffs = common_settings(readers)
        if other is not None:
            raise SettingsMismatch(
                f"{other.path} and {first.path} hold features made with other settings "
                f"({'; '.join(diffs)}); only caches of one kind can be merged"
            )
        owner: dict[str, int] = {}  # video id -> the reader whose copy is kept
        entries = [reader.entries() for reader in readers]
        for found in entries:
            for video_id in skip & found.keys():
                del found[video_id]
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
        try:
            feature_bytes = _write_copy(temporary, first, readers, entries, owner, progress)
        except (DiskFull, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno != errno.ENOSPC:
                raise
            raise DiskFull(
                f"{named}: disk full while writing its rewritten copy beside it; the cache "
                "is untouched: free some space (room for its live rows) and run again"
            ) from None
        before = sum(Path(source).stat().st_size for source in sources)
        for reader in readers:
            reader.close()
        os.replace(temporary, target)
        fsync_path(target.parent)
    finally:
        for reader in readers:
            reader.close()
        if temporary.exists():
            temporary.unlink()
    seconds = time.perf_counter() - started
    return RewriteReport(len(owner), before, target.stat().st_size, seconds, feature_bytes)


def _write_copy(temporary: Path, first: CacheReader, readers, entries, owner, progress) -> int:
    """Create ``temporary`` with the settings of ``first`` and copy the videos into it,
    durable once this returns; the bytes of feature rows copied."""
    from vidcache.features.cache import store

    store.create(temporary, first.settings, first.versions)
    # One flush at the end (bulk): the file is not in place yet.
    cache = FeatureCache.open(temporary, first.settings, {}, bulk=True)
    try:
        copied = _copy_videos(readers, entries, owner, cache, progress)
        cache.close()  # HDF5 writes what it still holds: the disk can fill here too
        fsync_path(temporary)
        return copied
    finally:
        cache.close()


def _copy_videos(readers, entries, owner, cache: FeatureCache, progress) -> int:
    """Copy each reader's videos that ``owner`` assigns to it into ``cache``, in batches;
    returns the bytes of feature rows copied."""
    done, feature_bytes = 0, 0
    for number, reader in enumerate(readers):
        mine = [v for v in entries[number] if owner[v] == number]
        done, copied = _copy_from(reader, entries[number], mine, cache, done, progress)
        feature_bytes += copied
    if progress is not None and done % 256:
        progress(done)
    return feature_bytes


def _copy_from(
    reader: CacheReader, entries: dict, ids: list[str], cache: FeatureCache, done: int, progress
) -> tuple[int, int]:
    """Copy the videos ``ids`` of ``reader`` (their records in ``entries``) into ``cache``:
    rows read in large sequential blocks, committed in batches of about ``BLOCK_ROWS`` rows
    (or 1024 videos), ``progress(done)`` every 256 videos. ``done`` counts on from the
    videos copied before. Returns ``done`` and the bytes of feature rows copied."""
    batch, batch_entries, batch_rows, feature_bytes = [], [], 0, 0
    for video_id, rows in reader.rows_many(ids):
        batch_entries.append(entries[video_id])
        batch.append(rows)
        batch_rows += len(rows.features)
        feature_bytes += rows.features.nbytes
        done += 1
        if batch_rows >= block_rows.BLOCK_ROWS or len(batch) >= 1024:
            cache.write_batch(batch_entries, batch)
            batch, batch_entries, batch_rows = [], [], 0
        if progress is not None and done % 256 == 0:
            progress(done)
    cache.write_batch(batch_entries, batch)  # an empty batch commits nothing
    return done, feature_bytes


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
    with CacheSession(target):
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
    """Upgrade a schema-1 or -2 cache to schema 3 (or rewrite a schema-3 one), in place or
    into ``target``; the old file is untouched until the new one is complete.

    Args:
        source: the cache.
        target: where the upgraded cache goes. Defaults to ``source`` (in place).
        progress: called with the number of videos copied so far, now and then.
        locked: the caller already holds the lock of ``target``. Defaults to False.

    In place, the session of the cache heals a killed writer's file first. Into another
    file, only ``target`` is locked: ``source`` is only read (it may sit in a read-only
    place), and reading heals it only when no writer can be alive.

    Raises:
        CacheLocked: a run is writing the target.
        CacheFormatError: the source is not a readable cache.
    """
    source = Path(os.path.realpath(source))
    target = Path(target) if target is not None else source
    with CacheSession(target, locked=locked):
        return _rewrite([source], target, progress)


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

    target = Path(target)
    done = 0
    with CacheSession(target, locked=locked) as session:
        cache = None
        try:
            for source in sources:
                with CacheReader(source) as reader:
                    if cache is None:
                        settings = session.settings() or reader.settings
                        cache = session.open(settings, versions or reader.versions)
                    diffs = settings.differences(reader.settings, folders=reader.holds_folders())
                    if diffs:
                        raise SettingsMismatch(
                            f"{source} holds features made with other settings than {target} "
                            f"({'; '.join(diffs)})"
                        )
                    entries = reader.entries()
                    done, _ = _copy_from(reader, entries, list(entries), cache, done, progress)
                    if progress is not None:
                        progress(done)
        finally:
            if cache is not None:
                cache.close()
    return done
