"""Feature rows of one video in flight, kept in memory up to a limit and spilled to disk after.

A long video at a high sampling rate produces more rows than should sit in memory
(an hour at 30 fps is 108,000 x 2048 float32 = 885 MB), so beyond ``spill_rows`` rows they
go to an anonymous temporary file (removed by the OS even if the process is killed) and are
read back in blocks when the video is committed to the cache.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import numpy as np

DEFAULT_SPILL_ROWS = 512  # 4 MiB of float32 2048-d features


class FeatureBuffer:
    """Append-only rows of ``(features, timestamp, frame_index)`` for one video.

    Args:
        dim: feature dimension.
        spill_rows: rows kept in memory before spilling to a temporary file.
            Defaults to 512.
    """

    def __init__(self, dim: int, spill_rows: int = DEFAULT_SPILL_ROWS) -> None:
        self.dim = dim
        self.spill_rows = spill_rows
        self._rows: list[np.ndarray] = []
        self._in_memory = 0
        self._spill = None
        self._spilled = 0
        self.timestamps: list[float] = []
        self.frame_indices: list[int] = []
        self._span_frames: list[tuple[int, int]] = []
        self._span_times: list[tuple[float, float]] = []

    def __len__(self) -> int:
        return len(self.timestamps)

    def append(
        self,
        features: np.ndarray,
        timestamp: float,
        frame_index: int,
        span: tuple[int, int, float, float] | None = None,
    ) -> None:
        """Add one row's feature vector (float32, shape ``(dim,)``), with the span it
        covers (first and last frame index, start and end time) for a window cache: a
        buffer's rows all have spans or none do."""
        if (span is None) != (not self._span_frames) and len(self):
            raise ValueError("a buffer's rows all have spans or none do")
        if span is not None:
            self._span_frames.append((int(span[0]), int(span[1])))
            self._span_times.append((float(span[2]), float(span[3])))
        self._rows.append(np.asarray(features, dtype=np.float32))
        self._in_memory += 1
        self.timestamps.append(timestamp)
        self.frame_indices.append(frame_index)
        if self._in_memory >= self.spill_rows:
            self._flush_to_disk()

    def _flush_to_disk(self) -> None:
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(prefix="vidcache-")
        self._spill.write(np.stack(self._rows).tobytes())
        self._spilled += self._in_memory
        self._rows, self._in_memory = [], 0

    def spans(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(span_frames, span_times)``, each ``(n, 2)``, or ``None`` for frame rows."""
        if not self._span_frames:
            return None
        return np.array(self._span_frames, np.int64), np.array(self._span_times, np.float64)

    @property
    def spilled(self) -> bool:
        """Whether some rows live on disk."""
        return self._spill is not None

    def blocks(self, block_rows: int = DEFAULT_SPILL_ROWS) -> Iterator[np.ndarray]:
        """Yield the rows in order as ``(n, dim)`` float32 arrays of at most ``block_rows``."""
        if self._spill is not None:
            self._spill.flush()
            self._spill.seek(0)
            row_bytes = self.dim * 4
            remaining = self._spilled
            while remaining:
                n = min(block_rows, remaining)
                data = self._spill.read(n * row_bytes)
                yield np.frombuffer(data, dtype=np.float32).reshape(n, self.dim)
                remaining -= n
        if self._rows:
            yield np.stack(self._rows)

    def close(self) -> None:
        """Drop the rows and the temporary file."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        self._rows = []

    def __enter__(self) -> FeatureBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
