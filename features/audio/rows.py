"""Which sound each row holds, and the pooling of an audio backbone's units into rows.

**The alignment rule.** A row of a frame cache stands for a kept frame at time ``t`` (its
timestamp), shown from ``t`` to ``t + d`` where ``d`` is one frame of the source (``1 /
fps``). Its sound is ``audio_span`` seconds (default 0.96, VGGish's example length)
*centred on the middle of that interval*, ``t + d/2``: the frame's own sound is at the
centre, and a tone that starts with a frame is that frame's (with a span centred on ``t``
itself, a row at a change of sound would hold as much of the sound before as after). A
row of a window cache stands for its frames ``t_first .. t_last`` and hears exactly
``[t_first, t_last + d)``. Spans are cut to the file (``[0, end)``); where the sound is
missing (before an audio stream starts, after it ends) it is silence.

A backbone hears in *units* (a log-mel frame every 10 ms, a Whisper position every 20 ms),
each with its centre time; a row is the mean of the units whose centres fall in its span,
or the unit nearest the span's middle when the span holds none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vidcache.features.settings_record import DEFAULT_AUDIO_SPAN

__all__ = ["DEFAULT_AUDIO_SPAN", "audio_spans", "file_end", "place_on_clock", "pool_units"]


def file_end(
    shown: float, sound_end: float, audio_span: float | None, frame_seconds: float
) -> float:
    """Where a file with pictures ends for its rows: where its last kept frame stops being
    shown (``shown``), or where its sound ends when that is later, but no later than any
    row can hear (``shown + audio_span / 2 + frame_seconds``). Spans are cut here, and the
    waveform is laid out to here: a sound stamped to start or end hours after the pictures
    costs nothing (its timestamps bound nothing)."""
    reach = shown + (audio_span or 0.0) / 2 + frame_seconds
    return max(shown, min(sound_end, reach))


def audio_spans(
    rows: Sequence[tuple[float, int, tuple[int, int, float, float]]],
    frame_seconds: float,
    audio_span: float | None,
    end: float,
) -> np.ndarray:
    """``(R, 2)`` start and end seconds of the sound each row hears (the module's rule).

    Args:
        rows: ``(time, frame index, (first, last, t_first, t_last))`` per row, as
            :func:`features.video.windowrows.row_times` gives them.
        frame_seconds: ``d``, one source frame (0 when unknown).
        audio_span: a frame row's span; ``None`` for window rows.
        end: where the file ends (spans are cut to ``[0, end)``).
    """
    spans = np.empty((len(rows), 2), np.float64)
    for place, (time, _, span) in enumerate(rows):
        if audio_span is None:
            spans[place] = (span[2], span[3] + frame_seconds)
        else:
            middle = time + frame_seconds / 2
            spans[place] = (middle - audio_span / 2, middle + audio_span / 2)
    np.clip(spans, 0.0, max(end, 0.0), out=spans)
    return spans


def place_on_clock(samples: np.ndarray, offset: float, rate: int, until: float) -> np.ndarray:
    """The waveform from time 0 to ``until`` on the frames' clock: ``samples`` start at
    ``offset`` seconds; silence (zeros) wherever they do not reach."""
    length = max(1, int(np.ceil(until * rate)))
    out = np.zeros(length, np.float32)
    first = int(round(offset * rate))
    source = samples[max(0, -first) :]
    start = max(0, first)
    take = max(0, min(len(source), length - start))
    out[start : start + take] = source[:take]
    return out


def pool_units(times: np.ndarray, vectors: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """``(R, D)`` float32: the mean of the units whose ``times`` fall in each ``[start,
    end)`` of ``spans``, or the unit nearest the span's middle when none does.

    Args:
        times: ``(U,)`` unit centres, ascending.
        vectors: ``(U, D)`` units.
        spans: ``(R, 2)`` seconds.
    """
    totals = np.concatenate([np.zeros((1, vectors.shape[1])), np.cumsum(vectors, 0, np.float64)])
    low = np.searchsorted(times, spans[:, 0], side="left")
    high = np.searchsorted(times, spans[:, 1], side="left")
    counts = high - low
    out = np.empty((len(spans), vectors.shape[1]), np.float32)
    filled = counts > 0
    out[filled] = (totals[high[filled]] - totals[low[filled]]) / counts[filled, None]
    if not filled.all() and len(times) == 1:
        out[~filled] = vectors[0]
    elif not filled.all():
        middles = spans[~filled].mean(axis=1)
        nearest = np.clip(np.searchsorted(times, middles), 1, len(times) - 1)
        before = np.abs(times[nearest - 1] - middles) <= np.abs(times[nearest] - middles)
        out[~filled] = vectors[np.where(before, nearest - 1, nearest)]
    return out
