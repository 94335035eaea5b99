"""What a video to extract is (:class:`VideoSource`) and which file names are videos: the
vocabulary that the local walk (:mod:`.discover`) and a store's listing
(:mod:`vidcache.features.remote.listing`) share."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from vidcache.features.remote.objects import RemoteObject

__all__ = [
    "AUDIO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoSource",
    "is_video_name",
]

VIDEO_EXTENSIONS = (
    ".3gp", ".avi", ".flv", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".ogv", ".ts",
    ".webm", ".wmv",
)  # fmt: skip
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png")
#: Files with sound only, listed when an audio backbone extracts (``discover(audio=True)``).
AUDIO_EXTENSIONS = (
    ".aac", ".flac", ".m4a", ".mka", ".mp3", ".oga", ".ogg", ".opus", ".wav", ".wma",
)  # fmt: skip


@dataclass(frozen=True)
class VideoSource:
    """One video to extract.

    Attributes:
        path: absolute path of the video file, or of the folder of frames.
        video_id: stable id, unique in a run and the key in the cache.
        label: class label, or ``None``.
        kind: ``"file"`` or ``"frames"``.
        meta: extra columns from a labels CSV, as ``(name, value)`` pairs.
        remote: for an object in a store, what the store said of it when it was listed
            (``path`` is then its URL, a ``str``; :mod:`vidcache.features.remote`).
    """

    path: Path | str
    video_id: str
    label: str | None = None
    kind: str = "file"
    meta: tuple[tuple[str, str], ...] = field(default=())
    remote: RemoteObject | None = None


def is_video_name(name: str, glob: str | None, audio: bool = False) -> bool:
    """Whether a file name is a video: it matches ``glob``, or has a video extension (or a
    sound-only one, with ``audio``)."""
    if glob is not None:
        return fnmatch.fnmatch(name, glob)
    extension = os.path.splitext(name)[1].lower()
    return extension in VIDEO_EXTENSIONS or (audio and extension in AUDIO_EXTENSIONS)
