"""Stage two orchestration: train a sequence classifier on cached features, evaluate it.

A run folder holds everything needed to use and to reproduce the model::

    model.keras            the best model (by validation loss), safe-mode loadable
    labels.json            class names in output order
    config.json            the exact configuration: caches and their settings hash, the
                           feature settings, the split (ids), hyper-parameters, versions
    history.csv            per-epoch loss and accuracy (Keras CSVLogger)
    metrics.json           top-1, top-5, per-class precision/recall/F1, confusion matrix
    learning_curves.png    loss and accuracy per epoch
    confusion_matrix.png   the confusion matrix of the validation split
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from vidcache.features.cache import CacheReader
from vidcache.features.errors import SettingsMismatch, VidcacheError
from vidcache.features.settings import FeatureSettings
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
from vidcache.models.split import UCF101_GROUP, group_of, read_split_file, stratified_group_split
from vidcache.pipeline.outputs import prepare_output_dir


class RunError(VidcacheError):
    """A run folder is missing or incomplete."""


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``train-rnn``; every field is recorded in ``config.json``.

    Args:
        head: ``"lstm"`` or ``"mean"`` (the order-blind baseline). Defaults to ``"lstm"``.
        units: LSTM units (MLP units for ``mean``). Defaults to 128.
        layers: stacked LSTM layers. Defaults to 1.
        bidirectional: bidirectional LSTMs (cannot stream). Defaults to False.
        dropout: LSTM input dropout. Defaults to 0.2.
        recurrent_dropout: LSTM recurrent dropout. Defaults to 0.0.
        epochs: at most this many epochs. Defaults to 50.
        batch_size: sequences per batch. Defaults to 16.
        lr: Adam learning rate. Defaults to 1e-3.
        patience: epochs without a better validation loss before stopping. Defaults to 8.
        val_split: share of each class held out for validation. Defaults to 0.2.
        group_regex: clips matching it share a group that is never split. Defaults to the
            UCF101 ``_g<NN>_c<NN>`` pattern.
        split_file: CSV ``path,split`` with explicit train/val/test. Defaults to None.
        seq_len: resample every sequence to this many steps. Defaults to None.
        max_len: crop sequences to this many steps. Defaults to None.
        stream: read sequences from HDF5 per batch instead of loading them. Defaults to False.
        class_weight: ``"none"`` or ``"balanced"``. Defaults to ``"none"``.
        label_map: ``{old: new}`` label renames; ``""`` drops a class. Defaults to None.
        seed: seeds the split, initialisation and shuffling. Defaults to 0.
        tensorboard: write TensorBoard logs to ``RUN/logs``. Defaults to False.
        verbose: Keras progress output (0, 1, 2). Defaults to 2.
        task: ``"classify"``, ``"caption"`` or ``"regress"``. Defaults to ``"classify"``.
        captions: captions CSV (``path,caption``) of a caption run. Defaults to None.
        targets: targets CSV of a regression run. Defaults to None.
        attention: captioning decoder attends over the frames. Defaults to False.
        beam: beam width for the validation captions (1 = greedy). Defaults to 1.
        max_words: captions are cut to, and generated up to, this many words. Defaults to 20.
        vocab_size: vocabulary ids, padding and reserved tokens included. Defaults to 5000.
        embedding_dim: word embedding size. Defaults to 128.
        time_tolerance: seconds between a frame and the nearest per-frame target row for
            them to match. Defaults to 0.05.
    """

    head: str = "lstm"
    units: int = 128
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.2
    recurrent_dropout: float = 0.0
    epochs: int = 50
    batch_size: int = 16
    lr: float = 1e-3
    patience: int = 8
    val_split: float = 0.2
    group_regex: str = UCF101_GROUP
    split_file: str | None = None
    seq_len: int | None = None
    max_len: int | None = None
    stream: bool = False
    class_weight: str = "none"
    label_map: dict = field(default_factory=dict)
    seed: int = 0
    tensorboard: bool = False
    verbose: int = 2
    task: str = "classify"
    captions: str | None = None
    targets: str | None = None
    attention: bool = False
    beam: int = 1
    max_words: int = 20
    vocab_size: int = 5000
    embedding_dim: int = 128
    time_tolerance: float = 0.05
    scorer: str = "fast"
    readout: str = "pooled"


@dataclass
class TrainResult:
    """What ``train_rnn`` returns: the run folder and the validation metrics."""

    run_dir: Path
    metrics: dict
    epochs_run: int
    interrupted: bool = False
    test_metrics: dict | None = None
    notes: list[str] = field(default_factory=list)


def split_examples(examples, config: TrainConfig) -> dict[str, list[int]]:
    if config.split_file:
        assigned = read_split_file(Path(config.split_file))
        parts = {"train": [], "val": [], "test": []}
        for i, example in enumerate(examples):
            split = assigned.get(example.video_id)
            if split is not None:
                parts[split].append(i)
        if not parts["val"] and parts["test"]:
            parts["val"] = parts["test"]
    else:
        labels = [e.label for e in examples]
        if not all(labels):  # caption and regression data need no labels
            labels = [""] * len(examples)
        groups = [group_of(e.video_id, e.label, config.group_regex) for e in examples]
        train, val = stratified_group_split(labels, groups, config.val_split, config.seed)
        parts = {"train": train, "val": val, "test": []}
    if not parts["train"] or not parts["val"]:
        raise DataError("the split leaves no training or no validation videos")
    return parts


def _class_weights(targets: np.ndarray, classes: int) -> dict[int, float]:
    counts = np.bincount(targets, minlength=classes)
    return {i: float(len(targets) / (classes * n)) for i, n in enumerate(counts) if n}


def _predict(model, source: SequenceSource, batch_size: int) -> np.ndarray:
    dataset = make_dataset(source, np.zeros(len(source), np.int32), batch_size)
    return model.predict(dataset.map(lambda x, y: x), verbose=0)


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def body_options(config: TrainConfig) -> dict:
    """The sequence-body keywords of :mod:`models.heads` builders, from ``config``."""
    return {
        "head": config.head,
        "units": config.units,
        "layers": config.layers,
        "bidirectional": config.bidirectional,
        "dropout": config.dropout,
        "recurrent_dropout": config.recurrent_dropout,
    }


def make_source(readers, examples, indices, config: TrainConfig) -> SequenceSource:
    """The sequences of ``examples[i] for i in indices``, shaped as ``config`` asks."""
    return SequenceSource(
        readers, [examples[i] for i in indices], config.stream, config.seq_len, config.max_len
    )


@dataclass
class Fitted:
    """A trained model (best validation loss) and how its training went."""

    model: object
    epochs_run: int
    interrupted: bool
    seconds_per_epoch: float | None


def fit_model(
    model, train_data, val_data, run_dir: Path, config: TrainConfig, class_weight=None
) -> Fitted:
    """Fit a compiled model with early stopping on validation loss; write ``model.keras``
    (the best weights) and ``history.csv`` into ``run_dir``.

    Ctrl-C stops training and keeps the best model saved so far (re-raised when there is
    none yet).
    """
    import keras

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "model.keras"), monitor="val_loss", save_best_only=True
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
    ]
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "logs")))
    epoch_seconds: list[float] = []
    callbacks.append(
        keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: epoch_seconds.append(-time.perf_counter()),
            on_epoch_end=lambda epoch, logs: epoch_seconds.append(
                epoch_seconds.pop() + time.perf_counter()
            ),
        )
    )
    interrupted = False
    history = None
    try:
        history = model.fit(
            train_data,
            validation_data=val_data,
            epochs=config.epochs,
            shuffle=False,  # the dataset shuffles itself, seeded, per epoch
            callbacks=callbacks,
            class_weight=class_weight,
            verbose=config.verbose,
        )
    except KeyboardInterrupt:
        interrupted = True
        for callback in callbacks:  # Keras skips this on an interrupt: close history.csv
            callback.on_train_end()
        if not (run_dir / "model.keras").exists():
            raise
        model = keras.models.load_model(run_dir / "model.keras")
    model.save(run_dir / "model.keras")  # the best weights (restored by early stopping)
    finished = [t for t in epoch_seconds if t > 0]
    return Fitted(
        model,
        len(history.history["loss"]) if history else 0,
        interrupted,
        round(float(np.median(finished)), 3) if finished else None,
    )


def run_config(config: TrainConfig, readers, settings, examples, parts, fitted, **extra) -> dict:
    """The ``config.json`` of a run: task, options, caches, split ids, training record."""
    from vidcache.pipeline.extract import library_versions

    return {
        "task": config.task,
        "train": asdict(config),
        "caches": [
            {"path": str(r.path.resolve()), "settings_sha256": r.settings.digest()} for r in readers
        ],
        "feature_settings": settings.to_dict(),
        **extra,
        "split": {name: [examples[i].video_id for i in ids] for name, ids in parts.items()},
        "epochs_run": fitted.epochs_run,
        "seconds_per_epoch": fitted.seconds_per_epoch,
        "interrupted": fitted.interrupted,
        "versions": library_versions(),
    }


def train_rnn(
    cache_paths: list[Path], run_dir: Path, config: TrainConfig = TrainConfig()
) -> TrainResult:
    """Train a sequence model on ``cache_paths``; write the run folder.

    ``config.task`` picks the model: a classifier of the labelled videos (``classify``), a
    captioner (``caption``, :func:`pipeline.caption.train_captioner`) or a regressor
    (``regress``, :func:`pipeline.regress.train_regressor`).

    Raises:
        SettingsMismatch: caches made with other settings.
        DataError: no labels, a single class, a class with one clip, an impossible split.
    """
    prepare_output_dir(run_dir)
    if config.task == "caption":
        from vidcache.pipeline.caption import train_captioner

        return train_captioner(cache_paths, run_dir, config)
    if config.task == "regress":
        from vidcache.pipeline.regress import train_regressor

        return train_regressor(cache_paths, run_dir, config)
    if config.task != "classify":
        raise ValueError(f"task must be classify, caption or regress. Received: {config.task}")
    from vidcache.features.backbone import import_tensorflow

    import_tensorflow()  # quietly, before Keras
    import keras

    from vidcache.models.heads import build_classifier
    from vidcache.pipeline.plots import plot_confusion, plot_learning_curves

    run_dir = Path(run_dir)
    readers, settings = open_caches([Path(p) for p in cache_paths])
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

        keras.utils.set_random_seed(config.seed)
        model = build_classifier(
            len(classes), mean, variance, readout=config.readout, **body_options(config)
        )
        model.compile(
            optimizer=keras.optimizers.Adam(config.lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        train_targets, val_targets = targets[parts["train"]], targets[parts["val"]]
        fitted = fit_model(
            model,
            make_dataset(train_source, train_targets, config.batch_size, True, config.seed),
            make_dataset(val_source, val_targets, config.batch_size),
            run_dir,
            config,
            class_weight=(
                _class_weights(train_targets, len(classes))
                if config.class_weight == "balanced"
                else None
            ),
        )
        model = fitted.model

        val_metrics = classification_metrics(
            _predict(model, val_source, config.batch_size), val_targets, classes
        )
        test_metrics = None
        if parts["test"] and parts["test"] != parts["val"]:
            test_source = source(parts["test"])
            test_metrics = classification_metrics(
                _predict(model, test_source, config.batch_size), targets[parts["test"]], classes
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


@dataclass
class Run:
    """A trained run folder, loaded."""

    path: Path
    model: object
    classes: list[str]
    config: dict
    settings: FeatureSettings
    vocabulary: object = None  # models.text.CaptionVocabulary of a caption run

    @property
    def task(self) -> str:
        """``classify``, ``caption`` or ``regress``."""
        return self.config.get("task", "classify")

    @property
    def target_names(self) -> list[str]:
        """The outputs of a regression run."""
        return list(self.config.get("targets", {}).get("names", []))

    @property
    def per_frame(self) -> bool:
        """A regression run with one output per frame."""
        return bool(self.config.get("targets", {}).get("per_frame", False))


def load_run(run_dir: Path) -> Run:
    """Load ``model.keras``, ``config.json`` and the task's files (``labels.json`` of a
    classifier, ``vectorizer.keras`` of a captioner) of a run.

    Raises:
        RunError: the folder is not a complete run.
    """
    run_dir = Path(run_dir)
    needed = [run_dir / name for name in ("model.keras", "config.json")]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise RunError(f"{run_dir} is not a vidcache run (missing {', '.join(missing)})")
    from vidcache.features.backbone import import_tensorflow

    import_tensorflow()
    import keras

    from vidcache.models.text import CaptionVocabulary

    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        task = config.get("task", "classify")
        classes = []
        if task == "classify":
            if not (run_dir / "labels.json").is_file():
                raise RunError(f"{run_dir} is not a vidcache run (missing labels.json)")
            classes = json.loads((run_dir / "labels.json").read_text(encoding="utf-8"))
        settings = FeatureSettings.from_json(json.dumps(config["feature_settings"]))
        model = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
        vocabulary = CaptionVocabulary.load(run_dir) if task == "caption" else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(
            f"{run_dir}: cannot load the run ({str(exc).splitlines()[0][:200]})"
        ) from None
    return Run(run_dir, model, classes, config, settings, vocabulary)


def run_train_config(run: Run) -> TrainConfig:
    """The ``TrainConfig`` a run was trained with (fields newer than the run take defaults)."""
    known = set(TrainConfig.__dataclass_fields__)
    return TrainConfig(**{k: v for k, v in run.config.get("train", {}).items() if k in known})


def evaluate_run(
    run_dir: Path,
    cache_path: Path | list[Path],
    out_dir: Path | None = None,
    annotations: Path | None = None,
    scorer: str | None = None,
) -> tuple[dict, Path]:
    """Recompute the metrics of a run on caches made with the same settings.

    A classifier is scored on every labelled video (videos whose label is not one of the
    run's classes are left out and counted); a captioner on the videos ``annotations`` (a
    captions CSV) describes, a regressor on those it (a targets CSV) gives targets for.

    Args:
        run_dir: the run.
        cache_path: one cache, or several (the shards of a dataset).
        out_dir: where the metrics go. Defaults to ``RUN/eval-<first cache name>``.
        annotations: captions or targets CSV of a caption or regression run.
        scorer: caption scorer (``fast`` or ``coco``). Defaults to the run's.

    Returns:
        The metrics and the folder they were written to.

    Raises:
        SettingsMismatch: a cache was made with other feature settings than the run's.
        DataError: nothing to score, or a caption/regression run without ``annotations``.
    """
    paths = [Path(p) for p in ([cache_path] if isinstance(cache_path, (str, Path)) else cache_path)]
    run = load_run(run_dir)
    out_dir = Path(out_dir) if out_dir else run.path / f"eval-{paths[0].stem}"
    prepare_output_dir(out_dir, "evaluation folder")
    if run.task != "classify" and annotations is None:
        option = "--captions" if run.task == "caption" else "--targets"
        raise DataError(f"{run.path} is a {run.task} run: give the references with {option} CSV")
    config = run_train_config(run)
    if scorer is not None:
        config = replace(config, scorer=scorer)
    readers, settings = open_caches(paths)
    try:
        diffs = run.settings.differences(settings)
        if diffs:
            raise SettingsMismatch(
                f"{paths[0]} holds features made with other settings than run {run.path} "
                f"({'; '.join(diffs)}, run != cache)"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        if run.task == "caption":
            from vidcache.pipeline.caption import evaluate_captions

            metrics = evaluate_captions(run, readers, Path(annotations), config, out_dir)
        elif run.task == "regress":
            from vidcache.pipeline.regress import evaluate_regression

            metrics = evaluate_regression(run, readers, Path(annotations), config)
        else:
            metrics = _evaluate_classifier(run, readers, config, out_dir)
    finally:
        for reader in readers:
            reader.close()
    resolved = [str(p.resolve()) for p in paths]
    metrics["cache"] = resolved[0] if len(resolved) == 1 else resolved
    write_json(out_dir / "metrics.json", metrics)
    return metrics, out_dir


def _evaluate_classifier(
    run: Run, readers: list[CacheReader], config: TrainConfig, out_dir
) -> dict:
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
        _predict(run.model, source, config.batch_size), targets, run.classes
    )
    metrics["unknown_label_videos"] = len(examples) - len(known)
    plot_confusion(metrics, out_dir / "confusion_matrix.png", Path(readers[0].path).name)
    return metrics
