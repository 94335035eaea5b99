"""Object storage and Ray without a shared disk, on this machine: prints Markdown tables.

Everything runs on loopback: an S3-compatible server (moto's server mode) on 127.0.0.1 and
a local Ray. Loopback has no network latency and a bandwidth of GB/s, so the store-side
figures are printed with a paper model for a real region beside them (``--rtt-ms``,
``--mbps``): time = requests x round trip + bytes / bandwidth + the decode time measured.

- ``engine``: ``extract-features --engine ray`` on the same clips with ``--shared-disk``
  (actors write shard caches beside the output) and ``--no-shared-disk`` (rows come back
  through the object store, the driver commits them); the two alternate over ``--rounds``,
  each the best of its rounds; the extraction's seconds as the summary line prints them.
- ``memory``: the driver's peak memory (resident, its own ``ru_maxrss``, and private, sampled)
  with a 96 MiB object store, for one short and one long video (8 KB of rows a frame).
- ``videos``: one 1280x720 H.264 file in the bucket, 16 frames kept: downloaded whole then
  decoded with the decode plan (what vidcache does), against PyAV reading the object by
  ranged GETs (fsspec file object, 1 MiB blocks) decoding sequentially, and seeking to each
  kept frame; seconds, GET requests, bytes read.
- ``caches``: a cache made through the real writer (no CNN), in the bucket: its index read in
  place (``inspect``) against copying it, and every row read in place against from a copy.

Usage::

    python bench/cloud.py                 # about 6 minutes on 2 cores
    python bench/cloud.py --quick         # small sizes, 1 round: a smoke test
    python bench/cloud.py --only videos,caches
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

import numpy as np
from _table import print_table

from vidcache.features.remote.loopback import s3_server
from vidcache.features.synthetic import write_video

BUCKET = "bench"
FAST = ["--weights", "random", "--seed", "0", "--image-size", "75", "--batch-size", "16"]


def noisy_frames(count: int, height: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    for i in range(count):
        moved = np.roll(base, i, axis=1)
        yield np.kron(moved, np.ones((8, 8, 1), np.uint8))


def changing_frames(count: int, height: int, width: int, seed: int = 0):
    """Moving noise with a new 1/16 of its blocks each frame: a real video's bitrate."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    for i in range(count):
        fresh = rng.random(blocks.shape[:2]) < 1 / 16
        blocks[fresh] = rng.integers(0, 256, (int(fresh.sum()), 3), dtype=np.uint8)
        yield np.kron(np.roll(blocks, i, axis=1), np.ones((16, 16, 1), np.uint8))


def extract_seconds(output: str) -> float:
    match = re.search(r"frames in ([\d.]+) s", output)
    if not match:
        raise RuntimeError(output[-2000:])
    return float(match.group(1))


def run_cli(args, env=None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "vidcache", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, **(env or {})),
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
    return result.stdout + result.stderr


def bench_engine(root: Path, clips: int, frames: int, rounds: int) -> None:
    folder = root / "clips"
    for i in range(clips):
        write_video(
            folder / f"c{i % 2}" / f"clip_{i:03d}.mp4", noisy_frames(frames, 240, 320, i), 25
        )
    best = {"--shared-disk": [], "--no-shared-disk": []}
    for r in range(rounds):
        for mode in (
            ("--shared-disk", "--no-shared-disk")
            if r % 2 == 0
            else ("--no-shared-disk", "--shared-disk")
        ):
            out = root / f"engine{mode}.h5"
            out.unlink(missing_ok=True)
            text = run_cli(["extract", str(folder), "-o", str(out), *FAST, "--fps", "0", "-q",
                            "--engine", "ray", "--workers", "2", mode])  # fmt: skip
            best[mode].append(extract_seconds(text))
    shared, sent = min(best["--shared-disk"]), min(best["--no-shared-disk"])
    total = clips * frames
    print_table(
        f"Ray, 2 workers, {clips} clips x {frames} frames (320x240 H.264, InceptionV3 at 75, "
        f"random init), best of {rounds}",
        [
            ("shared disk: seconds (frames/s)", f"{shared:.1f} ({total / shared:.0f})"),
            ("no shared disk: seconds (frames/s)", f"{sent:.1f} ({total / sent:.0f})"),
            ("no shared disk / shared disk throughput", f"{shared / sent:.2f}x"),
            ("all rounds, shared / no shared (s)",
             f"{best['--shared-disk']} / {best['--no-shared-disk']}"),
        ],
    )  # fmt: skip


DRIVER = """
import resource, sys, threading, time
from pathlib import Path

peak_anon = [0]


def sample():  # private (anonymous) memory: what the driver itself holds, not shared pages
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak_anon[0] = max(peak_anon[0], int(line.split()[1]) * 1024)
        time.sleep(0.02)


threading.Thread(target=sample, daemon=True).start()
from vidcache.features.backbones import WeightsSpec
from vidcache.features.settings import SamplingSpec
from vidcache.features.video.discover import discover
from vidcache.pipeline.extraction.config import ExtractConfig
from vidcache.pipeline.extraction.ray_engine import RayOptions, extract_with_ray
config = ExtractConfig(weights=WeightsSpec("random", seed=0), image_size=75, batch_size=16,
                       sampling=SamplingSpec(fps=None))
options = RayOptions(workers=1, object_store_mb=96, shared_disk=sys.argv[3] == "shared")
summary = extract_with_ray(discover([Path(sys.argv[1])]), Path(sys.argv[2]), config, None, options)
assert not summary.failures, summary.outcomes
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, peak_anon[0])
"""


def bench_memory(root: Path, short: int, long: int) -> None:
    rows = []
    for frames in (short, long):
        folder = root / f"memory{frames}"
        write_video(folder / "one.mp4", noisy_frames(frames, 96, 128), 25)
        for mode in ("shared", "sent"):
            out = root / f"memory{frames}{mode}.h5"
            out.unlink(missing_ok=True)
            result = subprocess.run(
                [sys.executable, "-c", DRIVER, str(folder), str(out), mode],
                capture_output=True, text=True, timeout=3600,
            )  # fmt: skip
            peak = re.search(r"PEAK (\d+) (\d+)", result.stdout)
            if not peak:
                raise RuntimeError(result.stdout[-2000:] + result.stderr[-3000:])
            name = "shared disk" if mode == "shared" else "no shared disk"
            rows.append(
                (f"{frames} frames ({frames * 8 / 1024:.0f} MiB of rows), {name}",
                 f"{int(peak.group(1)) / 2**20:.0f} / {int(peak.group(2)) / 2**20:.0f} MiB")
            )  # fmt: skip
    print_table(
        "Driver's peak memory, 1 worker, 96 MiB object store: resident (with the object "
        "store's shared pages it touched) / private (anonymous, sampled every 20 ms)",
        rows,
    )


class Counted:
    """Count the ranged GETs and bytes of every s3fs file of this process (reset per
    measure)."""

    requests = 0
    bytes = 0

    @classmethod
    def install(cls) -> None:
        from s3fs.core import S3File

        fetch = S3File._fetch_range

        def counted(self, start, end):
            data = fetch(self, start, end)
            cls.requests += 1
            cls.bytes += len(data)
            return data

        S3File._fetch_range = counted

    @classmethod
    def reset(cls) -> None:
        cls.requests, cls.bytes = 0, 0


def modelled(ways, rounds: int, size: int, rtt: float, mbps: float) -> list[tuple[str, str]]:
    """Run each way ``rounds`` times, alternating their order; rows of the best of each:
    seconds, GETs and bytes read (a way that made no ranged read is one streamed GET of
    ``size`` bytes), and the paper model of a region."""
    results: dict[str, list] = {}
    for r in range(rounds):
        for name, way in ways if r % 2 == 0 else ways[::-1]:
            Counted.reset()
            started = time.perf_counter()
            way()
            seconds = time.perf_counter() - started
            requests, read = (Counted.requests, Counted.bytes) if Counted.requests else (1, size)
            results.setdefault(name, []).append((seconds, requests, read))
    rows = []
    for name, _ in ways:
        best, requests, read = min(results[name])
        model = requests * rtt / 1000 + read / (mbps * 2**20) + best
        rows.append((f"{name}: s, GETs, MiB read", f"{best:.2f}, {requests}, {read / 2**20:.1f}"))
        rows.append((f"{name}: modelled s ({rtt:g} ms, {mbps:g} MiB/s)", f"{model:.2f}"))
    return rows


def bench_videos(root: Path, seconds: int, rounds: int, rtt: float, mbps: float) -> None:
    import av
    import fsspec

    from vidcache.features.settings import SamplingSpec
    from vidcache.features.video.decode import VideoReader

    # changing noise: about the bitrate of real 720p H.264 (a few Mbit/s)
    local = write_video(root / "720p.mp4", changing_frames(seconds * 25, 720, 1280), 25)
    size = local.stat().st_size
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.put_file(str(local), f"{BUCKET}/720p.mp4")
    keep = 16
    sampling = SamplingSpec(fps=None, num_frames=keep)

    def download():  # one streamed GET
        copy = root / "copy.mp4"
        fs.get_file(f"{BUCKET}/720p.mp4", str(copy))
        with VideoReader(copy) as reader:
            kept = [i for i, _t, _f in reader.sampled(sampling)]
        copy.unlink()
        return len(kept), 1, size

    def ranged_sequential():
        with fs.open(f"{BUCKET}/720p.mp4", "rb", block_size=1 << 20, cache_type="readahead") as f:
            with av.open(f) as container:
                total = container.streams.video[0].frames or seconds * 25
                wanted = set(np.linspace(0, total - 1, keep).round().astype(int).tolist())
                kept = sum(1 for i, _ in enumerate(container.decode(video=0)) if i in wanted)
        return kept, Counted.requests, Counted.bytes

    def ranged_seek():
        with fs.open(f"{BUCKET}/720p.mp4", "rb", block_size=1 << 20, cache_type="readahead") as f:
            with av.open(f) as container:
                stream = container.streams.video[0]
                kept = 0
                for t in np.linspace(0, seconds - 0.2, keep):
                    container.seek(int(t / stream.time_base), stream=stream)
                    for frame in container.decode(stream):
                        if frame.time >= t - 1e-6:
                            kept += 1
                            break
        return kept, Counted.requests, Counted.bytes

    ways = [("download whole, then plan", download), ("ranged GETs, sequential", ranged_sequential),
            ("ranged GETs, seek per kept frame", ranged_seek)]  # fmt: skip
    rows = modelled(ways, rounds, size, rtt, mbps)
    print_table(
        f"One {seconds}-s 1280x720 H.264 file ({size / 2**20:.1f} MiB), {keep} frames kept, "
        f"loopback S3, best of {rounds}",
        rows,
    )


def bench_caches(
    root: Path, videos: int, frames: int, rounds: int, rtt: float, mbps: float
) -> None:
    import fsspec

    sys.path.insert(0, str(Path(__file__).parent))
    from cache import make

    from vidcache.features.cache import CacheReader
    from vidcache.features.remote import caches

    path = root / "big.h5"
    make(path, videos, frames, "float16")
    size = path.stat().st_size
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.put_file(str(path), f"{BUCKET}/big.h5")
    url = f"s3://{BUCKET}/big.h5"
    os.environ["VIDCACHE_REMOTE_CACHE"] = str(root / "copies")

    def index_in_place():
        with CacheReader(url) as reader:
            return len(reader.entries())

    def rows_in_place():
        with CacheReader(url) as reader:
            return sum(len(f) for f in reader.features_many(list(reader.entries())).values())

    def copy_then(what):
        def run():
            for stale in (root / "copies").rglob("*"):
                if stale.is_file():
                    stale.unlink()
            local = caches.cache_copy(url)
            with CacheReader(local) as reader:
                entries = reader.entries()
                if what == "rows":
                    return sum(len(f) for f in reader.features_many(list(entries)).values())
                return len(entries)

        return run

    ways = [
        ("index in place (inspect)", index_in_place),
        ("index from a new copy", copy_then("index")),
        ("all rows in place", rows_in_place),
        ("all rows from a new copy", copy_then("rows")),
    ]
    rows = modelled(ways, rounds, size, rtt, mbps)
    print_table(
        f"A cache of {videos} videos x {frames} rows (float16, {size / 2**20:.0f} MiB) in "
        f"loopback S3, best of {rounds}",
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="engine,memory,videos,caches")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rtt-ms", type=float, default=30.0, help="modelled round trip")
    parser.add_argument("--mbps", type=float, default=100.0, help="modelled MiB/s per stream")
    args = parser.parse_args()
    parts = args.only.split(",")
    rounds = 1 if args.quick else args.rounds
    root = Path(tempfile.mkdtemp(prefix="vidcache-bench-cloud-"))
    print(f"# bench/cloud.py on {os.cpu_count()} cores, loopback S3 (moto), local Ray")
    with s3_server() as server:
        os.environ.update(server.environment())
        import fsspec

        fsspec.filesystem("s3", skip_instance_cache=True).mkdir(BUCKET)
        Counted.install()
        if "engine" in parts:
            bench_engine(root, 4 if args.quick else 16, 50 if args.quick else 200, rounds)
        if "memory" in parts:
            bench_memory(root, 100, 400 if args.quick else 12000)
        if "videos" in parts:
            bench_videos(root, 4 if args.quick else 30, rounds, args.rtt_ms, args.mbps)
        if "caches" in parts:
            bench_caches(root, 200 if args.quick else 1000, 50, rounds, args.rtt_ms, args.mbps)


if __name__ == "__main__":
    main()
