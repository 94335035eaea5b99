"""What both extraction loops (pictures and sound) share: Ctrl-C/SIGTERM as a flag
checked between units of work, and the commit of one finished video to the cache."""

from __future__ import annotations

import errno
import signal
import tempfile
import threading

from vidcache.features.cache import CacheEntry, FeatureCache
from vidcache.features.cache.buffer import FeatureBuffer
from vidcache.features.errors import DiskFull
from vidcache.pipeline.extraction.outcomes import EXTRACTED, FAILED, VideoOutcome

__all__ = ["Interrupts", "commit", "spill_full"]


class Interrupts:
    """Turns Ctrl-C/SIGTERM into a flag checked between batches, so commits are never torn."""

    def __init__(self) -> None:
        self.flag = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.flag:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.flag = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def commit(
    event: tuple, buffer: FeatureBuffer | None, cache: FeatureCache, dtype: str
) -> VideoOutcome:
    """Commit one finished video's rows (``("done", job, info, content, count)``), or report
    a failed one (``("failed", job, reason)``); the buffer is closed either way."""
    kind, job = event[0], event[1]
    source = job.source
    if kind == "failed":
        if buffer is not None:
            buffer.close()
        return VideoOutcome(source.video_id, source.path, FAILED, 0, event[2])
    _, _, info, content, count = event
    entry = CacheEntry(
        video_id=source.video_id,
        path=str(source.path),
        label=source.label or "",
        kind=source.kind,
        size=job.stat.size,
        mtime=job.stat.mtime,
        fingerprint=content,
        num_frames=count,
        fps=info.fps,
        duration=info.duration if info.duration is not None else float("nan"),
        source_frames=info.frame_count or -1,
        width=info.width,
        height=info.height,
        codec=info.codec,
        meta=dict(source.meta),
    )
    try:
        cache.write_video(entry, buffer, dtype)
    finally:
        buffer.close()
    return VideoOutcome(source.video_id, source.path, EXTRACTED, count)


def spill_full(exc: OSError, cache_path) -> DiskFull | None:
    """The one-line error for a disk that filled while a long video's rows spilled to a
    temporary file (``None`` when ``exc`` is another error, to be raised as it is)."""
    if exc.errno != errno.ENOSPC:
        return None
    return DiskFull(
        f"no space left for the temporary rows of long videos ({tempfile.gettempdir()}; set "
        f"TMPDIR elsewhere); every video committed to {cache_path} before is kept"
    )
