"""Benchmark of stage two (`train-rnn`): prints a Markdown table.

1. Training throughput on a cache (sequences/s), in memory and with ``--stream`` (HDF5 read
   per batch), and the share of step time spent waiting for data: each step's ``next()`` on
   the prefetched input pipeline is timed apart from the training step itself.
2. The reason the project exists: one epoch on cached features versus one epoch that runs
   InceptionV3 (299x299, forward only, the cheapest possible) on every frame, measured on one
   batch of each and scaled to the epoch.
3. Streaming latency per frame: the CNN on one frame plus one LSTM step.

The cache is synthetic (UCF101-like sizes: 10 classes, 40 frames a video, 2048-d), written
directly; the model is the default LSTM (128 units, batch 16). Usage::

    python bench/train.py            # about 3 minutes on 2 cores
    python bench/train.py --quick    # smaller sizes, a smoke test
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import print_table

from vidcache.features.backbone import FeatureExtractor, WeightsSpec, import_tensorflow
from vidcache.features.cache import CacheEntry, FeatureCache
from vidcache.features.cache.buffer import FeatureBuffer
from vidcache.features.settings import FeatureSettings
from vidcache.models.data import SequenceSource, collect_examples, make_dataset, open_caches
from vidcache.models.heads import build_classifier
from vidcache.models.stream import StreamingModel

CLASSES, DIM = 10, 2048


def write_cache(path: Path, videos: int, frames: int) -> Path:
    rng = np.random.default_rng(0)
    settings = FeatureSettings(weights="random:seed=0", weights_sha256="0" * 64)
    with FeatureCache.open(path, settings, {}) as cache:
        for i in range(videos):
            label = f"class_{i % CLASSES}"
            entry = CacheEntry(
                f"{label}/v_{i:05d}.avi",
                "/bench",
                label,
                "file",
                1,
                0.0,
                f"sha256:{i}",
                frames,
                25.0,
            )
            with FeatureBuffer(DIM) as buffer:
                for t, row in enumerate(rng.random((frames, DIM), dtype=np.float32)):
                    buffer.append(row, t / 5, t)
                cache.write_video(entry, buffer, "float32")
    return path


def train_epochs(model, dataset, epochs: int = 2) -> tuple[float, float]:
    """Train ``epochs`` epochs batch by batch; for the last one return the sequences per
    second and the share of time spent waiting for the next batch (``next()`` on the
    prefetched input pipeline) rather than in the training step."""
    for _ in range(epochs):
        iterator = iter(dataset)
        waiting = stepping = 0.0
        sequences = 0
        while True:
            started = time.perf_counter()
            try:
                x, y = next(iterator)
            except StopIteration:
                break
            ready = time.perf_counter()
            model.train_on_batch(x, y)
            waiting += ready - started
            stepping += time.perf_counter() - ready
            sequences += len(y)
    total = waiting + stepping
    return sequences / total, waiting / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    videos, frames, batch = (160, 20, 16) if args.quick else (960, 40, 16)
    import_tensorflow()  # quietly, before Keras
    import keras

    rows = []
    with tempfile.TemporaryDirectory(prefix="vidcache-bench-") as tmp:
        path = write_cache(Path(tmp) / "f.h5", videos, frames)
        readers, _ = open_caches([path])
        examples = collect_examples(readers)
        classes = sorted({e.label for e in examples})
        targets = np.array([classes.index(e.label) for e in examples], np.int32)
        epoch_cached = 0.0
        for stream in (False, True):
            source = SequenceSource(readers, examples, stream=stream)
            keras.utils.set_random_seed(0)
            model = build_classifier(len(classes), np.zeros(DIM), np.ones(DIM))
            model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
            rate, wait = train_epochs(model, make_dataset(source, targets, batch, shuffle=True))
            mode = "--stream (HDF5 per batch)" if stream else "in memory"
            rows.append(
                (
                    f"training, {mode} (sequences/s)",
                    f"{rate:.0f} ({videos} x {frames} frames, batch {batch})",
                )
            )
            rows.append((f"share of step time waiting for data, {mode}", f"{wait:.1%}"))
            if not stream:
                epoch_cached = videos / rate
        for reader in readers:
            reader.close()

        extractor = FeatureExtractor(299, WeightsSpec("random"), "float32", 32)
        probe = np.random.default_rng(0).integers(0, 256, (32, 299, 299, 3), dtype=np.uint8)
        extractor(probe)
        started = time.perf_counter()
        for _ in range(2 if args.quick else 4):
            extractor(probe)
        cnn_fps = (2 if args.quick else 4) * 32 / (time.perf_counter() - started)
        epoch_cnn = videos * frames / cnn_fps + epoch_cached
        rows.append(("one epoch on cached features (s)", f"{epoch_cached:.1f}"))
        rows.append(
            (
                f"one epoch running InceptionV3 on every frame (s, at {cnn_fps:.1f} frames/s)",
                f"{epoch_cnn:.0f}",
            )
        )
        rows.append(("ratio (CNN epoch / cached epoch)", f"{epoch_cnn / epoch_cached:.0f}x"))

        model = build_classifier(len(classes), np.zeros(DIM), np.ones(DIM))
        stream = StreamingModel(model)
        single = FeatureExtractor(299, WeightsSpec("random"), "float32", 1)
        frame = probe[:1]
        stream.step(single(frame)[0])
        cnn_ms, step_ms = [], []
        for _ in range(10 if args.quick else 30):
            t0 = time.perf_counter()
            features = single(frame)[0]
            t1 = time.perf_counter()
            stream.step(features)
            t2 = time.perf_counter()
            cnn_ms.append((t1 - t0) * 1e3)
            step_ms.append((t2 - t1) * 1e3)
        rows.append(
            (
                "streaming latency per frame: CNN (299x299, batch 1), median ms",
                f"{np.median(cnn_ms):.1f}",
            )
        )
        rows.append(
            ("streaming latency per frame: one LSTM step, median ms", f"{np.median(step_ms):.2f}")
        )

    print_table("vidcache stage-two benchmark (2048-d features, LSTM 128 units, float32)", rows)


if __name__ == "__main__":
    main()
