"""Sequence classifiers and regressors over cached frame features.

``lstm`` (the default): Masking -> Normalization (standardisation fitted on the training
split) -> a stack of recurrent layers (LSTM cells, or GRU cells with ``cell="gru"``) ->
Dense softmax. ``mean``: the mean of the frame features -> MLP, the order-blind baseline.
``transformer``: causal self-attention blocks over the frames (:mod:`models.attention`),
read out like the LSTM (last frame's output, and with ``pooled`` the mean over frames).
All reload with ``keras.models.load_model`` in safe mode (the transformer's layers are
registered Keras serializables). Layer names are fixed (``standardize``, ``lstm_0``... or
``gru_0``..., ``attention_0``..., ``classifier`` or ``regressor`` + ``target_scale``) so
:mod:`models.stream` can run the same weights step by step.
"""

from __future__ import annotations

import numpy as np

HEADS = ("lstm", "mean", "transformer")
READOUTS = ("pooled", "last")
CELLS = ("lstm", "gru")


def standardized(frames, mean: np.ndarray, variance: np.ndarray):
    """Zero-padded ``frames`` -> ``Masking`` "padding_mask" -> ``Normalization``
    "standardize" (the training frames' per-dimension mean and variance)."""
    import keras

    x = keras.layers.Masking(mask_value=0.0, name="padding_mask")(frames)
    return keras.layers.Normalization(
        mean=np.asarray(mean, np.float32),
        variance=np.asarray(variance, np.float32),
        name="standardize",
    )(x)


def _sequence_body(
    inputs,
    mean: np.ndarray,
    variance: np.ndarray,
    head: str,
    units: int,
    layers: int,
    bidirectional: bool,
    dropout: float,
    recurrent_dropout: float,
    per_step: bool = False,
    readout: str = "last",
    cell: str = "lstm",
    attention_heads: int = 4,
):
    """Masking -> standardisation -> recurrent stack (or mean + MLP, or causal transformer
    blocks): the shared body of heads. ``cell`` is ``"lstm"`` or ``"gru"``.

    ``readout`` says what a per-video output reads from the top LSTM: ``"last"``, its final
    state; ``"pooled"``, that state concatenated with the mean of its outputs over all
    frames so far ("pool_mean", "pooled"). Both are causal and padding-invariant (the mean
    is masked), so a stream computes them step by step.
    """
    import keras

    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}. Received: head={head}")
    if layers < 1:
        raise ValueError(f"layers must be at least 1. Received: layers={layers}")
    if per_step and head == "mean":
        raise ValueError("per-step outputs need the lstm or transformer head")
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}. Received: readout={readout}")
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}. Received: cell={cell}")
    if cell != "lstm" and head != "lstm":
        raise ValueError(f"the {head} head has no recurrent cell. Received: cell={cell}")
    if bidirectional and head == "transformer":
        raise ValueError("the transformer head is causal: it has no bidirectional form")
    x = standardized(inputs, mean, variance)
    if head == "transformer":
        from vidcache.models.attention import transformer_body

        return transformer_body(
            x,
            units,
            layers,
            attention_heads,
            dropout,
            per_step=per_step,
            pooled=readout == "pooled",
        )
    if head == "mean":
        x = keras.layers.GlobalAveragePooling1D(name="mean_over_time")(x)
        x = keras.layers.Dense(units, activation="relu", name="hidden")(x)
        return keras.layers.Dropout(dropout, name="hidden_dropout")(x)
    pooled = readout == "pooled" and not per_step
    layer_class = keras.layers.LSTM if cell == "lstm" else keras.layers.GRU
    for i in range(layers):
        top = i == layers - 1
        rnn = layer_class(
            units,
            return_sequences=per_step or not top or pooled,
            return_state=top and pooled,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            name=f"{cell}_{i}",
        )
        x = keras.layers.Bidirectional(rnn, name=f"bi{cell}_{i}")(x) if bidirectional else rnn(x)
    if not pooled:
        return x
    if bidirectional:  # [sequence, forward state(s)..., backward state(s)...]
        sequence, states = x[0], x[1:]
        half = len(states) // 2  # LSTM: h, c per direction; GRU: h
        last = keras.layers.Concatenate(name="last_state")([states[0], states[half]])
    else:
        sequence, last = x[0], x[1]
    mean = keras.layers.GlobalAveragePooling1D(name="pool_mean")(sequence)
    return keras.layers.Concatenate(name="pooled")([last, mean])


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
    readout: str = "pooled",
    cell: str = "lstm",
    attention_heads: int = 4,
    activation: str = "softmax",
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
        readout: what the softmax reads from the top LSTM: ``"pooled"`` (final state and
            mean of its outputs over time: it remembers how a clip began) or ``"last"``
            (the final state only, vidcache 0.1). Defaults to ``"pooled"``.
        cell: the recurrent cell of the ``lstm`` head, ``"lstm"`` or ``"gru"`` (fewer
            weights, one state vector). Defaults to ``"lstm"``.
        attention_heads: attention heads of the ``transformer`` head (``units`` must be a
            multiple). Defaults to 4.
        activation: ``"softmax"`` (one class per video) or ``"sigmoid"`` (an independent
            probability per class: multi-label). Defaults to ``"softmax"``.
    """
    import keras

    dim = int(np.asarray(mean).shape[-1])
    inputs = keras.Input((None, dim), name="frames")
    x = _sequence_body(
        inputs,
        mean,
        variance,
        head,
        units,
        layers,
        bidirectional,
        dropout,
        recurrent_dropout,
        readout=readout,
        cell=cell,
        attention_heads=attention_heads,
    )
    outputs = keras.layers.Dense(num_classes, activation=activation, name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"vidcache_{head}")


def build_regressor(
    target_mean: np.ndarray,
    target_variance: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    per_frame: bool = False,
    head: str = "lstm",
    units: int = 128,
    layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.2,
    recurrent_dropout: float = 0.0,
    cell: str = "lstm",
    attention_heads: int = 4,
):
    """Build an uncompiled regressor: one vector per video ``(B, K)``, or one per frame
    ``(B, T, K)`` with ``per_frame``.

    A linear layer ``regressor`` predicts standardised targets and ``target_scale`` (an
    inverted ``Normalization`` holding the training targets' mean and variance) maps them
    back to the targets' own units, so the model's output is directly usable.

    Args:
        target_mean: per-output mean of the training targets ``(K,)``.
        target_variance: per-output variance of the training targets ``(K,)``.
        mean, variance, head, units, layers, bidirectional, dropout, recurrent_dropout,
            cell, attention_heads: as in :func:`build_classifier`.
        per_frame: an output at every frame (the lstm and transformer heads). Defaults to
            False.
    """
    import keras

    dim = int(np.asarray(mean).shape[-1])
    target_mean = np.asarray(target_mean, np.float32).reshape(-1)
    target_variance = np.maximum(np.asarray(target_variance, np.float32).reshape(-1), 1e-12)
    inputs = keras.Input((None, dim), name="frames")
    x = _sequence_body(
        inputs,
        mean,
        variance,
        head,
        units,
        layers,
        bidirectional,
        dropout,
        recurrent_dropout,
        per_step=per_frame,
        cell=cell,
        attention_heads=attention_heads,
    )
    x = keras.layers.Dense(len(target_mean), name="regressor")(x)
    outputs = keras.layers.Normalization(
        mean=target_mean, variance=target_variance, invert=True, name="target_scale"
    )(x)
    kind = "frames" if per_frame else "video"
    return keras.Model(inputs, outputs, name=f"vidcache_{head}_regress_{kind}")


def build_segmenter(
    num_classes: int,
    mean: np.ndarray,
    variance: np.ndarray,
    head: str = "lstm",
    units: int = 128,
    dropout: float = 0.2,
    **body,
):
    """Build an uncompiled per-frame classifier ``(B, T, num_classes)``: the ``lstm`` or
    ``transformer`` body with an output per frame (causal: it streams), or for ``mean``
    the per-frame baseline, an MLP on each frame's own features (no temporal context).
    ``body``: the other keywords of :func:`build_classifier` (``layers``, ``cell``...)."""
    import keras

    dim = int(np.asarray(mean).shape[-1])
    inputs = keras.Input((None, dim), name="frames")
    if head == "mean":
        x = standardized(inputs, mean, variance)
        x = keras.layers.Dense(units, activation="relu", name="hidden")(x)
        x = keras.layers.Dropout(dropout, name="hidden_dropout")(x)
    else:
        body = {"layers": 1, "bidirectional": False, "recurrent_dropout": 0.0, **body}
        x = _sequence_body(inputs, mean, variance, head, units, dropout=dropout, per_step=True,
                           **body)  # fmt: skip
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"vidcache_{head}_segment")
