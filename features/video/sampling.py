"""Frame sampling: which decoded frames are kept, without holding a video in memory.

Three policies (see :class:`features.settings.SamplingSpec`):

- **rate** (``fps``, the default at 5 fps): walk the frames in order and keep a frame when
  its timestamp reaches the next slot ``k / fps``; a video slower than ``fps`` keeps every
  frame (never upsampled). ``max_frames`` then caps the count.
- **keyframes** (``keyframes=True``): only the frames decoding can start at (I/IDR
  frames), thinned by ``fps`` and capped by ``max_frames`` like the rate policy.
- **count** (``num_frames=N``): the video's frame count ``n`` is known first, and frame
  ``floor((i + 0.5) * n / N)`` is kept for ``i = 0..N-1``, the centres of N equal segments
  (TSN test-time sampling). When ``n < N`` frames repeat, so every video gives exactly N.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TypeVar

from vidcache.features.settings import SamplingSpec

T = TypeVar("T")

# Frames whose timestamp is within this fraction of a slot before it still take the slot,
# so 30 fps video sampled at 5 fps keeps frames 0, 6, 12... despite rounding in pts.
_SLOT_TOLERANCE = 1e-3

# A frame more than this many slots after the next one jumps there in one step instead of
# stepping slot by slot: a file's timestamps are untrusted (two frames 10^9 s apart would
# otherwise cost 5 * 10^9 steps at 5 fps), so the work per frame stays bounded. Real videos
# never come near it (13 minutes without a frame at 5 fps), so their slots are unchanged.
_MAX_SLOT_STEPS = 4096


def count_indices(total: int, num_frames: int) -> list[int]:
    """Indices of ``num_frames`` frames evenly spaced over ``total`` (segment centres).

    Args:
        total: the number of frames in the video; at least 1.
        num_frames: how many to keep.

    Returns:
        A sorted list of ``num_frames`` indices in ``[0, total)``, with repeats when
        ``total < num_frames``.
    """
    if total < 1:
        raise ValueError(f"total must be at least 1. Received: total={total}")
    return [min(total - 1, int((i + 0.5) * total / num_frames)) for i in range(num_frames)]


def keep_by_rate(
    items: Iterable[tuple[int, float, T]], fps: float | None, max_frames: int | None
) -> Iterator[tuple[int, float, T]]:
    """Keep items ``(source_index, timestamp, frame)`` at most ``fps`` per second, the
    first ``max_frames`` of them at most: the rate policy over any candidate frames."""
    kept = 0
    next_slot = None
    for index, time, frame in items:
        if max_frames is not None and kept >= max_frames:
            return
        if fps is not None:
            if next_slot is None:
                next_slot = time
            if time < next_slot - _SLOT_TOLERANCE / fps:
                continue
            # Advance past every slot this frame covers: a slow video is never upsampled.
            limit = time + _SLOT_TOLERANCE / fps
            if not (limit - next_slot) * fps < _MAX_SLOT_STEPS:  # a huge gap, or inf
                next_slot = _jump(next_slot, limit, fps)
            for _ in range(_MAX_SLOT_STEPS):
                if next_slot > limit:
                    break
                next_slot += 1.0 / fps
            else:  # times so large that a slot no longer moves them (float precision)
                next_slot = math.nextafter(limit, math.inf)
        kept += 1
        yield index, time, frame


def _jump(next_slot: float, limit: float, fps: float) -> float:
    """The slot a few steps before ``limit``, reached in one step from ``next_slot``."""
    if not math.isfinite(limit):
        return math.inf  # nothing after an infinite time takes a slot
    return next_slot + (math.floor((limit - next_slot) * fps) - 2) / fps


def sample_by_rate(
    frames: Iterable[tuple[float, T]], fps: float | None, max_frames: int | None
) -> Iterator[tuple[int, float, T]]:
    """Keep frames at most ``fps`` per second.

    Args:
        frames: ``(timestamp_seconds, frame)`` in decode order; frames are not touched, so
            lazily decoded frames are only converted when kept.
        fps: the rate; ``None`` keeps every frame.
        max_frames: stop after this many kept frames; ``None`` for no limit.

    Yields:
        ``(source_index, timestamp, frame)`` of each kept frame.
    """
    items = ((index, time, frame) for index, (time, frame) in enumerate(frames))
    return keep_by_rate(items, fps, max_frames)


def is_keyframe(frame) -> bool:
    """Whether a decoded frame is a keyframe (a frame-folder image always is)."""
    return bool(getattr(frame, "key_frame", True))


def sample_by_count(
    frames: Iterable[tuple[float, T]], indices: list[int]
) -> Iterator[tuple[int, float, T]]:
    """Keep the frames at ``indices`` (sorted, repeats allowed), stopping after the last.

    If the video ends before some index (fewer decodable frames than counted), the last
    decoded frame stands in for the missing ones, so the count is always ``len(indices)``.

    Yields:
        ``(source_index, timestamp, frame)``; a repeated index yields the same frame again.
    """
    if not indices:
        return
    position = 0
    last = None
    for index, (time, frame) in enumerate(frames):
        last = (index, time, frame)
        while position < len(indices) and indices[position] == index:
            yield index, time, frame
            position += 1
        if position == len(indices):
            return
    if last is not None:
        while position < len(indices):
            yield last
            position += 1


def sample(
    frames: Iterable[tuple[float, T]], spec: SamplingSpec, total: int | None = None
) -> Iterator[tuple[int, float, T]]:
    """Apply ``spec`` to ``frames``; ``total`` (the frame count) is needed for ``num_frames``.

    With ``spec.keyframes`` only keyframes are candidates (their source index stays their
    place among all frames), thinned by ``fps`` and capped by ``max_frames``.
    """
    if spec.num_frames is not None:
        if total is None:
            raise ValueError("num_frames sampling needs the video's frame count")
        return sample_by_count(frames, count_indices(total, spec.num_frames))
    if spec.keyframes:
        items = (
            (index, time, frame) for index, (time, frame) in enumerate(frames) if is_keyframe(frame)
        )
        return keep_by_rate(items, spec.fps, spec.max_frames)
    return sample_by_rate(frames, spec.fps, spec.max_frames)


def windows(items: Iterable[T], size: int, stride: int) -> Iterator[tuple[int, list[T]]]:
    """Group kept frames into windows of ``size`` consecutive kept frames, ``stride`` apart.

    Windows start at kept frames ``0, stride, 2 * stride, ...`` and each holds the ``size``
    frames from its start, as long as the video has them. When the full windows leave kept
    frames at the end uncovered, one more window starts at the next start and holds what
    is left (fewer than ``size`` frames: the consumer pads it by repeating its last frame,
    the common recipe). A video shorter than one window gives that one short window; frames
    that fall between windows (``stride > size``) belong to none. Only the frames of the
    windows still to come are held, so memory stays ``size + stride`` frames at most.

    Args:
        items: the kept frames, in order (anything: ``(index, time, frame)`` tuples here).
        size: frames per window, at least 1.
        stride: kept frames from one window's start to the next, at least 1.

    Yields:
        ``(position, frames)``: the position of the window's first frame among the kept
        frames, and its 1 to ``size`` frames.
    """
    if size < 1 or stride < 1:
        raise ValueError(f"size and stride must be at least 1. Received: {size}, {stride}")
    held: list[T] = []
    base = 0  # position of held[0] among the kept frames
    start = 0  # the next window's first position
    covered = -1  # the last position a window has held
    count = 0
    for item in items:
        position, count = count, count + 1
        if position < start and not held:
            base = position + 1  # between windows: nobody needs it
            continue
        held.append(item)
        while start + size <= count:
            yield start, held[start - base : start - base + size]
            covered = start + size - 1
            start += stride
            drop = min(start - base, len(held))
            del held[:drop]
            base += drop
    if count and covered < count - 1 and start < count:
        yield start, held[start - base :]
