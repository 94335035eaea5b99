"""Benchmark of the audio backbones on this CPU: prints Markdown tables.

On generated 320x240 H.264 clips at 25 fps with a stereo 44.1 kHz AAC soundtrack of noise
and tones (``--clips`` x ``--seconds``), every measure a whole extraction through the
library (as ``extract-features`` runs it: decode, rows, cache), ``--fps 5``:

- ``logmel`` and ``whisper-tiny`` (random init: the same network and cost as the real
  weights): seconds of sound heard per second of wall time, and per CPU second (user +
  system of this process: "per core"), decoding included; and the parts of a ``logmel``
  run: decoding the sound alone, and finding the kept frames (the pictures are decoded to
  find them);
- frames alone (MobileNetV3Large at 224, float32) against frames and then ``logmel`` of
  the same videos, without and with ``--grid`` (the frame cache's rows as the kept frames):
  the time an audio cache adds to a frame cache.

The two sides of each comparison alternate over ``--rounds`` rounds (the machines are
shared and noisy) and each is the best of its rounds.

Usage::

    python bench/audio.py                     # about 4 minutes on 2 cores
    python bench/audio.py --quick             # 2 clips of 8 s, 1 round: a smoke test
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import print_table

from vidcache.features.audio.decode import decode_audio
from vidcache.features.audio.synthetic import tone_sequence, write_av
from vidcache.features.backbones import WeightsSpec
from vidcache.features.settings import SamplingSpec
from vidcache.features.video.decode import SPARSE_DECODE_THREADS, open_source
from vidcache.features.video.discover import discover
from vidcache.pipeline.extraction.config import ExtractConfig
from vidcache.pipeline.extraction.local import default_extractor, extract_features


def make_clips(folder: Path, count: int, seconds: int) -> list[Path]:
    """Noisy 320x240 pictures (so decoding costs what real video costs) with sound."""
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        small = rng.integers(0, 256, (seconds * 25, 30, 40, 3), dtype=np.uint8)
        frames = (np.kron(f, np.ones((8, 8, 1), np.uint8)) for f in small)
        pitches = rng.uniform(200, 4000, seconds).tolist()
        sound = tone_sequence(pitches, 1.0, 44100, 0.3)
        sound += 0.05 * rng.standard_normal(len(sound)).astype(np.float32)
        path = folder / "clips" / f"c{k}.mp4"
        paths.append(write_av(path, frames, 25, sound, 44100, "aac", "stereo"))
    return paths


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(clips_folder: Path, out: Path, **chosen) -> tuple[float, float]:
    """Wall and CPU seconds of one extraction into a new cache, the model built before
    (its build is in no figure: whisper-tiny about 2 s, logmel none)."""
    if out.exists():
        out.unlink()
    config = ExtractConfig(sampling=SamplingSpec(fps=5), **chosen)
    model = default_extractor(config)
    sources = discover([clips_folder], audio=True)
    began_cpu, began = cpu(), time.perf_counter()
    summary = extract_features(sources, out, config, extractor_factory=lambda c: model)
    wall, spent = time.perf_counter() - began, cpu() - began_cpu
    assert not summary.failures, summary.failures
    return wall, spent


def parts(clips: list[Path]) -> tuple[float, float]:
    """Seconds to decode the sound alone, and to find the kept frames alone."""
    started = time.perf_counter()
    for clip in clips:
        decode_audio(clip, 16000)
    sound = time.perf_counter() - started
    started = time.perf_counter()
    for source in discover([clips[0].parent]):
        with open_source(source) as reader:
            reader.decode_threads(SPARSE_DECODE_THREADS)  # as prepare_audio decodes them
            sum(1 for _ in reader.sampled(SamplingSpec(fps=5)))
    return sound, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.seconds, args.rounds = 2, 8, 1
    with tempfile.TemporaryDirectory(prefix="vidcache-bench-audio-") as tmp:
        folder = Path(tmp)
        clips = make_clips(folder, args.clips, args.seconds)
        heard = args.clips * args.seconds
        best: dict[str, tuple[float, float]] = {}
        random = WeightsSpec("random", seed=0)
        frames = dict(weights=random, backbone="MobileNetV3Large", image_size=224)
        sides = {
            "logmel": lambda: run(folder / "clips", folder / "a.h5", backbone="logmel"),
            "whisper-tiny": lambda: run(
                folder / "clips", folder / "w.h5", backbone="whisper-tiny", weights=random
            ),
            "frames": lambda: run(folder / "clips", folder / "f.h5", **frames),
        }
        for round_number in range(args.rounds):
            order = list(sides) if round_number % 2 == 0 else list(sides)[::-1]
            for name in order:
                wall, spent = sides[name]()
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, spent)
        for _ in range(args.rounds):  # after the frame cache exists: its rows as the grid
            wall, spent = run(folder / "clips", folder / "g.h5", backbone="logmel",
                              grid=folder / "f.h5")  # fmt: skip
            if "grid" not in best or wall < best["grid"][0]:
                best["grid"] = (wall, spent)
        sound, pictures = parts(clips)
        rows = [
            ("machine", f"{os.cpu_count()} cores"),
            ("sound heard", f"{args.clips} clips x {args.seconds} s = {heard} s, rows at 5 fps"),
        ]
        for name in ("logmel", "whisper-tiny"):
            wall, spent = best[name]
            rows.append((f"{name}: s of sound / s", f"{heard / wall:.0f} ({wall:.2f} s)"))
            rows.append((f"{name}: s of sound / CPU s", f"{heard / spent:.0f}"))
        rows.append(("logmel part: decode the sound alone", f"{sound:.2f} s"))
        rows.append(
            (f"logmel part: find the kept frames alone ({SPARSE_DECODE_THREADS} threads)",
             f"{pictures:.2f} s")
        )  # fmt: skip
        frames_wall = best["frames"][0]
        both = frames_wall + best["logmel"][0]
        rows.append(("frames alone (MobileNetV3Large 224)", f"{frames_wall:.2f} s"))
        rows.append(("frames, then logmel", f"{both:.2f} s ({both / frames_wall:.2f}x)"))
        grid = frames_wall + best["grid"][0]
        rows.append(("logmel --grid frames.h5 alone", f"{best['grid'][0]:.2f} s"))
        rows.append(("frames, then logmel --grid", f"{grid:.2f} s ({grid / frames_wall:.2f}x)"))
        print_table(f"Audio backbones (best of {args.rounds} rounds, alternating)", rows)


if __name__ == "__main__":
    main()
