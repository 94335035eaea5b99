"""``--task classify``: one class per video, from the labels the cache holds.

A classification run folder also holds ``labels.json`` (class names in output order) and
``confusion_matrix.png`` (validation split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidcache.models.data import (
    DataError,
    SequenceSource,
    check_classes,
    collect_examples,
    make_dataset,
)
from vidcache.models.metrics import classification_metrics
from vidcache.pipeline.training.distribute import DistributeError
from vidcache.pipeline.training.fitting import body_options, class_weights, predict_all, write_json
from vidcache.pipeline.training.tasks.base import Task, csv_field, read_class_names, top_classes


class Classify(Task):
    """A classifier of the labelled videos (the label is the cache's, renamed by
    ``--label-map``)."""

    name = "classify"
    summary = "one class per video, from the cache's labels"
    fine_tunable = True

    def collect(self, readers):
        examples = collect_examples(readers, self.config.label_map or None)
        self.classes = check_classes(examples)
        index = {name: i for i, name in enumerate(self.classes)}
        self.targets = np.array([index[e.label] for e in examples], np.int32)
        return examples

    def check_split(self, examples, parts):
        missing = sorted(set(self.classes) - {examples[i].label for i in parts["train"]})
        if missing:
            raise DataError(f"no training videos for class(es) {', '.join(missing)}")
        self.parts = parts

    def check_distribution(self, distributed):
        if distributed and self.config.class_weight == "balanced":
            raise DistributeError("--class-weight balanced cannot be used with --distribute")

    def build(self, mean, variance):
        import keras

        from vidcache.models.heads import build_classifier

        model = build_classifier(
            len(self.classes),
            mean,
            variance,
            readout=self.config.readout,
            **body_options(self.config),
        )
        model.compile(
            optimizer=keras.optimizers.Adam(self.config.lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def dataset(self, split, source, batch_size, shuffle=False, seed=0, shard=None, repeat=False):
        targets = self.targets[self.parts[split]]
        return make_dataset(source, targets, batch_size, shuffle, seed, shard, repeat)

    def class_weight(self):
        if self.config.class_weight != "balanced":
            return None
        return class_weights(self.targets[self.parts["train"]], len(self.classes))

    def score(self, model, split, source, run_dir):
        probabilities = predict_all(model, source, self.config.batch_size)
        return classification_metrics(probabilities, self.targets[self.parts[split]], self.classes)

    def save(self, run_dir):
        write_json(run_dir / "labels.json", self.classes)

    def record(self):
        return {"classes": self.classes}

    def plots(self, run_dir, val):
        from vidcache.pipeline.training.plots import plot_confusion

        plot_confusion(val, run_dir / "confusion_matrix.png", "validation")

    # -- a saved run -----------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir, config):
        return {"classes": read_class_names(run_dir)}

    @classmethod
    def evaluate(cls, run, readers, annotations, config, out_dir):
        """Score on the labelled videos of ``readers`` (others are counted and left out);
        the confusion matrix goes to ``out_dir``."""
        from vidcache.pipeline.training.plots import plot_confusion

        examples = collect_examples(readers, config.label_map or None)
        index = {name: i for i, name in enumerate(run.classes)}
        known = [e for e in examples if e.label in index]
        if not known:
            names = ", ".join(Path(r.path).name for r in readers)
            raise DataError(f"no video of {names} has one of the run's classes")
        source = SequenceSource(readers, known, False, config.seq_len, config.max_len)
        targets = np.array([index[e.label] for e in known], np.int32)
        metrics = classification_metrics(
            predict_all(run.model, source, config.batch_size), targets, run.classes
        )
        metrics["unknown_label_videos"] = len(examples) - len(known)
        plot_confusion(metrics, out_dir / "confusion_matrix.png", Path(readers[0].path).name)
        return metrics

    @classmethod
    def predict(cls, run, sequences, times, top_k, beam):
        return [
            {"top": top_classes(run.model.predict(x[None], verbose=0)[0], run.classes, top_k)}
            for x in sequences
        ]

    # -- text ------------------------------------------------------------------------------

    @classmethod
    def scores_text(cls, m):
        # top-5 says nothing with five classes or fewer (it is 1 by definition)
        top5 = f", top-5 {m['top5']:.3f}" if len(m.get("classes", [])) > 5 else ""
        return (
            f"top-1 {m['top1']:.3f}{top5}, macro F1 {m['macro_f1']:.3f} on {m['examples']} videos"
        )

    @classmethod
    def result_lines(cls, result, trained):
        lines = [f"{trained} {cls.scores_text(result.metrics)}"]
        if result.test_metrics:
            t = result.test_metrics
            lines.append(f"test top-1 {t['top1']:.3f} on {t['examples']} videos")
        return lines

    @classmethod
    def evaluation_lines(cls, metrics, where, out):
        lines = super().evaluation_lines(metrics, where, out)
        if metrics["unknown_label_videos"]:
            lines.append(
                f"({metrics['unknown_label_videos']} videos with labels the run does not know "
                "were left out)"
            )
        return lines

    @classmethod
    def prediction_text(cls, run, p):
        return ", ".join(f"{c} {q:.3f}" for c, q in p.top)

    @classmethod
    def prediction_json(cls, run, p):
        return {"top": [{"label": c, "probability": round(q, 6)} for c, q in p.top]}

    @classmethod
    def csv_header(cls, run):
        return "path,rank,label,probability"

    @classmethod
    def csv_rows(cls, run, path, p):
        return [
            f"{path},{rank},{csv_field(c)},{q:.6f}" for rank, (c, q) in enumerate(p.top, start=1)
        ]

    @classmethod
    def _stream_columns(cls, run):
        return "label,probability"

    @classmethod
    def stream_line(cls, run, frame, time, output, as_csv, top_k):
        if as_csv:
            best = int(np.argmax(output))
            return f"{frame},{time:.6g},{csv_field(run.classes[best])},{output[best]:.6f}"
        top = np.argsort(-output)[:top_k]
        return f"frame {frame}: " + ", ".join(f"{run.classes[i]} {output[i]:.3f}" for i in top)

    @classmethod
    def stream_final(cls, run, report):
        return ", ".join(f"{c} {p:.3f}" for c, p in report.top)
