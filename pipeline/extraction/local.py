"""Stage one orchestration: plan the work, keep the CNN busy, commit each finished video.

Data flow::

    decode thread:  fingerprint -> open -> sample -> fit to the square input -> pack frames
                    of any number of videos into full batches ----> bounded queue
    main thread:    batch -> compiled CNN call -> rows into each video's FeatureBuffer;
                    a video whose last frame is done is committed to the cache (flushed)

Decoding runs ahead of inference by up to ``queue_batches`` batches, so the model never
waits while a new video is opened; batches always hold ``batch_size`` frames (from as many
videos as it takes), except the very last one. A bad video is reported and dropped without
stopping the rest; Ctrl-C (or SIGTERM) stops after the current batch and keeps every video
already committed.
"""

from __future__ import annotations

import errno
import os
import queue
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidcache.features.backbone import FeatureExtractor
from vidcache.features.cache import CacheEntry, CacheLock, FeatureCache
from vidcache.features.cache.buffer import FeatureBuffer
from vidcache.features.cache.store import check_free_space
from vidcache.features.decode import open_source
from vidcache.features.discover import VideoSource
from vidcache.features.errors import DiskFull, SettingsMismatch, VideoDecodeError
from vidcache.features.fingerprint import fingerprint
from vidcache.features.frames import sampled_frames
from vidcache.features.settings import check_compatible
from vidcache.pipeline.extraction.config import (
    ExtractConfig,
    library_versions,
    run_settings,
    settings_like,
)
from vidcache.pipeline.extraction.outcomes import (
    CACHED,
    EXTRACTED,
    FAILED,
    ExtractSummary,
    Reporter,
    VideoOutcome,
)
from vidcache.pipeline.extraction.session import (
    Job,
    gone_videos,
    has_folders,
    maintain,
    plan,
    read_existing,
    replacing,
)
from vidcache.pipeline.outputs import prepare_output_dir

#: What callers used to import from here, still here (the engine's public names).
__all__ = [
    "CACHED",
    "EXTRACTED",
    "FAILED",
    "ExtractConfig",
    "ExtractSummary",
    "Reporter",
    "VideoOutcome",
    "default_decode_workers",
    "extract_features",
    "gone_videos",
    "has_folders",
    "library_versions",
    "run_settings",
    "settings_like",
]


def default_decode_workers() -> int:
    """One decode thread when the CNN runs on the CPU, several when it runs on a GPU.

    On the CPU the model already uses every core, so a second decoder would only take cycles
    from it; a GPU outruns one decoding core, so up to 8 decode in parallel there.
    """
    from vidcache.features.backbone import import_tensorflow

    tf = import_tensorflow()
    if tf.config.list_logical_devices("GPU"):
        return max(1, min(8, (os.cpu_count() or 2) - 1))
    return 1


@dataclass
class _Batch:
    images: np.ndarray
    owners: list[tuple[int, float, int]] = field(default_factory=list)  # slot, time, index
    events: list[tuple] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return len(self.owners) == len(self.images)


class _Stop(Exception):
    pass


class _Producer:
    """Decode threads: each takes the next job, decodes it and packs its frames into the
    shared batch, so batches fill across video boundaries.

    One video is always decoded by one thread, so its frames enter batches in order; its
    "done" or "failed" event goes on the batch being filled after its last frame, so the
    main thread handles it only after every frame of the video went through the CNN.
    """

    def __init__(
        self, jobs: list[Job], config: ExtractConfig, out: queue.Queue, workers: int = 1
    ) -> None:
        self.config, self.out = config, out
        self.stop = threading.Event()
        size = config.image_size
        self._shape = (config.batch_size, size, size, 3)
        self._jobs = iter(jobs)
        self._lock = threading.Lock()
        self._batch = self._new_batch()
        self._running = workers
        self._threads = [
            threading.Thread(target=self._work, name=f"vidcache-decode-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _new_batch(self) -> _Batch:
        return _Batch(np.empty(self._shape, np.uint8))

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    def _add_frame(self, image: np.ndarray, owner: tuple[int, float, int]) -> None:
        with self._lock:  # put under the lock too: batches reach the queue in fill order
            batch = self._batch
            batch.images[len(batch.owners)] = image
            batch.owners.append(owner)
            if batch.full:
                self._put(batch)
                self._batch = self._new_batch()

    def _add_event(self, event: tuple) -> None:
        with self._lock:
            self._batch.events.append(event)

    def _next_job(self) -> Job | None:
        with self._lock:
            return next(self._jobs, None)

    def _work(self) -> None:
        try:
            while not self.stop.is_set():
                job = self._next_job()
                if job is None:
                    break
                self._add_event(self._decode(job))
            with self._lock:
                self._running -= 1
                if self._running == 0 and not self.stop.is_set():  # the last one closes
                    if self._batch.owners or self._batch.events:
                        self._put(self._batch)
                    self._put(None)
        except _Stop:
            pass
        except BaseException as exc:  # a bug: hand it to the main thread, never hang it
            self.stop.set()
            try:
                self.out.put(exc, timeout=5)
            except queue.Full:
                pass

    def _decode(self, job: Job) -> tuple:
        """Feed the job's frames to the batches; returns its done or failed event."""
        config = self.config
        count = 0
        try:
            content = fingerprint(job.source)
            with open_source(job.source, config.folder_fps) as reader:
                for index, time_s, image in sampled_frames(
                    reader, config.sampling, config.image_size, config.resize
                ):
                    self._add_frame(image, (job.slot, time_s, index))
                    count += 1
                info = reader.info
            if count == 0:
                raise VideoDecodeError("no frames were sampled")
            return ("done", job, info, content, count)
        except _Stop:
            raise
        except VideoDecodeError as exc:
            return ("failed", job, str(exc))
        except OSError as exc:
            return ("failed", job, exc.strerror or str(exc))
        except Exception as exc:  # one odd file must not end the batch
            return ("failed", job, f"unexpected {type(exc).__name__}: {exc}")


class _Interrupts:
    """Turns Ctrl-C/SIGTERM into a flag checked between batches, so commits are never torn."""

    def __init__(self) -> None:
        self.flag = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.flag:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.flag = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def extract_features(
    sources: list[VideoSource],
    output: Path,
    config: ExtractConfig = ExtractConfig(),
    reporter: Reporter | None = None,
    extractor_factory: Callable[[ExtractConfig], FeatureExtractor] | None = None,
) -> ExtractSummary:
    """Extract features of ``sources`` into the cache at ``output``, incrementally.

    Args:
        sources: the videos (from :func:`features.discover.discover`).
        output: the HDF5 cache; created if missing.
        config: run options.
        reporter: progress callbacks. Defaults to none.
        extractor_factory: builds the CNN (tests inject a shared one). Defaults to
            :class:`FeatureExtractor` with the config's weights, size and precision.

    Returns:
        An :class:`ExtractSummary`; failures are in it, never raised.

    Raises:
        CacheLocked: another run writes ``output``.
        SettingsMismatch: ``output`` holds features made with other settings.
        CacheFormatError: ``output`` is not a vidcache cache.
        WeightsUnavailable: the weights cannot be had.
    """
    reporter = reporter or Reporter()
    output = Path(output)
    prepare_output_dir(output.parent, "cache folder")
    requested = config.settings()
    summary = ExtractSummary()
    with CacheLock(output):
        existing = read_existing(output, requested, sources, config.overwrite, reporter)
        cached, entries = existing.settings, existing.entries
        reporter.begin(len(sources))
        jobs, touched = plan(sources, entries, summary, reporter)
        if config.strict and summary.failures:
            summary.stopped_early = True
            reporter.end()
            return summary
        gone = gone_videos(sources, entries) if config.prune else []
        if not (jobs or touched or gone):
            reporter.end()
            return summary

        extractor = None
        settings = cached
        if jobs:
            check_free_space(output)  # before the model is built, not after
            started = time.perf_counter()
            factory = extractor_factory or (
                lambda c: FeatureExtractor(
                    c.image_size, c.weights, c.precision, c.batch_size, c.backbone
                )
            )
            extractor = factory(config)
            summary.model_seconds = time.perf_counter() - started
            settings = config.settings(extractor.weights_sha256)
            expected = config.expect_weights_sha256
            if expected and extractor.weights_sha256 != expected:
                raise SettingsMismatch(
                    f"the weights {config.weights.identity} have checksum "
                    f"{extractor.weights_sha256[:12]}, not {expected[:12]} as the cache or run "
                    "to copy (--like); give the same weights file"
                )
            if cached is not None:
                check_compatible(
                    cached, settings, cache_name=str(output), folders=has_folders(sources)
                )
        with replacing(output, cached is None and output.exists(), reporter) as place:
            with FeatureCache.open(
                place.target, settings or requested, library_versions(), fsync=config.fsync
            ) as cache:
                maintain(cache, gone, touched, summary, reporter)
                if jobs:
                    _run(jobs, config, extractor, cache, summary, reporter, settings.feature_dim)
                place.commit(bool(cache.entries()))
    reporter.end()
    return summary


def _run(
    jobs: list[Job],
    config: ExtractConfig,
    extractor: FeatureExtractor,
    cache: FeatureCache,
    summary: ExtractSummary,
    reporter: Reporter,
    dim: int,
) -> None:
    pending: queue.Queue = queue.Queue(maxsize=max(1, config.queue_batches))
    workers = config.decode_workers or default_decode_workers()
    producer = _Producer(jobs, config, pending, workers)
    buffers: dict[int, FeatureBuffer] = {}
    started = time.perf_counter()
    with _Interrupts() as interrupts:
        producer.start()
        try:
            while True:
                if interrupts.flag:
                    summary.interrupted = True
                    break
                try:
                    item = pending.get(timeout=0.2)
                except queue.Empty:
                    if not producer.alive() and pending.empty():
                        raise RuntimeError("the decode thread ended without finishing") from None
                    continue
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                if item.owners:
                    features = extractor(item.images[: len(item.owners)])
                    try:
                        for row, (slot, time_s, index) in enumerate(item.owners):
                            buffer = buffers.get(slot)
                            if buffer is None:
                                buffer = FeatureBuffer(dim, config.spill_rows)
                                buffers[slot] = buffer
                            buffer.append(features[row], time_s, index)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        raise DiskFull(
                            f"no space left for the temporary rows of long videos "
                            f"({tempfile.gettempdir()}; set TMPDIR elsewhere); every video "
                            f"committed to {cache.path} before is kept"
                        ) from None
                    summary.frames += len(item.owners)
                    reporter.frames(len(item.owners))
                for event in item.events:
                    outcome = _finish(event, buffers, cache, config)
                    summary.outcomes.append(outcome)
                    reporter.video(outcome)
                    if outcome.status == FAILED and config.strict:
                        summary.stopped_early = True
                if summary.stopped_early:
                    break
        finally:
            producer.stop.set()
            producer.join(timeout=10)
            for buffer in buffers.values():
                buffer.close()
            summary.seconds = time.perf_counter() - started


def _finish(
    event: tuple, buffers: dict[int, FeatureBuffer], cache: FeatureCache, config: ExtractConfig
) -> VideoOutcome:
    kind, job = event[0], event[1]
    buffer = buffers.pop(job.slot, None)
    source = job.source
    if kind == "failed":
        if buffer is not None:
            buffer.close()
        return VideoOutcome(source.video_id, source.path, FAILED, 0, event[2])
    _, _, info, content, count = event
    entry = CacheEntry(
        video_id=source.video_id,
        path=str(source.path),
        label=source.label or "",
        kind=source.kind,
        size=job.stat.size,
        mtime=job.stat.mtime,
        fingerprint=content,
        num_frames=count,
        fps=info.fps,
        duration=info.duration if info.duration is not None else float("nan"),
        source_frames=info.frame_count or -1,
        width=info.width,
        height=info.height,
        codec=info.codec,
        meta=dict(source.meta),
    )
    try:
        cache.write_video(entry, buffer, config.dtype)
    finally:
        buffer.close()
    return VideoOutcome(source.video_id, source.path, EXTRACTED, count)
