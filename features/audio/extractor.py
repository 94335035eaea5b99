"""An audio backbone at run time: a file's sound into one row per row of the frames' grid.

Two steps, so a run can decode the next file while it hears this one:

- :func:`prepare_audio` (decoding, no model): the file's sound on the frames' clock
  (:mod:`.decode`) and its rows. For a file with pictures the rows are the frames the
  sampling keeps, found by the same sampler as frame extraction (the pictures are decoded
  but neither fitted nor run through a network), so an audio cache and a frame cache of
  the same sampling have rows at exactly the same times (FFmpeg's frame threads decode
  them: no network competes for the cores here). A file with sound only gets a
  grid of *cells* from its decoded length: ``--fps F`` makes a cell every ``1/F`` s from
  0, ``--num-frames N`` cuts the sound into ``N`` equal cells; row ``k`` is timed at its
  cell's start and hears as a frame shown for the whole cell would.
- :meth:`AudioExtractor.rows` (the model): units, pooled per row (:mod:`.rows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidcache.features.audio.blocks import all_units
from vidcache.features.audio.decode import AudioTrack, NoAudio, decode_audio
from vidcache.features.audio.rows import audio_spans, file_end, place_on_clock, pool_units
from vidcache.features.backbones import WeightsSpec, get_backbone
from vidcache.features.errors import VideoDecodeError, WeightsUnavailable
from vidcache.features.settings import FeatureSettings, SamplingSpec
from vidcache.features.video.decode import SPARSE_DECODE_THREADS, open_source
from vidcache.features.video.discover import VideoSource
from vidcache.features.video.videoinfo import VideoInfo
from vidcache.features.video.windowrows import row_times

__all__ = ["AudioExtractor", "AudioRows", "Grid", "Prepared", "prepare_audio", "sound_cells"]

#: A track ending this much before the pictures is reported (codecs pad a few ms).
EARLY_END_SECONDS = 0.1


@dataclass(frozen=True)
class Prepared:
    """A file's decoded sound and the rows it will fill."""

    track: AudioTrack
    rows: list  # (time, frame index, (first, last, t_first, t_last)) per row
    frame_seconds: float
    end: float
    info: VideoInfo
    note: str = ""


@dataclass(frozen=True)
class AudioRows:
    """The rows of one file, ready for the cache: each row's span is its first and last
    frame and the seconds of sound it heard."""

    features: np.ndarray
    times: np.ndarray
    indices: np.ndarray
    spans: list
    info: VideoInfo
    note: str = ""


def sound_cells(duration: float, sampling: SamplingSpec) -> tuple[list[tuple[int, float]], float]:
    """The grid of a file with sound only: ``([(cell, start seconds)], cell seconds)``.

    Raises:
        VideoDecodeError: a sampling that needs pictures (keyframes, every frame).
    """
    if sampling.keyframes:
        raise VideoDecodeError("has sound only: no keyframes to keep (drop --sampling keyframes)")
    if sampling.num_frames is not None:
        count, per = sampling.num_frames, duration
    elif sampling.fps is not None:
        count, per = max(1, math.ceil(duration * sampling.fps - 1e-9)), 1.0
    else:
        raise VideoDecodeError("has sound only: give its grid with --fps or --num-frames")
    if sampling.max_frames is not None:
        count = min(count, sampling.max_frames)
    cells = sampling.num_frames or sampling.fps  # cells per ``per`` seconds
    return [(k, k * per / cells) for k in range(count)], per / cells


@dataclass(frozen=True)
class Grid:
    """The kept frames of one file as a cache of the same sampling holds them (``--grid``):
    ``kept`` ``(index, seconds)`` pairs and the file's :class:`VideoInfo`."""

    kept: list
    info: VideoInfo


def prepare_audio(
    source: VideoSource, settings: FeatureSettings, grid: Grid | None = None
) -> Prepared:
    """Decode ``source``'s sound and find its rows (see the module); with ``grid``, the kept
    frames come from it and the pictures are not decoded.

    Raises:
        NoAudio: no audio stream (or a folder of frames).
        VideoDecodeError: the file cannot be read.
    """
    if source.kind == "frames":
        raise NoAudio("is a folder of frames: it has no sound")
    track = decode_audio(source.path, settings.sample_rate)
    sampling = settings.sampling
    note = ""
    if track.pictures:
        if grid is not None:
            kept, info = grid.kept, grid.info
        else:
            with open_source(source, settings.folder_fps) as reader:
                reader.decode_threads(SPARSE_DECODE_THREADS)  # no CNN beside this pass
                kept = [(index, time) for index, time, _ in reader.sampled(sampling)]
                info = reader.info
        if not kept:
            raise VideoDecodeError("no frames were sampled")
        step = 1.0 / info.fps if info.fps and info.fps > 0 else 0.0
        shown = kept[-1][1] + step
        if track.offset > kept[-1][1]:
            note = (
                f"its sound starts at {track.offset:.2f} s, after its last kept frame "
                f"({kept[-1][1]:.2f} s): every row hears silence"
            )
        elif track.end < shown - EARLY_END_SECONDS:
            note = (
                f"its sound ends at {track.end:.2f} s, before its last kept frame "
                f"({kept[-1][1]:.2f} s): the rows after hear silence"
            )
        end = file_end(shown, track.end, settings.audio_span, step)
    else:
        kept, step = sound_cells(track.end, sampling)
        end = track.end
        info = VideoInfo(1.0 / step if step else 0.0, track.end, None, 0, 0, track.codec)
    rows = row_times(kept, sampling.window, sampling.stride, "window")
    return Prepared(track, rows, step, end, info, note)


class AudioExtractor:
    """An audio backbone with its weights (none for ``logmel``), hearing prepared files.

    Args:
        weights: where the weights come from (``WeightsSpec("none")`` for ``logmel``).
        precision: ``"float32"`` or ``"bfloat16"``.
        backbone: the registered audio backbone's name.

    Raises:
        WeightsUnavailable: the weights cannot be had, or weights given to ``logmel``.
    """

    def __init__(
        self, weights: WeightsSpec, precision: str = "float32", backbone: str = "logmel"
    ) -> None:
        from vidcache.features.backbone import build_backbone

        entry = get_backbone(backbone)
        if not entry.hears:
            raise ValueError(f"{entry.name} is not an audio backbone")
        self.backbone, self.weights, self.precision = entry, weights, precision
        self.feature_dim = entry.feature_dim
        if entry.weightless:
            if weights.kind != "none":
                raise WeightsUnavailable(f"{entry.name} has no weights: drop --weights")
            self.hearing = entry.hear(None, None)
            self.weights_sha256 = self.hearing.weights_sha256
            return
        model, self.weights_sha256 = build_backbone(0, weights, precision, entry.name)
        folder = weights.path if weights.kind == "file" and Path(weights.path).is_dir() else None
        self.hearing = entry.hear(model, folder)

    def rows(self, prepared: Prepared, settings: FeatureSettings) -> AudioRows:
        """The rows of a prepared file: the mean of the units in each row's span."""
        track = prepared.track
        step, end = prepared.frame_seconds, prepared.end
        spans = audio_spans(prepared.rows, step, settings.audio_span, end)
        wave = place_on_clock(track.samples, track.offset, track.rate, end)
        times, units = all_units(self.hearing, wave)
        features = pool_units(times, units, spans)
        finish = getattr(self.hearing, "finish", None)  # logmel: the log after the mean
        if finish is not None:
            features = finish(features)
        return AudioRows(
            features=features,
            times=np.array([row[0] for row in prepared.rows], np.float64),
            indices=np.array([row[1] for row in prepared.rows], np.int64),
            spans=[(row[2][0], row[2][1], *heard) for row, heard in zip(prepared.rows, spans)],
            info=prepared.info,
            note=prepared.note,
        )


def hear_file(source: VideoSource, settings: FeatureSettings, extractor: AudioExtractor):
    """:func:`prepare_audio` then :meth:`AudioExtractor.rows`, in one call."""
    return extractor.rows(prepare_audio(source, settings), settings)
