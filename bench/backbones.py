"""Benchmark of the backbones on this CPU: prints a Markdown table.

For each registered built-in backbone, at its own input size, batch 32 frames, random
weights (the same network and cost as the pretrained one; no network here):

- bare model frames/s in float32 and bfloat16 (the compiled call vidcache runs, on a fixed
  batch, in a fresh process each, so peak memory is the model's own); a clip backbone
  (videoprism-base) takes windows of 16 frames, as many as hold 32 frames per call, and
  its windows/s are given too;
- pipeline frames/s: a whole ``extract-features --fps 0`` command on noisy 320x240 H.264
  clips of 64 frames (decode, fit, CNN, cache), float32, as the command reports it (model
  build and tracing excluded), on as many clips as keep the CNN busy about 30 s (so the
  warm-up of the first batches does not dominate), and its ratio to the bare model;
- feature dimension, cache MB per hour of video at 5 fps in float16, peak RSS.

Bare and pipeline runs of one backbone are measured next to each other; the backbones run
in one order, then (with ``--rounds 2``) in the reverse order, and the best of each is kept.

Usage::

    python bench/backbones.py                 # about 25 minutes on 2 cores
    python bench/backbones.py --quick         # small inputs, 1 round: a smoke test
    python bench/backbones.py --only MobileNetV3Large,InceptionV3

The keras-hub backbones (CLIP-ViT-B32, videoprism-base) are measured when keras-hub (the
``hub`` extra) is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _table import print_table

BACKBONES = ["InceptionV3", "ResNet50", "EfficientNetV2S", "MobileNetV3Large", "CLIP-ViT-B32",
             "videoprism-base"]  # fmt: skip
BATCH = 32
CLIP_FRAMES = 64
PIPELINE_SECONDS = 30  # of CNN work per pipeline run, at the bare model's rate

BARE = r"""
import json, resource, sys, time
import numpy as np
from vidcache.features.backbone import FeatureExtractor
from vidcache.features.backbones import WeightsSpec
from vidcache.features.backbones import get_backbone
name, size, precision, batches = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
window = get_backbone(name).window or 1  # frames per input (a clip backbone's window)
units = max(1, 32 // window)
extractor = FeatureExtractor(size, WeightsSpec("random", seed=0), precision, units, name)
shape = (units, *extractor.input_shape)
frames = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
extractor(frames)  # warm up
started = time.perf_counter()
for _ in range(batches):
    extractor(frames)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"fps": batches * units * window / seconds, "rss_mb": peak}))
"""

SUMMARY = re.compile(r"(\d+) frames in ([\d.]+) s \(([\d.]+) frames/s; model built in ([\d.]+) s\)")


def env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def bare(name: str, size: int, precision: str, batches: int) -> dict:
    command = [sys.executable, "-c", BARE, name, str(size), precision, str(batches)]
    result = subprocess.run(command, capture_output=True, text=True, env=env(), cwd="/")
    if result.returncode:
        raise SystemExit(f"{name} {precision} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def pipeline(name: str, size: int, clips: list[Path], out: Path) -> float:
    command = [sys.executable, "-m", "vidcache", "extract", *map(str, clips), "-o", str(out),
               "--backbone", name, "--weights", "random", "--image-size", str(size),
               "--batch-size", str(BATCH), "--fps", "0", "--overwrite", "-q"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env(), cwd="/")
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return float(SUMMARY.search(result.stdout + result.stderr).group(3))


def make_clips(folder: Path, count: int, frames: int) -> list[Path]:
    """``count`` noisy panning 320x240 H.264 clips of ``frames`` frames at 25 fps."""
    import numpy as np

    from vidcache.features.synthetic import write_video

    rng = np.random.default_rng(0)
    made = []
    for n in range(count):
        path = folder / f"c{n % 2}" / f"clip{n}.mp4"
        base = rng.integers(0, 256, (240, 640, 3), dtype=np.int16)
        noise = rng.integers(-10, 11, (8, 240, 320, 3), dtype=np.int16)
        images = (
            np.clip(base[:, 4 * i : 4 * i + 320] + noise[i % 8], 0, 255).astype(np.uint8)
            for i in range(frames)
        )
        made.append(write_video(path, images, fps=25))
    return made


def image_size(name: str, quick: bool) -> int:
    """The backbone's own input size, or (``--quick``) its smallest allowed one."""
    from vidcache.features.backbones import get_backbone

    entry = get_backbone(name)
    if not quick:
        return entry.default_image_size
    size = max(entry.min_image_size, 32)
    return size + -size % entry.image_multiple


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, one round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--only", help="comma-separated backbones (default: all; CLIP when keras-hub is here)"
    )
    args = parser.parse_args()
    import importlib.util

    from vidcache.features.backbones import get_backbone

    global BACKBONES
    if args.only:
        BACKBONES = [get_backbone(name).name for name in args.only.split(",")]
    elif importlib.util.find_spec("keras_hub") is None:
        BACKBONES = [name for name in BACKBONES if get_backbone(name).extra != "hub"]

    rounds = 1 if args.quick else args.rounds
    batches = 1 if args.quick else 3
    best: dict[tuple[str, str], dict] = {}
    started = time.perf_counter()
    clips: list[Path] = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for round_ in range(rounds):
            order = BACKBONES if round_ % 2 == 0 else BACKBONES[::-1]
            for name in order:
                size = image_size(name, args.quick)
                for precision in ("float32", "bfloat16"):
                    found = bare(name, size, precision, batches)
                    before = best.get((name, precision), {"fps": 0.0, "rss_mb": 0.0})
                    best[(name, precision)] = {
                        "fps": max(before["fps"], found["fps"]),
                        "rss_mb": max(before["rss_mb"], found["rss_mb"]),
                    }
                # clips enough for PIPELINE_SECONDS of the bare model's work
                rate = best[(name, "float32")]["fps"]
                count = 2 if args.quick else max(4, round(rate * PIPELINE_SECONDS / CLIP_FRAMES))
                if count > len(clips):
                    clips = make_clips(scratch / "clips", count, 8 if args.quick else CLIP_FRAMES)
                fps = pipeline(name, size, clips[:count], scratch / "f.h5")
                key = (name, "pipeline")
                best[key] = {"fps": max(fps, best.get(key, {}).get("fps", 0))}
                print(f"round {round_ + 1}: {name} done", file=sys.stderr)
    rows = []
    for name in BACKBONES:
        entry = get_backbone(name)
        size = image_size(name, args.quick)
        f32, bf16 = best[(name, "float32")], best[(name, "bfloat16")]
        piped = best[(name, "pipeline")]["fps"]
        rows_per_second = 5 / (entry.window or 1)  # a window row per 16 frames at 5 fps
        per_hour_mb = (entry.feature_dim * 2 + 16) * rows_per_second * 3600 / 1e6
        windows = ""
        if entry.window:
            windows = (
                f" [{f32['fps'] / entry.window:.2f} / {bf16['fps'] / entry.window:.2f} windows/s]"
            )
        rows.append((
            f"{name} ({size} px, {entry.feature_dim}-d): bare float32 / bfloat16 frames/s, "
            "pipeline float32 frames/s (/ bare), cache MB per hour at 5 fps float16, peak RSS "
            "MB float32 / bfloat16",
            f"{f32['fps']:.1f} / {bf16['fps']:.1f} ({bf16['fps'] / f32['fps']:.2f}x){windows}; "
            f"{piped:.1f} ({piped / f32['fps']:.2f}x); {per_hour_mb:.0f}; "
            f"{f32['rss_mb']:.0f} / {bf16['rss_mb']:.0f}",
        ))  # fmt: skip
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")  # fmt: skip
    flags = open("/proc/cpuinfo").read()
    extras = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    print_table(f"Backbones on {os.cpu_count()} cores ({cpu}; {', '.join(extras) or 'no bf16'}), "
                f"batch {BATCH}, random weights, best of {rounds} round(s)", rows)  # fmt: skip
    print(f"\n(total {time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
