"""Open a video (any container PyAV reads) or a folder of frames, and iterate its frames.

Frames are produced lazily, one at a time, so memory never depends on the video's length;
they stay in decoder format until the sampler keeps them (see ``features.video.sampling``).
Every failure is raised as :class:`VideoDecodeError` with a one-line reason. Folders of
frames are read by :mod:`.framefolder`; what a video is, by :mod:`.videoinfo`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import av
import av.error
import numpy as np

from vidcache.features.errors import VideoDecodeError
from vidcache.features.settings import SamplingSpec
from vidcache.features.video.decodeplan import DecodePlan, PacketIndex, index_problem, plan
from vidcache.features.video.discover import VideoSource
from vidcache.features.video.framefolder import FrameFolderReader, LazyImage
from vidcache.features.video.planrun import PlanFailed as _PlanFailed
from vidcache.features.video.planrun import run_plan, run_plan_split
from vidcache.features.video.sampling import sample
from vidcache.features.video.videoinfo import DecodeStats, VideoInfo, failure_reason

__all__ = [
    "DECODE_ENV",
    "DECODE_MODES",
    "DecodeStats",
    "FrameFolderReader",
    "LazyImage",
    "VideoInfo",
    "VideoReader",
    "decode_mode",
    "open_source",
]

#: ``VIDCACHE_DECODE=sequential`` decodes every frame of every file, as vidcache did before
#: decode plans (an escape hatch and the benchmarks' baseline); ``auto`` (the default) plans.
DECODE_ENV = "VIDCACHE_DECODE"
DECODE_MODES = ("auto", "sequential")

# Undecodable metadata (binary tags) must not make a video unreadable: PyAV before 19 is
# asked to ignore it; PyAV 19 dropped the option and decodes such tags with
# "surrogateescape" itself (av/utils.py), so it never fails on them.
OPEN_OPTIONS = {"metadata_errors": "ignore"} if int(av.__version__.split(".")[0]) < 19 else {}

# Frames whose timestamps end before this share of the declared length mean the file was
# cut short. Time, not the frame count: real AVIs often declare twice their real frame rate
# (or hold empty placeholder packets for dropped frames), so their declared count is far
# above the frames they hold, although those frames span the whole declared duration.
_TRUNCATED_BELOW = 0.9


# Containers that store no presentation timestamps, only the decode order: FFmpeg guesses
# them, and for a stream with B-frames its guesses can disagree with the order the decoder
# shows the frames in (Xvid/DivX "packed" B-frames, as all of UCF101 is stored; H.264 in
# AVI). Only a sequential decode gives those files' frames as vidcache always gave them.
_GUESSED_PTS_FORMATS = frozenset({"avi"})


# Frames decoded per kept frame from which a file's sampling is sparse: its decoder, not the
# CNN, is then the slow side (a 720p H.264 frame decodes in 2-5 ms on one core; the CNN on
# a CPU takes 30-150 ms a frame), and the cores the waiting CNN leaves idle decode.
SPARSE_DECODES_PER_KEPT = 8
# Threads a sparse decode gets. Measured on a 2-minute 720p noisy H.264 file
# (bench/threads.py), --num-frames 16 by plan (885 frames decoded): one decoder 12.0 s;
# FFmpeg's slice threads 7.2 s on a file cut into 2 slices a frame and nothing on one of 1
# slice (11.7 s); frame threads nothing (a plan decodes short runs from keyframes); the
# plan's segments dealt between 2 decoders 6.1-6.5 s on either file. So a plan splits its
# segments (planrun.run_plan_split); a sequential decode (count sampling of a file without
# a usable index) takes FFmpeg frame threads, which need no slices (2.0 -> 1.6 s for 900
# frames).
SPARSE_DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))


def _tagged_seconds(stream) -> float | None:
    """A stream's ``DURATION`` tag (``HH:MM:SS.fraction``, Matroska writes it per stream),
    or ``None`` when it has none or it does not parse."""
    text = (stream.metadata or {}).get("DURATION", "")
    parts = text.split(":")
    try:
        hours, minutes, seconds = (float(p) for p in parts) if len(parts) == 3 else (0, 0, -1)
    except ValueError:
        return None
    total = hours * 3600 + minutes * 60 + seconds
    return total if seconds >= 0 and 0 < total < 1e7 else None


def decode_mode() -> str:
    """``auto`` or ``sequential``, from ``$VIDCACHE_DECODE``."""
    mode = os.environ.get(DECODE_ENV, "auto").strip().lower() or "auto"
    if mode not in DECODE_MODES:
        raise VideoDecodeError(f"{DECODE_ENV}={mode!r}: expected one of {DECODE_MODES}")
    return mode


class VideoReader:
    """Frames of one video file; use as a context manager.

    Args:
        path: the video file, or anything FFmpeg opens (a stream URL, a camera device).
        input_format: FFmpeg input format, for devices (``"v4l2"``, ``"avfoundation"``...).
            Defaults to None (guessed).

    Raises:
        VideoDecodeError: the file is empty, unreadable, not a video, or has no video
            stream.
    """

    def __init__(self, path: Path | str, input_format: str | None = None) -> None:
        self.path = Path(path)
        self._location, self._input_format = str(path), input_format
        self.stats = DecodeStats()
        self._split = False  # a sparse plan: its segments split between decoders
        self._open()
        self.info = self._read_info()

    def _open(self) -> None:
        location, input_format = self._location, self._input_format
        try:
            if self.path.is_file() and self.path.stat().st_size == 0:
                raise VideoDecodeError("file is empty")
            if "://" not in location and input_format is None and not self.path.exists():
                raise FileNotFoundError(2, "No such file or directory", location)
            self._container = av.open(location, format=input_format, **OPEN_OPTIONS)
        except VideoDecodeError:
            raise
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoDecodeError(failure_reason(exc)) from None
        if not self._container.streams.video:
            kinds = sorted({s.type for s in self._container.streams}) or ["no streams"]
            self._container.close()
            raise VideoDecodeError(f"no video stream (has: {', '.join(kinds)})")
        self._stream = self._container.streams.video[0]
        # One FFmpeg thread per decoder: parallelism comes from decoding several videos at
        # once (pipeline decode workers); FFmpeg's automatic threads would only compete with
        # the CNN for the same cores (measured: 2.3 vs 2.8 ms of CPU per sampled frame).
        self._stream.codec_context.thread_count = 1

    def _read_info(self) -> VideoInfo:
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif _tagged_seconds(stream) is not None:  # Matroska: each stream's DURATION tag
            duration = _tagged_seconds(stream)
        elif self._container.duration is not None and len(self._container.streams) == 1:
            # The container's length is the longest stream's: the video's only when it
            # is alone (a soundtrack may run on past the pictures).
            duration = self._container.duration / av.time_base
        ctx = stream.codec_context
        return VideoInfo(
            fps=fps,
            duration=duration,
            frame_count=stream.frames or None,
            width=ctx.width,
            height=ctx.height,
            codec=ctx.name,
        )

    def declared_seconds(self) -> float | None:
        """The length the container declares: its duration, else declared frames / rate."""
        if self.info.duration:
            return self.info.duration
        if self.info.frame_count:
            return self.info.frame_count / self.info.fps
        return None

    def _check_length(self, last: float, count: int) -> None:
        """Raise when frames (the last one starting at ``last`` seconds) end well short of
        the declared length."""
        declared = self.declared_seconds()
        step = 1.0 / self.info.fps
        if declared and last + 2 * step < _TRUNCATED_BELOW * declared:
            raise VideoDecodeError(
                f"truncated: frames end at {last:.2f} s of a declared {declared:.2f} s "
                f"({count} frames)"
            )

    def count_frames(self) -> int:
        """Count the frames by demuxing only (fast, nothing decoded): packets that hold
        data (empty placeholder packets of dropped frames are not frames).

        Raises:
            VideoDecodeError: no frames, or frame timestamps ending well short of the
                declared length.
        """
        try:
            with av.open(str(self.path), **OPEN_OPTIONS) as container:
                stream = container.streams.video[0]
                origin = stream.start_time or 0
                count, last = 0, 0.0
                for packet in container.demux(stream):
                    if packet.size and packet.pts is not None:
                        count += 1
                        last = max(last, float((packet.pts - origin) * stream.time_base))
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoDecodeError(failure_reason(exc)) from None
        if count == 0:
            raise VideoDecodeError("no frames in the video stream")
        self._check_length(last, count)
        return count

    def frames(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """Yield ``(seconds_from_start, frame)`` in presentation order.

        Raises:
            VideoDecodeError: decoding fails, yields no frame, or ends well short of the
                declared length (a truncated file). The check runs only when the
                iteration is exhausted.
        """
        stream = self._stream
        start = stream.start_time
        origin = float(start * stream.time_base) if start is not None and stream.time_base else 0.0
        step = 1.0 / self.info.fps
        count = 0
        last = 0.0
        try:
            for frame in self._container.decode(stream):
                last = frame.time - origin if frame.time is not None else count * step
                count += 1
                self.stats.decoded += 1
                yield last, frame
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoDecodeError(
                f"decoding failed after {count} frames ({failure_reason(exc)})"
            ) from None
        if count == 0:
            raise VideoDecodeError("no frames could be decoded")
        self._check_length(last, count)

    def packet_index(self) -> PacketIndex:
        """The stream's frame packets (timestamps, keyframe flags) by demuxing only.

        Raises:
            VideoDecodeError: the file cannot be demuxed.
        """
        stream = self._stream
        pts: list[int | None] = []
        keys: list[bool] = []
        reordered = False
        try:
            with av.open(self._location, **OPEN_OPTIONS) as container:
                demuxed = container.streams.video[0]
                for packet in container.demux(demuxed):
                    if packet.size:
                        pts.append(packet.pts)
                        keys.append(bool(packet.is_keyframe))
                        reordered = reordered or packet.pts != packet.dts
                reordered = reordered or bool(demuxed.codec_context.has_b_frames)
                guessed = container.format.name in _GUESSED_PTS_FORMATS and reordered
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoDecodeError(failure_reason(exc)) from None
        base = stream.time_base
        start = stream.start_time
        origin = float(start * base) if start is not None and base else 0.0
        problem = index_problem(pts, keys) if base else "the stream has no time base"
        if problem is None and guessed:
            problem = "an AVI with B-frames (its timestamps are guessed, not stored)"
        if problem is not None:
            pts = [0] * len(pts)  # never planned; kept for the frame count only
        return PacketIndex(
            np.asarray(pts, dtype=np.int64),
            np.asarray(keys, dtype=bool),
            (base.numerator, base.denominator) if base else (1, 1),
            origin,
            problem,
        )

    def sampled(self, sampling: SamplingSpec) -> Iterator[tuple[int, float, av.VideoFrame]]:
        """``(source_index, seconds, frame)`` of each frame ``sampling`` keeps: the same
        frames, bit for bit, as sampling a sequential decode, decoding only the packets
        they need (see :mod:`features.video.decodeplan`). Files whose index cannot be trusted,
        or that do not decode as it says, are decoded sequentially (``stats.fallback``
        says why); ``$VIDCACHE_DECODE=sequential`` does that for every file.

        Raises:
            VideoDecodeError: as :meth:`frames` and :meth:`count_frames` do.
        """
        if decode_mode() == "sequential" or not self.path.is_file():
            return self._sequential(sampling)
        index = self.packet_index()
        self.stats.frames = index.frame_count
        decode_plan = plan(index, sampling)
        if decode_plan is None:
            self.stats.fallback = index.problem or "a kept frame has no keyframe before it"
            return self._sequential(sampling)
        self._threads_for(decode_plan.packets, len(decode_plan.kept), "SPLIT")
        return self._planned(decode_plan, index, sampling)

    def _threads_for(self, decoded: int, kept: int, kind: str) -> None:
        """Give a sparse decode (at least :data:`SPARSE_DECODES_PER_KEPT` frames decoded
        per kept one) :data:`SPARSE_DECODE_THREADS` threads: ``"SPLIT"``, the plan's
        segments dealt to that many decoders (:func:`.planrun.run_plan_split`), or FFmpeg
        threads of a kind (``"FRAME"``, ``"SLICE"``) in the one decoder, set before it is
        opened. One thread otherwise: a dense decode keeps up with the CNN on one core, and
        more threads would take the CNN's cores. The frames are the same (tested)."""
        if kept and decoded >= SPARSE_DECODES_PER_KEPT * kept and SPARSE_DECODE_THREADS > 1:
            context = self._stream.codec_context
            if kind == "SPLIT":
                self._split = True
            elif not context.is_open:
                context.thread_type = kind
                context.thread_count = SPARSE_DECODE_THREADS
            else:
                return
            self.stats.threads = SPARSE_DECODE_THREADS

    def _sequential(self, sampling: SamplingSpec) -> Iterator[tuple[int, float, av.VideoFrame]]:
        total = self.count_frames() if sampling.num_frames else None
        if total is not None:  # every frame is decoded, num_frames of them kept
            self._threads_for(total, sampling.num_frames, "FRAME")
        return sample(self.frames(), sampling, total)

    def _planned(
        self, decode_plan: DecodePlan, index: PacketIndex, sampling: SamplingSpec
    ) -> Iterator[tuple[int, float, av.VideoFrame]]:
        if sampling.num_frames is not None:  # as count_frames checks before decoding
            self._check_length(index.last_time(), index.frame_count)
        self.stats.planned = True
        given = 0
        try:
            for item in self._run_plan(decode_plan, index):
                given += 1
                yield item
        except _PlanFailed as exc:
            # Start again sequentially; what was given already was checked frame by
            # frame against the index, so the sequential path gives it again first.
            self.stats.planned, self.stats.fallback = False, str(exc)
            self._container.close()
            self._open()
            rest = self._sequential(sampling)
            for _ in range(given):
                next(rest, None)
            yield from rest
            return
        if decode_plan.exhausted:
            self._check_length(index.last_time(), index.frame_count)

    def _run_plan(
        self, decode_plan: DecodePlan, index: PacketIndex
    ) -> Iterator[tuple[int, float, av.VideoFrame]]:
        """Decode the plan's segments; yield kept frames in order (:mod:`.planrun`): a
        sparse plan of several segments is split between :data:`SPARSE_DECODE_THREADS`
        decoders, each with a container of its own. Raises ``PlanFailed``."""
        workers = min(SPARSE_DECODE_THREADS, len(decode_plan.segments))
        if self._split and workers > 1:
            return run_plan_split(self._reopen, decode_plan, index, self.stats, workers)
        return run_plan(self._container, self._stream, decode_plan, index, self.stats)

    def decode_threads(self, count: int) -> None:
        """Decode with ``count`` FFmpeg frame threads, for a pass with no CNN beside it (an
        audio backbone finding the kept frames); before the first frame only, else nothing.
        The frames are the same (``test_decoder_threads_give_the_same_frames``)."""
        context = self._stream.codec_context
        if count > 1 and not context.is_open:
            context.thread_type = "FRAME"
            context.thread_count = count
            self.stats.threads = count

    def _reopen(self):
        """A new container of the same file and its video stream (a decoder of its own)."""
        container = av.open(self._location, format=self._input_format, **OPEN_OPTIONS)
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        return container, stream

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_source(source: VideoSource, folder_fps: float = 25.0) -> VideoReader | FrameFolderReader:
    """Open a discovered video (file or frame folder) for reading."""
    if source.kind == "frames":
        return FrameFolderReader(source.path, folder_fps)
    return VideoReader(source.path)
