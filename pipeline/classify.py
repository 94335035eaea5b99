"""Classification runs: train an LSTM classifier on labelled cached videos, evaluate it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidcache.features.cache import CacheReader
from vidcache.models.data import (
    DataError,
    SequenceSource,
    check_classes,
    collect_examples,
    make_dataset,
    open_caches,
    standardization,
)
from vidcache.models.metrics import classification_metrics
from vidcache.pipeline.distribute import DistributeError, distribution
from vidcache.pipeline.fitting import (
    TrainConfig,
    TrainResult,
    batch_count,
    body_options,
    class_weights,
    fit_model,
    make_source,
    predict_all,
    run_config,
    split_examples,
    write_json,
)
from vidcache.pipeline.runs import Run


def train_classifier(cache_paths: list[Path], run_dir: Path, config: TrainConfig) -> TrainResult:
    """Train a classifier of the labelled videos of ``cache_paths`` into ``run_dir``.

    Raises:
        SettingsMismatch: caches made with other settings.
        DataError: no labels, a single class, a class with one clip, an impossible split.
    """
    from vidcache.features.backbone import import_tensorflow

    import_tensorflow()  # quietly, before Keras
    import keras

    from vidcache.models.heads import build_classifier
    from vidcache.pipeline.plots import plot_confusion, plot_learning_curves

    run_dir = Path(run_dir)
    readers, settings = open_caches([Path(p) for p in cache_paths], config.fuse)
    try:
        examples = collect_examples(readers, config.label_map or None)
        classes = check_classes(examples)
        index = {name: i for i, name in enumerate(classes)}
        targets = np.array([index[e.label] for e in examples], np.int32)
        parts = split_examples(examples, config)
        missing = sorted(set(classes) - {examples[i].label for i in parts["train"]})
        if missing:
            raise DataError(f"no training videos for class(es) {', '.join(missing)}")

        def source(indices):
            return make_source(readers, examples, indices, config)

        train_source, val_source = source(parts["train"]), source(parts["val"])
        mean, variance = standardization(train_source)

        spread = distribution(config.distribute)
        if spread.active and config.class_weight == "balanced":
            raise DistributeError("--class-weight balanced cannot be used with --distribute")
        keras.utils.set_random_seed(config.seed)
        with spread.scope():
            model = build_classifier(
                len(classes), mean, variance, readout=config.readout, **body_options(config)
            )
            model.compile(
                optimizer=keras.optimizers.Adam(config.lr),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
        train_targets, val_targets = targets[parts["train"]], targets[parts["val"]]
        train_data, train_steps = spread.dataset(
            lambda b, shard, repeat: make_dataset(
                train_source, train_targets, b, True, config.seed, shard, repeat
            ),
            batch_count(len(train_source)),
            config.batch_size,
        )
        val_data, val_steps = spread.dataset(
            lambda b, shard, repeat: make_dataset(
                val_source, val_targets, b, shard=shard, repeat=repeat
            ),
            batch_count(len(val_source)),
            config.batch_size,
        )
        fitted = fit_model(
            model,
            train_data,
            val_data,
            run_dir,
            config,
            steps=(train_steps, val_steps),
            class_weight=(
                class_weights(train_targets, len(classes))
                if config.class_weight == "balanced"
                else None
            ),
        )
        model = fitted.model

        val_metrics = classification_metrics(
            predict_all(model, val_source, config.batch_size), val_targets, classes
        )
        test_metrics = None
        if parts["test"] and parts["test"] != parts["val"]:
            test_source = source(parts["test"])
            test_metrics = classification_metrics(
                predict_all(model, test_source, config.batch_size), targets[parts["test"]], classes
            )
        write_json(run_dir / "labels.json", classes)
        write_json(
            run_dir / "metrics.json",
            {
                "split": "val",
                **val_metrics,
                **({"test": test_metrics} if test_metrics else {}),
            },
        )
        write_json(
            run_dir / "config.json",
            run_config(config, readers, settings, examples, parts, fitted, classes=classes),
        )
        plot_learning_curves(run_dir / "history.csv", run_dir / "learning_curves.png")
        plot_confusion(val_metrics, run_dir / "confusion_matrix.png", "validation")
        return TrainResult(
            run_dir, val_metrics, fitted.epochs_run, fitted.interrupted, test_metrics
        )
    finally:
        for reader in readers:
            reader.close()


def evaluate_classifier(run: Run, readers: list[CacheReader], config: TrainConfig, out_dir) -> dict:
    """Score a classification run on the labelled videos of ``readers`` (others are
    counted and left out); the confusion matrix goes to ``out_dir``."""
    from vidcache.pipeline.plots import plot_confusion

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
