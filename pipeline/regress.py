"""Stage two for regression: one value (vector) per video, or one per frame.

Per-video targets (``path,value[,value...]``) train a sequence-to-one model; per-frame
targets (``path,time,value[,value...]``) are matched to the cached frames by timestamp
(nearest row within ``--time-tolerance`` seconds; frames without a row get zero weight) and
train a sequence-to-sequence model, the steering-angle set-up. Loss: MSE; reported: MSE,
MAE, RMSE and R^2 on the validation videos, next to the errors of always predicting the
training mean.

A regression run folder holds ``model.keras``, ``targets.json`` (output names, per-frame or
not), ``config.json``, ``history.csv``, ``metrics.json`` and ``learning_curves.png``.
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
    open_caches,
    pad_sequences,
    shape_sequence,
    standardization,
)
from vidcache.models.metrics import regression_metrics
from vidcache.pipeline.distribute import distribution
from vidcache.pipeline.fitting import (
    TrainConfig,
    TrainResult,
    batch_count,
    body_options,
    fit_model,
    make_source,
    run_config,
    split_examples,
    write_json,
)


def regression_dataset(
    source, targets, weights, batch_size, shuffle=False, seed=0, shard=None, repeat=False
):
    """``(frames, targets, weights)`` batches: targets ``(B, K)`` with weights ``(B,)``,
    or per frame ``(B, T, K)`` with ``(B, T)`` weights that are 0 on padding."""
    from vidcache.features.backbone import import_tensorflow

    tf = import_tensorflow()
    dim = source[0].shape[1]
    per_frame = targets[0].ndim == 2
    width = targets[0].shape[-1]

    def make_batch(rows):
        frames = pad_sequences([source[int(i)] for i in rows])
        if per_frame:
            return (
                frames,
                pad_sequences([targets[i] for i in rows]),
                pad_sequences([weights[i] for i in rows]),
            )
        return frames, np.stack([targets[i] for i in rows]), np.ones(len(rows), np.float32)

    shape = (None, None, width) if per_frame else (None, width)
    signature = (
        tf.TensorSpec((None, None, dim), tf.float32),
        tf.TensorSpec(shape, tf.float32),
        tf.TensorSpec((None, None) if per_frame else (None,), tf.float32),
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


def train_regressor(cache_paths: list[Path], run_dir: Path, config: TrainConfig) -> TrainResult:
    """Train a regressor on the videos of ``cache_paths`` that have targets.

    Raises:
        AnnotationError: the targets file cannot be read.
        DataError: fewer than two videos with targets, or an impossible split.
    """
    from vidcache.features.backbone import import_tensorflow

    import_tensorflow()
    import keras

    from vidcache.models.heads import build_regressor
    from vidcache.pipeline.plots import plot_learning_curves

    if not config.targets:
        raise DataError("a regression run needs --targets CSV (path,value or path,time,value)")
    run_dir = Path(run_dir)
    table = read_targets(Path(config.targets))
    readers, settings = open_caches([Path(p) for p in cache_paths], config.fuse)
    try:
        examples, targets, weights, notes = targeted_videos(readers, table, config)
        if len(examples) < 2:
            raise DataError(
                f"a regression run needs two videos with targets, {config.targets} has one"
            )
        if table.per_frame and config.head == "mean":
            raise DataError(
                "per-frame targets need --head lstm or transformer (the mean head has one output)"
            )
        parts = split_examples(examples, config)
        train_source = make_source(readers, examples, parts["train"], config)
        val_source = make_source(readers, examples, parts["val"], config)
        mean, variance = standardization(train_source)

        def pick(items, name):
            return None if items is None else [items[i] for i in parts[name]]

        train_y, val_y = pick(targets, "train"), pick(targets, "val")
        train_w, val_w = pick(weights, "train"), pick(weights, "val")
        if table.per_frame:
            rows = np.concatenate(train_y)[np.concatenate(train_w) > 0]
        else:
            rows = np.stack(train_y)
        target_mean, target_variance = rows.mean(0), rows.var(0)

        spread = distribution(config.distribute)
        keras.utils.set_random_seed(config.seed)
        with spread.scope():
            model = build_regressor(
                target_mean,
                target_variance,
                mean,
                variance,
                table.per_frame,
                **body_options(config),
            )
            model.compile(
                optimizer=keras.optimizers.Adam(config.lr), loss="mse", weighted_metrics=["mae"]
            )
        train_data, train_steps = spread.dataset(
            lambda b, shard, repeat: regression_dataset(
                train_source, train_y, train_w, b, True, config.seed, shard, repeat
            ),
            batch_count(len(train_source)),
            config.batch_size,
        )
        val_data, val_steps = spread.dataset(
            lambda b, shard, repeat: regression_dataset(
                val_source, val_y, val_w, b, shard=shard, repeat=repeat
            ),
            batch_count(len(val_source)),
            config.batch_size,
        )
        fitted = fit_model(
            model, train_data, val_data, run_dir, config, steps=(train_steps, val_steps)
        )
        metrics = score_regression(
            fitted.model, val_source, val_y, val_w, target_mean, table.names, config
        )
        test_metrics = None
        if parts["test"] and parts["test"] != parts["val"]:
            test_metrics = score_regression(
                fitted.model,
                make_source(readers, examples, parts["test"], config),
                pick(targets, "test"),
                pick(weights, "test"),
                target_mean,
                table.names,
                config,
            )
        write_json(
            run_dir / "metrics.json",
            {"split": "val", **metrics, **({"test": test_metrics} if test_metrics else {})},
        )
        write_json(run_dir / "targets.json", {"names": table.names, "per_frame": table.per_frame})
        write_json(
            run_dir / "config.json",
            run_config(
                config,
                readers,
                settings,
                examples,
                parts,
                fitted,
                targets={
                    "names": table.names,
                    "per_frame": table.per_frame,
                    "train_mean": [float(v) for v in target_mean],
                },
            ),
        )
        plot_learning_curves(run_dir / "history.csv", run_dir / "learning_curves.png", "mae")
        return TrainResult(
            run_dir, metrics, fitted.epochs_run, fitted.interrupted, test_metrics, notes
        )
    finally:
        for reader in readers:
            reader.close()


def evaluate_regression(run, readers, targets_csv: Path, config: TrainConfig) -> dict:
    """Errors of a regression run on the videos of ``readers`` that ``targets_csv`` gives
    targets for, next to those of the run's training mean."""
    table = read_targets(targets_csv)
    if table.per_frame != run.per_frame or len(table.names) != len(run.target_names):
        kind = "per-frame" if run.per_frame else "per-video"
        raise DataError(
            f"{targets_csv} does not fit {run.path}: the run predicts {kind} "
            f"{', '.join(run.target_names)}"
        )
    config = replace(config, targets=str(targets_csv))
    examples, targets, weights, notes = targeted_videos(readers, table, config)
    source = SequenceSource(readers, examples, False, config.seq_len, config.max_len)
    baseline = np.asarray(run.config["targets"]["train_mean"], np.float32)
    metrics = score_regression(
        run.model, source, targets, weights, baseline, run.target_names, config
    )
    metrics["notes"] = notes
    return metrics
