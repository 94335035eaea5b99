"""Stage-two defaults on order-only tasks: classes made of the same frames in another order.

    python bench/order.py [--seeds 0,1,2] [--variants all] [--configs defaults,mean]

Each variant writes small lossless videos (75 px) whose classes differ only in the order of
their colours (A->B, B->A, A->B->A, ...; colours, lengths, noise and class counts vary by
variant), extracts them through the real pipeline with a random-init InceptionV3 (the CNN
only has to tell colours apart), and trains ``train-rnn`` with its defaults (and with the
named alternatives) for each seed on a 30% validation split. The table gives validation
top-1, mean and worst over the seeds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vidcache.features.backbone import FeatureExtractor, WeightsSpec
from vidcache.features.synthetic import write_video
from vidcache.features.video.discover import discover
from vidcache.pipeline.extraction.local import ExtractConfig, extract_features
from vidcache.pipeline.training import TrainConfig, train_rnn


@dataclass(frozen=True)
class Variant:
    name: str
    orders: dict[str, str]  # class -> sequence of colour slots, e.g. "ABA"
    frames: int = 12
    clips: int = 60
    noise: float = 4.0
    palette: int = 0  # a colour pair per clip drawn from this many colours (0: one pair)


VARIANTS = {
    "issue": Variant("issue", {"AB": "AB", "BA": "BA", "ABA": "ABA"}),
    "long-noisy": Variant(
        "long-noisy", {"AB": "AB", "BA": "BA", "ABA": "ABA"}, frames=20, noise=24.0
    ),
    # A relational task: which colour came first, the pair drawn per clip from a palette.
    "palette-4": Variant("palette-4", {"AB": "AB", "BA": "BA", "ABA": "ABA"}, palette=4),
    "four-classes": Variant(
        "four-classes", {"AB": "AB", "BA": "BA", "ABA": "ABA", "BAB": "BAB"}, noise=12.0
    ),
    "long-40": Variant("long-40", {"AB": "AB", "BA": "BA", "ABA": "ABA"}, frames=40, clips=40),
    "short-five": Variant(
        "short-five",
        {"AB": "AB", "BA": "BA", "ABA": "ABA", "BAB": "BAB", "ABAB": "ABAB"},
        frames=10,
        clips=40,
    ),
}

PAIRS = [((200, 40, 40), (40, 40, 200)), ((30, 160, 30), (220, 220, 60))]
PALETTE = np.array(
    [(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 220, 40), (240, 240, 240), (20, 20, 20),
     (200, 40, 200), (40, 200, 200)]
)  # fmt: skip


def _split(total: int, parts: int, rng) -> list[int]:
    """``total`` frames into ``parts`` runs of at least one frame, at random."""
    cuts = np.sort(rng.choice(np.arange(1, total), parts - 1, replace=False))
    return np.diff([0, *cuts.tolist(), total]).tolist()


def clip_frames(variant: Variant, order: str, rng) -> list[np.ndarray]:
    """Frames of one clip: the colour runs of ``order``. The number of A frames is drawn the
    same way for every class, so the bag of frames says nothing about the class: only
    their order does (the mean-of-frames baseline stays near chance)."""
    if variant.palette:
        a, b = (PALETTE[i] for i in rng.choice(variant.palette, 2, replace=False))
    else:
        a, b = (np.array(c) for c in PAIRS[0 if variant.name != "long-noisy" else 1])
    most = max(order.count("A"), order.count("B"))
    count_a = int(rng.integers(most, variant.frames - most + 1))
    runs = {
        "A": iter(_split(count_a, order.count("A"), rng)),
        "B": iter(_split(variant.frames - count_a, order.count("B"), rng)),
    }
    colours = {"A": a, "B": b}
    frames = []
    for letter in order:
        for _ in range(next(runs[letter])):
            frame = np.empty((48, 64, 3), np.float32)
            frame[:] = colours[letter]
            frame += rng.normal(0, variant.noise, frame.shape)
            frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def make_cache(variant: Variant, root: Path, extractor) -> Path:
    rng = np.random.default_rng(zlib.crc32(variant.name.encode()))  # same clips every run
    videos = root / variant.name
    for label, order in variant.orders.items():
        for clip in range(variant.clips):
            frames = clip_frames(variant, order, rng)
            path = videos / label / f"v_{label}_g{clip:02d}_c01.mkv"
            write_video(path, frames, 10, "libx264rgb", "rgb24", {"crf": "0"})
    cache = root / f"{variant.name}.h5"
    config = ExtractConfig(
        weights=WeightsSpec("random", seed=0),
        image_size=75,
        batch_size=32,
        sampling=ExtractConfig().sampling.__class__(fps=None),
    )
    extract_features(discover([videos]), cache, config, extractor_factory=lambda c: extractor)
    return cache


CONFIGS = {
    "defaults": TrainConfig(),
    "mean": TrainConfig(head="mean"),
    "last-state": TrainConfig(readout="last"),  # vidcache 0.1's classifier head
    "gru": TrainConfig(cell="gru"),  # the defaults with GRU cells
    "transformer": TrainConfig(head="transformer"),  # causal self-attention, 128 wide, 4 heads
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    extractor = FeatureExtractor(75, WeightsSpec("random", seed=0), "float32", 32)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidcache-order-") as tmp:
        root = Path(tmp)
        for name in args.variants.split(","):
            variant = VARIANTS[name]
            cache = make_cache(variant, root, extractor)
            for config_name in args.configs.split(","):
                scores, epochs, started = [], [], time.perf_counter()
                for seed in seeds:
                    config = replace(CONFIGS[config_name], seed=seed, val_split=0.3, verbose=0)
                    result = train_rnn([cache], root / f"run-{name}-{config_name}-{seed}", config)
                    scores.append(result.metrics["top1"])
                    epochs.append(result.epochs_run)
                rows.append(
                    [name, len(variant.orders), variant.frames, config_name,
                     f"{np.mean(scores):.3f}", f"{min(scores):.3f}",
                     " ".join(f"{s:.2f}" for s in scores), f"{np.mean(epochs):.0f}",
                     f"{(time.perf_counter() - started) / len(seeds):.0f}"]
                )  # fmt: skip
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
    header = ["variant", "classes", "frames", "config", "mean", "worst", "per seed", "epochs", "s"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\nValidation top-1 over seeds {args.seeds} (30% validation)\n")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(f"{str(c):<{w}}" for c, w in zip(row, widths)) + " |")


if __name__ == "__main__":
    main()
