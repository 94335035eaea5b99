"""A file's sound heard as it plays (``predict --stream``): the rows of one audio part, each
as soon as the sound it needs has been decoded, equal to the rows extraction stores.

The file's audio stream is decoded alongside its pictures, only as far as the next row
needs: a frame row at ``t`` hears ``[t + d/2 - span/2, t + d/2 + span/2)``
(:mod:`.rows`); it comes out once every block of units it pools is complete (a block and
its overhang decoded, :mod:`.blocks`). A row whose span reaches past the end of the sound
waits for the end of the pictures, which decides where the file ends (its span is cut
there, and the silence after the sound is units of zeros, as in extraction).

The decoded sound is laid on the frames' clock exactly as :mod:`.decode` and
:func:`.rows.place_on_clock` do (the first frame's timestamp against the video stream's
start; a declared stream length trims the last frame's padding; samples clipped to
``[-1, 1]``), so each block is computed from the same samples as in extraction.
"""

from __future__ import annotations

from collections import deque

import av
import numpy as np

from vidcache.features.audio.blocks import block_units
from vidcache.features.audio.decode import NoAudio, streams_of
from vidcache.features.audio.rows import file_end, pool_units
from vidcache.features.errors import VideoDecodeError
from vidcache.features.video.videoinfo import failure_reason

__all__ = ["SoundStream"]


class _Clock:
    """Samples on the frames' clock: silence before ``base`` (never stored: a stream
    stamped to start hours late costs nothing), the decoded sound from there, and silence
    after it up to ``limit``. Sliced like an array (``wave[a:b]``)."""

    def __init__(self) -> None:
        self.base = 0
        self.limit = 0
        self._data = np.zeros(1 << 16, np.float32)
        self._count = 0

    @property
    def filled(self) -> int:
        """Where the decoded sound ends on the clock."""
        return self.base + self._count

    def append(self, samples: np.ndarray) -> None:
        while self._count + len(samples) > len(self._data):
            self._data = np.concatenate([self._data, np.zeros_like(self._data)])
        self._data[self._count : self._count + len(samples)] = samples
        self._count += len(samples)

    def __len__(self) -> int:
        return self.limit

    def __getitem__(self, part: slice) -> np.ndarray:
        start, stop = part.start or 0, min(part.stop, self.limit)
        out = np.zeros(max(0, stop - start), np.float32)
        low, high = max(start, self.base), min(stop, self.filled)
        if high > low:
            out[low - start : high - start] = self._data[low - self.base : high - self.base]
        return out


class SoundStream:
    """The rows of an audio part of a run for one file, as its frames arrive.

    Args:
        location: the file (a path; a camera or a live URL has no audio to read ahead).
        settings: the part's feature settings (frame rows: ``audio_span`` set).
        hearing: the part's hearing (:attr:`AudioExtractor.hearing`).

    Raises:
        NoAudio: the file has no audio stream.
        VideoDecodeError: it cannot be opened.
    """

    def __init__(self, location: str, settings, hearing) -> None:
        try:
            self._container = av.open(str(location))
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoDecodeError(failure_reason(exc)) from None
        streams = streams_of(self._container)
        if not streams.has_audio:
            self._container.close()
            raise NoAudio("has no audio stream (the run hears sound)")
        stream = self._container.streams.audio[0]
        self.rate, self.span, self.hearing = settings.sample_rate, settings.audio_span, hearing
        self._origin = streams.origin
        self._declared: int | None = None
        if stream.duration and stream.time_base:
            self._declared = int(round(float(stream.duration * stream.time_base) * self.rate))
        self._decoder = self._container.decode(stream)
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        self._wave = _Clock()  # the sound on the frames' clock
        self._decoded = 0  # samples of sound decoded (before the clock's shift)
        self._shift: int | None = None  # samples of silence before it (< 0: cut from it)
        self._offset = 0.0  # seconds of the first sample on the clock
        self._eof = False
        self._blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pending: deque = deque()
        self._shown = self._step = 0.0

    # -- decoding -------------------------------------------------------------------------
    def _pull(self) -> None:
        """Decode one more audio frame (or reach the end)."""
        try:
            frame = next(self._decoder)
        except StopIteration:
            frame = None
        except (av.error.FFmpegError, OSError, ValueError):
            frame = None  # a damaged tail: what was decoded stays, as in extraction
        if frame is None:
            self._eof = True
            outs = self._resampler.resample(None)
        else:
            if self._shift is None:
                first = float(frame.time) if frame.time is not None else self._origin
                self._offset = first - self._origin
                self._shift = int(round(self._offset * self.rate))
            outs = self._resampler.resample(frame)
        for out in outs:
            piece = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            cut = max(0, -(self._shift or 0) - self._decoded)  # before the clock's 0
            self._decoded += len(piece)
            self._wave.base = max(0, self._shift or 0)
            self._wave.append(np.clip(piece[cut:], -1.0, 1.0))

    def _sound(self) -> int:
        """Samples of sound usable so far (the declared length trims the last padding)."""
        if self._declared is not None and 0 < self._declared < self._decoded:
            return self._declared
        return self._decoded

    def _available(self) -> int:
        """Samples on the clock decoded so far (the declared length trims the padding)."""
        return max(0, min(self._wave.filled, (self._shift or 0) + self._sound()))

    def _clock(self) -> _Clock:
        """The waveform on the frames' clock from time 0, as far as usable."""
        self._wave.limit = self._available()
        return self._wave

    # -- rows -----------------------------------------------------------------------------
    def _blocks_for(self, start: float, end: float) -> range:
        block = self.hearing.block
        first = max(0, int(start * self.rate) // block - 1)
        return range(first, int(end * self.rate) // block + 1)

    def _complete(self, start: float, end: float) -> bool:
        """Decode until every block a row of ``[start, end)`` pools is complete; ``False``
        when the sound ends first."""
        for m in self._blocks_for(start, end):
            if m in self._blocks:
                continue
            need = (m + 1) * self.hearing.block + self.hearing.overhang
            while self._available() < need and not self._eof:
                self._pull()
            if self._available() < need:
                return False
            self._blocks[m] = block_units(self.hearing, self._clock(), m)
        return True

    def _row(self, start: float, end: float) -> np.ndarray:
        parts = [self._blocks[m] for m in self._blocks_for(start, end) if m in self._blocks]
        times = np.concatenate([p[0] for p in parts])
        vectors = np.concatenate([p[1] for p in parts])
        row = pool_units(times, vectors, np.array([[start, end]]))
        finish = getattr(self.hearing, "finish", None)
        return (finish(row) if finish is not None else row)[0]

    def add(self, time: float, frame_seconds: float, key) -> list[tuple]:
        """A kept frame at ``time`` arrived (``key``: the caller's name for its row); the
        rows now ready, in order: ``(key, vector)``."""
        self._shown = max(self._shown, time + frame_seconds)
        self._step = frame_seconds
        middle = time + frame_seconds / 2
        start, end = max(0.0, middle - self.span / 2), middle + self.span / 2
        self._pending.append((key, start, end))
        ready = []
        while self._pending:
            key, start, end = self._pending[0]
            if not self._complete(start, end):
                break  # the sound ends inside this span: it waits for the end of the file
            ready.append((key, self._row(start, end)))
            self._pending.popleft()
            first = self._blocks_for(self._pending[0][1], 0.0).start if self._pending else None
            for m in [m for m in self._blocks if first is not None and m < first - 1]:
                del self._blocks[m]  # behind every row still to come
        return ready

    def close(self) -> list[tuple]:
        """The pictures ended: the rows still waiting, their spans cut to the file's end."""
        while not self._eof:
            self._pull()
        sound_end = self._offset + self._sound() / self.rate
        end = file_end(self._shown, sound_end, self.span, self._step)  # as extraction
        wave = self._clock()
        wave.limit = max(1, int(np.ceil(end * self.rate)))  # silence after the sound
        ready = []
        for key, start, stop in self._pending:
            stop = min(stop, end)
            for m in self._blocks_for(start, stop):
                if m not in self._blocks and m * self.hearing.block < len(wave):
                    self._blocks[m] = block_units(self.hearing, wave, m)
            ready.append((key, self._row(min(start, end), stop)))
        self._pending.clear()
        self.shut()
        return ready

    def shut(self) -> None:
        """Close the file (again: harmless)."""
        self._container.close()
