"""Content fingerprints and cheap change checks for sources.

A re-run first compares size and mtime with the cache (free); only when they differ is the
content fingerprint computed, so a touched or copied but unchanged file is not re-extracted.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from vidcache.features.video.discover import VideoSource, frame_files

_BLOCK = 1 << 20


@dataclass(frozen=True)
class SourceStat:
    """Size in bytes and modification time (seconds) of a file or a frame folder's images."""

    size: int
    mtime: float


def _files(source: VideoSource) -> list[Path]:
    return frame_files(source.path) if source.kind == "frames" else [source.path]


def stat_source(source: VideoSource) -> SourceStat:
    """Total size and newest mtime of the source's files (for an object in a store, as it
    was listed).

    Raises:
        OSError: the source cannot be read.
    """
    if source.remote is not None:
        return SourceStat(source.remote.size, source.remote.mtime)
    stats = [os.stat(f) for f in _files(source)]
    return SourceStat(sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=0.0))


def fingerprint(source: VideoSource) -> str:
    """``"sha256:<hex>"`` of the file's bytes (of names and bytes, in order, for frame
    folders); for an object in a store, its version as the store gave it when listed
    (``etag:``, ``generation:``...: :mod:`vidcache.features.remote.objects`), read from no
    byte of it.

    Raises:
        OSError: the source cannot be read.
    """
    if source.remote is not None:
        return source.remote.version
    digest = hashlib.sha256()
    for file in _files(source):
        if source.kind == "frames":
            digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
    return "sha256:" + digest.hexdigest()
