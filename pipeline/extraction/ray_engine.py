"""Extraction on a Ray cluster (``extract-features --engine ray``).

The driver (this process) plans the run and hands shards of videos to a pool of Ray actors.
Each actor builds the CNN once, the first time it has work, and extracts one shard after
another with the ordinary single-process pipeline (:func:`extract_features`) into a shard
cache of its own: every shard is crash-safe and resumable like any cache. An actor that
dies (a lost node, an out-of-memory kill) has its shard retried on a new actor; the
videos it had committed are kept (the retry finds them cached), so nothing is done twice
or lost. The actors report progress to a small board actor, which the driver reads for one
progress bar.

Two kinds of output:

* ``-o features.h5``: one cache. Only new or changed videos go to the actors; their shard
  caches live in ``features.h5.parts/`` and are added to ``features.h5`` at the end (also
  when interrupted; a part left by a killed driver is added by the next run).
* ``-o folder/``: a folder of shard caches ``shard-KKKKK-of-NNNNN.h5``, each brought up to
  date in place (``train-rnn``, ``evaluate`` and ``inspect`` read the folder directly).

Without ``address`` a local Ray is started on this machine's cores and stopped at the end.

Without a shared disk (detected, or ``RayOptions.shared_disk=False``), the actors extract
blocks of videos on their own nodes and the driver pulls the rows and commits them to the
cache or to the folder's shard files itself (:mod:`.ray_transfer`).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from vidcache.features.cache.maintenance import absorb, migrate
from vidcache.features.cache.session import CacheSession
from vidcache.features.errors import VidcacheError
from vidcache.features.shard import shard_of
from vidcache.features.video.discover import VideoSource
from vidcache.pipeline.extraction.config import ExtractConfig, library_versions
from vidcache.pipeline.extraction.outcomes import ExtractSummary, Reporter
from vidcache.pipeline.extraction.ray_pool import (
    EngineUnavailable,
    RayOptions,
    Task,
    combine,
    import_ray,
    run_pool,
    start_ray,
    worker_count,
)
from vidcache.pipeline.extraction.ray_transfer import Receiver, check_settings, shared_disk
from vidcache.pipeline.extraction.session import (
    gone_videos,
    maintain,
    plan,
    read_existing,
    replacing,
)
from vidcache.pipeline.outputs import prepare_output_dir

__all__ = [
    "EngineUnavailable",
    "RayOptions",
    "extract_with_ray",
    "import_ray",
    "shard_count_in",
    "shard_path",
]

SHARD_NAME = re.compile(r"shard-(\d{5})-of-(\d{5})\.h5$")
#: Videos a task holds without a shared disk: what an actor that dies loses at most.
BLOCK_VIDEOS = 8


def shard_path(folder: Path, index: int, count: int) -> Path:
    """The file of shard ``index`` of ``count`` in ``folder``."""
    return Path(folder) / f"shard-{index:05d}-of-{count:05d}.h5"


def shard_count_in(folder: Path) -> int | None:
    """The shard count of the shard caches in ``folder`` (None when it has none).

    Raises:
        VidcacheError: the folder mixes shard counts.
    """
    counts = {
        int(m.group(2)) for p in Path(folder).glob("shard-*.h5") if (m := SHARD_NAME.search(p.name))
    }
    if len(counts) > 1:
        raise VidcacheError(f"{folder} holds shards of several counts ({sorted(counts)})")
    return counts.pop() if counts else None


def _sharded(sources: list[VideoSource], count: int, folder: Path) -> list[Task]:
    """One task per shard that has videos, or a file to bring up to date (to prune)."""
    groups: dict[int, list[VideoSource]] = {}
    for source in sources:
        groups.setdefault(shard_of(source.video_id, count), []).append(source)
    tasks = []
    for k in range(count):
        path = shard_path(folder, k, count)
        if k in groups or path.exists():
            tasks.append(Task(k, groups.get(k, []), path))
    return tasks


def _blocks(sources: list[VideoSource], count: int) -> list[Task]:
    """Tasks of at most :data:`BLOCK_VIDEOS` videos, each of one shard (no shared disk)."""
    groups: dict[int, list[VideoSource]] = {}
    for source in sources:
        groups.setdefault(shard_of(source.video_id, count), []).append(source)
    return [
        Task(k, group[i : i + BLOCK_VIDEOS], Path())
        for k, group in sorted(groups.items())
        for i in range(0, len(group), BLOCK_VIDEOS)
    ]


def _is_shared(ray, options: RayOptions, folder: Path, reporter: Reporter) -> bool:
    """The run's mode: ``options.shared_disk``, or detected (:func:`.shared_disk`)."""
    if options.shared_disk is not None:
        shared = options.shared_disk
        why = "--shared-disk" if shared else "--no-shared-disk"
    else:
        shared, why = shared_disk(ray, folder)
    how = "shard caches on the shared disk" if shared else "rows sent through Ray's object store"
    reporter.note(f"ray: {why}: {how}")
    return shared


def extract_with_ray(
    sources: list[VideoSource],
    output: Path,
    config: ExtractConfig = ExtractConfig(),
    reporter: Reporter | None = None,
    options: RayOptions = RayOptions(),
    on_shard=None,
) -> ExtractSummary:
    """Extract ``sources`` on Ray into one cache (``*.h5``) or a folder of shard caches.

    Args:
        sources: the videos (from :func:`vidcache.features.video.discover.discover`).
        output: a ``.h5`` file (one cache) or a folder (shard caches).
        config: the run's options, as for :func:`extract_features`.
        reporter: progress callbacks. Defaults to none.
        options: where and how wide to run.
        on_shard: with a folder, called with the path of each shard cache that this run's
            work has finished (and closed), while the others go on (a bucket uploads it).

    Returns:
        One :class:`ExtractSummary` for the whole run.

    Raises:
        EngineUnavailable: Ray is not installed, or the cluster cannot be reached.
        CacheLocked, SettingsMismatch, CacheFormatError, WeightsUnavailable: as for
            :func:`extract_features`.
    """
    ray = import_ray()
    reporter = reporter or Reporter()
    output = Path(output)
    if output.suffix.lower() in (".h5", ".hdf5"):
        return _into_one_cache(ray, sources, output, config, reporter, options)
    return _into_folder(ray, sources, output, config, reporter, options, on_shard)


def _into_folder(ray, sources, folder: Path, config, reporter, options, on_shard=None):
    prepare_output_dir(folder, "shard folder")
    count = shard_count_in(folder)
    if count is not None and options.shards and options.shards != count:
        raise VidcacheError(
            f"{folder} holds shards of {count}; run with --shards {count} or use another folder"
        )
    started_here = start_ray(ray, options)
    try:
        if count is None:
            count = options.shards or 4 * worker_count(ray, options, len(sources))
            count = max(1, min(count, len(sources)))
        if not _is_shared(ray, options, folder, reporter):
            return _send_into_folder(
                ray, sources, folder, count, config, reporter, options, on_shard
            )
        tasks = _sharded(sources, count, folder)
        reporter.begin(len(sources))
        started = time.perf_counter()
        done = None if on_shard is None else (lambda task: on_shard(task.path))
        parts, outcomes, summary = run_pool(ray, tasks, config, options, reporter, on_done=done)
        return combine(summary, parts, outcomes, time.perf_counter() - started)
    finally:
        reporter.end()
        if started_here:
            ray.shutdown()


def _send_into_folder(
    ray, sources, folder: Path, count: int, config, reporter, options, on_shard=None
):
    """``-o folder/`` without a shared disk: the driver plans and writes every shard file
    (and hands ``on_shard`` each one whose blocks are all committed, closed)."""
    if config.overwrite:
        raise VidcacheError(
            f"--overwrite of the shard folder {folder} needs a shared disk; remove its "
            "shard files and run again, or write to a new folder"
        )
    summary = ExtractSummary()
    groups: dict[int, list[VideoSource]] = {}
    for source in sources:
        groups.setdefault(shard_of(source.video_id, count), []).append(source)
    reporter.begin(len(sources))
    with contextlib.ExitStack() as stack:
        sessions, work = {}, []
        for k in range(count):
            path = shard_path(folder, k, count)
            mine = groups.get(k, [])
            if not mine and not path.exists():
                continue
            session = stack.enter_context(CacheSession(path))
            existing = read_existing(session, config.settings(), mine, False, reporter)
            jobs, touched = plan(mine, existing.entries, summary, reporter)
            gone = gone_videos(mine, existing.entries) if config.prune else []
            if (touched or gone) and existing.settings is not None:
                with session.open(existing.settings) as cache:
                    maintain(cache, gone, touched, summary, reporter)
            sessions[k] = (session, existing.settings)
            work.extend(job.source for job in jobs)
        caches: dict = {}

        def open_cache(shard: int, settings, versions):
            if shard not in caches:
                session, cached = sessions[shard]
                if cached is not None:
                    check_settings(cached, settings, session.path)
                cache = session.open(cached or settings, versions, fsync=config.fsync)
                caches[shard] = stack.enter_context(cache)
            return caches[shard]

        started = time.perf_counter()
        worker_config = replace(config, overwrite=False, prune=False)
        receiver = Receiver(ray, open_cache)
        tasks = _blocks(work, count)
        left = Counter(task.shard for task in tasks)

        def block_done(task: Task) -> None:
            left[task.shard] -= 1
            if left[task.shard] == 0 and on_shard is not None:
                if task.shard in caches:
                    caches[task.shard].close()  # whole on disk before it is handed on
                on_shard(shard_path(folder, task.shard, count))

        parts, outcomes, own = run_pool(
            ray, tasks, worker_config, options, reporter, all_new=True, receiver=receiver,
            on_done=block_done,
        )  # fmt: skip
    summary.interrupted, summary.stopped_early = own.interrupted, own.stopped_early
    return combine(summary, parts, outcomes, time.perf_counter() - started)


def _add_parts(target: Path, parts: list[Path]) -> int:
    """Absorb the workers' parts into ``target`` (the cache, or the new file that replaces
    it: :func:`.session.replacing`; locked by the caller), then delete them; return the
    number of videos they held."""
    added = absorb(target, parts, library_versions(), locked=True) if parts else 0
    for part in parts:
        part.unlink()
    return added


def _into_one_cache(ray, sources, output: Path, config, reporter, options) -> ExtractSummary:
    prepare_output_dir(output.parent, "cache folder")
    parts_dir = output.with_name(output.name + ".parts")
    summary = ExtractSummary()
    with CacheSession(output) as session:
        if config.overwrite:
            # The old cache stays until the new one holds data: the parts are made beside
            # it and replace it in one rename at the end. Parts of an interrupted run were
            # made for the old cache: not for this one.
            shutil.rmtree(parts_dir, ignore_errors=True)
        leftovers = sorted(parts_dir.glob("*.h5")) if parts_dir.is_dir() else []
        if leftovers:
            if session.schema() == 1:
                migrate(output, locked=True)
            added = absorb(output, leftovers, library_versions(), locked=True)
            for part in leftovers:
                part.unlink()
            reporter.note(f"added {added} video(s) an interrupted run had finished")
        existing = read_existing(session, config.settings(), sources, config.overwrite, reporter)
        cached, entries = existing.settings, existing.entries
        reporter.begin(len(sources))
        jobs, touched = plan(sources, entries, summary, reporter)
        gone = gone_videos(sources, entries) if config.prune else []
        if (touched or gone) and cached is not None:
            with session.open(cached) as cache:
                maintain(cache, gone, touched, summary, reporter)
        if not jobs:
            reporter.end()
            return summary
        started_here = start_ray(ray, options)
        started = time.perf_counter()
        try:
            work = [job.source for job in jobs]
            count = options.shards or 4 * worker_count(ray, options, len(work))
            count = max(1, min(count, len(work)))
            worker_config = replace(config, overwrite=False, prune=False)
            if not _is_shared(ray, options, output.parent, reporter):
                parts, outcomes, own = _send_into_cache(
                    ray, session, _blocks(work, count), cached, worker_config, config, reporter,
                    options,
                )  # fmt: skip
                summary.interrupted, summary.stopped_early = own.interrupted, own.stopped_early
                reporter.end()
                return combine(summary, parts, outcomes, time.perf_counter() - started)
            parts_dir.mkdir(exist_ok=True)
            tasks = _sharded(work, count, parts_dir)
            parts, outcomes, own = run_pool(
                ray, tasks, worker_config, options, reporter, all_new=True
            )
        finally:
            if started_here:
                ray.shutdown()
        # Everything the workers committed goes into the cache, interrupted or not.
        with replacing(output, config.overwrite and output.exists(), reporter) as place:
            place.commit(_add_parts(place.target, sorted(parts_dir.glob("*.h5"))) > 0)
        try:
            parts_dir.rmdir()
        except OSError:
            pass
        summary.interrupted = own.interrupted
        summary.stopped_early = own.stopped_early
        reporter.end()
        return combine(summary, parts, outcomes, time.perf_counter() - started)


def _send_into_cache(ray, session, tasks, cached, worker_config, config, reporter, options):
    """``-o features.h5`` without a shared disk: the driver commits each video the actors
    send into the cache (or, with ``--overwrite``, the new file that replaces it)."""
    output = session.path
    with replacing(output, config.overwrite and output.exists(), reporter) as place:
        with contextlib.ExitStack() as stack:
            caches: list = []

            def open_cache(_shard: int, settings, versions):
                if not caches:
                    if cached is not None:
                        check_settings(cached, settings, output)
                    cache = session.open(
                        cached or settings, versions, fsync=config.fsync, into=place.target
                    )
                    caches.append(stack.enter_context(cache))
                return caches[0]

            receiver = Receiver(ray, open_cache)
            result = run_pool(
                ray, tasks, worker_config, options, reporter, all_new=True, receiver=receiver
            )
            place.commit(bool(caches) and bool(caches[0].entries()))
    return result
