"""Benchmark of captioning (`train-rnn --task caption`): prints a Markdown table.

1. Training throughput in caption pairs per second, without and with ``--attention``, and
   the share of step time spent waiting for the input pipeline (``next()`` timed apart from
   ``train_on_batch``).
2. Generating captions (up to 20 words): greedy decoding and beam search of width 3 and 5,
   16 videos a batch, and beam search one video at a time, in milliseconds per video.
3. Scoring: BLEU-1..4 and CIDEr-D (pure Python) on an MSR-VTT-sized test set, 2,990 videos
   with 20 references each.

The data are synthetic at MSR-VTT-like sizes (40 frames a video, 2048-d features, captions
of 6 to 14 words from a 1,000-word vocabulary, 20 per video); the model is the default
(256 units, 128-d embeddings, batch 16). Usage::

    python bench/caption.py            # about 2 minutes on 2 cores
    python bench/caption.py --quick    # smaller sizes, a smoke test
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import print_table
from train import DIM, write_cache

from vidcache.features.backbone import import_tensorflow
from vidcache.models.captioner import CaptionDecoder, build_captioner
from vidcache.models.data import SequenceSource, collect_examples, open_caches
from vidcache.models.text import CaptionVocabulary
from vidcache.models.textmetrics import caption_metrics
from vidcache.pipeline.training.tasks.caption import caption_dataset

WORDS = [f"w{i}" for i in range(1000)]


def random_captions(rng, count: int) -> list[str]:
    """Captions of 6 to 14 words, Zipf-like word frequencies (as in real text)."""
    weights = 1.0 / np.arange(1, len(WORDS) + 1)
    weights /= weights.sum()
    return [
        " ".join(rng.choice(WORDS, size=int(rng.integers(6, 15)), p=weights)) for _ in range(count)
    ]


def train_rate(model, dataset, steps: int) -> tuple[float, float]:
    """Caption pairs per second over ``steps`` batches (after one warm-up batch), and the
    share of that time spent waiting for data."""
    iterator = iter(dataset)
    x, y, w = next(iterator)
    model.train_on_batch(x, y, sample_weight=w)
    waiting = stepping = 0.0
    pairs = 0
    for _ in range(steps):
        started = time.perf_counter()
        x, y, w = next(iterator)
        ready = time.perf_counter()
        model.train_on_batch(x, y, sample_weight=w)
        waiting += ready - started
        stepping += time.perf_counter() - ready
        pairs += len(y)
    total = waiting + stepping
    return pairs / total, waiting / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    videos, frames, per_video, steps = (40, 20, 5, 10) if args.quick else (200, 40, 20, 60)
    import_tensorflow()
    import keras

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidcache-bench-") as tmp:
        path = write_cache(Path(tmp) / "f.h5", videos, frames)
        readers, _ = open_caches([path])
        source = SequenceSource(readers, collect_examples(readers))
        captions = random_captions(rng, videos * per_video)
        vocabulary = CaptionVocabulary.build(captions)
        tokens_in, tokens_out = vocabulary.encode(captions, 20)
        pairs = [(i // per_video, i) for i in range(len(captions))]
        sequences = [source[i] for i in range(len(source))]
        models = {}
        for attention in (False, True):
            keras.utils.set_random_seed(0)
            model = build_captioner(
                vocabulary.size, np.zeros(DIM), np.ones(DIM), 256, 128, attention
            )
            model.compile(
                keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            data = caption_dataset(source, pairs, tokens_in, tokens_out, 16, shuffle=True)
            rate, wait = train_rate(model, data.repeat(), steps)
            name = "with --attention" if attention else "plain"
            rows.append((f"training, {name} (caption pairs/s)", f"{rate:.0f}"))
            rows.append((f"share of step time waiting for data, {name}", f"{wait:.1%}"))
            models[attention] = model
        for reader in readers:
            reader.close()

        decoder = CaptionDecoder(models[False])
        count = min(len(sequences), 20 if args.quick else 48)
        decoder.captions(sequences[:2], 1, 20)
        decoder.beam(sequences[0], 3, 20)
        for beam in (1, 3, 5):
            started = time.perf_counter()
            decoder.captions(sequences[:count], beam, 20, batch_size=16)
            ms = (time.perf_counter() - started) * 1e3 / count
            how = "greedy" if beam == 1 else f"beam {beam}"
            rows.append((f"captioning, {how}, 16 videos a batch (ms per video)", f"{ms:.1f}"))
            if beam > 1:  # the same search, one video at a time
                started = time.perf_counter()
                decoder.captions(sequences[:count], beam, 20, batch_size=1)
                ms = (time.perf_counter() - started) * 1e3 / count
                rows.append((f"captioning, {how}, one video at a time (ms per video)", f"{ms:.1f}"))

    test_videos = 300 if args.quick else 2990
    references = [random_captions(rng, 20) for _ in range(test_videos)]
    candidates = [
        refs[0] if i % 2 else random_captions(rng, 1)[0] for i, refs in enumerate(references)
    ]
    started = time.perf_counter()
    caption_metrics(candidates, references)
    rows.append(
        (
            f"BLEU-1..4 + CIDEr-D, {test_videos} videos x 20 references (s)",
            f"{time.perf_counter() - started:.1f}",
        )
    )
    print_table("vidcache captioning benchmark (2048-d features, 40 frames, float32)", rows)


if __name__ == "__main__":
    main()
