"""YouTube-8M through vidcache: import and training throughput, peak memory. Prints a table.

A generated set of the dataset's shape (frame-level TFRecords written by
``features.yt8m.write_records``: 1024-d rgb and 128-d audio bytes a second, 150-300 s a
video, three of 3,862 labels) is imported with ``vidcache import --format yt8m``, then
``train-rnn rgb.h5 audio.h5 --fuse --task multilabel`` trains one epoch in memory and one
with ``--stream``. Each command runs in its own process; its peak resident memory is the
kernel's ``ru_maxrss`` of that process. Usage::

    python bench/yt8m.py                 # 1,000 videos (about 250 MB of TFRecords)
    python bench/yt8m.py --videos 200    # quicker
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import print_table

from vidcache.features.yt8m import write_records

MEASURE = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter(); done = subprocess.run(sys.argv[1:])\n"
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(done.returncode)\n"
)


def measured(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one command in its own process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *args], check=True,
                         stdout=subprocess.PIPE, text=True).stdout  # fmt: skip
    seconds, peak_kb = out.strip().splitlines()[-1].split()
    return float(seconds), float(peak_kb) / 1024


def generate(folder: Path, videos: int, files: int, seed: int = 0) -> tuple[int, int]:
    """Write ``videos`` records over ``files`` TFRecord files; (seconds, bytes)."""
    rng = np.random.default_rng(seed)
    total = 0
    per_file = -(-videos // files)
    for f in range(files):
        batch = []
        for n in range(f * per_file, min(videos, (f + 1) * per_file)):
            t = int(rng.integers(150, 301))
            labels = sorted(rng.choice(3862, size=3, replace=False).tolist())
            rgb = rng.integers(0, 256, size=(t, 1024), dtype=np.uint8)
            audio = rng.integers(0, 256, size=(t, 128), dtype=np.uint8)
            batch.append((f"Y{n:06d}", labels, rgb, audio))
            total += t
        write_records(folder / f"train{f:04d}.tfrecord", batch)
    size = sum(p.stat().st_size for p in folder.glob("*.tfrecord"))
    return total, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        records = root / "records"
        records.mkdir()
        started = time.perf_counter()
        seconds, size = generate(records, args.videos, args.files)
        made = time.perf_counter() - started
        cli = [sys.executable, "-m", "vidcache"]
        files = sorted(map(str, records.glob("*.tfrecord")))
        took, peak = measured([*cli, "import", "--format", "yt8m", *files, "-o", str(root / "c")])
        cache_mb = sum(p.stat().st_size for p in (root / "c").glob("*.h5")) / 2**20
        again, _ = measured([*cli, "import", "--format", "yt8m", *files, "-o", str(root / "c")])
        rows = [
            ("videos (generated TFRecords)", f"{args.videos} ({seconds} s of rows, "
             f"{size / 2**20:.0f} MB; written in {made:.0f} s)"),
            ("import: videos/s", f"{args.videos / took:.1f} ({seconds / took:.0f} rows/s, "
             f"{size / 2**20 / took:.1f} MB/s of TFRecords)"),
            ("import: peak memory", f"{peak:.0f} MB"),
            ("import: caches on disk (float32)",
             f"{cache_mb:.0f} MB ({cache_mb * 2**20 / size:.1f}x the TFRecords)"),
            ("import again (nothing new)", f"{again:.1f} s"),
        ]  # fmt: skip
        caches = [str(root / "c" / "rgb.h5"), str(root / "c" / "audio.h5")]
        for name, extra in (("in memory", []), ("--stream", ["--stream"])):
            run = root / f"run{len(extra)}"
            train = [*cli, "train-rnn", *caches, "--fuse", "--task", "multilabel", "-o", str(run),
                     "--epochs", "1", "--patience", "1", "-q", *extra]  # fmt: skip
            took, peak = measured(train)
            config = json.loads((run / "config.json").read_text())
            epoch = float(config["seconds_per_epoch"])
            trained = len(config["split"]["train"])
            rows += [
                (f"train-rnn {name}: sequences/s", f"{trained / epoch:.1f} ({trained} in one "
                 f"epoch of {epoch:.1f} s; the command {took:.0f} s)"),
                (f"train-rnn {name}: peak memory", f"{peak:.0f} MB"),
            ]  # fmt: skip
        print_table(f"YouTube-8M-shaped set, {args.videos} videos", rows)


if __name__ == "__main__":
    main()
