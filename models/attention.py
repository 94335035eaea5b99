"""The causal self-attention encoder of ``--head transformer``, as Keras layers that can also
run one frame at a time.

Each frame attends to itself and the frames before it, never to later ones, so the encoder's
output at frame ``t`` depends only on frames ``0..t``: the same property as an LSTM, and the
reason a stream can equal the offline model at every frame. Streaming keeps each block's
keys and values of the frames seen so far (a key/value cache), so a new frame costs one
attention row per block (linear in the frames seen), not a pass over the whole prefix.

Positions are sinusoidal (Vaswani et al. 2017): no weights and no length limit, so a stream
can run for as long as the video lasts. Blocks are pre-norm (LayerNormalization before the
attention and before the feed-forward part, residual around each).

The layers are registered with Keras under the package name ``vidcache``, so a saved
``model.keras`` reloads with ``keras.models.load_model(..., safe_mode=True)`` once this
module is imported (:mod:`models.heads` imports it).
"""

from __future__ import annotations

import math
import re

import keras
import numpy as np
from keras import ops


def sinusoidal_positions(start, length, dim: int):
    """The ``(length, dim)`` sinusoidal encodings of positions ``start .. start+length-1``."""
    half = dim // 2
    rates = ops.exp(ops.arange(half, dtype="float32") * (-math.log(10000.0) / max(half, 1)))
    positions = ops.cast(ops.arange(length) + start, "float32")
    angles = positions[:, None] * rates[None, :]
    encoding = ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)
    if dim % 2:
        encoding = ops.pad(encoding, [[0, 0], [0, 1]])
    return encoding


def _softmax(scores):
    """Softmax over the last axis, written out: ``keras.ops.softmax`` warns when that axis
    has one entry, which is a stream's first frame."""
    scores = scores - ops.max(scores, axis=-1, keepdims=True)
    weights = ops.exp(scores)
    return weights / ops.sum(weights, axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="vidcache")
class FramePositions(keras.layers.Layer):
    """Add the sinusoidal encoding of each frame's position (0 = the first frame)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        length, dim = ops.shape(inputs)[1], inputs.shape[-1]
        return inputs + ops.cast(sinusoidal_positions(0, length, dim), inputs.dtype)[None]

    def at(self, inputs, position):
        """One frame ``(1, dim)`` at ``position``."""
        dim = inputs.shape[-1]
        return inputs + ops.cast(sinusoidal_positions(position, 1, dim), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="vidcache")
class CausalAttentionBlock(keras.layers.Layer):
    """One pre-norm transformer block with causal self-attention over frames.

    Args:
        units: the model width (input and output size).
        heads: attention heads; ``units`` must be a multiple. Defaults to 4.
        ff_units: hidden units of the feed-forward part. Defaults to ``2 * units``.
        dropout: dropout on the attention weights and after each sub-block. Defaults to 0.
    """

    def __init__(
        self,
        units: int,
        heads: int = 4,
        ff_units: int | None = None,
        dropout: float = 0.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if units % heads:
            raise ValueError(f"units ({units}) must be a multiple of heads ({heads})")
        self.units, self.heads = int(units), int(heads)
        self.ff_units = int(ff_units or 2 * units)
        self.dropout = float(dropout)
        self.key_dim = self.units // self.heads
        self.supports_masking = True
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="attention_norm")
        self.qkv = keras.layers.Dense(3 * self.units, name="qkv")
        self.attention_output = keras.layers.Dense(self.units, name="attention_output")
        self.ff_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="ff_norm")
        self.ff_hidden = keras.layers.Dense(self.ff_units, activation="gelu", name="ff_hidden")
        self.ff_output = keras.layers.Dense(self.units, name="ff_output")
        self.drop = keras.layers.Dropout(self.dropout)

    def build(self, input_shape) -> None:
        shape = (None, None, self.units)
        self.attention_norm.build(shape)
        self.qkv.build(shape)
        self.attention_output.build(shape)
        self.ff_norm.build(shape)
        self.ff_hidden.build(shape)
        self.ff_output.build((None, None, self.ff_units))
        super().build(input_shape)

    def _split(self, x):
        """``(B, T, units)`` -> ``(B, heads, T, key_dim)``."""
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, self.heads, self.key_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def _merge(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[2]
        return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (batch, length, self.units))

    def _feed_forward(self, x, training=None):
        y = self.ff_output(self.ff_hidden(self.ff_norm(x)))
        return x + self.drop(y, training=training)

    def call(self, inputs, training=None, mask=None):
        q, k, v = ops.split(self.qkv(self.attention_norm(inputs)), 3, axis=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(self.key_dim)
        length = ops.shape(inputs)[1]
        rows = ops.arange(length)[:, None]
        cols = ops.arange(length)[None, :]
        causal = ops.cast(cols <= rows, scores.dtype)
        # Padding sits after a video's last frame, so a real frame only ever sees real frames.
        scores = scores * causal + (1.0 - causal) * ops.cast(-1e9, scores.dtype)
        weights = self.drop(_softmax(scores), training=training)
        attended = self._merge(ops.matmul(weights, v))
        x = inputs + self.drop(self.attention_output(attended), training=training)
        return self._feed_forward(x, training=training)

    def step(self, x, keys, values):
        """One new frame ``(1, units)`` given the cached ``keys``/``values``
        ``(1, heads, t, key_dim)`` of the frames before it; returns ``(output, keys,
        values)`` with this frame's key and value appended."""
        q, k, v = ops.split(self.qkv(self.attention_norm(x[:, None, :])), 3, axis=-1)
        q = self._split(q)
        keys = ops.concatenate([keys, self._split(k)], axis=2)
        values = ops.concatenate([values, self._split(v)], axis=2)
        scores = ops.matmul(q, ops.transpose(keys, (0, 1, 3, 2))) / math.sqrt(self.key_dim)
        attended = self._merge(ops.matmul(_softmax(scores), values))
        y = x[:, None, :] + self.attention_output(attended)
        return self._feed_forward(y)[:, 0, :], keys, values

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            units=self.units, heads=self.heads, ff_units=self.ff_units, dropout=self.dropout
        )
        return config


@keras.saving.register_keras_serializable(package="vidcache")
class LastAndMean(keras.layers.Layer):
    """The encoder's output at each video's last real frame, optionally concatenated with
    the mean of its outputs over the real frames (``pooled``). Both are causal."""

    def __init__(self, pooled: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pooled = bool(pooled)

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], "bool")
        weights = ops.cast(mask, inputs.dtype)
        lengths = ops.maximum(ops.sum(weights, axis=1), 1.0)
        last_index = ops.cast(lengths, "int32") - 1
        last = ops.take_along_axis(inputs, last_index[:, None, None], axis=1)[:, 0, :]
        if not self.pooled:
            return last
        mean = ops.sum(inputs * weights[..., None], axis=1) / lengths[:, None]
        return ops.concatenate([last, mean], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        width = input_shape[-1] * (2 if self.pooled else 1)
        return (input_shape[0], width)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(pooled=self.pooled)
        return config


def transformer_body(
    x, units: int, layers: int, heads: int, dropout: float, per_step: bool, pooled: bool
):
    """Standardised, masked frames -> ``frame_projection`` -> ``frame_positions`` ->
    ``attention_0..`` -> (``per_step``: every frame's output; else ``readout``)."""
    x = keras.layers.Dense(units, name="frame_projection")(x)
    x = FramePositions(name="frame_positions")(x)
    for i in range(layers):
        x = CausalAttentionBlock(units, heads=heads, dropout=dropout, name=f"attention_{i}")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_norm")(x)
    if per_step:
        return x
    return LastAndMean(pooled=pooled, name="readout")(x)


def empty_cache(block: CausalAttentionBlock) -> tuple[np.ndarray, np.ndarray]:
    """The key/value cache of a stream before its first frame."""
    empty = np.zeros((1, block.heads, 0, block.key_dim), np.float32)
    return empty, empty.copy()


def attention_blocks(model) -> list[CausalAttentionBlock]:
    """The ``attention_0``, ``attention_1``... blocks of a model, in order."""
    names = [layer.name for layer in model.layers if re.fullmatch(r"attention_\d+", layer.name)]
    return [model.get_layer(name) for name in sorted(names, key=lambda n: int(n[10:]))]


def encoder_step(model):
    """``step(x, position, caches) -> (output, caches)``: one standardised frame ``(1, D)``
    at ``position`` through the causal encoder of ``model`` (projection, position, every
    block with its key/value cache, ``encoder_norm``), as the offline model computes that
    frame's output. Start the caches with :func:`empty_cache` of each block."""
    blocks = attention_blocks(model)
    projection = model.get_layer("frame_projection")
    positions = model.get_layer("frame_positions")
    norm = model.get_layer("encoder_norm")

    def step(x, position, caches):
        x = positions.at(projection(x), position)
        new_caches = []
        for block, (keys, values) in zip(blocks, caches):
            x, keys, values = block.step(x, keys, values)
            new_caches.append((keys, values))
        return norm(x), new_caches

    return step
