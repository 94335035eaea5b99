"""Benchmark of the backbones on this CPU: prints a Markdown table.

For each registered built-in backbone, at its own input size, batch 32, random weights (the
same network and cost as the ImageNet one; no network here):

- bare model frames/s in float32 and bfloat16 (the compiled call vidcache runs, on a fixed
  batch, in a fresh process each, so peak memory is the model's own);
- pipeline frames/s: a whole ``extract-features`` command on small H.264 clips (decode,
  fit, CNN, cache), float32, wall time less the model build, as the command reports it;
- feature dimension, cache MB per hour of video at 5 fps in float16, peak RSS.

Bare and pipeline runs of one backbone are measured next to each other; the backbones run
in one order, then (with ``--rounds 2``) in the reverse order, and the best of each is kept.

Usage::

    python bench/backbones.py                 # about 10 minutes on 2 cores
    python bench/backbones.py --quick         # small inputs, 1 round: a smoke test
    python bench/backbones.py --only CLIP-ViT-B32,InceptionV3

CLIP-ViT-B32 is measured when keras-hub (the ``hub`` extra) is installed.
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

BACKBONES = ["InceptionV3", "ResNet50", "EfficientNetV2S", "MobileNetV3Large", "CLIP-ViT-B32"]
BATCH = 32

BARE = r"""
import json, resource, sys, time
import numpy as np
from vidcache.features.backbone import FeatureExtractor
from vidcache.features.backbones import WeightsSpec
name, size, precision, batches = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
extractor = FeatureExtractor(size, WeightsSpec("random", seed=0), precision, 32, name)
frames = np.random.default_rng(0).integers(0, 256, (32, size, size, 3), dtype=np.uint8)
extractor(frames)  # trace and warm up
started = time.perf_counter()
for _ in range(batches):
    extractor(frames)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"fps": batches * 32 / seconds, "rss_mb": peak}))
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


def pipeline(name: str, size: int, clips: Path, out: Path) -> float:
    command = [sys.executable, "-m", "vidcache", "extract", str(clips), "-o", str(out),
               "--backbone", name, "--weights", "random", "--image-size", str(size),
               "--batch-size", str(BATCH), "--overwrite", "-q"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env(), cwd="/")
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return float(SUMMARY.search(result.stdout + result.stderr).group(3))


def make_clips(folder: Path, count: int, seconds: int) -> Path:
    import numpy as np

    from vidcache.features.synthetic import write_video

    rng = np.random.default_rng(0)
    for n in range(count):
        path = folder / f"c{n % 2}" / f"clip{n}.mp4"
        base = rng.integers(0, 256, (240, 640, 3), dtype=np.uint8)
        frames = (np.ascontiguousarray(base[:, 4 * i : 4 * i + 320]) for i in range(25 * seconds))
        write_video(path, frames, fps=25)
    return folder


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
        BACKBONES = [name for name in BACKBONES if not name.startswith("CLIP")]

    rounds = 1 if args.quick else args.rounds
    batches = 1 if args.quick else 3
    best: dict[tuple[str, str], dict] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        clips = make_clips(scratch / "clips", 2 if args.quick else 4, 2 if args.quick else 6)
        for round_ in range(rounds):
            order = BACKBONES if round_ % 2 == 0 else BACKBONES[::-1]
            for name in order:
                size = (
                    get_backbone(name).min_image_size
                    if args.quick
                    else get_backbone(name).default_image_size
                )
                for precision in ("float32", "bfloat16"):
                    found = bare(name, size, precision, batches)
                    before = best.get((name, precision), {"fps": 0.0, "rss_mb": 0.0})
                    best[(name, precision)] = {
                        "fps": max(before["fps"], found["fps"]),
                        "rss_mb": max(before["rss_mb"], found["rss_mb"]),
                    }
                fps = pipeline(name, size, clips, scratch / "f.h5")
                key = (name, "pipeline")
                best[key] = {"fps": max(fps, best.get(key, {}).get("fps", 0))}
                print(f"round {round_ + 1}: {name} done", file=sys.stderr)
    rows = []
    for name in BACKBONES:
        entry = get_backbone(name)
        size = entry.min_image_size if args.quick else entry.default_image_size
        f32, bf16 = best[(name, "float32")], best[(name, "bfloat16")]
        per_hour_mb = (entry.feature_dim * 2 + 16) * 5 * 3600 / 1e6
        rows.append((
            f"{name} ({size} px, {entry.feature_dim}-d): bare float32 / bfloat16 frames/s, "
            "pipeline float32 frames/s, cache MB per hour at 5 fps float16, peak RSS MB "
            "float32 / bfloat16",
            f"{f32['fps']:.1f} / {bf16['fps']:.1f} ({bf16['fps'] / f32['fps']:.2f}x); "
            f"{best[(name, 'pipeline')]['fps']:.1f}; {per_hour_mb:.0f}; "
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
