"""Generated sound for the demo, the tests and the benchmarks: tone sequences, and files
with a video stream, an audio stream, or both (any codec and layout FFmpeg encodes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["AUDIO_CODECS", "SOUND_FORMATS", "glide", "tone_sequence", "write_av"]

#: The demo's clips with sound (``make-demo-data --sound``): container, video codec, pixel
#: format and audio codec, rotating as the silent demo's formats do.
SOUND_FORMATS = (
    ("mp4", "libx264", "yuv420p", "aac"),
    ("mkv", "libx264", "yuv420p", "opus"),
    ("avi", "mpeg4", "yuv420p", "pcm"),
)

#: Container and encoder of each audio codec the tests generate, with the sample format the
#: encoder takes.
AUDIO_CODECS = {
    "aac": (".mp4", "aac", "fltp"),
    "opus": (".mkv", "libopus", "s16"),
    "vorbis": (".mkv", "vorbis", "fltp"),
    "mp3": (".mkv", "libmp3lame", "s16p"),
    "pcm": (".avi", "pcm_s16le", "s16"),
}


def tone_sequence(
    pitches: Sequence[float],
    seconds: float,
    rate: int,
    amplitude: float | Sequence[float] = 0.5,
) -> np.ndarray:
    """A sine of each pitch in turn (Hz; 0 for silence), ``seconds`` each, at ``rate``;
    ``amplitude`` one for all, or one per pitch."""
    each = int(round(seconds * rate))
    t = np.arange(each) / rate
    levels = [amplitude] * len(pitches) if np.isscalar(amplitude) else list(amplitude)
    parts = [
        level * np.sin(2 * np.pi * pitch * t) if pitch else np.zeros(each)
        for pitch, level in zip(pitches, levels)
    ]
    return np.concatenate(parts).astype(np.float32)


def glide(pitches: Sequence[float], seconds_each: float, rate: int, amplitude=0.3):
    """A tone that glides smoothly through ``pitches`` (Hz), ``seconds_each`` per pitch:
    the phase is continuous, so the sound has no clicks."""
    each = int(round(seconds_each * rate))
    steps = np.repeat(np.asarray(pitches, np.float64), each)
    smooth = np.convolve(steps, np.ones(each // 4 or 1) / (each // 4 or 1), mode="same")
    phase = 2 * np.pi * np.cumsum(smooth) / rate
    return (amplitude * np.sin(phase)).astype(np.float32)


def _audio_frames(samples: np.ndarray, rate: int, layout: str, fmt: str, size: int, start: int):
    """PyAV frames of ``samples`` (mono, copied to every channel of ``layout``)."""
    channels = av.AudioLayout(layout).nb_channels
    scale = 32767 if fmt.startswith("s16") else 1.0
    kind = np.int16 if fmt.startswith("s16") else np.float32
    for first in range(0, len(samples), size):
        chunk = (samples[first : first + size] * scale).astype(kind)
        if fmt.endswith("p"):  # planar: one row per channel
            array = np.repeat(chunk[None], channels, axis=0)
        else:  # packed: channels interleaved in one row
            array = np.repeat(chunk, channels)[None]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(array), format=fmt, layout=layout)
        frame.sample_rate = rate
        frame.pts = start + first
        frame.time_base = Fraction(1, rate)
        yield frame


def write_av(
    path: Path,
    frames: Iterable[np.ndarray] | None,
    fps: float | Fraction = 25,
    audio: np.ndarray | None = None,
    rate: int = 16000,
    codec: str = "aac",
    layout: str = "mono",
    video_codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio_start: float = 0.0,
) -> Path:
    """Write RGB ``uint8`` frames and/or a mono waveform (copied to every channel of
    ``layout``: ``"mono"``, ``"stereo"``, ``"5.1"``) into one file.

    ``audio_start`` stamps the sound's first sample that many seconds after the pictures'
    start (a stream that starts late, as some recorders write it).
    ``codec`` is a key of :data:`AUDIO_CODECS` (``path``'s suffix is the caller's: an MP4
    for AAC, Matroska for the others, AVI for PCM; a ``.wav``/``.mp3``/``.m4a`` for a file
    without pictures). ``fps`` may be a :class:`~fractions.Fraction` (``30000/1001``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, encoder, fmt = AUDIO_CODECS[codec]
    if path.suffix == ".wav":
        encoder, fmt = "pcm_s16le", "s16"
    rate_fraction = Fraction(fps).limit_denominator(1001)
    frames = iter(frames) if frames is not None else iter(())
    first = next(frames, None)
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"}) as container:
        video = sound = None  # every stream is added before the first packet is written
        if first is not None:
            video = container.add_stream(video_codec, rate=rate_fraction)
            video.width, video.height = first.shape[1], first.shape[0]
            video.pix_fmt = pix_fmt
            video.options = {"bf": "0"} if video_codec == "libx264" else {}
        if audio is not None:
            sound = container.add_stream(encoder, rate=rate, layout=layout)
            sound.codec_context.time_base = Fraction(1, rate)
            if encoder == "vorbis":
                sound.codec_context.options = {"strict": "experimental"}
        if video is not None:
            for array in (first, *frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
                container.mux(video.encode(frame))
            container.mux(video.encode())
        if sound is not None:
            size = sound.codec_context.frame_size or 1024
            start = int(round(audio_start * rate))
            sound_frames = _audio_frames(
                np.asarray(audio, np.float32), rate, layout, fmt, size, start
            )
            for frame in sound_frames:
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path
