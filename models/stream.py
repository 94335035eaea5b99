"""Run a trained classifier or regressor one frame at a time, carrying the recurrent state.

The same layers (and weights) as the offline model: each new frame is standardised, goes
through one step of each LSTM or GRU cell, and the output layers read the last hidden state
(with a pooled readout, also the running mean of the top layer's outputs); after
the last frame the output equals the offline model's on the whole sequence (and, for a
per-frame regressor, every step's output equals the offline output at that frame). The mean
head keeps a running mean instead. The transformer head keeps each block's keys and values
of the frames seen so far (:mod:`models.attention`), so a frame costs one attention row per
block. Bidirectional models cannot stream (their backward direction needs frames that have
not arrived yet).
"""

from __future__ import annotations

import re

import numpy as np

from vidcache.features.errors import VidcacheError


class StreamError(VidcacheError):
    """This model cannot be run as a stream."""


class StreamingModel:
    """Frame-by-frame outputs of a model built by :mod:`models.heads` (class probabilities,
    or regression values).

    Args:
        model: the trained Keras model.
    """

    def __init__(self, model) -> None:
        from vidcache.features.backbone import import_tensorflow

        tf = import_tensorflow()
        names = [layer.name for layer in model.layers]
        if any(name.startswith(("bilstm_", "bigru_")) for name in names):
            raise StreamError(
                "a bidirectional model cannot run as a stream (its backward pass needs future "
                "frames); predict without --stream"
            )
        self._standardize = model.get_layer("standardize")
        if "classifier" in names:
            outputs = [model.get_layer("classifier")]
        else:
            outputs = [model.get_layer("regressor"), model.get_layer("target_scale")]
        recurrent = [n for n in names if re.fullmatch(r"(lstm|gru)_\d+", n)]
        recurrent.sort(key=lambda n: int(n.split("_")[1]))
        self._cells = [model.get_layer(name).cell for name in recurrent]
        self._hidden = model.get_layer("hidden") if "hidden" in names else None
        self._units = [cell.units for cell in self._cells]
        # An LSTM cell carries (h, c), a GRU cell h alone.
        self._state_sizes = [2 if n.startswith("lstm") else 1 for n in recurrent]
        # A "pooled" readout: the top LSTM's final state, mean and max of its outputs so far.
        self._pooled = "pooled" in names
        pooled = model.get_layer("pooled") if self._pooled else None
        from vidcache.models.attention import attention_blocks, empty_cache, encoder_step

        self._blocks = attention_blocks(model)
        self._empty_cache = empty_cache
        self._width = 0
        if self._blocks:
            encode = encoder_step(model)
            # A per-frame regressor has no readout: each frame's output is its own.
            readout = model.get_layer("readout") if "readout" in names else None
            self._width = self._blocks[-1].units
        self.reset()

        standardize, cells, hidden = self._standardize, self._cells, self._hidden

        def head(x):
            for layer in outputs:
                x = layer(x)
            # target_scale's statistics are shaped for (batch, time, K) when per frame.
            return tf.reshape(x, (1, -1))

        @tf.function(reduce_retracing=True)
        def lstm_step(x, states, pool):
            # The layer's statistics are shaped for (batch, time, dim): one frame is (1, dim).
            x = tf.reshape(standardize(x[None, :]), (1, -1))
            new_states = []
            for cell, state in zip(cells, states):
                x, state = cell(x, list(state), training=False)
                new_states.append(tuple(state))
            if pooled is not None:
                total, count = pool
                total, count = total + x, count + 1.0
                pool = (total, count)
                x = pooled([x, total / count])
            return head(x)[0], new_states, pool

        @tf.function(reduce_retracing=True)
        def mean_step(x, total, count):
            total = total + tf.reshape(standardize(x[None, :]), (1, -1))
            count = count + 1.0
            return head(hidden(total / count))[0], total, count

        self._lstm_step, self._mean_step = lstm_step, mean_step
        if not self._blocks:
            return

        # The key/value caches grow by one frame per step: shapes vary in the time axis.
        @tf.function(reduce_retracing=True)
        def attention_step(x, position, caches, total):
            x = tf.reshape(standardize(x[None, :]), (1, -1))
            x, new_caches = encode(x, position, caches)
            total = total + x
            if readout is not None and readout.pooled:
                x = tf.concat([x, total / tf.cast(position + 1, x.dtype)], axis=-1)
            return head(x)[0], new_caches, total

        self._attention_step = attention_step

    def reset(self) -> None:
        """Forget every frame seen so far."""
        self._states = [
            tuple(np.zeros((1, u), np.float32) for _ in range(size))
            for u, size in zip(self._units, self._state_sizes)
        ]
        self._total = None
        self._count = np.float32(0.0)
        top = self._units[-1] if self._units else 0
        self._pool = (np.zeros((1, top), np.float32), np.float32(0.0))
        self._caches = [self._empty_cache(block) for block in self._blocks]
        self._attention_total = np.zeros((1, self._width), np.float32)
        self.frames = 0

    def step(self, features: np.ndarray) -> np.ndarray:
        """Take one frame's feature vector ``(D,)``; return the output so far (class
        probabilities, or regression values)."""
        x = np.asarray(features, np.float32)
        self.frames += 1
        if self._blocks:
            probs, self._caches, self._attention_total = self._attention_step(
                x, np.int32(self.frames - 1), self._caches, self._attention_total
            )
        elif self._cells:
            probs, self._states, self._pool = self._lstm_step(x, self._states, self._pool)
        else:
            if self._total is None:
                self._total = np.zeros((1, x.shape[-1]), np.float32)
            probs, self._total, self._count = self._mean_step(x, self._total, self._count)
        return np.asarray(probs)
