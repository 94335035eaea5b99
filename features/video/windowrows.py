"""From windows of frames to cache rows: what a clip backbone's output becomes.

A clip backbone (VideoPrism) takes a window of ``W`` frames and gives one vector per frame
of the window (the mean of that frame's tokens, :mod:`features.backbones.videoprism`). A
window cache keeps, per the settings' ``pooling``:

- ``window``: one row per window, the mean of its ``W`` frame vectors (the mean of all its
  tokens). The row's ``timestamps``/``frame_indices`` are those of the window's centre
  frame (the real frame at place ``len // 2``: for 16 frames the ninth, the later of the
  two middle ones); its span is its first and last real frame.
- ``frame``: one row per kept frame, from the tokens of its own frame inside a window.
  With overlapping windows (``stride < window``) a frame sits in several; its row comes
  from the one where it sits most central (the smallest distance between its place and
  the window's middle, ``(W - 1) / 2``; a tie goes to the earlier window). Padded copies
  of a short window's last frame give no rows. The row's time and frame index are the
  frame's own; its span is the window the vector comes from.

Windows are padded by repeating their last real frame (:func:`pad_window`); spans name
the real frames only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from vidcache.features.backbones.registry import WINDOW_POOLINGS
from vidcache.features.video.sampling import windows

__all__ = ["POOLINGS", "Row", "RowMaker", "WindowOwner", "pad_window", "row_times"]

#: The poolings of a clip backbone, the default first.
POOLINGS = WINDOW_POOLINGS

#: One cache row: ``(vector, time, frame index, (first index, last index, start, end))``.
Row = tuple[np.ndarray, float, int, tuple[int, int, float, float]]


@dataclass(frozen=True)
class WindowOwner:
    """Which frames a window holds: its first frame's place among the kept frames and the
    ``(source index, seconds)`` of each real (unpadded) frame, in order."""

    start: int
    frames: tuple[tuple[int, float], ...]

    @property
    def span(self) -> tuple[int, int, float, float]:
        """First and last frame index, start and end time (the last real frame's time)."""
        (first, start), (last, end) = self.frames[0], self.frames[-1]
        return first, last, start, end

    @property
    def centre(self) -> tuple[int, float]:
        """``(source index, seconds)`` of the window's centre frame (place ``len // 2``)."""
        return self.frames[len(self.frames) // 2]


def pad_window(images: list[np.ndarray], size: int) -> np.ndarray:
    """Stack a window's frames, repeating the last one up to ``size`` frames."""
    if not images:
        raise ValueError("a window holds at least one frame")
    return np.stack(images + [images[-1]] * (size - len(images)))


class RowMaker:
    """The rows of one video's windows, in frame order (one per video).

    Args:
        pooling: ``"window"`` or ``"frame"``.
        size: frames per window (``W``).
    """

    def __init__(self, pooling: str, size: int) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}. Received: {pooling!r}")
        self.pooling, self.size = pooling, size
        self._middle = (size - 1) / 2
        # place among the kept frames -> (distance to its window's middle, row)
        self._pending: dict[int, tuple[float, Row]] = {}

    def add(self, owner: WindowOwner, vectors: np.ndarray) -> list[Row]:
        """Take one window's frame vectors ``(W, D)``; returns the rows now final."""
        if self.pooling == "window":
            index, time = owner.centre
            return [(vectors.mean(axis=0), float(time), int(index), owner.span)]
        span = owner.span
        for offset, (index, time) in enumerate(owner.frames):
            place = owner.start + offset
            distance = abs(offset - self._middle)
            held = self._pending.get(place)
            if held is None or distance < held[0]:
                self._pending[place] = (distance, (vectors[offset], float(time), int(index), span))
        # Later windows start after this one: frames before its start are in none of them.
        return self._release(lambda place: place < owner.start)

    def finish(self) -> list[Row]:
        """The rows still held, at the end of the video."""
        return self._release(lambda place: True)

    def _release(self, done) -> list[Row]:
        places = sorted(place for place in self._pending if done(place))
        return [self._pending.pop(place)[1] for place in places]


def row_times(
    kept: Iterable[tuple[int, float]], window: int | None, stride: int | None, pooling: str
) -> list[tuple[float, int, tuple[int, int, float, float]]]:
    """The rows a cache makes from kept frames ``(source index, seconds)``, without a
    network: ``(time, frame index, span)`` each, exactly as extraction stores them (frame
    rows when ``window`` is ``None``). What a recipe's command gives, checked without a CNN
    (``tests/test_recipes.py``)."""
    kept = list(kept)
    if window is None:
        return [(float(t), int(i), (int(i), int(i), float(t), float(t))) for i, t in kept]
    maker = RowMaker(pooling, window)
    rows: list[Row] = []
    for start, group in windows(kept, window, stride or window):
        rows += maker.add(WindowOwner(start, tuple(group)), np.zeros((window, 1), np.float32))
    rows += maker.finish()
    return [(time, index, span) for _, time, index, span in rows]
