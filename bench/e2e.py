"""Benchmark of stage three (`train-e2e`): seconds per training step, one table.

Same batch for all three (2 videos x 16 frames, InceptionV3 299x299, float32, random
weights, top two blocks trainable): the stage-two head alone on cached features; end to end
with the cut activations cached (only mixed9, mixed10 and the head run); and full end to end
(every frame through the whole CNN). Usage::

    python bench/e2e.py            # about 2 minutes on 2 cores
    python bench/e2e.py --quick    # 75x75
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _table import print_table

from vidcache.features.backbone import WeightsSpec, build_backbone, import_tensorflow
from vidcache.models.e2e import build_e2e, bytes_per_frame, cut_layer_name, freeze, split_backbone
from vidcache.models.heads import build_classifier


def seconds_per_step(model, x, y, steps: int) -> float:
    import keras

    model.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy")
    model.train_on_batch(x, y)  # trace
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    size = 75 if args.quick else 299
    videos, frames, steps = 2, 16, 2 if args.quick else 3
    import_tensorflow()
    import keras

    backbone, _ = build_backbone(size, WeightsSpec("random"))
    cut = cut_layer_name("mixed9")
    freeze(backbone, cut)
    head = build_classifier(10, np.zeros(2048), np.ones(2048))
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (videos, frames, size, size, 3), dtype=np.uint8)
    labels = np.array([1, 2])
    scaled = keras.applications.inception_v3.preprocess_input(clips.astype(np.float32))
    features = np.stack([np.asarray(backbone(c)) for c in scaled])
    bottom, top = split_backbone(backbone, cut)
    activations = np.stack([np.asarray(bottom(c)) for c in scaled])

    head_only = seconds_per_step(head, features, labels, steps * 5)
    cached = seconds_per_step(
        build_e2e(head, top, size, activations.shape[2:]), activations, labels, steps
    )
    full = seconds_per_step(build_e2e(head, backbone, size), clips, labels, steps)
    mib = 2**20
    rows = [
        ("stage two only (head on cached features), s/step", f"{head_only:.4f}"),
        (
            "end to end, cut cached (mixed9+ and head), s/step",
            f"{cached:.3f} ({cached / head_only:.0f}x stage two)",
        ),
        (
            "end to end, full (whole CNN every step), s/step",
            f"{full:.3f} ({full / cached:.1f}x the cut-cached step)",
        ),
        (
            "cut activation stored per frame",
            f"{np.prod(activations.shape[2:]) * 4 / 1024:.0f} KiB ({activations.shape[2:]})",
        ),
        (
            "estimated training memory per frame, full / cut cached",
            f"{bytes_per_frame(backbone, cut) / mib:.1f} / "
            f"{bytes_per_frame(backbone, cut, cached=True) / mib:.1f} MiB",
        ),
    ]
    print_table(
        f"vidcache stage-three benchmark: {videos} videos x {frames} frames, "
        f"InceptionV3 {size}x{size}, top two blocks trainable, float32",
        rows,
    )


if __name__ == "__main__":
    main()
