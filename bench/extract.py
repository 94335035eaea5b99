"""Benchmark of stage one (`extract-features`): prints a Markdown table.

Everything is measured in one run on this machine, so the ratios compare like with like:

1. the bare model: the compiled InceptionV3 call on in-memory uint8 batches;
2. the whole pipeline (decode + sample + resize + CNN + HDF5 writes) with the same model
   object, batch size and precision, on many short clips and on one long clip;
3. the naive way: decode each frame, then one ``model.predict`` per frame;
4. float32 vs bfloat16: frames/s and the cosine similarity of the features;
5. peak memory (max RSS of a child process) extracting a 10-minute vs a 10-second video.

Clips are synthetic 320x240 H.264 at 25 fps (moving squares), sampled at the default 5 fps.
Weights are random (``--weights random``): the ImageNet file cannot be downloaded here, and
speed does not depend on weight values. Usage::

    python bench/extract.py                 # the full table (about 10 minutes on 2 cores)
    python bench/extract.py --quick         # smaller sizes, a smoke test of the script
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import print_table

from vidcache.features.backbone import FeatureExtractor, WeightsSpec, import_tensorflow
from vidcache.features.synthetic import render_clip, write_video
from vidcache.features.video.discover import discover
from vidcache.pipeline.extraction.local import ExtractConfig, extract_features

WIDTH, HEIGHT, FPS = 320, 240, 25


def write_clip(path: Path, seconds: float, seed: int) -> Path:
    """A 320x240 H.264 clip; long clips are written in 10-second pieces of rendering."""
    frames_total = int(seconds * FPS)

    def frames():
        done = 0
        piece = 0
        while done < frames_total:
            count = min(250, frames_total - done)
            kind = ("grow", "shrink", "pulse")[(seed + piece) % 3]
            yield from render_clip(kind, count, WIDTH, HEIGHT, seed * 1000 + piece)
            done += count
            piece += 1

    return write_video(path, frames(), FPS, "libx264", "yuv420p")


def bare_model(extractor: FeatureExtractor, batches: int) -> float:
    """Frames/s of the compiled call alone on in-memory batches (after a warm-up call)."""
    size = extractor.image_size
    batch = np.random.default_rng(0).integers(
        0, 256, (extractor.batch_size, size, size, 3), dtype=np.uint8
    )
    extractor(batch)
    started = time.perf_counter()
    for _ in range(batches):
        extractor(batch)
    return batches * extractor.batch_size / (time.perf_counter() - started)


def pipeline(extractor: FeatureExtractor, inputs: list[Path], out: Path) -> tuple[float, int]:
    """Frames/s of ``extract_features`` over ``inputs`` with the already-built model."""
    config = ExtractConfig(
        weights=extractor.weights,
        image_size=extractor.image_size,
        precision=extractor.precision,
        batch_size=extractor.batch_size,
        overwrite=True,
    )
    summary = extract_features(discover(inputs), out, config, extractor_factory=lambda c: extractor)
    assert not summary.failures, summary.failures
    return summary.frames_per_second, summary.frames


def naive(extractor: FeatureExtractor, clip: Path, frames: int) -> float:
    """Frames/s of the usual first attempt: decode, resize, ``model.predict`` per frame."""
    import av
    import keras

    model = extractor.model
    size = extractor.image_size
    count = 0
    started = None
    with av.open(str(clip)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % (FPS // 5):
                continue
            image = frame.to_ndarray(format="rgb24", width=size, height=size).astype(np.float32)
            x = keras.applications.inception_v3.preprocess_input(image[None])
            model.predict(x, verbose=0)
            if started is None:  # the first call builds the predict function: not counted
                started = time.perf_counter()
                continue
            count += 1
            if count == frames:
                break
    return count / (time.perf_counter() - started)


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return float(cos.min())


def peak_memory_mib(clip: Path, out: Path, image_size: int, batch_size: int) -> tuple[float, int]:
    """Peak RSS (VmHWM) of a fresh process extracting ``clip`` (model, TF and all).

    ``ru_maxrss`` would not do: Linux carries it over ``execve`` from the parent.
    """
    code = (
        "import re\n"
        "from features.backbone import WeightsSpec\n"
        "from features.video.discover import discover\n"
        "from vidcache.pipeline.extraction.local import ExtractConfig, extract_features\n"
        f"c = ExtractConfig(weights=WeightsSpec('random'), image_size={image_size}, "
        f"batch_size={batch_size}, overwrite=True)\n"
        f"s = extract_features(discover([{str(clip)!r}]), {str(out)!r}, c)\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "print(s.frames, hwm)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    frames, kib = result.stdout.split()[-2:]
    return int(kib) / 1024, int(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--image-size", type=int, default=299)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    quick = args.quick
    size = 75 if quick else args.image_size
    batch = 8 if quick else args.batch_size
    short_clips, short_seconds = (6, 2.0) if quick else (24, 4.0)
    long_seconds = 20.0 if quick else 120.0
    batches = 3 if quick else 12
    import_tensorflow()

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="vidcache-bench-") as tmp:
        tmp = Path(tmp)
        for i in range(short_clips):
            write_clip(tmp / "short" / f"c{i % 3}" / f"clip_{i:02d}.mp4", short_seconds, i)
        long_clip = write_clip(tmp / "long" / "long.mp4", long_seconds, 99)
        results = {}
        for precision in ("float32", "bfloat16"):
            extractor = FeatureExtractor(size, WeightsSpec("random", seed=0), precision, batch)
            bare = bare_model(extractor, batches)
            short_fps, short_frames = pipeline(
                extractor, [tmp / "short"], tmp / f"s_{precision}.h5"
            )
            bare_after = bare_model(extractor, batches)
            long_fps, long_frames = pipeline(extractor, [long_clip], tmp / f"l_{precision}.h5")
            reference = (bare + bare_after) / 2  # the bare model's rate around both runs
            results[precision] = (extractor, reference)
            rows += [
                (
                    f"bare model, {precision} (frames/s; before / after the pipeline runs)",
                    f"{bare:.1f} / {bare_after:.1f}",
                ),
                (
                    f"pipeline, {short_clips} clips x {short_seconds:g} s, {precision} (frames/s)",
                    f"{short_fps:.1f} ({short_frames} frames) = {short_fps / reference:.2f}x bare",
                ),
                (
                    f"pipeline, one {long_seconds:g} s clip, {precision} (frames/s)",
                    f"{long_fps:.1f} ({long_frames} frames) = {long_fps / reference:.2f}x bare",
                ),
            ]
            if precision == "float32":
                naive_fps = naive(extractor, long_clip, 10 if quick else 40)
                rows.append(
                    (
                        "naive: model.predict per frame, float32 (frames/s)",
                        f"{naive_fps:.1f}; pipeline is {short_fps / naive_fps:.1f}x faster",
                    )
                )

        (fp32, bare32), (bf16, bare16) = results["float32"], results["bfloat16"]
        rows.append(("bfloat16 / float32 speed (bare model)", f"{bare16 / bare32:.2f}x"))
        frames = np.stack([np.asarray(f) for f in render_clip("grow", batch, size, size, 5)])
        rng = np.random.default_rng(1)
        noise = rng.integers(0, 256, frames.shape, dtype=np.uint8)
        both = np.concatenate([frames, noise])
        a = np.concatenate([fp32(both[i : i + batch]) for i in range(0, len(both), batch)])
        b = np.concatenate([bf16(both[i : i + batch]) for i in range(0, len(both), batch)])
        rows.append(
            (
                "cosine(bfloat16, float32) features, minimum over frames",
                f"{cosine_min(a, b):.5f} ({len(both)} frames)",
            )
        )

        mem_size = 75
        ten_s = write_clip(tmp / "mem" / "ten_seconds.mp4", 10.0, 1)
        ten_min = write_clip(tmp / "mem" / "ten_minutes.mp4", 60.0 if quick else 600.0, 2)
        short_mem, short_n = peak_memory_mib(ten_s, tmp / "m1.h5", mem_size, batch)
        long_mem, long_n = peak_memory_mib(ten_min, tmp / "m2.h5", mem_size, batch)
        rows.append(
            (f"peak RSS, 10 s video ({short_n} frames at {mem_size} px)", f"{short_mem:.0f} MiB")
        )
        rows.append(
            (
                f"peak RSS, {'1' if quick else '10'} min video ({long_n} frames at {mem_size} px)",
                f"{long_mem:.0f} MiB ({long_mem / short_mem:.2f}x)",
            )
        )

    print_table(
        f"vidcache stage-one benchmark: InceptionV3 {size}x{size}, batch {batch}, "
        f"random weights, {WIDTH}x{HEIGHT} H.264 at {FPS} fps sampled at 5 fps; "
        f"max RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10} MiB",
        rows,
    )


if __name__ == "__main__":
    main()
