"""Stage one orchestration: plan the work, keep the CNN busy, commit each finished video.

Data flow::

    decode thread:  fingerprint -> open -> sample -> fit to the square input -> pack frames
                    of any number of videos into full batches ----> bounded queue
    main thread:    batch -> compiled CNN call -> rows into each video's FeatureBuffer;
                    a video whose last frame is done is committed to the cache (flushed)

The decode threads are :mod:`.producer`'s; the cache is taken, read and planned in the
:mod:`.session` shared with the Ray engine. Decoding runs ahead of inference by up to
``queue_batches`` batches, so the model never waits while a new video is opened; batches
always hold ``batch_size`` frames (from as many videos as it takes), except the very last
one. A bad video is reported and dropped without stopping the rest; Ctrl-C (or SIGTERM)
stops after the current batch and keeps every video already committed.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path

from vidcache.features.audio.extractor import AudioExtractor
from vidcache.features.backbone import FeatureExtractor
from vidcache.features.cache import FeatureCache
from vidcache.features.cache.buffer import FeatureBuffer
from vidcache.features.cache.session import CacheSession
from vidcache.features.cache.store import check_free_space
from vidcache.features.errors import SettingsMismatch
from vidcache.features.settings import check_compatible
from vidcache.features.video.discover import VideoSource
from vidcache.features.video.windowrows import RowMaker
from vidcache.pipeline.extraction.audio_run import run_audio
from vidcache.pipeline.extraction.commit import Interrupts, commit, spill_full
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
from vidcache.pipeline.extraction.producer import Producer, default_decode_workers
from vidcache.pipeline.extraction.session import (
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


def extract_features(
    sources: list[VideoSource],
    output: Path,
    config: ExtractConfig = ExtractConfig(),
    reporter: Reporter | None = None,
    extractor_factory: Callable[[ExtractConfig], FeatureExtractor] | None = None,
) -> ExtractSummary:
    """Extract features of ``sources`` into the cache at ``output``, incrementally.

    Args:
        sources: the videos (from :func:`features.video.discover.discover`).
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
    with CacheSession(output) as session:
        existing = read_existing(session, requested, sources, config.overwrite, reporter)
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

        extractor = producer = None
        settings = cached
        hears = requested.hears
        try:
            if jobs:
                check_free_space(output)  # before the model is built, not after
                # Decoding starts now and runs while the model is built (mostly one core
                # of Python), up to the queue's few batches: a sparsely sampled long file
                # is partly decoded before the CNN is ready. (Started before TensorFlow's
                # import, decoding gained nothing: both need the interpreter's lock.)
                if not hears:  # sound is decoded by its own loop (audio_run)
                    producer = Producer(
                        jobs,
                        config,
                        queue.Queue(maxsize=max(1, config.queue_batches)),
                        config.decode_workers or default_decode_workers(),
                    )
                    producer.start()
                extractor = _build(config, extractor_factory, summary, reporter)
                settings = config.settings(extractor.weights_sha256)
                if cached is not None:
                    check_compatible(
                        cached, settings, cache_name=str(output), folders=has_folders(sources)
                    )
            with replacing(output, cached is None and output.exists(), reporter) as place:
                with session.open(
                    settings or requested,
                    library_versions(),
                    fsync=config.fsync,
                    into=place.target,
                ) as cache:
                    maintain(cache, gone, touched, summary, reporter)
                    if jobs and hears:
                        run_audio(jobs, config, extractor, cache, summary, reporter, settings)
                    elif jobs:
                        _run(producer, config, extractor, cache, summary, reporter, settings)
                    place.commit(bool(cache.entries()))
        finally:
            if producer is not None:  # a failed build, a refused setting, Ctrl-C
                producer.stop.set()
                producer.join(timeout=10)
    reporter.end()
    return summary


def default_extractor(config: ExtractConfig):
    """The config's backbone with its weights: a CNN, or an audio backbone."""
    if config.features.hears:
        return AudioExtractor(config.weights, config.precision, config.backbone)
    return FeatureExtractor(
        config.image_size, config.weights, config.precision, config.units_per_batch, config.backbone
    )


def _build(config: ExtractConfig, factory, summary: ExtractSummary, reporter: Reporter):
    """The CNN (``factory``'s, or the config's), its weights checked against what the run
    must reproduce (``expect_weights_sha256``)."""
    started = time.perf_counter()
    factory = factory or default_extractor
    extractor = factory(config)
    summary.model_seconds = time.perf_counter() - started
    reporter.ready(summary.model_seconds)
    expected = config.expect_weights_sha256
    if expected and extractor.weights_sha256 != expected:
        raise SettingsMismatch(
            f"the weights {config.weights.identity} have checksum "
            f"{extractor.weights_sha256[:12]}, not {expected[:12]} as the cache or run "
            "to copy (--like); give the same weights file"
        )
    return extractor


def _run(
    producer: Producer,
    config: ExtractConfig,
    extractor: FeatureExtractor,
    cache: FeatureCache,
    summary: ExtractSummary,
    reporter: Reporter,
    settings,
) -> None:
    pending = producer.out
    dim = settings.feature_dim
    buffers: dict[int, FeatureBuffer] = {}
    makers: dict[int, RowMaker] = {}  # windows: each video's rows in the making
    covered: dict[int, int] = {}  # windows: each video's kept frames counted so far
    window = config.sampling.window
    started = time.perf_counter()
    with Interrupts() as interrupts:
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
                        for row, owner in enumerate(item.owners):
                            slot = owner[0]
                            buffer = buffers.get(slot)
                            if buffer is None:
                                buffer = FeatureBuffer(dim, config.spill_rows)
                                buffers[slot] = buffer
                            if window is None:
                                buffer.append(features[row], owner[1], owner[2])
                                continue
                            maker = makers.get(slot)
                            if maker is None:
                                maker = makers[slot] = RowMaker(config.pooling, window)
                            for made in maker.add(owner[1], features[row]):
                                buffer.append(*made)
                    except OSError as exc:
                        full = spill_full(exc, cache.path)
                        if full is None:
                            raise
                        raise full from None
                    done = len(item.owners)
                    if window is not None:  # frames of video: each kept frame once
                        done = sum(_new_frames(owner, covered) for owner in item.owners)
                    summary.frames += done
                    reporter.frames(done)
                for event in item.events:
                    maker = makers.pop(event[1].slot, None)
                    if maker is not None and event[0] == "done":
                        for made in maker.finish():
                            buffers[event[1].slot].append(*made)
                    outcome = commit(event, buffers.pop(event[1].slot, None), cache, config.dtype)
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


def _new_frames(owner: tuple, covered: dict[int, int]) -> int:
    """The kept frames a window adds to its video's count (overlapping windows share some)."""
    slot, window = owner
    end = window.start + len(window.frames)
    new = end - max(window.start, covered.get(slot, 0))
    covered[slot] = max(end, covered.get(slot, 0))
    return max(0, new)
