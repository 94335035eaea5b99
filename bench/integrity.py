"""What the index checksums cost: a schema-3 cache (checked) against the same cache as
schema 2 (no index checks), alternating the two in one run.

python bench/integrity.py [--videos 100000] [--frames 2] [--rounds 5] [--dir DIR]

Builds one cache of N videos through the real writer (batched commits, no CNN), copies
it, and strips the copy to schema 2. Then, alternating: opening the index in-process
(``CacheReader`` + ``entries()``), the whole ``vidcache inspect`` command, and the latency
of single-video commits (what ``extract-features`` does per video). Prints a table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from cache import settings, videos  # noqa: E402

from vidcache.features.cache import CacheReader, FeatureCache, integrity, store  # noqa: E402  # noqa: E402


def build(path: Path, count: int, frames: int) -> None:
    with FeatureCache.open(path, settings("float16"), {}) as cache:
        batch, entries = [], []
        for entry, features, stamps in videos(count, frames):
            entries.append(entry)
            batch.append(store.Rows(features, stamps, np.arange(frames)))
            if len(batch) == 1024:
                cache.write_batch(entries, batch)
                batch, entries = [], []
        cache.write_batch(entries, batch)


def strip_to_schema2(path: Path) -> None:
    """The layout of a cache written before the index checks."""
    with h5py.File(path, "r+") as f:
        count = int(f["commit"][0])
        del f["index/record_check"]
        del f["commit"]
        f["commit"] = np.array([count], np.int64)
        f.attrs["schema_version"] = 2


def open_index(path: Path) -> float:
    started = time.perf_counter()
    with CacheReader(path) as reader:
        reader.entries()
    return time.perf_counter() - started


def inspect(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "vidcache", "inspect", str(path)], check=True, capture_output=True
    )
    return time.perf_counter() - started


def commits(path: Path, first: int, count: int, frames: int) -> float:
    """Mean seconds of one single-video commit, over ``count`` commits."""
    with FeatureCache.open(path, settings("float16"), {}) as cache:
        started = time.perf_counter()
        for entry, features, stamps in islice(videos(first + count, frames), first, None):
            cache.write_rows(entry, features, stamps, np.arange(frames))
        return (time.perf_counter() - started) / count


def checks_alone(path: Path) -> float:
    with h5py.File(path, "r") as f:
        count = int(f["commit"][0])
        numbers = [f["index"][name][:count] for name in store.NUMERIC]
        texts = []
        for name in store.TEXT:
            offsets = f["index"][name]["offsets"][: count + 1]
            texts.append((f["index"][name]["bytes"][: offsets[-1]], offsets))
    started = time.perf_counter()
    integrity.record_checks(numbers, texts)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vidcache-integrity-", dir=args.dir))
    try:
        checked, plain = root / "v3.h5", root / "v2.h5"
        started = time.perf_counter()
        build(checked, args.videos, args.frames)
        print(f"built {args.videos:,} videos in {time.perf_counter() - started:.1f} s")
        shutil.copyfile(checked, plain)
        strip_to_schema2(plain)
        results = {key: ([], []) for key in ("index", "inspect", "commit")}
        first = args.videos
        for _ in range(args.rounds):  # alternate: noise hits both sides alike
            for side, path in enumerate((checked, plain)):
                results["index"][side].append(open_index(path))
                results["inspect"][side].append(inspect(path))
            for side, path in enumerate((checked, plain)):
                results["commit"][side].append(commits(path, first, 200, args.frames))
            first += 200
        alone = statistics.median(checks_alone(checked) for _ in range(args.rounds))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = [
        ("open index + list, in-process (s)", *results["index"]),
        ("vidcache inspect, whole command (s)", *results["inspect"]),
        ("one-video commit (ms)", *([1000 * v for v in side] for side in results["commit"])),
    ]
    print(
        f"\nIndex checksums at {args.videos:,} videos ({args.rounds} rounds, alternating; "
        "medians)\n"
    )
    print("| measure | schema 3 (checked) | schema 2 (no checks) | cost |")
    print("|---|---:|---:|---:|")
    for name, three, two in rows:
        a, b = statistics.median(three), statistics.median(two)
        print(f"| {name} | {a:.3g} | {b:.3g} | {a / b:.2f}x |")
    print(f"| computing the {args.videos:,} record checks alone (s) | {alone:.3g} | | |")


if __name__ == "__main__":
    main()
