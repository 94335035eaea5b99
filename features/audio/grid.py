"""``--grid CACHE``: the kept frames of each file read from a cache of the same sampling
(the frame cache the sound will be fused with), so an audio extraction does not decode the
pictures again to find them.

A file takes its rows from the cache only when the cache holds it with the same content
(its fingerprint) and made them from its pictures; any other file is decoded as without
``--grid``. The rows are the frame sampler's own (the cache's ``frame_indices`` and
``timestamps``, checksum verified), so the result is the same cache either way
(``tests/test_audio.py::test_a_grid_cache_gives_the_same_rows_without_decoding_pictures``).
"""

from __future__ import annotations

import math
from pathlib import Path

from vidcache.features.audio.extractor import Grid
from vidcache.features.cache import CacheReader
from vidcache.features.errors import SettingsMismatch
from vidcache.features.settings import FeatureSettings
from vidcache.features.video.videoinfo import VideoInfo

__all__ = ["GridCache"]


def _frames(settings: FeatureSettings) -> tuple:
    sampling = settings.sampling
    kept = (sampling.fps, sampling.num_frames, sampling.max_frames, sampling.keyframes)
    return (*kept, settings.folder_fps)


class GridCache:
    """Kept frames from the cache at ``path`` for a run of ``settings``.

    Raises:
        SettingsMismatch: the cache keeps other frames, or its rows are windows.
        CacheFormatError: it is not a readable cache.
    """

    def __init__(self, path: Path, settings: FeatureSettings) -> None:
        self.path = Path(path)
        self._reader = CacheReader(self.path)
        theirs = self._reader.settings
        if _frames(theirs) != _frames(settings):
            self._reader.close()
            raise SettingsMismatch(
                f"--grid {self.path} keeps other frames ({theirs.sampling.describe()}) than "
                f"this run ({settings.sampling.describe()}); give a cache of the same "
                "--fps/--num-frames/--max-frames/--sampling"
            )
        if theirs.sampling.windowed and theirs.pooling != "frame":
            self._reader.close()
            raise SettingsMismatch(
                f"--grid {self.path} has a row per window, not per kept frame; give a frame "
                "cache (or one pooled per frame)"
            )
        self._entries = self._reader.entries()
        self.used = 0

    def lookup(self, video_id: str, content: str) -> Grid | None:
        """The file's kept frames, or ``None`` when the cache lacks it, holds other content,
        or made its rows without pictures."""
        entry = self._entries.get(video_id)
        if entry is None or entry.fingerprint != content or entry.width <= 0:
            return None
        rows = self._reader.rows(video_id)
        kept = list(zip(rows.frame_indices.tolist(), rows.timestamps.tolist()))
        duration = entry.duration if math.isfinite(entry.duration) else None
        frames = entry.source_frames if entry.source_frames > 0 else None
        info = VideoInfo(entry.fps, duration, frames, entry.width, entry.height, entry.codec)
        self.used += 1
        return Grid(kept, info)

    def close(self) -> None:
        self._reader.close()
