"""What a video is and what reading it took: :class:`VideoInfo` (what its container
declares), :class:`DecodeStats` (the work decoding it took) and :func:`failure_reason`
(a failure as the one line users read)."""

from __future__ import annotations

from dataclasses import dataclass

import av.error

__all__ = ["DecodeStats", "VideoInfo", "failure_reason"]


@dataclass
class DecodeStats:
    """What decoding one video took (for benchmarks and ``-v`` reports).

    Attributes:
        decoded: frames the decoder produced.
        frames: frames in the file per its packet index (``None`` when not read).
        planned: the file was decoded by a plan (only the packets kept frames need).
        fallback: why a plan was not used or was abandoned (``None``: no fallback).
        threads: FFmpeg threads the decoder was given (more than one for sparse sampling).
    """

    decoded: int = 0
    frames: int | None = None
    planned: bool = False
    fallback: str | None = None
    threads: int = 1


@dataclass(frozen=True)
class VideoInfo:
    """What the container declares about the video stream.

    Attributes:
        fps: frames per second (average rate), or the folder rate for frame folders.
        duration: seconds, or ``None`` when the container does not say.
        frame_count: declared number of frames, or ``None`` when unknown.
        width: frame width in pixels.
        height: frame height in pixels.
        codec: codec name (``"h264"``...), or ``"images"`` for a frame folder.
    """

    fps: float
    duration: float | None
    frame_count: int | None
    width: int
    height: int
    codec: str


def failure_reason(exc: BaseException) -> str:
    """A one-line, human reason for a decoding or file error."""
    if isinstance(exc, av.error.EOFError):
        return "no frames: the file ends right after its header"
    if isinstance(exc, av.error.FFmpegError):
        text = exc.strerror or str(exc)
        if isinstance(exc, av.error.InvalidDataError):
            return f"not a readable video ({text})"
        return text
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
