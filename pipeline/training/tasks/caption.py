"""``--task caption``: an encoder-decoder that writes a sentence about each video.

Every ``(video, caption)`` pair is a training example; the split is by video, so all the
captions of a video are on one side. The vocabulary is adapted to the training captions
only. Validation videos are captioned (greedy, or beam search with ``--beam``) and scored
against all of their references; the same scores for the most common training caption,
given to every video, are the baseline.

A caption run folder also holds ``vectorizer.keras`` (the ``TextVectorization`` layer) and
``val_captions.csv`` (``test_captions.csv`` with a split file's test part).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from vidcache.features.untrusted import csv_text
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
    pad_sequences,
)
from vidcache.models.text import CaptionVocabulary
from vidcache.models.textmetrics import caption_metrics, tokenize
from vidcache.pipeline.training.tasks.base import Task, csv_field


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
            writer.writerow([csv_text(video.video_id), csv_text(text), csv_text(" | ".join(refs))])


def score_captions(model, vocabulary, source, videos, matched, config, csv_path: Path) -> dict:
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
        DataError: no video has a caption.
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


class Caption(Task):
    """An encoder-decoder captioner of the captioned videos (``--captions`` CSV)."""

    name = "caption"
    summary = "a sentence per video, from a captions CSV"
    annotations = "captions"
    options = (("attention", "beam"), ("scorer",))
    stream_every = 5

    def check(self):
        config = self.config
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

    def collect(self, readers):
        examples, self.matched, notes = captioned_videos(
            readers, Path(self.config.captions), self.config.label_map or None
        )
        self.notes.extend(notes)
        self.examples = examples
        return examples

    def prepare(self, examples, parts):
        def pairs_of(indices):
            return [
                (row, text)
                for row, i in enumerate(indices)
                for text in self.matched[examples[i].video_id]
            ]

        self.parts = parts
        train_pairs, val_pairs = pairs_of(parts["train"]), pairs_of(parts["val"])
        self.train_texts = [t for _, t in train_pairs]
        self.vocabulary = CaptionVocabulary.build(self.train_texts, self.config.vocab_size)
        texts = self.train_texts + [t for _, t in val_pairs]
        self.tokens = self.vocabulary.encode(texts, self.config.max_words)
        self.rows = {
            "train": [(row, k) for k, (row, _) in enumerate(train_pairs)],
            "val": [(row, len(train_pairs) + k) for k, (row, _) in enumerate(val_pairs)],
        }

    def build(self, mean, variance):
        import keras

        from vidcache.models.captioner import build_captioner

        config = self.config
        model = build_captioner(
            self.vocabulary.size,
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
        return model

    def before_fit(self, run_dir):
        self.vocabulary.save(run_dir)

    def size(self, split, source):
        return len(self.rows[split])

    def dataset(self, split, source, batch_size, shuffle=False, seed=0, shard=None, repeat=False):
        tokens_in, tokens_out = self.tokens
        return caption_dataset(
            source,
            self.rows[split],
            tokens_in,
            tokens_out,
            batch_size,
            shuffle,
            seed,
            shard,
            repeat,
        )

    def score(self, model, split, source, run_dir):
        videos = [self.examples[i] for i in self.parts[split]]
        scores = score_captions(
            model,
            self.vocabulary,
            source,
            videos,
            self.matched,
            self.config,
            run_dir / f"{split}_captions.csv",
        )
        references = [self.matched[e.video_id] for e in videos]
        baseline = most_common_caption(self.train_texts)
        scores["baseline_most_common"] = {
            "caption": baseline,
            **caption_metrics([baseline] * len(references), references),
        }
        return scores

    def final_metrics(self, val):
        val["decoding"] = {"beam": self.config.beam, "max_words": self.config.max_words}
        val["vocabulary_size"] = self.vocabulary.size
        return val

    # -- a saved run -----------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir, config):
        return {"vocabulary": CaptionVocabulary.load(run_dir)}

    @classmethod
    def evaluate(cls, run, readers, annotations, config, out_dir):
        """Caption every video of ``readers`` that ``annotations`` (a captions CSV)
        describes and score them; the captions go to ``out_dir/captions.csv``."""
        examples, matched, notes = captioned_videos(
            readers, Path(annotations), config.label_map or None
        )
        source = SequenceSource(readers, examples, False, config.seq_len, config.max_len)
        metrics = score_captions(
            run.model,
            run.vocabulary,
            source,
            examples,
            matched,
            config,
            Path(out_dir) / "captions.csv",
        )
        metrics["decoding"] = {"beam": config.beam, "max_words": config.max_words}
        metrics["notes"] = notes
        return metrics

    @classmethod
    def _decoding(cls, run, beam):
        train = run.config.get("train", {})
        width = beam if beam is not None else int(train.get("beam", 1))
        return width, int(train.get("max_words", 20))

    @classmethod
    def predict(cls, run, sequences, times, top_k, beam):
        width, max_words = cls._decoding(run, beam)
        texts = generate_captions(run.model, run.vocabulary, sequences, width, max_words)
        return [{"caption": text} for text in texts]

    @classmethod
    def stream(cls, run, beam):
        from vidcache.models.captioner import StreamingCaptioner

        return StreamingCaptioner(run.model, *cls._decoding(run, beam))

    @classmethod
    def stream_output(cls, run, stream, output):
        return run.vocabulary.decode(stream.caption())  # decoding is not in the step time

    @classmethod
    def stream_result(cls, run, stream, output, top_k):
        return {
            "top": [],
            "output": np.zeros(0),
            "caption": run.vocabulary.decode(stream.caption()),
        }

    # -- text ------------------------------------------------------------------------------

    @classmethod
    def scores_text(cls, m):
        bleu = "/".join(f"{m[f'bleu{n}']:.3f}" for n in range(1, 5))
        text = f"BLEU-1..4 {bleu}, CIDEr-D {m['cider_d']:.3f}"
        if "coco" in m:
            c = m["coco"]
            text += (
                f"; coco-caption scorer: BLEU-4 {c['bleu4']:.3f}, METEOR {c['meteor']:.3f}, "
                f"ROUGE-L {c['rouge_l']:.3f}, CIDEr-D {c['cider_d']:.3f}"
            )
        return text

    @classmethod
    def result_lines(cls, result, trained):
        m = result.metrics
        b = m["baseline_most_common"]
        lines = [
            f"{trained} {cls.scores_text(m)} on {m['videos']} videos",
            f"baseline (always {b['caption']!r}): {cls.scores_text(b)}",
        ]
        if result.test_metrics:
            t = result.test_metrics
            lines.append(f"test {cls.scores_text(t)} on {t['videos']} videos")
        return lines

    @classmethod
    def evaluation_lines(cls, metrics, where, out):
        return [
            f"{where}: {cls.scores_text(metrics)} on {metrics['videos']} videos "
            f"-> {out}/metrics.json"
        ]

    @classmethod
    def prediction_text(cls, run, p):
        return p.caption

    @classmethod
    def prediction_json(cls, run, p):
        return {"caption": p.caption}

    @classmethod
    def csv_header(cls, run):
        return "path,caption"

    @classmethod
    def csv_rows(cls, run, path, p):
        return [f"{path},{csv_field(p.caption)}"]

    @classmethod
    def _stream_columns(cls, run):
        return "caption"

    @classmethod
    def stream_line(cls, run, frame, time, output, as_csv, top_k):
        if as_csv:
            return f"{frame},{time:.6g},{csv_field(output)}"
        return f"frame {frame} ({time:.2f} s): {output}"

    @classmethod
    def stream_final(cls, run, report):
        return report.caption
