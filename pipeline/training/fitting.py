"""The training machinery every task shares: the split, the fitting loop, the records.

The skeleton (:mod:`.skeleton`) and the tasks (:mod:`.tasks`) build on it; it imports
none of them. The options are :mod:`.config`'s (``TrainConfig``, importable from here too).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vidcache.models.annotations import VideoMatcher, match_rows
from vidcache.models.data import DataError, SequenceSource, make_dataset
from vidcache.models.split import group_of, read_split_file, stratified_group_split
from vidcache.pipeline.training.config import TrainConfig
from vidcache.pipeline.training.distribute import distribution


@dataclass
class TrainResult:
    """What ``train_rnn`` returns: the run folder and the validation metrics."""

    run_dir: Path
    metrics: dict
    epochs_run: int
    interrupted: bool = False
    test_metrics: dict | None = None
    notes: list[str] = field(default_factory=list)
    best_epoch: int | None = None


def split_examples(
    examples, config: TrainConfig, videos: dict[str, str] | None = None, notes=None
) -> dict[str, list[int]]:
    """Indices of the train, val and test examples: from ``--split-file`` (rows naming
    videos as ``--labels`` does: the id, a path absolute or relative to the file, or a
    file name; ``videos`` maps ids to their source paths) or a grouped stratified split
    (``notes`` receives what the user should know about it)."""
    if config.split_file:
        split_file = Path(config.split_file)
        assigned = read_split_file(split_file)
        matcher = VideoMatcher(videos or {e.video_id: e.video_id for e in examples})
        matched, _ = match_rows(assigned, matcher, split_file)
        parts = {"train": [], "val": [], "test": []}
        for i, example in enumerate(examples):
            split = matched.get(example.video_id)
            if split is not None:
                parts[split].append(i)
        if not parts["val"] and parts["test"]:
            parts["val"] = parts["test"]
        if not parts["train"] or not parts["val"]:
            counts = ", ".join(f"{len(v)} {k}" for k, v in parts.items() if v) or "none"
            example = examples[0].video_id if examples else "?"
            raise DataError(
                f"{split_file} matched {len(matched)} of its {len(assigned)} rows to cached "
                f"videos ({counts}): the split leaves no training or no validation videos. "
                f"Rows name a video by its id (like {example!r}), its path, or its file name"
            )
    else:
        labels = [e.label for e in examples]
        if not all(labels):  # caption and regression data need no labels
            labels = [""] * len(examples)
        groups = [group_of(e.video_id, e.label, config.group_regex) for e in examples]
        train, val = stratified_group_split(labels, groups, config.val_split, config.seed, notes)
        parts = {"train": train, "val": val, "test": []}
    if not parts["train"] or not parts["val"]:
        raise DataError("the split leaves no training or no validation videos")
    return parts


def class_weights(targets: np.ndarray, classes: int) -> dict[int, float]:
    counts = np.bincount(targets, minlength=classes)
    return {i: float(len(targets) / (classes * n)) for i, n in enumerate(counts) if n}


def predict_all(model, source: SequenceSource, batch_size: int) -> np.ndarray:
    dataset = make_dataset(source, np.zeros(len(source), np.int32), batch_size)
    return model.predict(dataset.map(lambda x, y: x), verbose=0)


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def body_options(config: TrainConfig) -> dict:
    """The sequence-body keywords of :mod:`models.heads` builders, from ``config``."""
    options = asdict(config.model)
    del options["readout"]  # the classifier's alone
    return options


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
    best_epoch: int | None = None  # 1-based: the epoch whose weights were kept


def batch_count(count: int):
    """``batch -> batches of one epoch`` over ``count`` examples (for distributed runs)."""
    return lambda batch: -(-count // batch)


def stop_on_ctrl_c():
    """A Keras callback: the first Ctrl-C (or SIGTERM) asks ``fit`` to stop after the current batch
    (``model.stop_training``), so training ends the normal way, between steps: the best
    weights are restored and saved, nothing is cut off inside a checkpoint write or a data
    read. A second Ctrl-C interrupts at once (``KeyboardInterrupt``). ``requested`` says
    whether it stopped the run. It acts only in the main thread, where Python delivers
    signals."""
    import signal
    import threading

    import keras

    SIGNALS = (signal.SIGINT, signal.SIGTERM)  # SIGTERM is a scheduler's Ctrl-C

    class StopOnCtrlC(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.requested = False
            self._previous = None

        def on_train_begin(self, logs=None):
            if threading.current_thread() is threading.main_thread():
                self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}

        def _handle(self, signum, frame):
            self.requested = True
            self.model.stop_training = True
            self._restore()  # the next one interrupts

        def _restore(self):
            for sig, handler in (self._previous or {}).items():
                signal.signal(sig, handler)
            self._previous = None

        def on_train_end(self, logs=None):
            self._restore()

    return StopOnCtrlC()


def _close_quietly(handle) -> None:
    """Close a file whose last writes may fail (a full disk), so that it does not fail
    again, unseen, when it is collected."""
    if handle is not None:
        try:
            handle.close()
        except OSError:
            pass


def fit_model(
    model,
    train_data,
    val_data,
    run_dir: Path,
    config: TrainConfig,
    class_weight=None,
    steps: tuple[int | None, int | None] = (None, None),
) -> Fitted:
    """Fit a compiled model with early stopping on validation loss; write ``model.keras``
    (the best weights) and ``history.csv`` into ``run_dir``.

    ``steps`` are the training and validation steps of an epoch over datasets repeated
    forever (a distributed run, :mod:`vidcache.pipeline.training.distribute`); the model returned
    is then the saved best one, loaded outside the strategy, for plain local use.

    Ctrl-C stops training after the current batch and keeps the best model so far
    (:func:`stop_on_ctrl_c`); a second Ctrl-C interrupts at once, keeping the best model
    saved so far (re-raised when there is none yet).
    """
    import keras

    import vidcache.models.attention  # noqa: F401  (registers the transformer head's layers)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    early = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True
    )
    callbacks = [
        early,
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
    ctrl_c = None
    if config.distribute != "multi-worker":
        ctrl_c = stop_on_ctrl_c()
        callbacks.append(ctrl_c)
    interrupted = False
    history = None
    try:
        if config.distribute == "multi-worker":  # model.fit cannot run there (see module)
            from vidcache.pipeline.training.multiworker import fit_multi_worker

            history = fit_multi_worker(
                model, train_data, val_data, steps, config.epochs, callbacks, config.verbose
            )
        else:
            history = model.fit(
                train_data,
                validation_data=val_data,
                epochs=config.epochs,
                shuffle=False,  # the dataset shuffles itself, seeded, per epoch
                callbacks=callbacks,
                class_weight=class_weight,
                verbose=config.verbose,
                steps_per_epoch=steps[0],
                validation_steps=steps[1],
            )
        interrupted = ctrl_c is not None and ctrl_c.requested
    except OSError:  # the run folder filled up, or went read-only: close what is open
        for callback in callbacks:
            _close_quietly(getattr(callback, "csv_file", None))
        raise
    except KeyboardInterrupt:  # a second Ctrl-C, or one where no handler could be installed
        interrupted = True
        for callback in callbacks:  # Keras skips this on an interrupt: close history.csv
            callback.on_train_end()
        if not (run_dir / "model.keras").exists():
            raise
        model = keras.models.load_model(run_dir / "model.keras")
    model.save(run_dir / "model.keras")  # the best weights (restored by early stopping)
    if steps[0] is not None:
        model = keras.models.load_model(run_dir / "model.keras")
    finished = [t for t in epoch_seconds if t > 0]
    best = getattr(early, "best_epoch", None)  # 0-based, set by Keras when val_loss improves
    return Fitted(
        model,
        len(history.history["loss"]) if history else len(finished),
        interrupted,
        round(float(np.median(finished)), 3) if finished else None,
        best + 1 if isinstance(best, int) else None,
    )


def run_config(config: TrainConfig, readers, settings, examples, parts, fitted, **extra) -> dict:
    """The ``config.json`` of a run: task, options, caches, split ids, training record."""
    from vidcache.pipeline.extraction.config import library_versions

    return {
        "task": config.task,
        "train": asdict(config),
        "caches": [
            {"path": str(r.path.resolve()), "settings_sha256": r.settings.digest()}
            for reader in readers
            for r in getattr(reader, "parts", [reader])  # a fused reader: each part's cache
        ],
        "feature_settings": settings.to_dict(),
        **extra,
        "split": {name: [examples[i].video_id for i in ids] for name, ids in parts.items()},
        "epochs_run": fitted.epochs_run,
        "seconds_per_epoch": fitted.seconds_per_epoch,
        "interrupted": fitted.interrupted,
        **(
            {"distribution": distribution(config.distribute).record(config.batch_size)}
            if config.distribute != "none"
            else {}
        ),
        "versions": library_versions(),
    }
