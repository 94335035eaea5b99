"""``--task segment``: a class per frame (temporal action segmentation).

Per-frame labels come from a segments CSV (``--segments``: ``video,start,end,label`` in
seconds, :mod:`vidcache.models.segments`); frames outside every segment are
``background``. Heads: ``tcn`` (MS-TCN, :mod:`vidcache.models.tcn`; ``--causal`` to
stream), ``lstm``/``transformer`` with an output per frame, and ``mean``, the per-frame
baseline (each frame classified from its own features alone). Metrics as MS-TCN's
evaluation defines them (:mod:`vidcache.models.segmetrics`): frame accuracy, Edit,
F1@{10,25,50}, with background runs not counted as segments.

A segmentation run folder also holds ``labels.json`` (class names in output order).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from vidcache.models.annotations import VideoMatcher, cached_paths, match_rows, unmatched_note
from vidcache.models.data import (
    DataError,
    SequenceSource,
    collect_examples,
    pad_sequences,
    per_frame_dataset,
    shape_sequence,
)
from vidcache.models.segments import (
    BACKGROUND,
    frame_labels,
    labels_of_rows,
    read_frame_label_files,
    read_segments,
    runs_in_seconds,
)
from vidcache.pipeline.training.fitting import body_options, write_json
from vidcache.pipeline.training.tasks.base import Task, csv_field, read_class_names

#: What ``--head tcn`` alone reads (refused with another head, named).
TCN_OPTIONS = {"stages": 4, "stage_layers": 10, "smoothing": 0.15, "causal": False}


def frame_probabilities(model, sequences: list[np.ndarray], batch_size: int = 16) -> list:
    """``(T, C)`` class probabilities of each ``(T, D)`` sequence."""
    from vidcache.models.tcn import final_probabilities

    out = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        probs = final_probabilities(model(pad_sequences(chunk), training=False))
        out.extend(probs[row, : len(x)] for row, x in enumerate(chunk))
    return out


def labelled_frames(readers, path: Path, config, classes: list[str] | None = None):
    """The cached videos that the segments CSV (or folder of frame label files) at
    ``path`` covers, with a label per frame.

    Returns:
        ``(examples, labels, notes)``: labels per video as names, shaped like the run's
        sequences.

    Raises:
        DataError: no cached video has segments.
    """
    per_frame = Path(path).is_dir()
    table = read_frame_label_files(path) if per_frame else read_segments(path)
    matched, unmatched = match_rows(table, VideoMatcher(cached_paths(readers)), path)
    videos = collect_examples(readers, config.label_map or None, labelled_only=False)
    examples = [e for e in videos if e.video_id in matched]
    notes = unmatched_note(unmatched, path, "segment video(s)")
    if len(videos) > len(examples):
        notes.append(f"{len(videos) - len(examples)} cached video(s) have no segments")
    if not examples:
        raise DataError(f"no cached video has segments in {path}")
    labels, past = [], 0
    for e in examples:
        if per_frame:
            indices = readers[e.cache].frame_indices(e.video_id)
            names, beyond = labels_of_rows(matched[e.video_id], indices, BACKGROUND)
            past += beyond
        else:
            segments = sorted(matched[e.video_id])  # two rows' names of one video merge
            names = frame_labels(readers[e.cache].timestamps(e.video_id), segments, BACKGROUND)
        labels.append(shape_sequence(np.array(names, object), config.seq_len, config.max_len))
    if past:
        notes.append(f"{past} frame(s) lie past the end of their label file: background")
    return examples, labels, notes


class Segment(Task):
    """A per-frame classifier of the videos a segments CSV covers."""

    name = "segment"
    summary = "a class per frame, from a segments CSV (video,start,end,label in seconds)"
    annotations = "segments"
    options = (("stages",), ("stage_layers",), ("smoothing",), ("causal",))
    stream_every = 1

    def __init__(self, config):
        super().__init__(config)
        self.curve = "final_stage_accuracy" if config.head == "tcn" else "accuracy"

    def check(self):
        super().check()
        if self.config.head != "tcn":
            given = [k for k, v in TCN_OPTIONS.items() if getattr(self.config, k) != v]
            if given:
                raise DataError(f"--{given[0].replace('_', '-')} needs --head tcn")
        if self.config.bidirectional:
            raise DataError("--bidirectional: a segmentation head looks at past frames only")

    def collect(self, readers):
        examples, labels, notes = labelled_frames(readers, Path(self.config.segments), self.config)
        self.notes.extend(notes)
        self.classes = sorted({name for names in labels for name in names})
        if len(self.classes) < 2:
            raise DataError(
                f"every frame of {self.config.segments} has the label {self.classes[0]!r}: "
                "a segmentation run needs two classes"
            )
        index = {name: i for i, name in enumerate(self.classes)}
        self.targets = [np.array([index[n] for n in names], np.int32) for names in labels]
        return examples

    def prepare(self, examples, parts):
        self.parts = parts

    def build(self, mean, variance):
        import keras

        if self.config.head == "tcn":
            from vidcache.models.tcn import StagewiseLoss, build_tcn, final_stage_accuracy

            model = build_tcn(
                len(self.classes), mean, variance, self.config.stages,
                self.config.stage_layers, self.config.units, self.config.dropout,
                self.config.causal,
            )  # fmt: skip
            loss, metric = StagewiseLoss(self.config.smoothing), final_stage_accuracy
        else:
            from vidcache.models.heads import build_segmenter

            model = build_segmenter(len(self.classes), mean, variance, **body_options(self.config))
            loss, metric = "sparse_categorical_crossentropy", "accuracy"
        model.compile(
            optimizer=keras.optimizers.Adam(self.config.lr), loss=loss, weighted_metrics=[metric]
        )
        return model

    def dataset(self, split, source, batch_size, shuffle=False, seed=0, shard=None, repeat=False):
        targets = [self.targets[i] for i in self.parts[split]]
        weights = [np.ones(len(t), np.float32) for t in targets]
        return per_frame_dataset(source, targets, weights, batch_size, shuffle, seed, shard, repeat)

    def score(self, model, split, source, run_dir):
        truth = [self.targets[i] for i in self.parts[split]]
        metrics, predicted = score_segments(
            model, source, truth, self.classes, self.config.batch_size
        )
        if split == "val":
            names = [source.examples[i].video_id for i in range(len(source))]
            self._shown = list(zip(names, truth, predicted))
        return metrics

    def plots(self, run_dir, val):
        from vidcache.pipeline.training.plots import plot_segments

        plot_segments(self._shown, self.classes, run_dir / "segments.png", "validation")

    def save(self, run_dir):
        write_json(run_dir / "labels.json", self.classes)

    def record(self):
        return {"classes": self.classes, "background": BACKGROUND}

    # -- a saved run -----------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir, config):
        import vidcache.models.tcn  # noqa: F401  (registers the TCN's layers and loss)

        return {"classes": read_class_names(run_dir)}

    @classmethod
    def evaluate(cls, run, readers, annotations, config, out_dir):
        """Frame accuracy, Edit and F1@k on the videos ``annotations`` (a segments CSV)
        covers; frames with a label the run does not know count as wrong."""
        config = replace(config, segments=str(annotations))
        examples, labels, notes = labelled_frames(readers, Path(annotations), config)
        unknown = sorted({n for names in labels for n in names} - set(run.classes))
        if unknown:
            notes.append(f"labels the run does not know (always wrong): {', '.join(unknown)}")
        index = {name: i for i, name in enumerate(run.classes)}
        truth = [np.array([index.get(n, -1) for n in names], np.int32) for names in labels]
        source = SequenceSource(readers, examples, False, config.seq_len, config.max_len)
        metrics, predicted = score_segments(
            run.model, source, truth, run.classes, config.batch_size
        )
        metrics["notes"] = notes
        from vidcache.pipeline.training.plots import plot_segments

        shown = list(zip([e.video_id for e in examples], truth, predicted))
        plot_segments(shown, run.classes, out_dir / "segments.png", Path(readers[0].path).name)
        return metrics

    @classmethod
    def predict(cls, run, sequences, times, top_k, beam):
        out = []
        for probs, stamps in zip(frame_probabilities(run.model, sequences), times):
            names = [run.classes[i] for i in probs.argmax(1)]
            out.append(
                {
                    "labels": names,
                    "times": [float(t) for t in stamps],
                    "segments": runs_in_seconds(names, stamps, background=None),
                }
            )
        return out

    @classmethod
    def stream(cls, run, beam):
        from vidcache.models.stream import StreamingModel
        from vidcache.models.tcn import WindowStream, tcn_stream

        names = {layer.name for layer in run.model.layers}
        if "stages" in names:
            return tcn_stream(run.model)
        if "hidden" in names:  # the per-frame baseline: each frame on its own
            return WindowStream(run.model, 1)
        return StreamingModel(run.model)

    # -- text ------------------------------------------------------------------------------

    @classmethod
    def scores_text(cls, m):
        return (
            f"frame accuracy {m['frame_accuracy']:.3f}, Edit {m['edit']:.3f}, "
            f"F1@10/25/50 {m['f1@10']:.3f}/{m['f1@25']:.3f}/{m['f1@50']:.3f} on "
            f"{m['frames']} frames of {m['videos']} videos"
        )

    @classmethod
    def prediction_text(cls, run, p):
        return f"{len(p.segments)} segment(s): " + ", ".join(
            f"{label} {start:.2f}-{end:.2f} s" for start, end, label in p.segments
        )

    @classmethod
    def prediction_json(cls, run, p):
        return {
            "segments": [
                {"start": round(s, 6), "end": round(e, 6), "label": label}
                for s, e, label in p.segments
            ],
            "frames": [{"time": round(t, 6), "label": n} for t, n in zip(p.times, p.labels)],
        }

    @classmethod
    def csv_header(cls, run):
        return "path,start,end,label"

    @classmethod
    def csv_rows(cls, run, path, p):
        return [f"{path},{s:.6g},{e:.6g},{csv_field(label)}" for s, e, label in p.segments]

    @classmethod
    def _stream_columns(cls, run):
        return "label,probability"

    @classmethod
    def stream_line(cls, run, frame, time, output, as_csv, top_k):
        best = int(np.argmax(output))
        if as_csv:
            return f"{frame},{time:.6g},{csv_field(run.classes[best])},{output[best]:.6f}"
        return f"frame {frame} ({time:.2f} s): {run.classes[best]} {output[best]:.3f}"

    @classmethod
    def stream_final(cls, run, report):
        return ", ".join(f"{c} {p:.3f}" for c, p in report.top)


def score_segments(model, source, truth: list[np.ndarray], classes: list[str], batch_size):
    """Segmentation metrics of ``model`` on ``source`` against class indices ``truth``
    (-1: a label the model does not know), and the predicted class indices per video."""
    from vidcache.models.segmetrics import segmentation_metrics

    probs = frame_probabilities(model, [source[i] for i in range(len(source))], batch_size)
    predicted = [p.argmax(1) for p in probs]
    named = [[classes[i] if i >= 0 else "?" for i in y] for y in truth]
    metrics = segmentation_metrics(
        [[classes[i] for i in p] for p in predicted], named, {BACKGROUND}
    )
    metrics["classes"] = classes
    return metrics, predicted
