"""Video files with the quirks real files have and clean generated ones lack: AVIs with
B-frames as Xvid/DivX pack them, H.264 in AVI with synthesised timestamps, absurd gaps,
negative and repeated timestamps, a claimed duration of years, streams that do not start
at 0, odd time bases. Each writer returns the path; nothing here is committed media.

Packed B-frames (how UCF101 ships its clips): DivX/Xvid in AVI store a P-VOP and the
B-VOP shown before it in one chunk, then an empty placeholder where the P frame's slot is,
and say so with a ``DivX...p`` user-data string in the stream header. FFmpeg's encoder
never packs, so :func:`packed_bframes_avi` encodes with B-frames and packs the packets
itself, adding the user data. The placeholder is left out (through PyAV the AVI muxer
writes no empty chunk), a gap in the timestamps instead. What matters is reproduced: the
decoder hands out frames whose timestamps run out of order (1, 5, 3, 9, 7...), as the
issue found on real files.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def moving(count: int, height: int = 48, width: int = 64, seed: int = 3) -> list[np.ndarray]:
    """Frames that change a little each step (so encoders make P and B frames)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    frames = []
    for i in range(count):
        frame = np.roll(base, 2 * i, axis=1)
        frame[:, : (3 * i) % width] //= 2
        frames.append(frame)
    return frames


def _encode(codec: str, frames, rate, options, pix_fmt="yuv420p", time_base=None, pts=None):
    """Packets of ``frames`` encoded alone (no container), in decode order, and the codec
    context (for a template)."""
    context = av.CodecContext.create(codec, "w")
    context.width, context.height = frames[0].shape[1], frames[0].shape[0]
    context.pix_fmt = pix_fmt
    context.time_base = time_base or Fraction(1, rate)
    context.framerate = Fraction(rate)
    context.options = dict(options)
    context.bit_rate = 8_000_000  # generous: decoded frames stay close to the input
    packets = []
    for i, array in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts = i if pts is None else pts[i]
        frame.time_base = context.time_base
        packets.extend(context.encode(frame))
    packets.extend(context.encode(None))
    return packets, context


def _is_b_vop(data: bytes) -> bool:
    """Whether an MPEG-4 Part 2 packet's first VOP is a B-VOP (vop_coding_type 2)."""
    at = data.find(b"\x00\x00\x01\xb6")
    return at >= 0 and (data[at + 4] >> 6) == 2


def packed_bframes_avi(path: Path, count: int = 41, rate: int = 25, gop: int = 12) -> Path:
    """MPEG-4 Part 2 with B-frames in AVI, packed as DivX/Xvid write it (module doc)."""
    frames = moving(count)
    packets, _ = _encode("mpeg4", frames, rate, {"g": str(gop), "bf": "1", "flags": "+bitexact"})
    data = [(bytes(p), bool(p.is_keyframe)) for p in packets]
    # The user-data string that tells decoders the bitstream is packed, in the first packet
    # (its VOL header) right after the VOL, as DivX 5 writes it.
    first, key = data[0]
    vop = first.find(b"\x00\x00\x01\xb6")
    first = first[:vop] + b"\x00\x00\x01\xb2DivX503b1393p" + first[vop:]
    data[0] = (first, key)
    chunks: list[tuple[bytes, bool]] = []
    i = 0
    while i < len(data):
        payload, key = data[i]
        if i + 1 < len(data) and _is_b_vop(data[i + 1][0]):
            # P (or I) then the B shown before it: one chunk, then the placeholder.
            chunks.append((payload + data[i + 1][0], key))
            chunks.append((b"", False))
            i += 2
        else:
            chunks.append((payload, key))
            i += 1
    height, width = frames[0].shape[:2]
    return _write_avi_chunks(path, chunks, width, height, rate)


def _write_avi_chunks(path, chunks, width, height, rate) -> Path:
    """AVI with one chunk per entry, an empty entry an empty chunk (FFmpeg's AVI muxer
    writes an empty chunk for each skipped timestamp)."""
    path = Path(path)
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_tag = "XVID"
        stream.time_base = Fraction(1, rate)
        for n, (payload, key) in enumerate(chunks):
            if not payload:
                continue
            packet = av.Packet(payload)
            packet.stream = stream
            packet.time_base = Fraction(1, rate)
            packet.pts = packet.dts = n
            packet.is_keyframe = key
            container.mux_one(packet)
    return path


def restamped(
    path: Path,
    stamps_ms: list[int],
    count: int | None = None,
    fmt: str = "matroska",
    options: dict[str, str] | None = None,
) -> Path:
    """H.264 without B-frames whose packets carry ``stamps_ms`` (milliseconds, as given:
    huge gaps, negative or repeated values) instead of the encoder's own timestamps."""
    count = count or len(stamps_ms)
    packets, context = _encode("libx264", moving(count), 25, {"bf": "0", "g": "4"})
    path = Path(path)
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = context.width, context.height, "yuv420p"
        stream.codec_context.extradata = context.extradata
        stream.time_base = Fraction(1, 1000)
        for packet, stamp in zip(packets, stamps_ms):
            packet.stream = stream
            packet.time_base = Fraction(1, 1000)
            packet.pts = packet.dts = stamp
            container.mux_one(packet)
    return path


def h264_avi(path: Path, count: int = 41, rate: int = 25) -> Path:
    """H.264 with B-frames in AVI, as cameras write it: the container keeps no presentation
    timestamps, FFmpeg guesses them from the decode order."""
    from vidcache.features.synthetic import write_video

    options = {"g": "12", "bf": "3", "sc_threshold": "0"}
    return write_video(path, moving(count), rate, "libx264", "yuv420p", options)


def offset_start(path: Path, count: int = 41, start_ms: int = 1500, time_base: int = 90000) -> Path:
    """H.264 with B-frames in MP4 (an edit list for the B-frame delay) whose first frame is
    at ``start_ms``, in a 1/90000 time base at 30000/1001 fps (NTSC)."""
    packets, context = _encode(
        "libx264",
        moving(count),
        Fraction(30000, 1001),
        {"g": "12", "bf": "3", "sc_threshold": "0"},
        time_base=Fraction(1, time_base),
        pts=[
            start_ms * time_base // 1000 + round(i * time_base * 1001 / 30000) for i in range(count)
        ],
    )
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = context.width, context.height, "yuv420p"
        stream.codec_context.extradata = context.extradata
        stream.time_base = Fraction(1, time_base)
        for packet in packets:
            packet.stream = stream
            packet.time_base = Fraction(1, time_base)
            container.mux_one(packet)
    return path


#: Every quirk file by name, with its writer (``writer(path) -> path``).
QUIRK_FILES = {
    # Xvid/DivX packed B-frames in AVI, as UCF101 ships: FFmpeg's guessed timestamps run
    # out of order (pts 1, 5, 3, 9, 7...), and the plan used to keep a neighbour frame.
    "packed-bframes.avi": packed_bframes_avi,
    # H.264 with B-frames in AVI (a camera's): pts = dts + 1, guessed, never reordered.
    "h264-bframes.avi": h264_avi,
    # MP4 with an edit list, a first frame at 1.5 s, a 1/90000 time base at 29.97 fps.
    "offset-ntsc.mp4": offset_start,
    # Two frames 10^9 s apart (a 1.8 KB "video" of 31 years): bounded work.
    "gap.mkv": lambda p: restamped(p, [0, 10**12]),
    # Timestamps missing on the first frames (Matroska cannot store negative ones).
    "negative.mkv": lambda p: restamped(
        p, [-2000, -1960, -1920, 0, 40, 80], options={"avoid_negative_ts": "disabled"}
    ),
    "repeated.mkv": lambda p: restamped(p, [0, 40, 40, 80, 80, 120]),
    # A duration of three years claimed by the last frame's timestamp.
    "years.mkv": lambda p: restamped(p, [0, 40, 80, 120, 31_536_000_000 * 3]),
}
