"""The fitting loop of ``--distribute multi-worker``.

Keras 3's ``model.fit`` does not run under ``MultiWorkerMirroredStrategy`` (it reduces a
data batch across workers before the first step and fails; keras-team/keras#20585, open
for Keras 3.7 to 3.15 at least). This loop does the steps ``fit`` does with the strategy's
own primitives: each step runs ``model.compute_loss`` (the loss the model was compiled
with, weights included, which Keras scales by the replicas so that the summed gradients are
those of the global batch) on every replica's share of the global batch, applies them with the
model's optimizer (which all-reduces them), and updates the compiled metrics (their
variables sum over replicas when read). Everything around the steps is Keras' own: the
caller's callbacks (early stopping, checkpoints, ``history.csv``, TensorBoard, timing) run
through ``keras.callbacks.CallbackList`` with the same logs ``fit`` gives them, a progress
bar unless quiet.
"""

from __future__ import annotations


def fit_multi_worker(
    model,
    train_data,
    val_data,
    steps: tuple[int, int],
    epochs: int,
    callbacks: list,
    verbose: int = 1,
):
    """Train ``model`` (built and compiled in the strategy's scope) on distributed datasets.

    Args:
        model: the compiled model.
        train_data: a distributed dataset repeated forever.
        val_data: the same for validation.
        steps: training and validation steps of one epoch.
        epochs: at most this many.
        callbacks: Keras callbacks, called as ``fit`` calls them (``model.stop_training``
            ends the loop, as early stopping sets it).
        verbose: 0 silent, 1 a progress bar, 2 one line per epoch (``fit``'s meaning).

    Returns:
        A ``keras.callbacks.History`` (``.history``: the logs of each epoch, ``loss``,
        the compiled metrics and their ``val_`` twins).
    """
    import keras
    import tensorflow as tf

    strategy = model.distribute_strategy or tf.distribute.get_strategy()
    optimizer = model.optimizer
    with strategy.scope():
        optimizer.build(model.trainable_variables)
        # Build the compiled metrics' variables here, in the strategy's scope, from the
        # batch's shapes (as fit does): they cannot be created inside a replica step.
        model._symbolic_build(data_batch=_local_spec(train_data.element_spec))

    def replica_loss(data, training):
        # Under a strategy, compute_loss already divides by the replicas (Keras >= 3.8,
        # keras-team/keras#20609): summed over replicas, the loss and its gradients are
        # those of the global batch.
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        predicted = model(x, training=training)
        loss = model.compute_loss(x=x, y=y, y_pred=predicted, sample_weight=weight)
        model.compute_metrics(x, y, predicted, sample_weight=weight)
        return loss

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

    def run_steps(step_fn, iterator, count: int, begin, end) -> dict[str, float]:
        """``count`` steps with their batch callbacks; the mean loss and the metrics."""
        model.reset_metrics()
        total = 0.0
        for step in range(count):
            begin(step)
            total += float(step_fn(iterator))
            end(step, {"loss": total / (step + 1)})
        return {"loss": total / count, **metrics()}

    def metrics() -> dict[str, float]:
        """The compiled metrics over the steps since the last reset, all workers summed
        (a collective read: every worker calls it at the same point)."""
        return {k: float(v) for k, v in model.get_metrics_result().items() if k != "loss"}

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [*callbacks, history],
        add_progbar=verbose != 0,
        model=model,
        verbose=verbose,
        epochs=epochs,
        steps=steps[0],
    )
    train_iter, val_iter = iter(train_data), iter(val_data)
    model.stop_training = False
    callback_list.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        logs = run_steps(train_step, train_iter, steps[0], callback_list.on_train_batch_begin,
                         callback_list.on_train_batch_end)  # fmt: skip
        callback_list.on_test_begin()
        val_logs = run_steps(val_step, val_iter, steps[1], callback_list.on_test_batch_begin,
                             callback_list.on_test_batch_end)  # fmt: skip
        callback_list.on_test_end(val_logs)
        logs.update({f"val_{name}": value for name, value in val_logs.items()})
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return history


def _local_spec(spec):
    """A distributed dataset's element spec as plain ``TensorSpec`` s (one replica's)."""
    import tensorflow as tf

    def plain(item):
        if isinstance(item, tf.TensorSpec):
            return item
        return item._component_specs[0]  # PerReplicaSpec: several replicas on this worker

    return tf.nest.map_structure(plain, spec, expand_composites=False)
