"""The Ray side of ``extract-features --engine ray``: connecting to (or starting) Ray, and
the pool that hands the actors (:mod:`.ray_actors`; :mod:`.ray_transfer` without a shared
disk) their shards or blocks, retries one whose actor died and gathers the outcomes."""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from vidcache.features.cache import CacheReader
from vidcache.features.errors import VidcacheError
from vidcache.features.video.discover import VideoSource
from vidcache.pipeline.extraction.config import ExtractConfig
from vidcache.pipeline.extraction.outcomes import (
    CACHED,
    EXTRACTED,
    FAILED,
    ExtractSummary,
    Reporter,
    VideoOutcome,
)
from vidcache.pipeline.extraction.ray_actors import ExtractWorker, ProgressBoard

__all__ = [
    "INSTALL_HINT",
    "EngineUnavailable",
    "ExtractWorker",
    "Outcomes",
    "ProgressBoard",
    "RayOptions",
    "Task",
    "combine",
    "import_ray",
    "run_pool",
    "start_ray",
    "worker_count",
]


INSTALL_HINT = "pip install 'vidcache[ray]'"


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
        object_store_mb: object store of a local Ray (the work sends little data; without
            a shared disk, pieces of at most 8 MiB). Defaults to 256.
        shared_disk: whether the actors see the driver's output folder (True: they write
            their shard caches there; False: the driver pulls their rows through the
            object store, :mod:`.ray_transfer`). None: detected. Defaults to None.
    """

    address: str | None = None
    workers: int = 0
    cpus_per_worker: int = 1
    num_gpus_per_worker: float = 0.0
    shards: int = 0
    max_retries: int = 3
    object_store_mb: int = 256
    shared_disk: bool | None = None


def import_ray():
    """Ray, or :class:`EngineUnavailable` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise EngineUnavailable(
            f"--engine ray needs Ray, which is not installed; install it with {INSTALL_HINT}"
        ) from None
    return ray


# -- the driver --------------------------------------------------------------------------


@dataclass
class Task:
    shard: int
    sources: list[VideoSource]
    path: Path
    attempt: int = 0
    last_error: str = ""


class Outcomes:
    """Outcomes by video, the first report of each kept (a retry reports the videos its dead
    predecessor committed as cached: they were extracted in this run).

    Args:
        reporter: the driver's progress.
        all_new: the workers were given only videos that were not cached before the run,
            so a video a worker finds cached was extracted by a worker that died.
    """

    def __init__(self, reporter: Reporter, all_new: bool = False, held: bool = False) -> None:
        self.reporter = reporter
        self.all_new = all_new
        self.held = held
        self.by_video: dict[str, VideoOutcome] = {}
        self.frames = 0

    def add(self, outcome: VideoOutcome) -> None:
        if self.all_new and outcome.status == CACHED:
            outcome = replace(outcome, status=EXTRACTED)
        if self.held and outcome.status == EXTRACTED:
            return  # without a shared disk a video is done when the driver commits it
        if outcome.video_id not in self.by_video:
            self.by_video[outcome.video_id] = outcome
            self.reporter.video(outcome)

    def confirm(self, entry) -> None:
        """The driver committed the video of ``entry`` (held mode): report it extracted,
        from its record (not from the worker's report, which may come later or never)."""
        if entry.video_id not in self.by_video:
            outcome = VideoOutcome(entry.video_id, entry.path, EXTRACTED, entry.num_frames)
            self.by_video[entry.video_id] = outcome
            self.reporter.video(outcome)

    def add_frames(self, count: int) -> None:
        self.frames += count
        self.reporter.frames(count)


def start_ray(ray, options: RayOptions) -> bool:
    """Connect to or start Ray; True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    common = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    try:
        if options.address:
            ray.init(address=options.address, **common)
        else:
            ray.init(
                address="local",  # a new Ray, even where `ray start` left its address
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


def worker_count(ray, options: RayOptions, tasks: int) -> int:
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


def run_pool(
    ray,
    tasks: list[Task],
    config: ExtractConfig,
    options: RayOptions,
    reporter: Reporter,
    all_new: bool = False,
    receiver=None,
    on_done=None,
) -> tuple[list[ExtractSummary], Outcomes, ExtractSummary]:
    """Run ``tasks`` on a pool of actors, retrying the shards of actors that die.

    With a ``receiver`` (:class:`.ray_transfer.Receiver`: no shared disk), the actors are
    :class:`.ray_transfer.NodeWorker`\\ s and each finished task's videos are pulled and
    committed by the driver; a retried task leaves out the videos already committed.
    ``on_done(task)`` is called when a task has finished whole (not interrupted).

    Returns:
        The shards' summaries, the outcomes by video, and a summary holding the driver's
        own findings (shards given up, interruption).
    """
    from ray.exceptions import ActorDiedError, RayActorError, RayTaskError, WorkerCrashedError

    lost = (RayActorError, ActorDiedError, WorkerCrashedError)
    actor = ExtractWorker
    if receiver is not None:
        from vidcache.pipeline.extraction.ray_transfer import NodeWorker

        actor = NodeWorker
    board_class = ray.remote(num_cpus=0)(ProgressBoard)
    worker_class = ray.remote(
        num_cpus=options.cpus_per_worker,
        num_gpus=options.num_gpus_per_worker,
        max_restarts=0,
        max_task_retries=0,
    )(actor)
    board = board_class.remote()
    outcomes = Outcomes(reporter, all_new, held=receiver is not None)
    own = ExtractSummary()
    summaries: list[ExtractSummary] = []
    workers = worker_count(ray, options, len(tasks))
    unit = "shard(s)" if receiver is None else "block(s) of at most 8 videos"
    reporter.note(f"ray: {workers} worker(s), {len(tasks)} {unit}")

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
                if receiver is None:
                    ref = worker.run.remote(
                        (task.shard, task.attempt), task.sources, str(task.path)
                    )
                else:
                    ref = worker.extract_block.remote((task.shard, task.attempt), task.sources)
                running[ref] = (worker, task)
            if not running:
                break
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            drain()
            for ref in ready:
                worker, task = running.pop(ref)
                try:
                    summary = ray.get(ref)
                    if receiver is not None:
                        summary, manifest = summary
                        for entry in receiver.receive(worker, task.shard, manifest):
                            outcomes.confirm(entry)
                except lost as exc:
                    ray.kill(worker, no_restart=True)
                    task.last_error = (str(exc).strip().splitlines() or ["worker lost"])[0][:200]
                    if receiver is not None:  # what the driver holds is done
                        task.sources = [
                            s for s in task.sources if s.video_id not in receiver.committed
                        ]
                    if not task.sources:
                        pass  # every video of it was committed: nothing to retry
                    elif task.attempt < options.max_retries:
                        task.attempt += 1
                        reporter.note(
                            f"ray: the worker of shard {task.shard} died; retrying it on a new "
                            f"worker (attempt {task.attempt + 1} of {options.max_retries + 1})"
                        )
                        queue.appendleft(task)
                    else:
                        _give_up(task, outcomes, options, receiver)
                    idle.append(new_worker())
                    continue
                except RayTaskError as exc:
                    cause = exc.cause if isinstance(exc.cause, BaseException) else None
                    if isinstance(cause, VidcacheError):
                        raise cause from None
                    raise
                summaries.append(summary)
                idle.append(worker)
                if on_done is not None and not summary.interrupted:
                    on_done(task)
                if summary.interrupted:
                    own.interrupted = True
                    own.stopped_early = True  # hand out no more shards
                if summary.stopped_early:
                    own.stopped_early = True
        drain()
    except KeyboardInterrupt:
        own.interrupted = True
    finally:
        if receiver is not None and idle:  # their working folders, before they go
            try:
                ray.get([worker.close.remote() for worker in idle], timeout=30)
            except Exception:  # noqa: BLE001 - a worker that cannot answer leaves its folder
                pass
        for worker in idle + [w for w, _ in running.values()]:
            ray.kill(worker, no_restart=True)
        ray.kill(board, no_restart=True)
    if own.interrupted:
        own.stopped_early = False
    return summaries, outcomes, own


def _give_up(task: Task, outcomes: Outcomes, options: RayOptions, receiver=None) -> None:
    """Report the videos of a shard whose actors kept dying and that were not committed."""
    committed: set[str] = set(receiver.committed) if receiver is not None else set()
    if receiver is None and task.path.exists():
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


def combine(summary: ExtractSummary, parts: list[ExtractSummary], outcomes: Outcomes, seconds):
    summary.outcomes.extend(outcomes.by_video.values())
    # Frames of the videos extracted in this run (progress events of dead workers are lost).
    summary.frames += sum(o.frames for o in outcomes.by_video.values() if o.status == EXTRACTED)
    summary.pruned += sum(p.pruned for p in parts)
    summary.seconds = seconds
    summary.model_seconds = max([summary.model_seconds] + [p.model_seconds for p in parts])
    summary.stopped_early = summary.stopped_early or any(p.stopped_early for p in parts)
    return summary
