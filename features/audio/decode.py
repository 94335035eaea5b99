"""A file's sound as one mono waveform at the rate a backbone hears, on the frames' clock.

PyAV (FFmpeg) reads any codec and channel layout it knows (AAC, Opus, Vorbis, MP3, PCM,
mono to 7.1) and its resampler mixes the channels down to mono and converts the rate
(8-192 kHz in, the backbone's rate out). The whole first audio stream is read in one pass.

**The clock.** A video's frames are timed from the start of the *video* stream (its
``start_time`` is time 0, as :meth:`features.video.decode.VideoReader.frames` does), so
the waveform's first sample sits at the first decoded audio frame's timestamp minus that
origin (:attr:`AudioTrack.offset`, often 0, or a few ms where an encoder's priming or an
edit list shifts the sound). A file without a video stream is timed from its first
decoded sample. A stream's declared length trims the padding of its last encoded frame
and never lengthens it. The samples after the first are taken as contiguous (FFmpeg fills the
gaps of most containers itself; a timestamp further on is not trusted to allocate
silence).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

from vidcache.features.errors import VideoDecodeError
from vidcache.features.video.videoinfo import failure_reason

__all__ = ["AudioTrack", "NoAudio", "Streams", "decode_audio", "streams_of"]


class NoAudio(VideoDecodeError):
    """The file holds no audio stream."""


@dataclass(frozen=True)
class AudioTrack:
    """Mono samples of a file's first audio stream.

    Attributes:
        samples: ``float32`` waveform in ``[-1, 1]`` at ``rate``.
        rate: samples per second.
        offset: seconds of the first sample on the frames' clock (see the module).
        channels: channels of the source stream.
        source_rate: the source stream's sample rate.
        codec: the source stream's codec name.
        pictures: the file has a video stream too.
    """

    samples: np.ndarray
    rate: int
    offset: float
    channels: int
    source_rate: int
    codec: str
    pictures: bool = False

    @property
    def end(self) -> float:
        """Seconds on the frames' clock where the sound ends."""
        return self.offset + len(self.samples) / self.rate


@dataclass(frozen=True)
class Streams:
    """What a file holds: whether it has pictures, and when its clock starts."""

    has_video: bool
    has_audio: bool
    origin: float  # seconds of time 0: the video stream's start, else the audio stream's
    duration: float | None  # the container's declared length, when it says


def _start(stream) -> float:
    start = stream.start_time
    return float(start * stream.time_base) if start is not None and stream.time_base else 0.0


def streams_of(container) -> Streams:
    """What an open container holds (:class:`Streams`)."""
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    origin = _start(video) if video is not None else (_start(audio) if audio else 0.0)
    duration = container.duration / av.time_base if container.duration else None
    return Streams(video is not None, audio is not None, origin, duration)


def decode_audio(path: Path | str, rate: int) -> AudioTrack:
    """The first audio stream of ``path``, mixed to mono and resampled to ``rate``.

    Raises:
        NoAudio: the file has no audio stream.
        VideoDecodeError: it cannot be opened or its audio cannot be decoded.
    """
    try:
        with av.open(str(path)) as container:
            streams = streams_of(container)
            if not streams.has_audio:
                raise NoAudio("has no audio stream (an audio backbone needs one)")
            track = _decode(container, streams.origin if streams.has_video else None, rate)
            return replace(track, pictures=streams.has_video)
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoDecodeError(f"audio: {failure_reason(exc)}") from None


def _decode(container, origin: float | None, rate: int) -> AudioTrack:
    """The track; ``origin`` is the video stream's start (``None`` for a file with sound
    only, whose time 0 is its first decoded sample: a stream start the data does not
    bear out is not trusted to shift it)."""
    stream = container.streams.audio[0]
    context = stream.codec_context
    channels = int(getattr(context, "channels", 0) or 0)
    source_rate = int(context.sample_rate or 0)
    codec = context.name or "unknown"
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    pieces: list[np.ndarray] = []
    first: float | None = None
    decoded = 0
    try:
        for frame in container.decode(stream):
            if first is None and frame.time is not None:
                first = float(frame.time)
            decoded += 1
            for out in resampler.resample(frame):
                pieces.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            pieces.append(out.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        if not pieces:
            raise VideoDecodeError(f"audio: decoding failed ({failure_reason(exc)})") from None
        # A damaged tail: the sound decoded so far is kept; what is missing counts as silence
        # (the caller reports a track shorter than the video).
    if decoded == 0 or not pieces:
        raise VideoDecodeError("audio: the audio stream holds no decodable sound")
    samples = np.concatenate(pieces).astype(np.float32, copy=False)
    # An encoder pads its last frame (AAC: up to 1024 samples); a declared stream length
    # trims that padding, and only trims: a length the data does not hold is not believed.
    if stream.duration and stream.time_base:
        declared = int(round(float(stream.duration * stream.time_base) * rate))
        if 0 < declared < len(samples):
            samples = samples[:declared]
    np.clip(samples, -1.0, 1.0, out=samples)
    if origin is None or first is None:
        offset = 0.0
    else:
        offset = first - origin
    return AudioTrack(samples, rate, offset, channels, source_rate, codec)
