"""Benchmark of extraction at scale: the Ray engine and shards against one process, and merge.

Every side runs the real command line in fresh processes on the same clips (the model
build is part of what each side pays), alternating the sides round after round, so that
the ratios compare like with like on a shared, noisy machine:

1. one process: ``vidcache extract`` (TensorFlow uses every core);
2. Ray: ``--engine ray --workers W`` on a local Ray the run starts (one core per worker);
3. shards: W processes ``--shard K/W`` at once, then ``vidcache merge``;
4. merge: two shard caches built through the real writer (no CNN), merged, in GB/s of
   feature rows (warm page cache, and cold where this machine lets root drop it);
5. training: ``train-rnn`` in one process vs ``--distribute multi-worker`` on two local
   worker processes (127.0.0.1), steps/s from each run's seconds per epoch, alternated;
6. re-runs: a first ``vidcache evaluate RUN VIDEOS`` (extracts) vs the same command again
   (everything found in the kept cache).

Clips are synthetic 320x240 H.264 at 25 fps, sampled at the default 5 fps; weights are
random (speed does not depend on their values). Usage::

    python bench/scale.py                    # the full table (about 6 minutes on 2 cores)
    python bench/scale.py --quick            # a smoke test of the script
    python bench/scale.py --only-training    # sections 5 and 6 (about 5 minutes)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _table import print_table

from vidcache.features.synthetic import render_clip, write_video

HERE = Path(__file__).resolve().parent


def make_clips(root: Path, count: int, seconds: float) -> int:
    """``count`` H.264 clips of ``seconds``; returns the frames sampled at 5 fps."""
    frames = int(seconds * 25)
    for i in range(count):
        kind = ("grow", "shrink", "pulse")[i % 3]
        clip = render_clip(kind, frames, 320, 240, seed=i)
        write_video(root / kind / f"clip_{i:03d}.mp4", clip, 25, "libx264")
    return count * int(seconds * 5)


def vidcache(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vidcache", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def timed(processes: list[subprocess.Popen]) -> float:
    started = time.perf_counter()
    for process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"failed ({process.args}):\n{output}")
    return time.perf_counter() - started


def one_process(clips: Path, out: Path, common: list[str]) -> float:
    return timed([vidcache("extract", str(clips), "-o", str(out), *common)])


def on_ray(clips: Path, out: Path, common: list[str], workers: int) -> float:
    args = ["--engine", "ray", "--workers", str(workers), "--shards", str(2 * workers)]
    return timed([vidcache("extract", str(clips), "-o", str(out), *common, *args)])


def in_shards(clips: Path, out: Path, common: list[str], workers: int) -> tuple[float, float]:
    folder = out.with_suffix("")
    started = time.perf_counter()
    timed(
        [
            vidcache(
                "extract",
                str(clips),
                "-o",
                str(folder / f"s{k}.h5"),
                "--shard",
                f"{k}/{workers}",
                *common,
            )
            for k in range(workers)
        ]
    )
    extracted = time.perf_counter() - started
    merged = timed([vidcache("merge", str(folder), "-o", str(out), "-q")])
    return extracted, merged


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def merge_speed(work: Path, videos: int, frames: int) -> list[tuple[str, str]]:
    from vidcache.features.cache.maintenance import merge

    rows = []
    for k in range(2):
        subprocess.run(
            [sys.executable, str(HERE / "cache.py"), "make", str(work / f"m{k}.h5"),
             "--videos", str(videos), "--frames", str(frames)],
            check=True, capture_output=True,
        )  # fmt: skip
    # Shard k holds the videos of the other shard under other ids: rename to keep both.
    from vidcache.features.cache import CacheLock, CacheReader, FeatureCache

    renamed = work / "m1r.h5"
    with CacheReader(work / "m1.h5") as reader:
        entries = reader.entries()
        settings, versions = reader.settings, reader.versions
        with CacheLock(renamed), FeatureCache.open(renamed, settings, versions) as cache:
            batch_entries, batch = [], []
            for video_id, block in reader.rows_many(list(entries)):
                entry = entries[video_id]
                entry.video_id = "second/" + video_id
                batch_entries.append(entry)
                batch.append(block)
                if len(batch) == 256:
                    cache.write_batch(batch_entries, batch)
                    batch_entries, batch = [], []
            cache.write_batch(batch_entries, batch)
    for label, cold in (("warm", False), ("cold", True)):
        target = work / f"merged-{label}.h5"
        if cold and not drop_page_cache():
            rows.append(("merge, cold page cache", "not measured (cannot drop the page cache)"))
            continue
        report = merge([work / "m0.h5", renamed], target)
        rows.append(
            (
                f"merge 2 x {videos} videos x {frames} frames ({label} page cache)",
                f"{report.feature_bytes / 1e9:.2f} GB in {report.seconds:.1f} s = "
                f"{report.gb_per_second:.2f} GB/s",
            )
        )
        target.unlink()
    return rows


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_once(cache: Path, run: Path, args: list[str], workers: int) -> float:
    """Seconds per epoch (median, as the run records it) of one or more processes."""
    import json

    if workers == 1:
        timed([vidcache("train-rnn", str(cache), "-o", str(run), *args)])
    else:
        hosts = [f"127.0.0.1:{free_port()}" for _ in range(workers)]
        processes = []
        for index in range(workers):
            env = dict(
                os.environ,
                TF_CONFIG=json.dumps(
                    {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
                ),
            )
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "vidcache",
                        "train-rnn",
                        str(cache),
                        "-o",
                        str(run),
                        *args,
                        "--distribute",
                        "multi-worker",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=env,
                )
            )
        timed(processes)  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    shutil.rmtree(run)
    return float(config["seconds_per_epoch"])


def training_rows(work: Path, quick: bool) -> list[tuple[str, str]]:
    videos, frames, epochs = (404, 10, 2) if quick else (960, 40, 4)
    cache = work / "train.h5"
    subprocess.run(
        [sys.executable, str(HERE / "cache.py"), "make", str(cache),
         "--videos", str(videos), "--frames", str(frames)],
        check=True, capture_output=True,
    )  # fmt: skip
    args = ["--epochs", str(epochs), "--patience", str(epochs), "--batch-size", "32", "-q"]
    steps = -(-int(videos * 0.8) // 32)  # about 80% of the videos train
    single, multi = [], []
    for round_ in range(1 if quick else 2):
        order = [(1, single), (2, multi)]
        for workers, into in order if round_ % 2 == 0 else order[::-1]:
            into.append(train_once(cache, work / "run-train", args, workers))
    s, m = min(single), min(multi)
    return [
        (f"training: {videos} videos x {frames} frames, 101 classes, batch 32 (global)",
         f"about {steps} steps per epoch, {epochs} epochs"),
        ("one process: s per epoch (best), steps/s", f"{s:.2f} s, {steps / s:.1f}"),
        ("multi-worker, 2 processes on 127.0.0.1: s per epoch, steps/s",
         f"{m:.2f} s, {steps / m:.1f}"),
        ("multi-worker / one process (steps/s)", f"{s / m:.2f}x"),
        ("every round, s per epoch (one / multi)",
         "; ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(single, multi))),
    ]  # fmt: skip


def rerun_rows(work: Path, common: list[str], clips: int, seconds: float) -> list[tuple[str, str]]:
    folder = work / "eval-clips"
    make_clips(folder, clips, seconds)
    cache = work / "eval-train.h5"
    timed([vidcache("extract", str(folder), "-o", str(cache), *common)])
    run = work / "eval-run"
    timed([vidcache("train-rnn", str(cache), "-o", str(run), "--epochs", "1", "-q",
                    "--val-split", "0.34")])  # fmt: skip
    first = timed([vidcache("evaluate", str(run), str(folder), "-q")])
    second = timed([vidcache("evaluate", str(run), str(folder), "-q")])
    return [
        (f"vidcache evaluate RUN VIDEOS ({clips} clips), first: extracts", f"{first:.1f} s"),
        ("the same command again: every video found in the kept cache", f"{second:.1f} s"),
        ("first / second", f"{first / second:.1f}x"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=299)
    parser.add_argument("--merge-videos", type=int, default=2000)
    parser.add_argument("--merge-frames", type=int, default=40)
    parser.add_argument("--only-training", action="store_true", help="sections 5 and 6 only")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.seconds, args.rounds, args.image_size = 6, 1.0, 1, 75
        args.merge_videos, args.merge_frames = 100, 10
    common = ["--weights", "random", "--image-size", str(args.image_size), "-q"]
    work = Path(tempfile.mkdtemp(prefix="vidcache-scale-"))
    try:
        if args.only_training:
            rows = training_rows(work, args.quick)
            rows += rerun_rows(work, common, 6 if args.quick else 12, 2.0)
            print_table("Training at scale and re-runs (bench/scale.py)", rows)
            return
        clips = work / "clips"
        frames = make_clips(clips, args.clips, args.seconds)
        times: dict[str, list[float]] = {"one": [], "ray": [], "shards": [], "merge": []}
        for round_ in range(args.rounds):
            sides = ["one", "ray", "shards"]
            if round_ % 2:
                sides.reverse()  # alternate the order: drift on the machine hits every side
            for side in sides:
                out = work / f"{side}-{round_}.h5"
                if side == "one":
                    times["one"].append(one_process(clips, out, common))
                elif side == "ray":
                    times["ray"].append(on_ray(clips, out, common, args.workers))
                else:
                    extracted, merged = in_shards(clips, out, common, args.workers)
                    times["shards"].append(extracted)
                    times["merge"].append(merged)
                shutil.rmtree(out.with_suffix(""), ignore_errors=True)
                out.unlink(missing_ok=True)
        best = {side: min(values) for side, values in times.items()}
        w = args.workers
        rows = [
            ("clips, frames (5 fps), image size", f"{args.clips}, {frames}, {args.image_size} px"),
            ("cores on this machine", str(os.cpu_count())),
            ("one process: wall s (best of rounds), frames/s",
             f"{best['one']:.1f} s, {frames / best['one']:.1f}"),
            (f"Ray, {w} workers: wall s, frames/s",
             f"{best['ray']:.1f} s, {frames / best['ray']:.1f}"),
            (f"--shard x {w} processes at once: wall s, frames/s",
             f"{best['shards']:.1f} s, {frames / best['shards']:.1f}"),
            (f"  + merge of the {w} shards", f"{best['merge']:.1f} s"),
            ("Ray / one process (wall, same rounds)", f"{best['ray'] / best['one']:.2f}x"),
            ("shards / one process (wall, without merge)", f"{best['shards'] / best['one']:.2f}x"),
            ("every round (one, ray, shards)", "; ".join(
                f"{a:.1f}/{b:.1f}/{c:.1f}"
                for a, b, c in zip(times["one"], times["ray"], times["shards"]))),
        ]  # fmt: skip
        rows += merge_speed(work, args.merge_videos, args.merge_frames)
        rows += training_rows(work, args.quick)
        rows += rerun_rows(work, common, 6 if args.quick else 12, 2.0)
        print_table("Extraction and training at scale (bench/scale.py)", rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
