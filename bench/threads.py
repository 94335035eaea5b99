"""Benchmark of decoding that follows the work (issue 32, item 7): prints Markdown tables.

1. One long file sampled sparsely: ``extract-features FILE --num-frames 16`` (InceptionV3,
   299 px, float32, random weights) on a 2-minute 1280x720 H.264 file with noise (GOP 250,
   B-frames, 2 slices a frame) against the same command on a 1-second clip of the same
   kind: wall seconds of the whole command and their ratio. With ``--baseline TREE`` (a
   checkout of an older vidcache) the same commands run from that tree too, alternating.
2. The decoder alone: 900 frames decoded in sequence (1 thread, 2 FFmpeg frame threads,
   2 slice threads), and the 16 frames of ``--num-frames 16`` by decode plan (1 thread, 2
   slice threads, the plan's segments split between 2 decoders), on that file (2 slices a
   frame) and on the same content encoded with 1 slice a frame.

Usage::

    python bench/threads.py                         # about 6 minutes on 2 cores
    python bench/threads.py --baseline /tmp/old     # and an older checkout, alternating
    python bench/threads.py --quick                 # short, small videos: a smoke test

Videos are made once in ``--videos`` (default ``/tmp/vidcache-bench-threads``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from _table import print_table

from vidcache.features.settings import SamplingSpec
from vidcache.features.video import decode
from vidcache.features.video.decode import VideoReader

SUMMARY = re.compile(r"model built in ([\d.]+) s")


def write(path: Path, seconds: float, slices: int, scale: int, seed: int, noise: int) -> Path:
    """Panning texture with +-``noise`` grain, H.264 (x264 veryfast, GOP 250, 3 B-frames)."""
    if path.exists():
        return path
    width, height, fps = 1280 // scale, 720 // scale, 24
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 16 + 2, 2 * width // 16 + 2, 3), dtype=np.uint8)
    base = np.kron(small, np.ones((16, 16, 1), np.uint8))[:height, : 2 * width].astype(np.int16)
    grain = rng.integers(-noise, noise + 1, (8, height, width, 3), dtype=np.int16)
    partial = path.with_name("partial-" + path.name)
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # x264's own threads would cut frames into slices: the slice count is set alone
        stream.options = {"preset": "veryfast", "g": "250", "bf": "3",
                          "x264-params": f"slices={slices}:sliced-threads=0"}  # fmt: skip
        stream.codec_context.thread_type = "FRAME"
        for i in range(int(seconds * fps)):
            left = (3 * i) % width
            frame = np.clip(base[:, left : left + width] + grain[i % 8], 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def command(video: Path, out: Path, tree: Path | None) -> tuple[float, float]:
    """Wall seconds of the whole extract command, and its model-build seconds."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    if out.exists():
        out.unlink()
    argv = [sys.executable, "-m", "vidcache", "extract", str(video), "-o", str(out),
            "--weights", "random", "--num-frames", "16", "-q"]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/")
    wall = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
    return wall, float(SUMMARY.search(result.stdout + result.stderr).group(1))


def decode_seconds(video: Path, threads: int, kind: str, planned: bool) -> tuple[float, int]:
    """Seconds to decode 900 frames in sequence, or the 16 frames of --num-frames 16 by
    plan, with ``threads`` threads of ``kind`` (FFmpeg's ``FRAME``/``SLICE``, or the plan
    ``SPLIT`` between decoders)."""
    started = time.perf_counter()
    with VideoReader(video) as reader:
        if planned:  # the plan's own rule, with this many threads of this kind
            decode.SPARSE_DECODE_THREADS = threads
            rule = VideoReader._threads_for
            reader._threads_for = lambda decoded, kept, _: rule(reader, decoded, kept, kind)
            for _ in reader.sampled(SamplingSpec(fps=None, num_frames=16)):
                pass
            decoded = reader.stats.decoded
        else:
            context = reader._stream.codec_context
            context.thread_type, context.thread_count = kind, threads
            decoded = 0
            for _ in reader.frames():
                decoded += 1
                if decoded == 900:
                    break
    return time.perf_counter() - started, decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small, short videos")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="an older vidcache tree to compare")
    parser.add_argument("--videos", type=Path, default=Path("/tmp/vidcache-bench-threads"))
    parser.add_argument("--noise", type=int, default=32, help="grain amplitude (0-127)")
    parser.add_argument("--commands-only", action="store_true", help="table 1 only")
    args = parser.parse_args()
    scale, seconds = (4, 12) if args.quick else (1, 120)
    folder = args.videos
    folder.mkdir(parents=True, exist_ok=True)
    grain = args.noise
    long2 = write(
        folder / f"noise{grain}-{seconds}s-2slices-{scale}.mp4", seconds, 2, scale, 0, grain
    )
    long1 = None
    if not args.commands_only:
        long1 = write(
            folder / f"noise{grain}-{seconds}s-1slice-{scale}.mp4", seconds, 1, scale, 0, grain
        )
    short = write(folder / f"noise{grain}-1s-2slices-{scale}.mp4", 1, 2, scale, 1, grain)
    rounds = 1 if args.quick else args.rounds
    trees = [("this tree", None)] + ([("baseline", args.baseline)] if args.baseline else [])
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "f.h5"
        for _ in range(rounds):
            for tree_name, tree in trees:
                for name, video in (("2-minute", long2), ("1-second", short)):
                    times.setdefault((tree_name, name), []).append(command(video, out, tree))
    rows = []
    for tree_name, _ in trees:
        long_runs, short_runs = times[(tree_name, "2-minute")], times[(tree_name, "1-second")]
        best_long, best_short = min(w for w, _ in long_runs), min(w for w, _ in short_runs)
        rows.append((
            f"{tree_name}: --num-frames 16, 2-minute 720p / 1-second clip, best of {rounds} "
            "(s; model build of each)",
            f"{best_long:.2f} / {best_short:.2f} = {best_long / best_short:.2f}x "
            f"(build {min(b for _, b in long_runs):.2f} / {min(b for _, b in short_runs):.2f})",
        ))  # fmt: skip
    print_table(f"One long file sampled sparsely (grain +-{grain}), {os.cpu_count()} cores", rows)
    if args.commands_only:
        return
    rows = []
    for label, video in (("2 slices a frame", long2), ("1 slice a frame", long1)):
        for planned in (False, True):
            what = "--num-frames 16 by plan" if planned else "900 frames in sequence"
            cells = []
            kinds = ("SLICE", "SPLIT") if planned else ("FRAME", "SLICE")
            for threads, kind in ((1, "SLICE"), *((2, k) for k in kinds)):
                best = min(decode_seconds(video, threads, kind, planned) for _ in range(2))
                kinds_named = {"FRAME": "frame threads", "SLICE": "slice threads",
                               "SPLIT": "decoders"}  # fmt: skip
                name = "thread" if threads == 1 else kinds_named[kind]
                cells.append(f"{threads} {name}: {best[0]:.2f} s")
            rows.append((f"{label}, {what}", "; ".join(cells)))
    print_table("The decoder alone", rows)
    if args.quick:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
