"""``--task regress``: one value (vector) per video, or one per frame.

Per-video targets (``path,value[,value...]``) train a sequence-to-one model; per-frame
targets (``path,time,value[,value...]``) are matched to the cached frames by timestamp
(nearest row within ``--time-tolerance`` seconds; frames without a row get zero weight) and
train a sequence-to-sequence model, the steering-angle set-up. Loss: MSE; reported: MSE,
MAE, RMSE and R^2 on the validation videos, next to the errors of always predicting the
training mean.

A regression run folder also holds ``targets.json`` (output names, per-frame or not).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from vidcache.models.annotations import (
    TargetTable,
    VideoMatcher,
    align_targets,
    cached_paths,
    match_rows,
    read_targets,
    unmatched_note,
)
from vidcache.models.data import (
    DataError,
    SequenceSource,
    batched_dataset,
    collect_examples,
    pad_sequences,
    per_frame_dataset,
    shape_sequence,
)
from vidcache.models.metrics import regression_metrics
from vidcache.pipeline.training.fitting import TrainConfig, body_options, write_json
from vidcache.pipeline.training.tasks.base import Task, csv_field, values_text


def regression_dataset(
    source, targets, weights, batch_size, shuffle=False, seed=0, shard=None, repeat=False
):
    """``(frames, targets, weights)`` batches: targets ``(B, K)`` with weights ``(B,)``,
    or per frame ``(B, T, K)`` with ``(B, T)`` weights that are 0 on padding."""
    if targets[0].ndim == 2:
        return per_frame_dataset(source, targets, weights, batch_size, shuffle, seed, shard, repeat)
    from vidcache.features.backbone import import_tensorflow

    tf = import_tensorflow()
    dim = source[0].shape[1]
    width = targets[0].shape[-1]

    def make_batch(rows):
        frames = pad_sequences([source[int(i)] for i in rows])
        return frames, np.stack([targets[i] for i in rows]), np.ones(len(rows), np.float32)

    signature = (
        tf.TensorSpec((None, None, dim), tf.float32),
        tf.TensorSpec((None, width), tf.float32),
        tf.TensorSpec((None,), tf.float32),
    )
    return batched_dataset(
        len(source), make_batch, signature, batch_size, shuffle, seed, shard, repeat
    )


def predict_sequences(model, sequences: list[np.ndarray], batch_size: int = 16) -> list:
    """The model's output for each ``(T, D)`` sequence: ``(K,)``, or ``(T, K)`` per frame."""
    out = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        result = np.asarray(model(pad_sequences(chunk), training=False))
        for row, sequence in enumerate(chunk):
            out.append(result[row, : len(sequence)] if result.ndim == 3 else result[row])
    return out


def score_regression(model, source, targets, weights, baseline, names, config) -> dict:
    """Predict the sequences of ``source`` and compare with ``targets`` (see
    :func:`models.metrics.regression_metrics`; ``baseline`` is the training mean)."""
    predictions = predict_sequences(
        model, [source[i] for i in range(len(source))], config.batch_size
    )
    metrics = regression_metrics(predictions, targets, weights, baseline, names)
    metrics["per_frame"] = weights is not None
    return metrics


def _frame_targets(readers, examples, matched, config):
    """Align per-frame rows to each video's timestamps; drop videos with no match."""
    kept, targets, weights, unmatched_frames = [], [], [], 0
    for example in examples:
        times, values = matched[example.video_id]
        stamps = readers[example.cache].timestamps(example.video_id)
        y, w = align_targets(stamps, times, values, config.time_tolerance)
        unmatched_frames += int((w == 0).sum())
        if w.sum() == 0:
            continue
        kept.append(example)
        targets.append(shape_sequence(y, config.seq_len, config.max_len))
        weights.append(shape_sequence(w, config.seq_len, config.max_len))
    return kept, targets, weights, unmatched_frames


def targeted_videos(readers, table: TargetTable, config: TrainConfig):
    """The cached videos that ``table`` (read from ``config.targets``) has targets for.

    Returns:
        ``(examples, targets, weights, notes)``: targets per video ``(K,)`` (weights None),
        or per frame ``(T, K)`` with ``(T,)`` weights, shaped like the run's sequences.

    Raises:
        DataError: no video has targets.
    """
    matched, unmatched = match_rows(
        table.values, VideoMatcher(cached_paths(readers)), config.targets
    )
    videos = collect_examples(readers, config.label_map or None, labelled_only=False)
    examples = [e for e in videos if e.video_id in matched]
    notes = unmatched_note(unmatched, config.targets, "target path(s)")
    if table.per_frame:
        found = len(examples)
        examples, targets, weights, missed = _frame_targets(readers, examples, matched, config)
        if found > len(examples):
            notes.append(
                f"{found - len(examples)} video(s) have no target row within "
                f"{config.time_tolerance} s of any frame (--time-tolerance)"
            )
        if missed:
            notes.append(f"{missed} frame(s) have no target within {config.time_tolerance} s")
    else:
        targets = [matched[e.video_id] for e in examples]
        weights = None
    if len(videos) > len(examples):
        notes.append(f"{len(videos) - len(examples)} cached video(s) have no targets")
    if not examples:
        raise DataError(f"no cached video has targets in {config.targets}")
    return examples, targets, weights, notes


class Regress(Task):
    """A regressor of the videos a targets CSV gives values for (per video or per frame).

    Subclasses that compute their targets from the cache (no CSV) override
    :meth:`targets_of` and set ``annotations = None``.
    """

    name = "regress"
    summary = "values per video or per frame, from a targets CSV"
    annotations = "targets"
    curve = "mae"
    stream_every = 1

    def check(self):
        if not self.config.targets:
            raise DataError("a regression run needs --targets CSV (path,value or path,time,value)")

    def targets_of(self, readers):
        """``(examples, targets, weights, names, per_frame)`` of the videos with targets;
        notes go to ``self.notes``."""
        table = read_targets(Path(self.config.targets))
        examples, targets, weights, notes = targeted_videos(readers, table, self.config)
        self.notes.extend(notes)
        if len(examples) < 2:
            raise DataError(
                f"a regression run needs two videos with targets, {self.config.targets} has one"
            )
        return examples, targets, weights, table.names, table.per_frame

    def collect(self, readers):
        examples, self.targets, self.weights, self.names, self.per_frame = self.targets_of(readers)
        if self.per_frame and self.config.head == "mean":
            raise DataError(
                "per-frame targets need --head lstm or transformer (the mean head has one output)"
            )
        return examples

    def _pick(self, items, split):
        return None if items is None else [items[i] for i in self.parts[split]]

    def prepare(self, examples, parts):
        self.parts = parts
        train_y, train_w = self._pick(self.targets, "train"), self._pick(self.weights, "train")
        if self.per_frame:
            rows = np.concatenate(train_y)[np.concatenate(train_w) > 0]
        else:
            rows = np.stack(train_y)
        self.target_mean, self.target_variance = rows.mean(0), rows.var(0)

    def build(self, mean, variance):
        import keras

        from vidcache.models.heads import build_regressor

        model = build_regressor(
            self.target_mean,
            self.target_variance,
            mean,
            variance,
            self.per_frame,
            **body_options(self.config),
        )
        model.compile(
            optimizer=keras.optimizers.Adam(self.config.lr), loss="mse", weighted_metrics=["mae"]
        )
        return model

    def dataset(self, split, source, batch_size, shuffle=False, seed=0, shard=None, repeat=False):
        return regression_dataset(
            source,
            self._pick(self.targets, split),
            self._pick(self.weights, split),
            batch_size,
            shuffle,
            seed,
            shard,
            repeat,
        )

    def score(self, model, split, source, run_dir):
        return score_regression(
            model,
            source,
            self._pick(self.targets, split),
            self._pick(self.weights, split),
            self.target_mean,
            self.names,
            self.config,
        )

    def save(self, run_dir):
        write_json(run_dir / "targets.json", {"names": self.names, "per_frame": self.per_frame})

    def record(self):
        return {
            "targets": {
                "names": self.names,
                "per_frame": self.per_frame,
                "train_mean": [float(v) for v in self.target_mean],
            }
        }

    # -- a saved run -----------------------------------------------------------------------

    @classmethod
    def evaluate(cls, run, readers, annotations, config, out_dir):
        """Errors on the videos of ``readers`` that ``annotations`` (a targets CSV) gives
        targets for, next to those of the run's training mean."""
        targets_csv = Path(annotations)
        table = read_targets(targets_csv)
        if table.per_frame != run.per_frame or len(table.names) != len(run.target_names):
            kind = "per-frame" if run.per_frame else "per-video"
            raise DataError(
                f"{targets_csv} does not fit {run.path}: the run predicts {kind} "
                f"{', '.join(run.target_names)}"
            )
        config = replace(config, targets=str(targets_csv))
        examples, targets, weights, notes = targeted_videos(readers, table, config)
        return cls.score_run(run, readers, examples, targets, weights, notes, config)

    @classmethod
    def score_run(cls, run, readers, examples, targets, weights, notes, config) -> dict:
        """The errors of ``run`` on ``examples`` against ``targets``, beside its training
        mean's."""
        source = SequenceSource(readers, examples, False, config.seq_len, config.max_len)
        baseline = np.asarray(run.config["targets"]["train_mean"], np.float32)
        metrics = score_regression(
            run.model, source, targets, weights, baseline, run.target_names, config
        )
        metrics["notes"] = notes
        return metrics

    @classmethod
    def predict(cls, run, sequences, times, top_k, beam):
        out = []
        for values, stamps in zip(predict_sequences(run.model, sequences), times):
            fields = {"values": np.asarray(values, np.float64).tolist()}
            if run.per_frame:
                fields["times"] = [float(t) for t in stamps]
            out.append(fields)
        return out

    # -- text ------------------------------------------------------------------------------

    @classmethod
    def scores_text(cls, m):
        where = (
            f"{m['frames']} frames of {m['videos']} videos"
            if "frames" in m
            else f"{m['videos']} videos"
        )
        b = m["baseline_mean"]
        r2 = f", R^2 {m['r2']:.3f}" if m.get("r2") is not None else ""
        return (
            f"MSE {m['mse']:.4g}, MAE {m['mae']:.4g}{r2} on {where} "
            f"(predicting the training mean: MSE {b['mse']:.4g}, MAE {b['mae']:.4g})"
        )

    @classmethod
    def prediction_text(cls, run, p):
        if not run.per_frame:
            return values_text(run.target_names, p.values)
        values = np.asarray(p.values).reshape(len(p.values), -1)
        return f"{len(values)} frames; " + ", ".join(
            f"{n} mean {values[:, k].mean():.4g} (min {values[:, k].min():.4g}, "
            f"max {values[:, k].max():.4g})"
            for k, n in enumerate(run.target_names)
        )

    @classmethod
    def prediction_json(cls, run, p):
        out = {"names": run.target_names}
        if run.per_frame:
            out["frames"] = [
                {"time": round(t, 6), "values": [round(v, 6) for v in row]}
                for t, row in zip(p.times, p.values)
            ]
        else:
            out["values"] = [round(v, 6) for v in p.values]
        return out

    @classmethod
    def csv_header(cls, run):
        names = ",".join(csv_field(n) for n in run.target_names)
        return f"path,time,{names}" if run.per_frame else f"path,{names}"

    @classmethod
    def csv_rows(cls, run, path, p):
        if run.per_frame:
            return [
                f"{path},{t:.6g}," + ",".join(f"{v:.6g}" for v in row)
                for t, row in zip(p.times, p.values)
            ]
        return [f"{path}," + ",".join(f"{v:.6g}" for v in p.values)]

    @classmethod
    def _stream_columns(cls, run):
        return ",".join(csv_field(n) for n in run.target_names)

    @classmethod
    def stream_line(cls, run, frame, time, output, as_csv, top_k):
        if as_csv:
            return f"{frame},{time:.6g}," + ",".join(f"{v:.6g}" for v in output)
        return f"frame {frame} ({time:.2f} s): {values_text(run.target_names, output)}"

    @classmethod
    def stream_final(cls, run, report):
        return values_text(run.target_names, report.output)
