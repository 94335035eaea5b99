"""Decode plans: which packets to decode so that the frames sampling keeps come out
exactly as a sequential decode would give them, and as few others as the file allows.

The container lists every frame's packet (presentation timestamp, keyframe flag, size)
without decoding anything: the :class:`PacketIndex`. Sampling picks frames from that list
exactly as it picks them from decoded frames (:mod:`features.video.sampling`), so the plan knows
the kept frames before any decoding. Each kept frame needs decoding from a keyframe before
it; kept frames whose ranges meet share one run of decoding (a *segment*), and the packets
between segments are never decoded. Pure logic, no PyAV: tested on made-up indexes.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from vidcache.features.settings import SamplingSpec
from vidcache.features.video.sampling import count_indices, keep_by_rate


@dataclass(frozen=True)
class PacketIndex:
    """The frame packets of a video stream in file (decode) order.

    Attributes:
        pts: presentation timestamp of each packet, in ``time_base`` units.
        keyframe: whether decoding can start at each packet.
        time_base: ``(numerator, denominator)`` of the stream's time base.
        origin: the stream's start time in seconds (timestamps count from it).
        problem: why the index cannot be trusted for planning (``None`` when it can):
            a frame packet without a timestamp, two frames with one timestamp, or no
            keyframe to start at.
    """

    pts: np.ndarray
    keyframe: np.ndarray
    time_base: tuple[int, int]
    origin: float
    problem: str | None = None

    @property
    def frame_count(self) -> int:
        return len(self.pts)

    def presentation_order(self) -> np.ndarray:
        """Decode position of the i-th frame in presentation order."""
        return np.argsort(self.pts, kind="stable")

    def time_of(self, pts: int) -> float:
        """Seconds from the start, computed as PyAV's ``Frame.time`` does (so equal
        timestamps compare equal, bit for bit, with a sequential decode)."""
        num, den = self.time_base
        return float(pts) * num / den - self.origin

    def presentation_times(self) -> list[float]:
        return [self.time_of(int(p)) for p in self.pts[self.presentation_order()]]

    def last_time(self) -> float:
        return self.time_of(int(self.pts.max())) if len(self.pts) else 0.0


def index_problem(pts: list[int | None], keyframe: list[bool]) -> str | None:
    """Why packets with these timestamps and keyframe flags cannot be planned, or None."""
    if not pts:
        return "no frame packets"
    if any(p is None for p in pts):
        return "frame packets without timestamps"
    if len(set(pts)) != len(pts):
        return "two frame packets with one timestamp"
    if not keyframe[0]:
        return "the first frame packet is not a keyframe"
    return None


@dataclass(frozen=True)
class Target:
    """One kept frame: its index in presentation order, its timestamp and packet."""

    index: int
    time: float
    position: int


@dataclass(frozen=True)
class Segment:
    """Packets ``start..end`` (decode positions, inclusive) decoded in one run, from the
    keyframe at ``start``; ``targets`` are the decode positions of the kept frames in it."""

    start: int
    end: int
    targets: frozenset[int]

    @property
    def packets(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class DecodePlan:
    """What to decode for one video and one sampling.

    Attributes:
        kept: the kept frames in output order (repeats allowed, as count sampling gives).
        segments: the runs of decoding, in file order.
        exhausted: the sampling looked at every frame (the truncation check runs then,
            as after a sequential decode that reached the end).
        frame_count: frames in the file.
    """

    kept: list[Target]
    segments: list[Segment]
    exhausted: bool
    frame_count: int

    @property
    def packets(self) -> int:
        """Packets the plan feeds to the decoder (the rest are never decoded)."""
        return sum(s.packets for s in self.segments)


def kept_frames(index: PacketIndex, sampling: SamplingSpec) -> tuple[list[Target], bool]:
    """The frames ``sampling`` keeps, chosen from the index exactly as
    :func:`features.video.sampling.sample` chooses them from decoded frames.

    Returns:
        ``(kept, exhausted)``; ``exhausted`` is True when the sampling looked at the
        last frame (rate sampling that was not stopped early by ``max_frames``).
    """
    order = index.presentation_order()
    times = index.presentation_times()
    if sampling.num_frames is not None:
        chosen = count_indices(index.frame_count, sampling.num_frames)
        return [Target(i, times[i], int(order[i])) for i in chosen], False
    candidates = range(index.frame_count)
    if sampling.keyframes:
        candidates = [i for i in candidates if index.keyframe[order[i]]]
    finished = [False]

    def items():
        for i in candidates:
            yield i, times[i], i
        finished[0] = True  # pulled past the last frame, as a sequential loop that ends

    kept = [
        Target(i, time, int(order[i]))
        for i, time, _ in keep_by_rate(items(), sampling.fps, sampling.max_frames)
    ]
    return kept, finished[0]


def start_of(index: PacketIndex, keys: list[int], position: int) -> int | None:
    """The keyframe to decode from for the frame at decode ``position``: the last one
    before it in the file that is also not after it in time (a frame shown before the
    keyframe it follows, an open-GOP leading picture, needs the keyframe before)."""
    at = bisect.bisect_right(keys, position) - 1
    while at >= 0 and index.pts[keys[at]] > index.pts[position]:
        at -= 1
    return keys[at] if at >= 0 else None


def plan(index: PacketIndex, sampling: SamplingSpec) -> DecodePlan | None:
    """The decode plan for ``sampling`` over ``index``; None when the index cannot be
    trusted or a kept frame has no keyframe before it (decode sequentially then)."""
    if index.problem is not None:
        return None
    kept, exhausted = kept_frames(index, sampling)
    keys = np.flatnonzero(index.keyframe).tolist()
    ranges = []
    for position in sorted({t.position for t in kept}):
        start = start_of(index, keys, position)
        if start is None:
            return None
        ranges.append((start, position))
    segments: list[Segment] = []
    for start, end in sorted(ranges):
        # Starting again costs a drain and a reset; when the next range starts at or
        # before the packet after this one ends, decoding on is never more work.
        if segments and start <= segments[-1].end + 1:
            last = segments[-1]
            segments[-1] = Segment(last.start, max(last.end, end), last.targets | {end})
        else:
            segments.append(Segment(start, end, frozenset({end})))
    return DecodePlan(kept, segments, exhausted, index.frame_count)
