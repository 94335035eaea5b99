"""``--task multilabel``: several labels per video (YouTube-8M, Charades).

A video's labels are its cache label split at ``;`` (``extract-features --labels CSV``
with ``path,label`` rows such as ``clip.mp4,dog;ball``, or an import that records them);
``--label-map`` renames or drops single labels. The model is the classifier's body with an
independent sigmoid per class, trained on binary cross-entropy (``--class-weight balanced``
weighs each class's positives by its negatives-to-positives ratio in the training split).
Metrics (:mod:`vidcache.models.rankmetrics`, YouTube-8M's definitions): mAP, GAP@20,
hit@1, and micro precision, recall and F1 of the labels at or above ``--threshold``.

A multi-label run folder also holds ``labels.json`` (class names in output order).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from vidcache.models.data import DataError, SequenceSource, collect_examples, make_dataset
from vidcache.pipeline.training.fitting import body_options, predict_all, write_json
from vidcache.pipeline.training.tasks.base import Task, csv_field, read_class_names, top_classes

SEPARATOR = ";"


def tags_of(label: str | None, label_map: dict) -> list[str]:
    """A cache label's labels: split at ``;``, stripped, renamed by ``label_map`` (a label
    mapped to ``""`` is dropped), each once, in order."""
    out = []
    for tag in (label or "").split(SEPARATOR):
        tag = label_map.get(tag.strip(), tag.strip())
        if tag and tag not in out:
            out.append(tag)
    return out


def label_matrix(tags: list[list[str]], classes: list[str]) -> np.ndarray:
    """``(videos, classes)`` 0/1; labels outside ``classes`` are left out."""
    index = {name: i for i, name in enumerate(classes)}
    matrix = np.zeros((len(tags), len(classes)), np.float32)
    for row, names in enumerate(tags):
        matrix[row, [index[n] for n in names if n in index]] = 1.0
    return matrix


def multilabel_scores(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """mAP, GAP@20, hit@1 and micro precision/recall/F1 at ``threshold``."""
    from vidcache.models.rankmetrics import multilabel_metrics

    metrics = multilabel_metrics(scores, labels, top_k=20)
    chosen = scores >= threshold
    hits, picked, true = (
        float((chosen & (labels > 0)).sum()),
        float(chosen.sum()),
        float(labels.sum()),
    )
    precision = hits / picked if picked else 0.0
    recall = hits / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    metrics.update(threshold=threshold, precision=precision, recall=recall, f1=f1)
    return metrics


class Multilabel(Task):
    """A classifier of several labels per video, from the cache's ``;``-separated labels."""

    name = "multilabel"
    summary = "several labels per video (the cache's labels split at ';'); sigmoid outputs"
    options = (("threshold",),)
    curve = "auc"

    def collect(self, readers):
        videos = collect_examples(readers)
        self.tags = [tags_of(e.label, self.config.label_map) for e in videos]
        kept = [i for i, tags in enumerate(self.tags) if tags]
        if len(kept) < len(videos):
            self.notes.append(f"{len(videos) - len(kept)} video(s) have no label left")
        self.tags = [self.tags[i] for i in kept]
        self.classes = sorted({t for tags in self.tags for t in tags})
        if len(self.classes) < 2:
            raise DataError("a multi-label run needs two labels among the videos")
        self.targets = label_matrix(self.tags, self.classes)
        # One stratum: the split is a random share of the videos (groups still kept whole).
        return [replace(videos[i], label="all") for i in kept]

    def check_split(self, examples, parts):
        self.parts = parts
        unseen = [c for c, n in zip(self.classes, self.targets[parts["train"]].sum(0)) if n == 0]
        if unseen:
            self.notes.append(f"no training video has the label(s) {', '.join(unseen[:5])}")

    def build(self, mean, variance):
        import keras

        from vidcache.models.heads import build_classifier

        model = build_classifier(
            len(self.classes), mean, variance, readout=self.config.readout,
            activation="sigmoid", **body_options(self.config),
        )  # fmt: skip
        if self.config.class_weight == "balanced":
            from vidcache.models.multilabel import WeightedBinaryCrossentropy

            train = self.targets[self.parts["train"]]
            positives = np.maximum(train.sum(0), 1.0)
            loss = WeightedBinaryCrossentropy((len(train) - positives) / positives)
        else:
            loss = "binary_crossentropy"
        model.compile(
            optimizer=keras.optimizers.Adam(self.config.lr),
            loss=loss,
            metrics=[keras.metrics.AUC(multi_label=True, name="auc")],
        )
        return model

    def dataset(self, split, source, batch_size, shuffle=False, seed=0, shard=None, repeat=False):
        targets = self.targets[self.parts[split]]
        return make_dataset(source, targets, batch_size, shuffle, seed, shard, repeat)

    def score(self, model, split, source, run_dir):
        scores = predict_all(model, source, self.config.batch_size)
        metrics = multilabel_scores(scores, self.targets[self.parts[split]], self.config.threshold)
        metrics["classes"] = self.classes
        return metrics

    def save(self, run_dir):
        write_json(run_dir / "labels.json", self.classes)

    def record(self):
        return {"classes": self.classes, "threshold": self.config.threshold}

    # -- a saved run -----------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir, config):
        import vidcache.models.multilabel  # noqa: F401  (registers the balanced loss)

        return {"classes": read_class_names(run_dir)}

    @classmethod
    def evaluate(cls, run, readers, annotations, config, out_dir):
        """The metrics on the labelled videos of ``readers`` (labels the run does not
        know are left out and named in a note)."""
        videos = collect_examples(readers)
        tags = [tags_of(e.label, config.label_map) for e in videos]
        unknown = sorted({t for names in tags for t in names} - set(run.classes))
        source = SequenceSource(readers, videos, False, config.seq_len, config.max_len)
        scores = predict_all(run.model, source, config.batch_size)
        threshold = run.config.get("threshold", 0.5)
        metrics = multilabel_scores(scores, label_matrix(tags, run.classes), threshold)
        metrics["notes"] = (
            [f"labels the run does not know: {', '.join(unknown)}"] if unknown else []
        )
        return metrics

    @classmethod
    def predict(cls, run, sequences, times, top_k, beam):
        threshold = run.config.get("threshold", 0.5)
        out = []
        for x in sequences:
            scores = run.model.predict(x[None], verbose=0)[0]
            top = top_classes(scores, run.classes, max(top_k, int((scores >= threshold).sum())))
            out.append({"top": top, "labels": [c for c, p in top if p >= threshold]})
        return out

    # -- text ------------------------------------------------------------------------------

    @classmethod
    def scores_text(cls, m):
        return (
            f"mAP {m['map']:.3f}, GAP@20 {m['gap@20']:.3f}, hit@1 {m['hit@1']:.3f}, "
            f"F1 {m['f1']:.3f} at {m['threshold']:g} on {m['videos']} videos"
        )

    @classmethod
    def prediction_text(cls, run, p):
        chosen = ", ".join(p.labels) or "(none)"
        return f"{chosen}; top " + ", ".join(f"{c} {q:.3f}" for c, q in p.top)

    @classmethod
    def prediction_json(cls, run, p):
        return {
            "labels": p.labels,
            "top": [{"label": c, "probability": round(q, 6)} for c, q in p.top],
        }

    @classmethod
    def csv_header(cls, run):
        return "path,rank,label,probability,chosen"

    @classmethod
    def csv_rows(cls, run, path, p):
        return [
            f"{path},{rank},{csv_field(c)},{q:.6f},{int(c in p.labels)}"
            for rank, (c, q) in enumerate(p.top, start=1)
        ]

    @classmethod
    def _stream_columns(cls, run):
        return "labels"

    @classmethod
    def stream_line(cls, run, frame, time, output, as_csv, top_k):
        threshold = run.config.get("threshold", 0.5)
        chosen = [run.classes[i] for i in np.argsort(-output) if output[i] >= threshold]
        if as_csv:
            return f"{frame},{time:.6g},{csv_field(SEPARATOR.join(chosen))}"
        top = np.argsort(-output)[:top_k]
        scores = ", ".join(f"{run.classes[i]} {output[i]:.3f}" for i in top)
        return f"frame {frame}: {', '.join(chosen) or '(none)'}; top {scores}"

    @classmethod
    def stream_final(cls, run, report):
        return ", ".join(f"{c} {p:.3f}" for c, p in report.top)
