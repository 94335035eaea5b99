"""Predict with a trained run: on whole videos, or frame by frame as a stream.

Features are made exactly as in the run's cache (same weights, checked by checksum, same
image size, resize, sampling and precision); a video already in one of the run's caches
(same content fingerprint) is not extracted again.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from vidcache.features.cache import CacheReader
from vidcache.features.errors import (
    CacheFormatError,
    SettingsMismatch,
    VideoDecodeError,
)
from vidcache.features.fingerprint import fingerprint
from vidcache.features.settings import FeatureSettings
from vidcache.features.video.decode import VideoReader, open_source
from vidcache.features.video.discover import VideoSource
from vidcache.features.video.sampling import sample, windows
from vidcache.features.video.transform import fit_frame
from vidcache.features.video.windowrows import RowMaker, WindowOwner, pad_window
from vidcache.models.data import shape_sequence
from vidcache.pipeline.extraction.local import (
    CACHED,
    FAILED,
    ExtractConfig,
    ExtractSummary,
    extract_features,
)
from vidcache.pipeline.extraction.reproduce import (
    build_extractor,
    feature_parts,
    part_cache,
    weights_for,
)
from vidcache.pipeline.inference.heard import heard_rows
from vidcache.pipeline.training.runs import Run


@dataclass
class Prediction:
    """What a run says about one video, or why it says nothing.

    Attributes:
        top: classification: the top-k ``(class, probability)``.
        caption: captioning: the generated caption.
        values: regression: ``[v1..vK]`` per video, or per frame ``[[v1..vK], ...]``.
        times: per-frame outputs: the timestamp (seconds) of each row of ``values`` or
            ``labels``.
        labels: segmentation: the class of each frame.
        segments: segmentation: ``(start, end, label)`` in seconds of each run of a class.
    """

    video_id: str
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)
    caption: str = ""
    values: list = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    segments: list[tuple[float, float, str]] = field(default_factory=list)
    source: str = ""  # "cache" or "extracted"
    error: str = ""


def _cached_features(
    run: Run, sources: list[VideoSource], settings: FeatureSettings
) -> dict[str, tuple]:
    """``{video_id: (features, timestamps)}`` of sources found (by content fingerprint) in
    the run's caches made with ``settings``."""
    wanted = {}
    for source in sources:
        try:
            wanted[fingerprint(source)] = source.video_id
        except OSError:
            continue
    found = {}
    for cache in run.config.get("caches", []):
        path = Path(cache["path"])
        if not path.is_file() or cache.get("settings_sha256") != settings.digest():
            continue
        try:
            with CacheReader(path) as reader:
                for video_id, entry in reader.entries().items():
                    hit = wanted.get(entry.fingerprint)
                    if hit is not None and hit not in found:
                        found[hit] = _read(reader, video_id)
        except CacheFormatError:
            continue
    return found


def _read(reader: CacheReader, video_id: str) -> tuple[np.ndarray, np.ndarray]:
    return reader.features(video_id).astype(np.float32), reader.timestamps(video_id)


def features_for_run(
    settings: FeatureSettings,
    sources: list[VideoSource],
    cache: Path,
    weights_path: Path | None = None,
    batch_size: int = 32,
    reporter=None,
) -> ExtractSummary:
    """Bring ``cache`` up to date with the features of ``sources``, made exactly as a run's
    (``settings``): videos already there with the same content cost nothing, so running
    the same evaluation or prediction again needs no CNN.

    Raises:
        WeightsUnavailable: the run used a weights file and none was given.
        SettingsMismatch: ``cache`` holds other features, or the weights are not the run's.
    """
    config = replace(
        ExtractConfig.for_settings(settings, weights_for(settings, weights_path), batch_size),
        expect_weights_sha256=settings.weights_sha256,
    )
    return extract_features(
        sources,
        Path(cache),
        config,
        reporter,
        extractor_factory=lambda c: build_extractor(settings, weights_path, c.units_per_batch),
    )


def video_features(
    run: Run,
    sources: list[VideoSource],
    weights_path: Path | None = None,
    batch_size: int = 32,
    cache: Path | None = None,
) -> tuple[dict[str, tuple], dict[str, Prediction]]:
    """Features and timestamps of each source made as in the run's cache (found there by
    fingerprint, in ``cache``, or extracted now, into ``cache`` when given so the next call
    finds them), and a :class:`Prediction` per source to fill in (``error`` set for
    sources that could not be read).

    A run trained on fused feature sets gets each part made by its own backbone (into
    ``CACHE-STEM.N-BACKBONE.h5`` beside ``cache`` when given) and concatenated per frame.
    """
    results = {s.video_id: Prediction(s.video_id, str(s.path)) for s in sources}
    parts = feature_parts(run.settings)
    made = []
    for number, settings in enumerate(parts, start=1):
        where = None if cache is None else part_cache(cache, number, settings, len(parts))
        made.append(
            _part_features(run, settings, sources, weights_path, batch_size, where, results)
        )
    if len(made) == 1:
        return made[0], results
    features = {}
    for video_id in made[0]:
        if not all(video_id in part for part in made[1:]):
            continue
        rows = [part[video_id] for part in made]
        if not all(np.array_equal(r[1], rows[0][1]) for r in rows[1:]):
            results[video_id].error = "the fused backbones kept other frames (timestamps differ)"
            continue
        features[video_id] = (np.concatenate([r[0] for r in rows], axis=1), rows[0][1])
    return features, results


def _part_features(run, settings, sources, weights_path, batch_size, cache, results) -> dict:
    """Features of ``sources`` made with one feature set's ``settings``; marks ``results``
    (where the features came from, or why a source failed)."""
    features = _cached_features(run, sources, settings)
    for video_id in features:
        if results[video_id].source != "extracted":
            results[video_id].source = "cache"
    missing = [s for s in sources if s.video_id not in features]
    if missing:
        with tempfile.TemporaryDirectory(prefix="vidcache-predict-") as tmp:
            out = Path(cache) if cache is not None else Path(tmp) / "features.h5"
            summary = features_for_run(settings, missing, out, weights_path, batch_size)
            done = [o for o in summary.outcomes if o.status != FAILED]
            for outcome in summary.failures:
                results[outcome.video_id].error = outcome.reason
            if done:
                with CacheReader(out) as reader:
                    for outcome in done:
                        features[outcome.video_id] = _read(reader, outcome.video_id)
                        if outcome.status != CACHED:
                            results[outcome.video_id].source = "extracted"
                        elif not results[outcome.video_id].source:
                            results[outcome.video_id].source = "cache"
    return features


def predict_videos(
    run: Run,
    sources: list[VideoSource],
    top_k: int = 5,
    weights_path: Path | None = None,
    batch_size: int = 32,
    beam: int | None = None,
    cache: Path | None = None,
) -> list[Prediction]:
    """Predict for each source with the run's task: the top-k classes, a caption (greedy,
    or beam search of width ``beam``; the run's own setting by default), or regression
    values. Unreadable videos get an ``error`` instead. With ``cache``, features of new
    videos are kept there (see :func:`features_for_run`)."""
    features, results = video_features(run, sources, weights_path, batch_size, cache)
    train = run.config.get("train", {})
    order = [s.video_id for s in sources if s.video_id in features]
    shaped = {
        video_id: [
            shape_sequence(array, train.get("seq_len"), train.get("max_len"))
            for array in features[video_id]
        ]
        for video_id in order
    }
    sequences = [shaped[video_id][0] for video_id in order]
    times = [shaped[video_id][1] for video_id in order]
    outputs = run.task_class.predict(run, sequences, times, top_k, beam)
    for video_id, fields in zip(order, outputs):
        for name, value in fields.items():
            setattr(results[video_id], name, value)
    return [results[s.video_id] for s in sources]


@dataclass
class StreamReport:
    """The stream's last output and the per-frame latencies (seconds).

    Attributes:
        output: the model's output after the last frame (probabilities, or values).
        top: classification: the top-k classes of ``output``.
        caption: captioning: the caption of the whole stream.
    """

    frames: int
    top: list[tuple[str, float]]
    cnn_seconds: list[float]
    step_seconds: list[float]
    output: np.ndarray
    caption: str = ""


def stream_predict(
    run: Run,
    location: str,
    every: int = 1,
    top_k: int = 3,
    weights_path: Path | None = None,
    on_update=None,
    input_format: str | None = None,
    beam: int | None = None,
) -> StreamReport:
    """Decode ``location`` (a file, or anything PyAV opens: a camera, a stream URL) frame by
    frame; each sampled frame goes through the CNN once and one step of the LSTM (of the
    encoder, for a caption run).

    Args:
        run: the trained run.
        location: path or URL.
        every: call ``on_update(frame_number, timestamp, output)`` every this many sampled
            frames, and after the last one; ``output`` is the class probabilities, the
            regression values, or the caption of the frames so far.
        top_k: classes reported.
        weights_path: the weights file, if the run used one.
        on_update: progress callback. Defaults to none.
        input_format: FFmpeg input format for devices (``"v4l2"``...). Defaults to None.
        beam: caption runs: the beam width. Defaults to the run's.

    Raises:
        StreamError: a bidirectional run.
        VideoDecodeError: the source cannot be read.
    """
    settings = run.settings
    if settings.sampling.num_frames is not None:
        raise SettingsMismatch(
            "the run's features sample a fixed number of frames per clip (--num-frames), "
            "which needs the whole video; predict without --stream"
        )
    if run.config.get("train", {}).get("seq_len"):
        raise SettingsMismatch("the run resamples sequences (--seq-len); predict without --stream")
    parts = feature_parts(settings)
    if len(parts) > 1 and any(part.sampling.windowed for part in parts):
        raise SettingsMismatch(
            "the run fuses a window cache with other features; predict without --stream"
        )
    if any(part.hears and part.sampling.windowed for part in parts):
        raise SettingsMismatch("the run hears windows of sound; predict without --stream")
    stream = run.task_class.stream(run, beam)
    extractors = [
        (part, build_extractor(part, weights_path, 1)) for part in feature_parts(settings)
    ]
    try:
        return _stream(run, location, every, top_k, on_update, input_format, stream, extractors)
    except VideoDecodeError as exc:
        raise VideoDecodeError(f"{location}: {exc}") from None


def _stream(run, location, every, top_k, on_update, input_format, stream, extractors):
    settings = run.settings
    path = Path(location)
    if path.is_dir():
        source = VideoSource(path.resolve(), path.name, kind="frames")
        reader = open_source(source, settings.folder_fps)
    else:
        reader = VideoReader(location, input_format=input_format)
    task = run.task_class
    cnn, steps = [], []
    output = None
    with reader:
        frames = sample(reader.frames(), settings.sampling)
        if any(part.hears for part, _ in extractors):
            step = 1.0 / reader.info.fps if reader.info.fps else 0.0
            rows = heard_rows(frames, extractors, location, step)
        elif settings.sampling.windowed:
            rows = _window_rows(frames, *extractors[0])
        else:
            rows = _frame_rows(frames, extractors)
        for count, (timestamp, features, seconds) in enumerate(rows, start=1):
            middle = time.perf_counter()
            output = stream.step(features)
            cnn.append(seconds)
            steps.append(time.perf_counter() - middle)
            if on_update is not None and count % every == 0:
                # (a caption is decoded only here: not part of the per-frame step time)
                on_update(count, float(timestamp), task.stream_output(run, stream, output))
        # The last frame is always reported, so the final output is in what --csv writes.
        if on_update is not None and output is not None and count % every:
            on_update(count, float(timestamp), task.stream_output(run, stream, output))
    fields = task.stream_result(run, stream, output, top_k)
    return StreamReport(stream.frames, cnn_seconds=cnn, step_seconds=steps, **fields)


def _frame_rows(frames, extractors):
    """``(time, features, CNN seconds)`` of each sampled frame: each backbone of the run
    once per frame, at its own size; fused: concatenated."""
    for _, timestamp, frame in frames:
        started = time.perf_counter()
        features = np.concatenate(
            [
                extractor(fit_frame(frame, part.image_size, part.resize)[None])[0]
                for part, extractor in extractors
            ]
        )
        yield timestamp, features, time.perf_counter() - started


def _window_rows(frames, part, extractor):
    """``(time, features, CNN seconds)`` of each row of a window cache, as the stream plays:
    the last ``window + stride`` frames at most are held (fitted), a window goes through
    the network as soon as its last frame arrives (the last, short one at the end), and
    its rows are the ones extraction would store (:class:`RowMaker`)."""
    size, stride = part.sampling.window, part.sampling.stride
    maker = RowMaker(part.pooling, size)
    fitted = ((i, t, fit_frame(f, part.image_size, part.resize)) for i, t, f in frames)
    for start, group in windows(fitted, size, stride):
        started = time.perf_counter()
        vectors = extractor(pad_window([g[2] for g in group], size)[None])[0]
        made = maker.add(WindowOwner(start, tuple((i, t) for i, t, _ in group)), vectors)
        seconds = time.perf_counter() - started
        for vector, timestamp, _, _ in made:
            yield timestamp, vector, seconds / len(made)
    for vector, timestamp, _, _ in maker.finish():
        yield timestamp, vector, 0.0
