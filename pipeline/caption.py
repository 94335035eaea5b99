"""Stage two for captioning: train an encoder-decoder on cached features and captions.

Every ``(video, caption)`` pair is a training example; the split is by video, so all the
captions of a video are on one side. The vocabulary is adapted to the training captions
only. Validation videos are captioned (greedy, or beam search with ``--beam``) and scored
against all of their references; the same scores for the most common training caption,
given to every video, are the baseline.

A caption run folder holds ``model.keras``, ``vectorizer.keras`` (the ``TextVectorization``
layer), ``config.json``, ``history.csv``, ``metrics.json``, ``val_captions.csv`` and
``learning_curves.png``.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from vidcache.models.annotations import (
    VideoMatcher,
    cached_paths,
    match_rows,
    read_captions,
    unmatched_note,
)
from vidcache.models.cocoscore import coco_scores
from vidcache.models.data import (
    DataError,
    SequenceSource,
    batched_dataset,
    collect_examples,
    open_caches,
    pad_sequences,
    standardization,
)
from vidcache.models.text import CaptionVocabulary
from vidcache.models.textmetrics import caption_metrics, tokenize
from vidcache.pipeline.distribute import distribution
from vidcache.pipeline.fitting import (
    TrainConfig,
    TrainResult,
    batch_count,
    fit_model,
    make_source,
    run_config,
    split_examples,
    write_json,
)


def caption_dataset(
    source,
    pairs,
    tokens_in,
    tokens_out,
    batch_size,
    shuffle=False,
    seed=0,
    shard=None,
    repeat=False,
):
    """``((frames, tokens), next_tokens, weights)`` batches of ``(video, caption)`` pairs.

    ``pairs[i] = (row of source, row of tokens)``; the weights are 0 on padded words.
    """
    from vidcache.features.backbone import import_tensorflow

    tf = import_tensorflow()
    dim = source[0].shape[1]

    def make_batch(rows):
        frames = pad_sequences([source[int(pairs[r][0])] for r in rows])
        text_rows = [pairs[r][1] for r in rows]
        inputs, targets = tokens_in[text_rows], tokens_out[text_rows]
        length = int((targets != 0).sum(axis=1).max())
        inputs, targets = inputs[:, :length], targets[:, :length]
        return (frames, inputs), targets, (targets != 0).astype(np.float32)

    signature = (
        (
            tf.TensorSpec((None, None, dim), tf.float32),
            tf.TensorSpec((None, None), tf.int32),
        ),
        tf.TensorSpec((None, None), tf.int32),
        tf.TensorSpec((None, None), tf.float32),
    )
    return batched_dataset(
        len(pairs), make_batch, signature, batch_size, shuffle, seed, shard, repeat
    )


def generate_captions(
    model, vocabulary: CaptionVocabulary, sequences, beam: int, max_words: int
) -> list[str]:
    """Caption each ``(T, D)`` feature sequence: greedy (``beam`` 1) or beam search."""
    from vidcache.models.captioner import CaptionDecoder

    decoder = CaptionDecoder(model)
    return [vocabulary.decode(ids) for ids in decoder.captions(sequences, beam, max_words)]


def most_common_caption(captions: list[str]) -> str:
    """The most frequent caption after standardisation (ties: the first seen)."""
    counts = Counter(" ".join(tokenize(c)) for c in captions)
    return counts.most_common(1)[0][0]


def write_captions(path: Path, videos, generated: list[str], references: list[list[str]]):
    """CSV ``video_id,generated,references`` (references joined by `` | ``)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "generated", "references"])
        for video, text, refs in zip(videos, generated, references):
            writer.writerow([video.video_id, text, " | ".join(refs)])


def score_captions(
    model, vocabulary, source, videos, matched, config: TrainConfig, csv_path: Path
) -> dict:
    """Caption the sequences of ``source`` (the ``videos``), score them against all their
    references in ``matched``, and write them to ``csv_path``."""
    references = [matched[e.video_id] for e in videos]
    generated = generate_captions(
        model,
        vocabulary,
        [source[i] for i in range(len(source))],
        config.beam,
        config.max_words,
    )
    write_captions(csv_path, videos, generated, references)
    metrics = caption_metrics(generated, references)
    if config.scorer == "coco":
        metrics["coco"] = coco_scores(generated, references)
    return metrics


def captioned_videos(readers, captions_csv: Path, label_map: dict | None = None):
    """The cached videos that ``captions_csv`` gives captions for.

    Returns:
        ``(examples, {video_id: [captions]}, notes)``; the notes say what matched nothing.

    Raises:
        AnnotationError: the file cannot be read.
        DataError: fewer than two videos have captions.
    """
    rows = read_captions(captions_csv)
    matched, unmatched = match_rows(rows, VideoMatcher(cached_paths(readers)), captions_csv)
    videos = collect_examples(readers, label_map, labelled_only=False)
    examples = [e for e in videos if e.video_id in matched]
    notes = unmatched_note(unmatched, captions_csv, "caption row path(s)")
    if len(videos) > len(examples):
        notes.append(f"{len(videos) - len(examples)} cached video(s) have no caption")
    if not examples:
        raise DataError(f"no cached video has a caption in {captions_csv}")
    return examples, matched, notes


def train_captioner(cache_paths: list[Path], run_dir: Path, config: TrainConfig) -> TrainResult:
    """Train a captioner on the captioned videos of ``cache_paths``; write the run folder.

    Raises:
        AnnotationError: the captions file cannot be read.
        DataError: fewer than two captioned videos, or an impossible split.
    """
    from vidcache.features.backbone import import_tensorflow

    import_tensorflow()
    import keras

    from vidcache.models.captioner import build_captioner
    from vidcache.pipeline.plots import plot_learning_curves

    if not config.captions:
        raise DataError("a caption run needs --captions CSV (path,caption rows)")
    if (
        config.head == "mean"
        or config.bidirectional
        or (config.layers != 1 and config.head != "transformer")
    ):
        raise DataError(
            "a caption run has one recurrent encoder (or a transformer encoder of --layers "
            "blocks) and one decoder: --head mean, --layers (but for --head transformer) "
            "and --bidirectional apply to classify and regress runs"
        )
    run_dir = Path(run_dir)
    readers, settings = open_caches([Path(p) for p in cache_paths], config.fuse)
    try:
        examples, matched, notes = captioned_videos(
            readers, Path(config.captions), config.label_map or None
        )
        parts = split_examples(examples, config)
        train_source = make_source(readers, examples, parts["train"], config)
        val_source = make_source(readers, examples, parts["val"], config)
        mean, variance = standardization(train_source)

        def pairs_of(indices):
            return [
                (row, text)
                for row, i in enumerate(indices)
                for text in matched[examples[i].video_id]
            ]

        train_pairs, val_pairs = pairs_of(parts["train"]), pairs_of(parts["val"])
        vocabulary = CaptionVocabulary.build([t for _, t in train_pairs], config.vocab_size)
        texts = [t for _, t in train_pairs] + [t for _, t in val_pairs]
        tokens_in, tokens_out = vocabulary.encode(texts, config.max_words)
        train_rows = [(row, k) for k, (row, _) in enumerate(train_pairs)]
        val_rows = [(row, len(train_pairs) + k) for k, (row, _) in enumerate(val_pairs)]

        spread = distribution(config.distribute)
        keras.utils.set_random_seed(config.seed)
        with spread.scope():
            model = build_captioner(
                vocabulary.size,
                mean,
                variance,
                config.units,
                config.embedding_dim,
                config.attention,
                config.dropout,
                encoder="transformer" if config.head == "transformer" else config.cell,
                attention_heads=config.attention_heads,
                layers=config.layers,
            )
            model.compile(
                optimizer=keras.optimizers.Adam(config.lr),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                weighted_metrics=["accuracy"],
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        vocabulary.save(run_dir)
        train_data, train_steps = spread.dataset(
            lambda b, shard, repeat: caption_dataset(
                train_source, train_rows, tokens_in, tokens_out, b, True, config.seed, shard, repeat
            ),
            batch_count(len(train_rows)),
            config.batch_size,
        )
        val_data, val_steps = spread.dataset(
            lambda b, shard, repeat: caption_dataset(
                val_source, val_rows, tokens_in, tokens_out, b, shard=shard, repeat=repeat
            ),
            batch_count(len(val_rows)),
            config.batch_size,
        )
        fitted = fit_model(
            model, train_data, val_data, run_dir, config, steps=(train_steps, val_steps)
        )
        baseline = most_common_caption([t for _, t in train_pairs])
        summary = {}
        splits = ["val"] + (["test"] if parts["test"] and parts["test"] != parts["val"] else [])
        for name in splits:
            videos = [examples[i] for i in parts[name]]
            source = (
                val_source if name == "val" else make_source(readers, examples, parts[name], config)
            )
            scores = score_captions(
                fitted.model,
                vocabulary,
                source,
                videos,
                matched,
                config,
                run_dir / f"{name}_captions.csv",
            )
            references = [matched[e.video_id] for e in videos]
            scores["baseline_most_common"] = {
                "caption": baseline,
                **caption_metrics([baseline] * len(references), references),
            }
            summary[name] = scores
        metrics = summary["val"]
        metrics["decoding"] = {"beam": config.beam, "max_words": config.max_words}
        metrics["vocabulary_size"] = vocabulary.size
        write_json(
            run_dir / "metrics.json",
            {"split": "val", **metrics, **({"test": summary["test"]} if "test" in summary else {})},
        )
        write_json(
            run_dir / "config.json",
            run_config(config, readers, settings, examples, parts, fitted),
        )
        plot_learning_curves(run_dir / "history.csv", run_dir / "learning_curves.png")
        return TrainResult(
            run_dir,
            metrics,
            fitted.epochs_run,
            fitted.interrupted,
            summary.get("test"),
            notes,
        )
    finally:
        for reader in readers:
            reader.close()


def evaluate_captions(run, readers, captions_csv: Path, config: TrainConfig, out_dir: Path) -> dict:
    """Caption every video of ``readers`` that ``captions_csv`` describes and score them;
    the captions go to ``out_dir/captions.csv``."""
    examples, matched, notes = captioned_videos(readers, captions_csv, config.label_map or None)
    source = SequenceSource(readers, examples, False, config.seq_len, config.max_len)
    metrics = score_captions(
        run.model, run.vocabulary, source, examples, matched, config, Path(out_dir) / "captions.csv"
    )
    metrics["decoding"] = {"beam": config.beam, "max_words": config.max_words}
    metrics["notes"] = notes
    return metrics
