"""A multi-stage temporal convolutional network for per-frame labels (MS-TCN).

After Farha & Gall, "MS-TCN: Multi-Stage Temporal Convolutional Network for Action
Segmentation" (CVPR 2019), as its code (https://github.com/yabufarha/ms-tcn, ``model.py``)
builds it: each stage is a 1x1 convolution to ``units`` channels, ``layers`` dilated
residual layers (dilation 1, 2, 4, ...: a kernel-3 dilated convolution with ReLU, a 1x1
convolution, dropout, added to the layer's input) and a 1x1 convolution to class logits;
every stage after the first reads the previous stage's class probabilities. Every stage is
supervised (the loss sums over stages), and the paper's smoothing loss adds ``smoothing``
(0.15 in the paper) times the truncated (at 16) squared difference of consecutive frames'
log-probabilities, the earlier frame's held fixed.

The model's output is ``(batch, time, stages, classes)`` logits; the last stage is the
prediction (:func:`final_probabilities`). Padded frames (all-zero rows) are zeroed after
every layer, as the reference multiplies by its mask, so a video's outputs do not depend on
the padding around it. ``causal=True`` pads the dilated convolutions on the past side
only: a frame's output depends on it and earlier frames, so a stream
(:class:`WindowStream`) equals the offline output at every frame.
"""

from __future__ import annotations

from collections import deque

import keras
import numpy as np
from keras import ops

#: MS-TCN's defaults (its main.py): 4 stages of 10 layers, 64 channels, smoothing 0.15.
STAGES, LAYERS, SMOOTHING = 4, 10, 0.15


@keras.saving.register_keras_serializable("vidcache")
class FrameMask(keras.layers.Layer):
    """``(B, T, 1)``: 1 where a frame is real, 0 where it is all-zero padding."""

    def call(self, frames):
        return ops.cast(ops.any(ops.not_equal(frames, 0.0), axis=-1, keepdims=True), frames.dtype)


@keras.saving.register_keras_serializable("vidcache")
class StackStages(keras.layers.Layer):
    """Each stage's ``(B, T, C)`` logits stacked into ``(B, T, S, C)``."""

    def call(self, stages):
        return ops.stack(stages, axis=2)


@keras.saving.register_keras_serializable("vidcache")
class StagewiseLoss(keras.losses.Loss):
    """Per frame: the sum over stages of cross-entropy and of ``smoothing`` times the
    truncated MSE of consecutive log-probabilities (0 at a video's first frame).
    ``y_true (B, T)`` class indices, ``y_pred (B, T, S, C)`` logits; frame weights (0 on
    padding) come as Keras sample weights."""

    def __init__(self, smoothing: float = SMOOTHING, name: str = "stagewise", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smoothing = float(smoothing)

    def call(self, y_true, y_pred):
        stages = ops.shape(y_pred)[2]
        labels = ops.repeat(ops.expand_dims(ops.cast(y_true, "int32"), 2), stages, axis=2)
        loss = ops.sum(
            keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True), 2
        )
        if self.smoothing:
            logp = ops.log_softmax(y_pred, axis=-1)
            step = ops.clip(ops.square(logp[:, 1:] - ops.stop_gradient(logp[:, :-1])), 0, 16)
            smooth = ops.sum(ops.mean(step, axis=-1), axis=2)
            loss = loss + self.smoothing * ops.pad(smooth, [[0, 0], [1, 0]])
        return loss

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}


@keras.saving.register_keras_serializable("vidcache")
def final_stage_accuracy(y_true, y_pred):
    """1 where the last stage's most likely class is the frame's label."""
    guess = ops.argmax(y_pred[:, :, -1], axis=-1)
    return ops.cast(ops.equal(ops.cast(y_true, guess.dtype), guess), "float32")


def build_tcn(
    num_classes: int,
    mean: np.ndarray,
    variance: np.ndarray,
    stages: int = STAGES,
    layers: int = LAYERS,
    units: int = 64,
    dropout: float = 0.5,
    causal: bool = False,
):
    """Build an uncompiled MS-TCN over ``(batch, time, features)`` zero-padded input.

    Args:
        num_classes: classes per frame.
        mean, variance: per-dimension statistics of the training frames.
        stages: stages (the first reads features, the others probabilities). Defaults to 4.
        layers: dilated residual layers per stage (dilations 1..2^(layers-1)). Defaults
            to 10.
        units: channels of every layer. Defaults to 64.
        dropout: dropout after each residual layer's 1x1 convolution. Defaults to 0.5.
        causal: pad on the past side only (streams exactly). Defaults to False.
    """
    dim = int(np.asarray(mean).shape[-1])
    padding = "causal" if causal else "same"
    inputs = keras.Input((None, dim), name="frames")
    mask = FrameMask(name="frame_mask")(inputs)
    x = keras.layers.Normalization(
        mean=np.asarray(mean, np.float32),
        variance=np.asarray(variance, np.float32),
        name="standardize",
    )(inputs)
    x = keras.layers.Multiply(name="masked_input")([x, mask])
    outputs = []
    for s in range(stages):
        h = keras.layers.Conv1D(units, 1, name=f"stage{s}_in")(x)
        for i in range(layers):
            y = keras.layers.Conv1D(
                units, 3, dilation_rate=2**i, padding=padding, activation="relu",
                name=f"stage{s}_dilated{i}",
            )(h)  # fmt: skip
            y = keras.layers.Conv1D(units, 1, name=f"stage{s}_mix{i}")(y)
            y = keras.layers.Dropout(dropout, name=f"stage{s}_dropout{i}")(y)
            h = keras.layers.Multiply()([keras.layers.Add()([h, y]), mask])
        logits = keras.layers.Conv1D(num_classes, 1, name=f"stage{s}_out")(h)
        logits = keras.layers.Multiply(name=f"stage{s}_logits")([logits, mask])
        outputs.append(logits)
        probabilities = keras.layers.Softmax(name=f"stage{s}_probabilities")(logits)
        x = keras.layers.Multiply()([probabilities, mask])
    stacked = StackStages(name="stages")(outputs)
    kind = "causal" if causal else "acausal"
    return keras.Model(inputs, stacked, name=f"vidcache_tcn_{kind}_{stages}x{layers}")


def receptive_field(model) -> int:
    """Frames a causal TCN's output at one frame depends on (itself included)."""
    past = sum(
        2 * layer.dilation_rate[0]
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv1D) and layer.kernel_size[0] == 3
    )
    return past + 1


def is_causal(model) -> bool:
    """Whether a TCN pads its dilated convolutions on the past side only."""
    return any(
        isinstance(layer, keras.layers.Conv1D) and layer.padding == "causal"
        for layer in model.layers
    )


def final_probabilities(output) -> np.ndarray:
    """Class probabilities ``(B, T, C)`` of a segmenter's output: a TCN's last stage
    (softmax of its logits), or a recurrent segmenter's own probabilities."""
    output = np.asarray(output, np.float32)
    if output.ndim == 4:
        logits = output[:, :, -1]
        logits = logits - logits.max(-1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(-1, keepdims=True)
    return output


def tcn_stream(model) -> WindowStream:
    """A causal TCN as a stream over its :func:`receptive_field`.

    Raises:
        StreamError: the TCN is not causal (its outputs need frames not yet seen).
    """
    if not is_causal(model):
        from vidcache.models.stream import StreamError

        raise StreamError(
            "this TCN looks at later frames (trained without --causal): it cannot run as a "
            "stream; predict without --stream, or train with --causal"
        )
    return WindowStream(model, receptive_field(model))


class WindowStream:
    """A model whose output at a frame depends on that frame and the ``window - 1``
    before it, run one frame at a time: the model over the last ``window`` frames, the
    last frame's probabilities taken (equal to the offline output at that frame).
    """

    def __init__(self, model, window: int) -> None:
        self.model = model
        self.window = int(window)
        self.reset()

    def reset(self) -> None:
        """Forget every frame seen so far."""
        self._frames: deque = deque(maxlen=self.window)
        self.frames = 0

    def step(self, features: np.ndarray) -> np.ndarray:
        """Take one frame's features ``(D,)``; return its class probabilities ``(C,)``."""
        self._frames.append(np.asarray(features, np.float32))
        self.frames += 1
        x = np.stack(self._frames)[None]
        return final_probabilities(self.model(x, training=False))[0, -1]
