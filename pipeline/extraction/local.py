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
import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from vidcache.features.backbone import FeatureExtractor, WeightsSpec
from vidcache.features.backbones import DEFAULT_BACKBONE
from vidcache.features.buffer import DEFAULT_SPILL_ROWS, FeatureBuffer
from vidcache.features.cache import (
    SCHEMA_VERSION,
    CacheEntry,
    CacheLock,
    FeatureCache,
    cache_schema,
    read_settings,
    rewrite_path,
)
from vidcache.features.decode import open_source
from vidcache.features.discover import VideoSource
from vidcache.features.errors import CacheFormatError, DiskFull, SettingsMismatch, VideoDecodeError
from vidcache.features.fingerprint import SourceStat, fingerprint, stat_source
from vidcache.features.frames import sampled_frames
from vidcache.features.fusion import FusedSettings, settings_of
from vidcache.features.maintenance import migrate
from vidcache.features.settings import FeatureSettings, SamplingSpec, check_compatible
from vidcache.features.store import check_free_space
from vidcache.pipeline.outputs import prepare_output_dir

EXTRACTED, CACHED, FAILED = "extracted", "cached", "failed"


@dataclass(frozen=True)
class ExtractConfig:
    """Options of one extraction run.

    Args:
        weights: where the backbone weights come from. Defaults to ImageNet.
        image_size: side of the square CNN input. Defaults to 299.
        resize: ``"center-crop"`` or ``"stretch"``. Defaults to ``"center-crop"``.
        sampling: which frames are kept. Defaults to up to 5 fps.
        folder_fps: frame rate of folders of frames. Defaults to 25.0.
        precision: ``"float32"`` or ``"bfloat16"``. Defaults to ``"float32"``.
        dtype: storage dtype, ``"float32"`` or ``"float16"``. Defaults to ``"float32"``.
        batch_size: frames per CNN call. Defaults to 32.
        overwrite: replace an existing cache instead of adding to it. Defaults to False.
        prune: drop cached videos whose source file is gone. Defaults to False.
        strict: stop at the first bad video. Defaults to False.
        queue_batches: batches decoded ahead of the CNN. Defaults to 4.
        spill_rows: feature rows per video kept in memory before spilling to a temporary
            file. Defaults to 512.
        decode_workers: videos decoded at once; 0 picks :func:`default_decode_workers`.
            Defaults to 0.
        fsync: ``fsync`` the cache at every commit, so committed videos survive power
            loss too (a killed process never loses them either way). Defaults to False.
        expect_weights_sha256: the checksum the loaded weights must have (``--like``: the
            same weights as another cache or run). Defaults to "" (any).
        backbone: the registered backbone (:mod:`vidcache.features.backbones`). Defaults
            to InceptionV3.
    """

    weights: WeightsSpec = WeightsSpec("imagenet")
    image_size: int = 299
    resize: str = "center-crop"
    sampling: SamplingSpec = SamplingSpec()
    folder_fps: float = 25.0
    precision: str = "float32"
    dtype: str = "float32"
    batch_size: int = 32
    overwrite: bool = False
    prune: bool = False
    strict: bool = False
    queue_batches: int = 4
    spill_rows: int = DEFAULT_SPILL_ROWS
    decode_workers: int = 0
    fsync: bool = False
    expect_weights_sha256: str = ""
    backbone: str = DEFAULT_BACKBONE

    @classmethod
    def for_settings(
        cls, settings: FeatureSettings, weights: WeightsSpec, batch_size: int = 32
    ) -> ExtractConfig:
        """The config that makes features with ``settings`` (the inverse of :meth:`settings`)."""
        return cls(
            weights=weights,
            image_size=settings.image_size,
            resize=settings.resize,
            sampling=settings.sampling,
            folder_fps=settings.folder_fps,
            precision=settings.precision,
            dtype=settings.dtype,
            batch_size=batch_size,
            backbone=settings.backbone,
        )

    def settings(self, weights_sha256: str = "") -> FeatureSettings:
        """The feature settings this run requests (validated)."""
        return FeatureSettings.for_backbone(
            self.backbone,
            weights=self.weights.identity,
            weights_sha256=weights_sha256,
            image_size=self.image_size,
            resize=self.resize,
            sampling=self.sampling,
            folder_fps=self.folder_fps,
            precision=self.precision,
            dtype=self.dtype,
        )


@dataclass
class VideoOutcome:
    """What happened to one video: ``status`` is extracted, cached or failed."""

    video_id: str
    path: Path
    status: str
    frames: int = 0
    reason: str = ""


@dataclass
class ExtractSummary:
    """The result of a run."""

    outcomes: list[VideoOutcome] = field(default_factory=list)
    pruned: int = 0
    frames: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    interrupted: bool = False
    stopped_early: bool = False

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failures(self) -> list[VideoOutcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Reporter:
    """Progress callbacks; the base class ignores them (the library never prints)."""

    def begin(self, total_videos: int) -> None: ...

    def video(self, outcome: VideoOutcome) -> None: ...

    def frames(self, count: int) -> None: ...

    def note(self, text: str) -> None: ...

    def end(self) -> None: ...


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


def library_versions() -> dict[str, str]:
    """Versions recorded in a new cache as provenance."""
    from importlib.metadata import PackageNotFoundError, version

    from vidcache import __version__

    found = {"python": sys.version.split()[0], "vidcache": __version__}
    for name in ("tensorflow", "keras", "h5py", "numpy", "av", "pillow"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


@dataclass
class _Job:
    slot: int
    source: VideoSource
    stat: SourceStat


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
        self, jobs: list[_Job], config: ExtractConfig, out: queue.Queue, workers: int = 1
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

    def _next_job(self) -> _Job | None:
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

    def _decode(self, job: _Job) -> tuple:
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


def _plan(
    sources: list[VideoSource],
    entries: dict[str, CacheEntry],
    summary: ExtractSummary,
    reporter: Reporter,
) -> tuple[list[_Job], list[CacheEntry]]:
    """Split sources into work and up-to-date videos (touched ones returned for update)."""
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
            if entry.mtime == stat.mtime:
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
            jobs.append(_Job(len(jobs), source, stat))
    return jobs, touched


def settings_like(path: Path) -> FeatureSettings:
    """The feature settings of a cache file or a run folder (``extract --like``).

    Raises:
        CacheFormatError: neither a readable cache nor a run folder.
    """
    settings = run_settings(path)
    if isinstance(settings, FusedSettings):
        raise CacheFormatError(
            f"{path} was trained on fused feature sets ({settings.backbone}); --like copies "
            "one: give the cache of the part to match"
        )
    return settings


def run_settings(path: Path) -> FeatureSettings | FusedSettings:
    """The feature settings of a cache file or a run folder; a run trained on fused feature
    sets gives its :class:`FusedSettings`.

    Raises:
        CacheFormatError: neither a readable cache nor a run folder.
    """
    path = Path(path)
    if path.is_dir():
        config = path / "config.json"
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            return settings_of(data["feature_settings"])
        except (OSError, ValueError, KeyError, TypeError):
            raise CacheFormatError(
                f"{path} is not a vidcache run (no readable config.json with feature settings)"
            ) from None
    return read_settings(path)


def has_folders(sources: list[VideoSource]) -> bool:
    """Whether a run extracts folders of frames (only then can ``folder_fps`` matter)."""
    return any(source.kind == "frames" for source in sources)


def gone_videos(sources: list[VideoSource], entries: dict[str, CacheEntry]) -> list[str]:
    """Cached videos (ids) that are not among ``sources`` and whose file is gone (--prune)."""
    wanted = {s.video_id for s in sources}
    return [
        entry.video_id
        for entry in entries.values()
        if entry.video_id not in wanted and not Path(entry.path).exists()
    ]


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
        # --overwrite: the old file is ignored now and replaced only when the new one is made,
        # so a run that fails early (missing weights...) does not destroy it.
        cached = read_settings(output) if output.exists() and not config.overwrite else None
        if cached is not None:
            check_compatible(
                cached,
                requested,
                cache_name=str(output),
                ignore=("weights_sha256",),
                folders=has_folders(sources),
            )
        entries = {}
        if cached is not None:
            schema = cache_schema(output)
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
            with FeatureCache.open(output, cached, {}) as cache:
                entries = cache.entries()
        reporter.begin(len(sources))
        jobs, touched = _plan(sources, entries, summary, reporter)
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
        # --overwrite of an existing cache: the new one is made beside it and replaces it in
        # one rename when the run ends holding a video; a run that fails, extracts nothing
        # or is killed leaves the old one whole (a killed run's file goes at the next lock).
        replacing = cached is None and output.exists()
        target = rewrite_path(output) if replacing else output
        try:
            with FeatureCache.open(
                target, settings or requested, library_versions(), fsync=config.fsync
            ) as cache:
                if gone:
                    summary.pruned = cache.delete_videos(gone)
                    reporter.note(f"pruned {summary.pruned} video(s) whose source is gone")
                for entry in touched:
                    cache.touch_video(entry)
                if jobs:
                    _run(jobs, config, extractor, cache, summary, reporter, settings.feature_dim)
                made = bool(cache.entries())
            if replacing and made:
                os.replace(target, os.path.realpath(output))
            elif replacing:
                reporter.note(f"no video was extracted: {output} is kept as it was")
        finally:
            if replacing and target.exists():
                target.unlink()
    reporter.end()
    return summary


def _run(
    jobs: list[_Job],
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
