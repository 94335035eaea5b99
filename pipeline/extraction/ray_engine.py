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
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from vidcache.features.cache import (
    CacheLock,
    CacheReader,
    FeatureCache,
    cache_schema,
)
from vidcache.features.cache.maintenance import absorb, migrate
from vidcache.features.discover import VideoSource
from vidcache.features.errors import VidcacheError
from vidcache.features.shard import shard_of
from vidcache.pipeline.extraction.config import ExtractConfig, library_versions
from vidcache.pipeline.extraction.local import extract_features
from vidcache.pipeline.extraction.outcomes import (
    CACHED,
    EXTRACTED,
    FAILED,
    ExtractSummary,
    Reporter,
    VideoOutcome,
)
from vidcache.pipeline.extraction.session import (
    gone_videos,
    maintain,
    plan,
    read_existing,
    replacing,
)
from vidcache.pipeline.outputs import prepare_output_dir

INSTALL_HINT = "pip install 'vidcache[ray]'"
SHARD_NAME = re.compile(r"shard-(\d{5})-of-(\d{5})\.h5$")


class EngineUnavailable(VidcacheError):
    """The distributed engine cannot be used here (Ray missing or unreachable)."""


@dataclass(frozen=True)
class RayOptions:
    """How extraction runs on Ray.

    Args:
        address: the cluster (``auto``: the one ``ray start`` made on this node;
            ``ray://HOST:PORT``: Ray Client). None starts a local Ray on this machine's
            cores and stops it at the end. Defaults to None.
        workers: actors, each holding one model. 0: as many as the cluster's GPUs
            (``num_gpus_per_worker`` > 0) or CPUs allow. Defaults to 0.
        cpus_per_worker: CPU cores reserved per actor (its TensorFlow threads and its
            decoding). Defaults to 1.
        num_gpus_per_worker: GPUs per actor (0.5 puts two actors on a GPU). Defaults to 0.
        shards: shards of the work; more shards than workers balance uneven videos. 0: four
            per worker (a folder output keeps the count its first run chose). Defaults to 0.
        max_retries: new actors tried for a shard whose actor died. Defaults to 3.
        object_store_mb: object store of a local Ray (the work sends little data).
            Defaults to 256.
    """

    address: str | None = None
    workers: int = 0
    cpus_per_worker: int = 1
    num_gpus_per_worker: float = 0.0
    shards: int = 0
    max_retries: int = 3
    object_store_mb: int = 256


def import_ray():
    """Ray, or :class:`EngineUnavailable` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise EngineUnavailable(
            f"--engine ray needs Ray, which is not installed; install it with {INSTALL_HINT}"
        ) from None
    return ray


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


# -- the actors --------------------------------------------------------------------------


class _BoardReporter(Reporter):
    """Forwards an actor's progress to the board, at most every ``every`` seconds."""

    def __init__(self, board, task: tuple[int, int], every: float = 0.5) -> None:
        self._board, self._task, self._every = board, task, every
        self._outcomes: list[VideoOutcome] = []
        self._frames = 0
        self._sent = time.monotonic()

    def video(self, outcome: VideoOutcome) -> None:
        self._outcomes.append(outcome)
        self._maybe_send(force=True)  # at once: the driver must learn of every commit

    def frames(self, count: int) -> None:
        self._frames += count
        self._maybe_send()

    def _maybe_send(self, force: bool = False) -> None:
        if force or time.monotonic() - self._sent >= self._every:
            if self._outcomes or self._frames:
                self._board.push.remote(self._task, self._outcomes, self._frames)
            self._outcomes, self._frames = [], 0
            self._sent = time.monotonic()

    def end(self) -> None:
        self._maybe_send(force=True)


class ProgressBoard:
    """Ray actor: collects the progress events of the workers for the driver."""

    def __init__(self) -> None:
        self._events: list = []

    def push(self, task, outcomes, frames) -> None:
        self._events.append((task, outcomes, frames))

    def drain(self) -> list:
        events, self._events = self._events, []
        return events


class ExtractWorker:
    """Ray actor: one CNN (built on first need) for shard after shard.

    Args:
        config: the run's options.
        cpus: cores reserved for it (TensorFlow's thread pools are sized to them).
        board: the :class:`ProgressBoard` actor.
    """

    def __init__(self, config: ExtractConfig, cpus: int, board) -> None:
        self.config = config
        self.cpus = cpus
        self.board = board
        self.extractor = None
        self.model_seconds = 0.0

    def pid(self) -> int:
        return os.getpid()

    def _build(self, config: ExtractConfig):
        if self.extractor is None:
            from vidcache.features.backbone import FeatureExtractor, import_tensorflow

            started = time.perf_counter()
            tf = import_tensorflow()
            try:
                tf.config.threading.set_intra_op_parallelism_threads(self.cpus)
                tf.config.threading.set_inter_op_parallelism_threads(min(2, self.cpus))
            except RuntimeError:  # already initialised
                pass
            self.extractor = FeatureExtractor(
                config.image_size,
                config.weights,
                config.precision,
                config.batch_size,
                config.backbone,
            )
            self.model_seconds = time.perf_counter() - started
        return self.extractor

    def run(self, task: tuple[int, int], sources: list[VideoSource], path: str) -> ExtractSummary:
        """Extract ``sources`` into the shard cache ``path``; ``task`` is (shard, attempt)."""
        reporter = _BoardReporter(self.board, task)
        summary = extract_features(sources, Path(path), self.config, reporter, self._build)
        summary.model_seconds = self.model_seconds
        return summary


# -- the driver --------------------------------------------------------------------------


@dataclass
class _Task:
    shard: int
    sources: list[VideoSource]
    path: Path
    attempt: int = 0
    last_error: str = ""


class _Outcomes:
    """Outcomes by video, the first report of each kept (a retry reports the videos its dead
    predecessor committed as cached: they were extracted in this run).

    Args:
        reporter: the driver's progress.
        all_new: the workers were given only videos that were not cached before the run,
            so a video a worker finds cached was extracted by a worker that died.
    """

    def __init__(self, reporter: Reporter, all_new: bool = False) -> None:
        self.reporter = reporter
        self.all_new = all_new
        self.by_video: dict[str, VideoOutcome] = {}
        self.frames = 0

    def add(self, outcome: VideoOutcome) -> None:
        if self.all_new and outcome.status == CACHED:
            outcome = replace(outcome, status=EXTRACTED)
        if outcome.video_id not in self.by_video:
            self.by_video[outcome.video_id] = outcome
            self.reporter.video(outcome)

    def add_frames(self, count: int) -> None:
        self.frames += count
        self.reporter.frames(count)


def _start_ray(ray, options: RayOptions) -> bool:
    """Connect to or start Ray; True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    common = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    try:
        if options.address:
            ray.init(address=options.address, **common)
        else:
            ray.init(
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                object_store_memory=options.object_store_mb * 2**20,
                **common,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = options.address or "a local Ray"
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EngineUnavailable(f"cannot start or reach {where}: {text}") from None
    return True


def _worker_count(ray, options: RayOptions, tasks: int) -> int:
    if options.workers:
        return max(1, min(options.workers, tasks))
    resources = ray.cluster_resources()
    if options.num_gpus_per_worker > 0:
        fit = int(resources.get("GPU", 0) // options.num_gpus_per_worker)
    else:
        fit = int(resources.get("CPU", 1) // options.cpus_per_worker)
    if fit < 1:
        raise EngineUnavailable(
            f"the Ray cluster has no room for one worker ({options.cpus_per_worker} CPU, "
            f"{options.num_gpus_per_worker:g} GPU; it has {dict(resources)})"
        )
    return max(1, min(fit, tasks))


def _run_pool(
    ray,
    tasks: list[_Task],
    config: ExtractConfig,
    options: RayOptions,
    reporter: Reporter,
    all_new: bool = False,
) -> tuple[list[ExtractSummary], _Outcomes, ExtractSummary]:
    """Run ``tasks`` on a pool of actors, retrying the shards of actors that die.

    Returns:
        The shards' summaries, the outcomes by video, and a summary holding the driver's
        own findings (shards given up, interruption).
    """
    from ray.exceptions import ActorDiedError, RayActorError, RayTaskError, WorkerCrashedError

    lost = (RayActorError, ActorDiedError, WorkerCrashedError)
    board_class = ray.remote(num_cpus=0)(ProgressBoard)
    worker_class = ray.remote(
        num_cpus=options.cpus_per_worker,
        num_gpus=options.num_gpus_per_worker,
        max_restarts=0,
        max_task_retries=0,
    )(ExtractWorker)
    board = board_class.remote()
    outcomes = _Outcomes(reporter, all_new)
    own = ExtractSummary()
    summaries: list[ExtractSummary] = []
    workers = _worker_count(ray, options, len(tasks))
    reporter.note(f"ray: {workers} worker(s), {len(tasks)} shard(s)")

    def new_worker():
        return worker_class.remote(config, options.cpus_per_worker, board)

    def drain() -> None:
        for (_shard, _attempt), reported, frames in ray.get(board.drain.remote()):
            for outcome in reported:
                outcomes.add(outcome)
            if frames:
                outcomes.add_frames(frames)

    idle = [new_worker() for _ in range(workers)]
    queue = deque(tasks)
    running: dict = {}
    try:
        while queue or running:
            while queue and idle and not own.stopped_early:
                worker, task = idle.pop(), queue.popleft()
                ref = worker.run.remote((task.shard, task.attempt), task.sources, str(task.path))
                running[ref] = (worker, task)
            if not running:
                break
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            drain()
            for ref in ready:
                worker, task = running.pop(ref)
                try:
                    summary = ray.get(ref)
                except lost as exc:
                    ray.kill(worker, no_restart=True)
                    task.last_error = (str(exc).strip().splitlines() or ["worker lost"])[0][:200]
                    if task.attempt < options.max_retries:
                        task.attempt += 1
                        reporter.note(
                            f"ray: the worker of shard {task.shard} died; retrying it on a new "
                            f"worker (attempt {task.attempt + 1} of {options.max_retries + 1})"
                        )
                        queue.appendleft(task)
                    else:
                        _give_up(task, outcomes, options)
                    idle.append(new_worker())
                    continue
                except RayTaskError as exc:
                    cause = exc.cause if isinstance(exc.cause, BaseException) else None
                    if isinstance(cause, VidcacheError):
                        raise cause from None
                    raise
                summaries.append(summary)
                idle.append(worker)
                if summary.interrupted:
                    own.interrupted = True
                    own.stopped_early = True  # hand out no more shards
                if summary.stopped_early:
                    own.stopped_early = True
        drain()
    except KeyboardInterrupt:
        own.interrupted = True
    finally:
        for worker in idle + [w for w, _ in running.values()]:
            ray.kill(worker, no_restart=True)
        ray.kill(board, no_restart=True)
    if own.interrupted:
        own.stopped_early = False
    return summaries, outcomes, own


def _give_up(task: _Task, outcomes: _Outcomes, options: RayOptions) -> None:
    """Report the videos of a shard whose actors kept dying and that were not committed."""
    committed: set[str] = set()
    if task.path.exists():
        try:
            with CacheReader(task.path) as reader:
                committed = set(reader.entries())
        except VidcacheError:
            pass
    reason = (
        f"its Ray worker died {options.max_retries + 1} times (last: {task.last_error}); "
        "run again to retry"
    )
    for source in task.sources:
        if source.video_id not in committed:
            outcomes.add(VideoOutcome(source.video_id, source.path, FAILED, 0, reason))


def _sharded(sources: list[VideoSource], count: int, folder: Path) -> list[_Task]:
    """One task per shard that has videos, or a file to bring up to date (to prune)."""
    groups: dict[int, list[VideoSource]] = {}
    for source in sources:
        groups.setdefault(shard_of(source.video_id, count), []).append(source)
    tasks = []
    for k in range(count):
        path = shard_path(folder, k, count)
        if k in groups or path.exists():
            tasks.append(_Task(k, groups.get(k, []), path))
    return tasks


def _combine(summary: ExtractSummary, parts: list[ExtractSummary], outcomes: _Outcomes, seconds):
    summary.outcomes.extend(outcomes.by_video.values())
    # Frames of the videos extracted in this run (progress events of dead workers are lost).
    summary.frames += sum(o.frames for o in outcomes.by_video.values() if o.status == EXTRACTED)
    summary.pruned += sum(p.pruned for p in parts)
    summary.seconds = seconds
    summary.model_seconds = max([summary.model_seconds] + [p.model_seconds for p in parts])
    summary.stopped_early = summary.stopped_early or any(p.stopped_early for p in parts)
    return summary


def extract_with_ray(
    sources: list[VideoSource],
    output: Path,
    config: ExtractConfig = ExtractConfig(),
    reporter: Reporter | None = None,
    options: RayOptions = RayOptions(),
) -> ExtractSummary:
    """Extract ``sources`` on Ray into one cache (``*.h5``) or a folder of shard caches.

    Args:
        sources: the videos (from :func:`vidcache.features.discover.discover`).
        output: a ``.h5`` file (one cache) or a folder (shard caches).
        config: the run's options, as for :func:`extract_features`.
        reporter: progress callbacks. Defaults to none.
        options: where and how wide to run.

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
    return _into_folder(ray, sources, output, config, reporter, options)


def _into_folder(ray, sources, folder: Path, config, reporter, options) -> ExtractSummary:
    prepare_output_dir(folder, "shard folder")
    count = shard_count_in(folder)
    if count is not None and options.shards and options.shards != count:
        raise VidcacheError(
            f"{folder} holds shards of {count}; run with --shards {count} or use another folder"
        )
    started_here = _start_ray(ray, options)
    try:
        if count is None:
            count = options.shards or 4 * _worker_count(ray, options, len(sources))
            count = max(1, min(count, len(sources)))
        tasks = _sharded(sources, count, folder)
        reporter.begin(len(sources))
        started = time.perf_counter()
        parts, outcomes, summary = _run_pool(ray, tasks, config, options, reporter)
        return _combine(summary, parts, outcomes, time.perf_counter() - started)
    finally:
        reporter.end()
        if started_here:
            ray.shutdown()


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
    with CacheLock(output):
        if config.overwrite:
            # The old cache stays until the new one holds data: the parts are made beside
            # it and replace it in one rename at the end. Parts of an interrupted run were
            # made for the old cache: not for this one.
            shutil.rmtree(parts_dir, ignore_errors=True)
        leftovers = sorted(parts_dir.glob("*.h5")) if parts_dir.is_dir() else []
        if leftovers:
            if output.exists() and cache_schema(output) == 1:
                migrate(output, locked=True)
            added = absorb(output, leftovers, library_versions(), locked=True)
            for part in leftovers:
                part.unlink()
            reporter.note(f"added {added} video(s) an interrupted run had finished")
        existing = read_existing(output, config.settings(), sources, config.overwrite, reporter)
        cached, entries = existing.settings, existing.entries
        reporter.begin(len(sources))
        jobs, touched = plan(sources, entries, summary, reporter)
        gone = gone_videos(sources, entries) if config.prune else []
        if (touched or gone) and cached is not None:
            with FeatureCache.open(output, cached, {}) as cache:
                maintain(cache, gone, touched, summary, reporter)
        if not jobs:
            reporter.end()
            return summary
        started_here = _start_ray(ray, options)
        started = time.perf_counter()
        try:
            work = [job.source for job in jobs]
            count = options.shards or 4 * _worker_count(ray, options, len(work))
            count = max(1, min(count, len(work)))
            parts_dir.mkdir(exist_ok=True)
            tasks = _sharded(work, count, parts_dir)
            worker_config = replace(config, overwrite=False, prune=False)
            parts, outcomes, own = _run_pool(
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
        return _combine(summary, parts, outcomes, time.perf_counter() - started)
