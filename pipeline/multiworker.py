"""The fitting loop of ``--distribute multi-worker``.

Keras 3's ``model.fit`` does not run under ``MultiWorkerMirroredStrategy`` (it reduces a
data batch across workers before the first step and fails; keras-team/keras#20585, open
for Keras 3.7 to 3.15 at least). This loop does what ``fit`` does for vidcache's runs,
with the strategy's own primitives: each step runs ``model.compute_loss`` (the loss the
model was compiled with, weights included) on every replica's share of the global batch,
scales it by the replicas so the summed gradients are those of the global batch, and
applies them with the model's optimizer (which all-reduces them). Validation loss, early
stopping with the best weights restored, ``model.keras`` and ``history.csv`` are as in
:func:`vidcache.pipeline.fitting.fit_model`.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path


def fit_multi_worker(
    model, train_data, val_data, steps: tuple[int, int], run_dir: Path, epochs: int, patience: int
):
    """Train ``model`` (built and compiled in the strategy's scope) on distributed datasets.

    Args:
        model: the compiled model.
        train_data: a distributed dataset repeated forever.
        val_data: the same for validation.
        steps: training and validation steps of one epoch.
        run_dir: where ``model.keras`` (best validation loss) and ``history.csv`` go.
        epochs: at most this many.
        patience: epochs without a better validation loss before stopping.

    Returns:
        ``(epochs run, interrupted, median seconds per epoch)``; the model holds the best
        weights.
    """
    import keras
    import tensorflow as tf

    strategy = model.distribute_strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    optimizer = model.optimizer
    with strategy.scope():
        optimizer.build(model.trainable_variables)

    def replica_loss(data, training):
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        predicted = model(x, training=training)
        loss = model.compute_loss(x=x, y=y, y_pred=predicted, sample_weight=weight)
        return loss / replicas

    @tf.function
    def train_step(iterator):
        def one(data):
            with tf.GradientTape() as tape:
                loss = replica_loss(data, True)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        return strategy.reduce("SUM", strategy.run(one, args=(next(iterator),)), axis=None)

    @tf.function
    def val_step(iterator):
        def one(data):
            return replica_loss(data, False)

        return strategy.reduce("SUM", strategy.run(one, args=(next(iterator),)), axis=None)

    run_dir = Path(run_dir)
    train_iter, val_iter = iter(train_data), iter(val_data)
    best, best_weights, waited = math.inf, None, 0
    seconds, rows, interrupted = [], [], False
    try:
        for epoch in range(epochs):
            started = time.perf_counter()
            train_loss = sum(float(train_step(train_iter)) for _ in range(steps[0])) / steps[0]
            val_loss = sum(float(val_step(val_iter)) for _ in range(steps[1])) / steps[1]
            seconds.append(time.perf_counter() - started)
            rows.append({"epoch": epoch, "loss": train_loss, "val_loss": val_loss})
            _write_history(run_dir / "history.csv", rows)
            if val_loss < best:
                best, best_weights, waited = val_loss, model.get_weights(), 0
                model.save(run_dir / "model.keras")
            else:
                waited += 1
                if waited >= patience:
                    break
    except KeyboardInterrupt:
        interrupted = True
        if best_weights is None:
            raise
    if best_weights is not None:
        model.set_weights(best_weights)
    median = sorted(seconds)[len(seconds) // 2] if seconds else None
    return len(rows), interrupted, round(median, 3) if median else None


def _write_history(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "loss", "val_loss"])
        writer.writeheader()
        writer.writerows(rows)
