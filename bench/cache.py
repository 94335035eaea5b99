"""Feature cache at scale: schema 1 (a group per video) vs schema 2 (columns + ragged rows).

python bench/cache.py make PATH --videos N --frames T [--dtype float16]
    writes a synthetic schema-2 cache through the writer extract-features uses
    (no CNN), for other checks that need a big cache. This interface is stable.

python bench/cache.py [--sizes 1000,13320] [--frames 40] [--dtype float16] [--dir DIR]
    builds both schemas at each size and prints a table: open + list, inspect,
    commit latency (first and last thousand), 2,000 random videos, one sequential pass.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from vidcache.features.cache import CacheEntry, CacheReader, FeatureCache
from vidcache.features.cache.legacy import write_schema1
from vidcache.features.settings import FeatureSettings
from vidcache.models.data import SequenceSource, collect_examples, open_caches
from vidcache.pipeline.cli.cache_report import cache_summary


def settings(dtype: str) -> FeatureSettings:
    return FeatureSettings(weights="random:seed=0", weights_sha256="0" * 64, dtype=dtype)


def videos(count: int, frames: int, seed: int = 0):
    """``(entry, features, timestamps)`` of synthetic videos, UCF101-like ids."""
    rng = np.random.default_rng(seed)
    block = rng.standard_normal((frames, 2048)).astype(np.float32)
    for i in range(count):
        label = f"class{i % 101:03d}"
        video_id = f"{label}/v_{label}_g{i // 101:04d}_c01.avi"
        entry = CacheEntry(
            video_id, f"/data/{video_id}", label, "file", 10_000 + i, 1.7e9, f"sha256:{i:064x}",
            frames, 25.0, duration=frames / 5, width=320, height=240, codec="mpeg4",
        )  # fmt: skip
        yield entry, block + np.float32(i % 97), np.arange(frames) / 5


def make(path: Path, count: int, frames: int, dtype: str) -> list[float]:
    """A schema-2 cache through the real writer; the seconds of each commit."""
    latencies = []
    with FeatureCache.open(path, settings(dtype), {}) as cache:
        for entry, features, stamps in videos(count, frames):
            started = time.perf_counter()
            cache.write_rows(entry, features, stamps, np.arange(frames))
            latencies.append(time.perf_counter() - started)
    return latencies


def make_schema1(path: Path, count: int, frames: int, dtype: str) -> list[float]:
    """A schema-1 cache as vidcache 0.1 wrote it; the seconds between consecutive videos."""
    stamps = [time.perf_counter()]

    def timed():
        for entry, features, times in videos(count, frames):
            yield entry, features.astype(dtype), times
            stamps.append(time.perf_counter())

    write_schema1(path, settings(dtype), timed())
    return list(np.diff(stamps))


def drop_caches() -> None:
    """Ask the kernel to forget cached file pages (root only), for cold-read figures."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def measure(path: Path, latencies: list[float]) -> dict:
    started = time.perf_counter()
    with CacheReader(path) as reader:
        ids = list(reader.entries())
    listed = time.perf_counter() - started
    started = time.perf_counter()
    cache_summary(path)
    inspected = time.perf_counter() - started
    with CacheReader(path) as reader:
        picks = random.Random(0).sample(ids, min(2000, len(ids)))
        started = time.perf_counter()
        for video_id in picks:
            reader.features(video_id)
        random_ms = (time.perf_counter() - started) / len(picks) * 1000
        drop_caches()
        started = time.perf_counter()
        total = sum(reader.features(video_id).nbytes for video_id in ids)
        sequential = total / (time.perf_counter() - started) / 1e6
    drop_caches()
    tracemalloc.start()
    started = time.perf_counter()
    readers, _ = open_caches([path])  # what train-rnn does before its first step
    source = SequenceSource(readers, collect_examples(readers))
    loaded = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del source
    readers[0].close()
    thousand = min(1000, len(latencies))
    return {
        "open + list (s)": listed,
        "inspect (s)": inspected,
        "commit, first 1000 (ms)": 1000 * float(np.mean(latencies[:thousand])),
        "commit, last 1000 (ms)": 1000 * float(np.mean(latencies[-thousand:])),
        "2,000 random videos (ms each)": random_ms,
        "sequential pass (MB/s, cold)": sequential,
        "train-rnn data load (s, cold)": loaded,
        "train-rnn data peak (MB)": peak / 1e6,
        "file (MB)": path.stat().st_size / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    made = sub.add_parser("make", help="write a synthetic schema-2 cache")
    made.add_argument("path", type=Path)
    made.add_argument("--videos", type=int, required=True)
    made.add_argument("--frames", type=int, default=40)
    made.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    parser.add_argument("--sizes", default="1000,13320")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: tmp)")
    args = parser.parse_args()
    if args.command == "make":
        latencies = make(args.path, args.videos, args.frames, args.dtype)
        print(f"{args.path}: {args.videos} videos x {args.frames} frames in {sum(latencies):.1f} s")
        return
    root = Path(tempfile.mkdtemp(prefix="vidcache-bench-", dir=args.dir))
    rows = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            one = measure_schema(root / f"s1-{size}.h5", make_schema1, size, args)
            two = measure_schema(root / f"s2-{size}.h5", make, size, args)
            for name in one:
                # "2 vs 1": how many times better schema 2 is (time: 1/2; throughput: 2/1)
                better = two[name] / one[name] if "MB/s" in name else one[name] / two[name]
                rows.append(
                    [f"{size:,}", name, f"{one[name]:.3g}", f"{two[name]:.3g}",
                     "-" if "(MB)" in name else f"{better:.2g}x"]
                )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    header = ["videos", "measure", "schema 1", "schema 2", "schema 2 better by"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\nFeature cache, {args.frames} frames x 2048 {args.dtype} per video\n")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(f"{c:<{w}}" for c, w in zip(row, widths)) + " |")


def measure_schema(path: Path, build, size: int, args) -> dict:
    latencies = build(path, size, args.frames, args.dtype)
    result = measure(path, latencies)
    path.unlink()
    return result


if __name__ == "__main__":
    main()
