"""One cache session for both engines: what an extraction run does to its cache before and
around the CNN work, written once.

In a :class:`~vidcache.features.cache.session.CacheSession` (the lock taken, a crashed
writer healed):

1. :func:`read_existing`: the cache's settings checked against the run's, an old schema
   upgraded (schema 1) or named (schema 2), and its index read, through a writer's open,
   which refuses an unwritable place up front;
2. :func:`plan`: each source is new work, up to date, or up to date but touched, copied or
   moved (its record is updated, not its features);
3. :func:`maintain`: ``--prune`` and the touched records, in an open cache;
4. :func:`replacing`: with ``--overwrite``, the new cache is made beside the old one and
   replaces it in one rename only when it holds a video, so a run that fails, extracts
   nothing or is killed leaves the old cache whole.

The local engine (:mod:`.local`) and the Ray engine (:mod:`.ray_engine`) differ only in how
the new rows are made.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from vidcache.features.cache import (
    SCHEMA_VERSION,
    CacheEntry,
    CacheReader,
    FeatureCache,
    rewrite_path,
)
from vidcache.features.cache.maintenance import migrate
from vidcache.features.cache.session import CacheSession
from vidcache.features.errors import VidcacheError
from vidcache.features.fingerprint import SourceStat, fingerprint, stat_source
from vidcache.features.remote.urls import is_url
from vidcache.features.settings import FeatureSettings, check_compatible
from vidcache.features.video.discover import VideoSource
from vidcache.pipeline.extraction.outcomes import (
    CACHED,
    FAILED,
    ExtractSummary,
    Reporter,
    VideoOutcome,
)

__all__ = [
    "Existing",
    "Job",
    "gone_videos",
    "has_folders",
    "maintain",
    "plan",
    "read_existing",
    "replacing",
]


@dataclass
class Job:
    """A video to extract: its place in the run (``slot``), where it is, what it was."""

    slot: int
    source: VideoSource
    stat: SourceStat


@dataclass
class Existing:
    """What the cache holds before the run: its settings (None for a new cache, or one
    ``--overwrite`` replaces) and its videos."""

    settings: FeatureSettings | None
    entries: dict[str, CacheEntry]


def has_folders(sources: list[VideoSource]) -> bool:
    """Whether a run extracts folders of frames (only then can ``folder_fps`` matter)."""
    return any(source.kind == "frames" for source in sources)


def read_existing(
    session: CacheSession,
    requested: FeatureSettings,
    sources: list[VideoSource],
    overwrite: bool,
    reporter: Reporter,
) -> Existing:
    """The cache of ``session`` as this run finds it.

    With ``overwrite`` the old file is ignored now and replaced only when the new one is
    made (:func:`replacing`), so a run that fails early (missing weights...) keeps it.

    Raises:
        SettingsMismatch: the cache holds features made with other settings (the weights'
            checksum is checked once the weights are loaded).
        CacheFormatError: the cache is not a vidcache cache, or is damaged.
        CacheUnwritable, DiskFull: it cannot be written.
    """
    output = session.path
    cached = None if overwrite else session.settings()
    if cached is None:
        return Existing(None, {})
    check_compatible(
        cached,
        requested,
        cache_name=str(output),
        ignore=("weights_sha256",),
        folders=has_folders(sources),
    )
    schema = session.schema()
    if schema == 1:
        report = migrate(output, locked=True)
        reporter.note(
            f"upgraded {output} to cache schema {SCHEMA_VERSION} "
            f"({report.videos} videos, {report.seconds:.1f} s)"
        )
    elif schema != SCHEMA_VERSION:
        reporter.note(
            f"{output} is a schema-{schema} cache: its index records carry no "
            f"checksums ('vidcache migrate {output}' adds them)"
        )
    with session.open(cached) as cache:
        return Existing(cached, cache.entries())


def plan(
    sources: list[VideoSource],
    entries: dict[str, CacheEntry],
    summary: ExtractSummary,
    reporter: Reporter,
) -> tuple[list[Job], list[CacheEntry]]:
    """Split ``sources`` into work and up-to-date videos (those touched, copied or moved
    but unchanged are returned with their new place and time, to update). Up-to-date and
    unreadable videos are reported into ``summary`` and ``reporter`` here."""
    jobs, touched = [], []
    for source in sources:
        try:
            stat = stat_source(source)
        except OSError as exc:
            outcome = VideoOutcome(
                source.video_id, source.path, FAILED, 0, exc.strerror or str(exc)
            )
            summary.outcomes.append(outcome)
            reporter.video(outcome)
            continue
        entry = entries.get(source.video_id)
        fresh = False
        if entry is not None and entry.size == stat.size:
            if entry.mtime == stat.mtime and source.remote is None:
                fresh = True
            else:
                try:
                    fresh = fingerprint(source) == entry.fingerprint
                except OSError:
                    fresh = False
            if fresh and (entry.mtime != stat.mtime or entry.path != str(source.path)):
                # Touched, copied or moved but unchanged: record where and when it is now.
                touched.append(replace(entry, mtime=stat.mtime, path=str(source.path)))
        if fresh:
            outcome = VideoOutcome(source.video_id, source.path, CACHED, entry.num_frames)
            summary.outcomes.append(outcome)
            reporter.video(outcome)
        else:
            jobs.append(Job(len(jobs), source, stat))
    return jobs, touched


def gone_videos(sources: list[VideoSource], entries: dict[str, CacheEntry]) -> list[str]:
    """Cached videos (ids) that are not among ``sources`` and whose file is gone (--prune)."""
    wanted = {s.video_id for s in sources}
    return [
        entry.video_id
        for entry in entries.values()
        if entry.video_id not in wanted and not _exists(entry.path)
    ]


def _exists(path: str) -> bool:
    """Whether a cached video's source is still there (an object of a store whose
    existence cannot be checked now counts as there: nothing is pruned on a doubt)."""
    if is_url(path):
        from vidcache.features.remote.listing import exists

        return exists(path)
    return Path(path).exists()


def maintain(
    cache: FeatureCache,
    gone: list[str],
    touched: list[CacheEntry],
    summary: ExtractSummary,
    reporter: Reporter,
) -> None:
    """``--prune`` the ``gone`` videos and update the ``touched`` records of an open
    cache."""
    if gone:
        summary.pruned = cache.delete_videos(gone)
        reporter.note(f"pruned {summary.pruned} video(s) whose source is gone")
    for entry in touched:
        cache.touch_video(entry)


class Replacement:
    """Where a run writes (:attr:`target`) and whether the result replaces the cache."""

    def __init__(self, output: Path, replace_old: bool) -> None:
        self.output = output
        self.replace_old = replace_old
        self.target = rewrite_path(output) if replace_old else output
        self.holds_data = False

    def commit(self, holds_data: bool) -> None:
        """Call when the target is complete; ``holds_data``: it holds a video."""
        self.holds_data = holds_data


@contextlib.contextmanager
def replacing(output: Path, replace_old: bool, reporter: Reporter) -> Iterator[Replacement]:
    """Write into ``output``, or, with ``replace_old``, into a new file beside it that
    replaces it in one rename when the run :meth:`~Replacement.commit`\\ s data; a run
    that fails, extracts nothing or is killed leaves the old cache whole (a killed run's
    file is removed by the next run that locks the cache). A cache this run created that
    holds no video when it ends (every video failed, or a stop before the first) is
    removed: no empty cache is left behind."""
    place = Replacement(output, replace_old)
    new = not output.exists()
    try:
        yield place
        if replace_old and place.holds_data:
            os.replace(place.target, os.path.realpath(output))
        elif replace_old:
            reporter.note(f"no video was extracted: {output} is kept as it was")
    finally:
        if replace_old and place.target.exists():
            place.target.unlink()
        if new and output.exists() and not place.holds_data and _holds_no_video(output):
            output.unlink()
            reporter.note(f"no video was extracted: no cache was made at {output}")


def _holds_no_video(path: Path) -> bool:
    """Whether the cache at ``path`` holds no video (a damaged one is not judged empty)."""
    try:
        with CacheReader(path) as reader:
            return not reader.entries()
    except VidcacheError:
        return False
