"""Running a decode plan (:mod:`.decodeplan`): the kept frames of a file, decoded from the
keyframe before each, with one decoder, or split between several.

A plan's segments are independent (each starts at a keyframe, and the decoder is drained
and flushed at its end), so a sparse plan of many segments splits between decoders that
each open the file for themselves and take every other segment; the kept frames come out
in the plan's order either way, bit for bit the same (tested), and a decoder that does not
decode as the index says raises :class:`PlanFailed` as one alone does.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import av
import av.error

from vidcache.features.video.decodeplan import DecodePlan, PacketIndex
from vidcache.features.video.videoinfo import DecodeStats, failure_reason

__all__ = ["SKIPS_PER_PACKET", "PlanFailed", "run_plan", "run_plan_split"]

# Decoders that read ``skip_frame`` for each packet, so non-reference frames between kept
# ones can be skipped. Others (libdav1d reads it once, when opened) decode every packet of
# a segment; the result is the same either way, only the work differs.
SKIPS_PER_PACKET = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video", "vp8", "vp9"})


class PlanFailed(Exception):
    """The file did not decode as its packet index said: decode it sequentially."""


def run_plan(
    container, stream, decode_plan: DecodePlan, index: PacketIndex, stats: DecodeStats
) -> Iterator[tuple[int, float, av.VideoFrame]]:
    """Decode the plan's segments with ``stream``'s decoder; yield kept frames in order.

    Raises:
        PlanFailed: a decoded frame is not where the index put it.
    """
    context = stream.codec_context
    where = {int(p): position for position, p in enumerate(index.pts)}
    kept = decode_plan.kept
    wanted = {t.position for t in kept}
    last_use = {t.position: n for n, t in enumerate(kept)}
    ready: dict[int, av.VideoFrame] = {}
    drain = av.Packet()
    drain.time_base = stream.time_base
    segments = iter(decode_plan.segments)
    segment = next(segments)
    position, given, shown = -1, 0, None
    skips = context.name in SKIPS_PER_PACKET
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            position += 1
            if position < segment.start:
                continue
            # Frames no other frame refers to are skipped unless kept.
            if skips:
                context.skip_frame = "DEFAULT" if position in segment.targets else "NONREF"
            frames = context.decode(packet)
            if position == segment.start:
                shown = None
            if position == segment.end:
                if skips:
                    context.skip_frame = "DEFAULT"
                frames += context.decode(drain)
                context.flush_buffers()
            for frame in frames:
                stats.decoded += 1
                at = where.get(frame.pts) if frame.pts is not None else None
                if at is None:
                    raise PlanFailed("a decoded frame has a timestamp the index lacks")
                # The plan takes the index's timestamp order for the order frames are
                # shown in; a decoder that shows them in another order disproves it.
                if shown is not None and frame.pts <= shown:
                    raise PlanFailed("the decoder shows frames out of timestamp order")
                shown = frame.pts
                if at in wanted:
                    ready[at] = frame
            while given < len(kept) and kept[given].position in ready:
                target = kept[given]
                frame = ready[target.position]
                if frame.time_base is None:
                    frame.time_base = stream.time_base
                if frame.time - index.origin != target.time:
                    raise PlanFailed("a decoded frame's time differs from the index")
                if last_use[target.position] == given:
                    del ready[target.position]
                given += 1
                yield target.index, target.time, frame
            if position == segment.end:
                if any(kept[n].position in segment.targets for n in range(given, len(kept))):
                    raise PlanFailed("a kept frame did not come out of its segment")
                segment = next(segments, None)
                if segment is None:
                    break
    except (av.error.FFmpegError, OSError) as exc:
        raise PlanFailed(f"decoding by plan failed ({failure_reason(exc)})") from None
    finally:
        if skips:
            context.skip_frame = "DEFAULT"
    if given < len(kept):
        raise PlanFailed("the file ended before every kept frame was decoded")


_DONE = object()


def run_plan_split(
    open_stream: Callable[[], tuple],
    decode_plan: DecodePlan,
    index: PacketIndex,
    stats: DecodeStats,
    workers: int,
) -> Iterator[tuple[int, float, av.VideoFrame]]:
    """:func:`run_plan` with the segments dealt in turn to ``workers`` decoders, each in a
    thread of its own with a container from ``open_stream()``; the kept frames come out in
    the plan's order (each decoder runs at most a few frames ahead).

    Raises:
        PlanFailed: as :func:`run_plan`, from any of the decoders.
    """
    parts = [decode_plan.segments[k::workers] for k in range(workers)]
    owner = {
        position: k for k, segments in enumerate(parts) for s in segments for position in s.targets
    }
    queues = [queue.Queue(maxsize=4) for _ in parts]
    stop = threading.Event()
    counts = [DecodeStats() for _ in parts]

    def decode(k: int) -> None:
        segments = parts[k]
        targets = set().union(*(s.targets for s in segments))
        kept = [t for t in decode_plan.kept if t.position in targets]
        plan = DecodePlan(kept, segments, False, decode_plan.frame_count)
        try:
            container, stream = open_stream()
            with container:
                for item in run_plan(container, stream, plan, index, counts[k]):
                    while not stop.is_set():
                        try:
                            queues[k].put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            result = _DONE
        except (av.error.FFmpegError, OSError) as exc:
            result = PlanFailed(f"decoding by plan failed ({failure_reason(exc)})")
        except BaseException as exc:  # PlanFailed, or a bug: raised in the caller's thread
            result = exc
        while not stop.is_set():
            try:
                queues[k].put(result, timeout=0.1)
                return
            except queue.Full:
                continue

    threads = [
        threading.Thread(target=decode, args=(k,), name=f"vidcache-plan-{k}", daemon=True)
        for k in range(workers)
    ]
    for thread in threads:
        thread.start()

    def take(k: int):
        while True:
            try:
                return queues[k].get(timeout=0.5)
            except queue.Empty:
                if not threads[k].is_alive() and queues[k].empty():
                    return PlanFailed("a decoder stopped before its frames were out")

    try:
        for target in decode_plan.kept:
            item = take(owner[target.position])
            if item is _DONE:
                raise PlanFailed("a kept frame did not come out of its segment")
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        stats.decoded += sum(count.decoded for count in counts)
