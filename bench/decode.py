"""Benchmark of decoding by plan (issue 18): prints Markdown tables.

Long test videos are made first (kept in ``--videos``, reused by later runs): 2-minute
1280x720 and 1920x1080 H.264 with B-frames and a 250-frame GOP (x264's default), the same
720p with a 1-second GOP, 720p VP9, and a 1-second clip of the 720p H.264 kind. Then, in
one run, alternating the old path (``VIDCACHE_DECODE=sequential``: every frame decoded) and
the new one (decode plans):

1. decode side only (no CNN): frames decoded / frames in the file and seconds, for
   ``--num-frames 16``, ``--fps 1`` and ``--sampling keyframes``; the fitted frames of both
   paths compared pixel by pixel;
2. whole commands (``extract-features FILE --weights random``, 299 px, float32, batch 32):
   wall seconds, frames/s against the bare model's at the same batch, and the max |difference|
   of the features the two paths cache;
3. the feed rate: a null backbone (no CNN, benchmark only) behind the real pipeline, with
   1 and 2 decode workers, dense (5 fps of 25 fps) and sparse (16 frames) sampling, at
   320x240, 720p and 1080p: sampled frames/s the decode side delivers.

Usage::

    python bench/decode.py            # about 30 minutes on 2 cores (videos made once)
    python bench/decode.py --quick    # short, small videos: a smoke test of the script
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from _table import print_table

from vidcache.features.settings import SamplingSpec
from vidcache.features.video.decode import DECODE_ENV, VideoReader
from vidcache.features.video.discover import discover
from vidcache.features.video.transform import fit_frame
from vidcache.pipeline.extraction.local import ExtractConfig, extract_features

SIZE = 299
SAMPLINGS = {
    "--num-frames 16": (SamplingSpec(fps=None, num_frames=16), ["--num-frames", "16"]),
    "--fps 1": (SamplingSpec(fps=1.0), ["--fps", "1"]),
    "--sampling keyframes": (SamplingSpec(fps=None, keyframes=True),
                             ["--sampling", "keyframes", "--fps", "0"]),
}  # fmt: skip


def texture(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth random texture (encoders find real motion in it, unlike noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((16, 16, 1), np.uint8))
    return big[:height, :width].copy()


def moving_frames(width: int, height: int, count: int, seed: int):
    """A panning texture with a square crossing it: P and B frames, no scene cuts."""
    base = texture(width * 2, height, seed)
    side = height // 4
    for i in range(count):
        left = (3 * i) % width
        frame = np.ascontiguousarray(base[:, left : left + width])
        x = (7 * i) % (width - side)
        y = (height - side) // 2 + int(side * np.sin(i / 15))
        frame[max(0, y) : y + side, x : x + side] = (240, 40, 40)
        yield frame


def write(path: Path, width: int, height: int, seconds: float, fps: int, codec: str,
          options: dict[str, str]) -> Path:  # fmt: skip
    if path.exists():
        return path
    partial = path.with_name("partial-" + path.name)
    with av.open(str(partial), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = options
        stream.codec_context.thread_count = 2
        for array in moving_frames(width, height, int(seconds * fps), seed=width):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    partial.rename(path)
    return path


X264 = {"preset": "veryfast", "g": "250", "bf": "3"}


def make_videos(folder: Path, quick: bool) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    seconds = 12 if quick else 120
    scale = 4 if quick else 1
    made = {
        "H.264 720p, B-frames, GOP 250": write(
            folder / f"h264-720p-{seconds}s.mp4", 1280 // scale, 720 // scale, seconds, 24,
            "libx264", X264),
        "H.264 720p, 1 s clip": write(
            folder / "h264-720p-1s.mp4", 1280 // scale, 720 // scale, 1, 24, "libx264", X264),
        "H.264 1080p, B-frames, GOP 250": write(
            folder / f"h264-1080p-{seconds}s.mp4", 1920 // scale, 1080 // scale, seconds, 24,
            "libx264", X264),
        "H.264 720p, B-frames, GOP 24": write(
            folder / f"h264-720p-gop24-{seconds}s.mp4", 1280 // scale, 720 // scale, seconds, 24,
            "libx264", {**X264, "g": "24"}),
        "VP9 720p, GOP 240": write(
            folder / f"vp9-720p-{seconds}s.webm", 1280 // scale, 720 // scale, seconds, 24,
            "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "g": "240"}),
    }  # fmt: skip
    return made


def structure(path: Path) -> str:
    with VideoReader(path) as reader:
        index = reader.packet_index()
        info = reader.info
    keys = int(index.keyframe.sum())
    return f"{info.width}x{info.height}, {index.frame_count} frames, {keys} keyframes"


def decode_side(path: Path, sampling: SamplingSpec, mode: str) -> tuple[float, int, int, list]:
    """Seconds, frames decoded, frames in the file and the fitted frames of one path."""
    os.environ[DECODE_ENV] = mode
    started = time.perf_counter()
    with VideoReader(path) as reader:
        frames = [fit_frame(f, SIZE, "center-crop") for _, _, f in reader.sampled(sampling)]
        stats = reader.stats
    seconds = time.perf_counter() - started
    with VideoReader(path) as reader:
        total = reader.packet_index().frame_count
    os.environ.pop(DECODE_ENV, None)
    return seconds, stats.decoded, total, frames


SUMMARY = re.compile(r"(\d+) frames in ([\d.]+) s \(([\d.]+) frames/s; model built in ([\d.]+) s\)")


def whole_command(path: Path | str, args: list[str], mode: str, out: Path, size: int) -> dict:
    env = {**os.environ, DECODE_ENV: mode, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "vidcache", "extract", str(path), "-o", str(out),
               "--weights", "random", "--image-size", str(size), "--overwrite", "-q",
               *args]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd="/")
    wall = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    found = SUMMARY.search(result.stdout + result.stderr)
    frames, seconds, fps, build = found.groups()
    return {"wall": wall, "frames": int(frames), "fps": float(fps), "build": float(build)}


def features_of(cache: Path) -> np.ndarray:
    from vidcache.features.cache import CacheReader

    with CacheReader(cache) as reader:
        ids = sorted(reader.entries())
        return np.concatenate([reader.features(i) for i in ids]).astype(np.float64)


class NullExtractor:
    """A backbone that costs nothing: what the decode side alone can feed."""

    weights_sha256 = "0" * 64

    def __init__(self, config: ExtractConfig) -> None:
        self.feature_dim = 2048

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.zeros((len(images), 2048), np.float32)


def feed_rate(clips: list[Path], sampling: SamplingSpec, workers: int, out: Path) -> float:
    from vidcache.features.backbone import WeightsSpec

    config = ExtractConfig(weights=WeightsSpec("random", seed=0), image_size=SIZE,
                           sampling=sampling, decode_workers=workers, overwrite=True)  # fmt: skip
    started = time.perf_counter()
    summary = extract_features(discover(clips), out, config, extractor_factory=NullExtractor)
    seconds = time.perf_counter() - started
    assert not summary.failures, summary.failures
    return summary.frames / seconds


def bare_model_fps(size: int) -> float:
    from vidcache.features.backbone import FeatureExtractor, WeightsSpec

    extractor = FeatureExtractor(size, WeightsSpec("random", seed=0), "float32", 32)
    batch = np.random.default_rng(0).integers(0, 256, (32, size, size, 3), dtype=np.uint8)
    extractor(batch)
    started = time.perf_counter()
    for _ in range(3):
        extractor(batch)
    return 3 * 32 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short, small videos")
    default_videos = Path(tempfile.gettempdir()) / "vidcache-bench-decode"
    parser.add_argument("--videos", type=Path, default=default_videos)
    parser.add_argument("--skip", default="", help="parts to skip, comma-separated: "
                        "decode,command,command-files (its per-file rows),feed")  # fmt: skip
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    quick = args.quick
    folder = args.videos / ("quick" if quick else "full")
    started = time.perf_counter()
    videos = make_videos(folder, quick)
    print(f"videos ready in {time.perf_counter() - started:.0f} s in {folder}", file=sys.stderr)
    rows = [(f"{name} ({path.name})", structure(path)) for name, path in videos.items()]
    print_table("Test videos", rows)
    long_ones = {k: v for k, v in videos.items() if "1 s clip" not in k}

    if "decode" not in skip:
        rows = []
        for name, path in long_ones.items():
            for label, (sampling, _) in SAMPLINGS.items():
                old_s, old_n, total, old_frames = decode_side(path, sampling, "sequential")
                new_s, new_n, _, new_frames = decode_side(path, sampling, "auto")
                diff = max(int(np.abs(a.astype(int) - b.astype(int)).max())
                           for a, b in zip(old_frames, new_frames))  # fmt: skip
                same = len(old_frames) == len(new_frames)
                rows.append((
                    f"{name}, {label}: frames decoded / in file (old; new), seconds (old; new)",
                    f"{old_n}/{total}; {new_n}/{total} = {old_n / max(new_n, 1):.1f}x fewer; "
                    f"{old_s:.2f}; {new_s:.2f} = {old_s / new_s:.1f}x faster; "
                    f"{len(new_frames)} kept, max |pixel difference| "
                    f"{diff if same else 'COUNTS DIFFER'}",
                ))  # fmt: skip
        print_table("Decode side only (no CNN), old = every frame decoded, new = decode plan", rows)

    if "command" not in skip:
        size = 75 if quick else SIZE
        bare = bare_model_fps(size)
        rows = [(f"bare model, {size} px, batch 32, float32 (frames/s)", f"{bare:.1f}")]
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            for name, path in long_ones.items() if "command-files" not in skip else ():
                for label, (_, flags) in SAMPLINGS.items():
                    if "GOP 24" in name and "keyframes" in label:
                        continue
                    old = whole_command(path, flags, "sequential", scratch / "old.h5", size)
                    new = whole_command(path, flags, "auto", scratch / "new.h5", size)
                    diff = float(np.abs(features_of(scratch / "old.h5")
                                        - features_of(scratch / "new.h5")).max())  # fmt: skip
                    rows.append((
                        f"{name}, {label}: wall s (old; new), frames/s vs bare (old; new)",
                        f"{old['wall']:.1f}; {new['wall']:.1f} ({old['wall'] / new['wall']:.1f}x); "
                        f"{old['fps'] / bare:.2f}x; {new['fps'] / bare:.2f}x "
                        f"({new['frames']} frames; max |feature difference| {diff:g})",
                    ))  # fmt: skip
            # Keyframes of all the long files in one command: enough frames for the CNN's
            # steady state, where a handful per file is mostly the first batch's warm-up.
            folder_args = [str(p) for p in long_ones.values()]
            flags = SAMPLINGS["--sampling keyframes"][1]
            old = whole_command(folder_args[0], [*folder_args[1:], *flags], "sequential",
                                scratch / "old.h5", size)  # fmt: skip
            new = whole_command(folder_args[0], [*folder_args[1:], *flags], "auto",
                                scratch / "new.h5", size)  # fmt: skip
            diff = float(np.abs(features_of(scratch / "old.h5")
                                - features_of(scratch / "new.h5")).max())  # fmt: skip
            rows.append((
                "--sampling keyframes, the long files in one command: wall s (old; new), "
                "frames/s vs bare (old; new)",
                f"{old['wall']:.1f}; {new['wall']:.1f} ({old['wall'] / new['wall']:.1f}x); "
                f"{old['fps'] / bare:.2f}x; {new['fps'] / bare:.2f}x "
                f"({new['frames']} frames; max |feature difference| {diff:g})",
            ))  # fmt: skip
            clip = videos["H.264 720p, 1 s clip"]
            long_720 = videos["H.264 720p, B-frames, GOP 250"]
            short = whole_command(clip, ["--num-frames", "16"], "auto", scratch / "c.h5", size)
            long = whole_command(long_720, ["--num-frames", "16"], "auto", scratch / "l.h5", size)
            short2 = whole_command(clip, ["--num-frames", "16"], "auto", scratch / "c.h5", size)
            one = min(short["wall"], short2["wall"])
            rows.append((
                "--num-frames 16, whole command: 2-minute 720p file / 1-second clip",
                f"{long['wall']:.1f} s / {one:.1f} s = {long['wall'] / one:.2f}x",
            ))  # fmt: skip
        print_table("Whole commands (extract-features, random weights)", rows)

    if "feed" not in skip:
        seconds = 4 if quick else 20
        scale = 4 if quick else 1
        rows = []
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            for label, (width, height) in (("320x240", (320, 240)), ("720p", (1280, 720)),
                                           ("1080p", (1920, 1080))):  # fmt: skip
                base = write(folder / f"feed-{label}-{seconds}s.mp4", width // scale,
                             height // scale, seconds, 25, "libx264", X264)  # fmt: skip
                clips = []
                for n in range(4):
                    copy = scratch / label / f"c{n}.mp4"
                    copy.parent.mkdir(exist_ok=True)
                    copy.write_bytes(base.read_bytes())
                    clips.append(copy)
                dense = ("dense, 5 fps of 25", SamplingSpec(fps=5.0))
                sparse = ("sparse, 16 frames", SamplingSpec(fps=None, num_frames=16))
                for kind, sampling in (dense, sparse):
                    rates = [feed_rate(clips, sampling, w, scratch / "null.h5") for w in (1, 2)]
                    rows.append((
                        f"{label}, {kind}: sampled frames/s, 1 / 2 decode workers",
                        f"{rates[0]:.0f} / {rates[1]:.0f} ({rates[1] / rates[0]:.2f}x)",
                    ))  # fmt: skip
        print_table(f"Feed rate: null backbone, 4 x {seconds} s H.264 clips (GOP 250, B-frames)",
                    rows)  # fmt: skip
    print(f"\n(total {time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
