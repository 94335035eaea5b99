"""Sequence classifiers over cached frame features.

``lstm`` (the default): Masking -> Normalization (standardisation fitted on the training
split) -> LSTM stack -> Dense softmax. ``mean``: the mean of the frame features -> MLP, the
order-blind baseline. Both are plain Keras layers, so ``model.keras`` reloads with
``keras.models.load_model`` in safe mode. Layer names are fixed (``standardize``,
``lstm_0``..., ``classifier``) so :mod:`models.stream` can run the same weights step by step.
"""

from __future__ import annotations

import numpy as np

HEADS = ("lstm", "mean")


def build_classifier(
    num_classes: int,
    mean: np.ndarray,
    variance: np.ndarray,
    head: str = "lstm",
    units: int = 128,
    layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.2,
    recurrent_dropout: float = 0.0,
):
    """Build an uncompiled classifier for ``(batch, time, features)`` zero-padded input.

    Args:
        num_classes: outputs of the softmax.
        mean: per-dimension mean of the training frames.
        variance: per-dimension variance of the training frames.
        head: ``"lstm"`` or ``"mean"``. Defaults to ``"lstm"``.
        units: LSTM units (hidden units of the MLP for ``mean``). Defaults to 128.
        layers: stacked LSTM layers. Defaults to 1.
        bidirectional: wrap each LSTM in ``Bidirectional``. Defaults to False.
        dropout: input dropout of each LSTM (and of the MLP). Defaults to 0.2.
        recurrent_dropout: recurrent dropout of each LSTM. Defaults to 0.0.
    """
    import keras

    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}. Received: head={head}")
    if layers < 1:
        raise ValueError(f"layers must be at least 1. Received: layers={layers}")
    dim = int(np.asarray(mean).shape[-1])
    inputs = keras.Input((None, dim), name="frames")
    x = keras.layers.Masking(mask_value=0.0, name="padding_mask")(inputs)
    x = keras.layers.Normalization(
        mean=np.asarray(mean, np.float32),
        variance=np.asarray(variance, np.float32),
        name="standardize",
    )(x)
    if head == "lstm":
        for i in range(layers):
            lstm = keras.layers.LSTM(
                units,
                return_sequences=i < layers - 1,
                dropout=dropout,
                recurrent_dropout=recurrent_dropout,
                name=f"lstm_{i}",
            )
            x = (
                keras.layers.Bidirectional(lstm, name=f"bilstm_{i}")(x)
                if bidirectional
                else lstm(x)
            )
    else:
        x = keras.layers.GlobalAveragePooling1D(name="mean_over_time")(x)
        x = keras.layers.Dense(units, activation="relu", name="hidden")(x)
        x = keras.layers.Dropout(dropout, name="hidden_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"vidcache_{head}")
