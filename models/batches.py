"""Batches for Keras: sequences zero-padded at the end into ``tf.data`` datasets (one
label per video, a 0/1 row of labels, or a target per frame), assembled in numpy and
prefetched on a background thread. A source is anything indexable that gives ``(T, D)``
arrays (a :class:`~vidcache.models.data.SequenceSource`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_sequences(sequences: list[np.ndarray], dtype=np.float32) -> np.ndarray:
    """Stack ``(T_i, ...)`` arrays into ``(B, max T_i, ...)``, zero-padded at the end."""
    longest = max(len(s) for s in sequences)
    out = np.zeros((len(sequences), longest, *sequences[0].shape[1:]), dtype)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = sequence
    return out


def batched_dataset(
    count: int,
    make_batch,
    signature,
    batch_size: int,
    shuffle=False,
    seed=0,
    shard: tuple[int, int] | None = None,
    repeat: bool = False,
):
    """A ``tf.data.Dataset`` of ``make_batch(rows)`` for consecutive ``rows`` of
    ``range(count)`` (seeded reshuffle per epoch when ``shuffle``), prefetched on a
    background thread so the model does not wait; Keras knows its length.

    Args:
        count: examples.
        make_batch: ``rows (np.ndarray of int) -> tuple of arrays`` matching ``signature``.
        signature: the ``tf.TensorSpec`` structure of a batch.
        batch_size: examples per batch.
        shuffle: a new seeded order every epoch. Defaults to False.
        seed: the first epoch's shuffle seed. Defaults to 0.
        shard: ``(index, count)``: only batches ``index, index + count, ...`` of each
            epoch (one input pipeline of a distributed run; every pipeline draws the same
            seeded order, so the shares never overlap). Defaults to None (all).
        repeat: epoch after epoch, forever, in full batches only (steps are then
            counted by the caller). Defaults to False.
    """
    from vidcache.features.backbone import import_tensorflow

    tf = import_tensorflow()
    epoch = [0]
    index, pipelines = shard or (0, 1)

    def order_of(number: int) -> np.ndarray:
        if shuffle:
            return np.random.default_rng(seed + number).permutation(count)
        return np.arange(count)

    def batches():
        order = order_of(epoch[0])
        epoch[0] += int(shuffle)
        for start in range(0, count, batch_size)[index::pipelines]:
            yield make_batch(order[start : start + batch_size])

    def endless():
        # Epoch after epoch as one stream cut into full batches: the replicas of a step
        # must all get the same batch size, so no short last batch is ever made.
        pending, number, made = np.empty(0, np.int64), 0, 0
        while True:
            while len(pending) < batch_size:
                pending = np.concatenate([pending, order_of(number)])
                number += 1
            rows, pending = pending[:batch_size], pending[batch_size:]
            if made % pipelines == index:
                yield make_batch(rows)
            made += 1

    if repeat:
        dataset = tf.data.Dataset.from_generator(endless, output_signature=signature)
        return dataset.prefetch(4)
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    # The length is known: Keras then counts steps per epoch instead of running out of data.
    steps = len(range(0, count, batch_size)[index::pipelines])
    return dataset.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(4)


def per_frame_dataset(
    source: Sequence[np.ndarray],
    targets: list[np.ndarray],
    weights: list[np.ndarray],
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
    repeat: bool = False,
):
    """A ``tf.data.Dataset`` of ``(frames (B, T, D), targets (B, T[, K]), weights (B, T))``
    with a target per frame (float values ``(T, K)``, or class indices ``(T,)``), all
    zero-padded at the end, so padded frames weigh 0 (see :func:`batched_dataset`)."""
    from vidcache.features.backbone import import_tensorflow

    tf = import_tensorflow()
    dim = source[0].shape[1]
    kind = np.asarray(targets[0]).dtype
    dtype = np.int32 if np.issubdtype(kind, np.integer) else np.float32

    def make_batch(rows):
        frames = pad_sequences([source[int(i)] for i in rows])
        return (
            frames,
            pad_sequences([targets[i] for i in rows], dtype),
            pad_sequences([weights[i] for i in rows]),
        )

    signature = (
        tf.TensorSpec((None, None, dim), tf.float32),
        tf.TensorSpec((None, None, *np.shape(targets[0])[1:]), tf.as_dtype(dtype)),
        tf.TensorSpec((None, None), tf.float32),
    )
    return batched_dataset(
        len(source), make_batch, signature, batch_size, shuffle, seed, shard, repeat
    )


def make_dataset(
    source: Sequence[np.ndarray],
    targets: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
    repeat: bool = False,
):
    """A ``tf.data.Dataset`` of ``(padded_batch (B, T, D), labels (B,))`` (or ``(B, C)``
    0/1 rows of a multi-label ``targets (N, C)``).

    Whole batches are assembled in numpy (zero-padded to the batch's longest sequence; the
    model's ``Masking`` layer ignores the padding) and prefetched on a background thread, so
    the model does not wait for data; shuffling is seeded and differs per epoch.
    ``shard`` and ``repeat`` serve distributed training (see :func:`batched_dataset`).
    """
    from vidcache.features.backbone import import_tensorflow

    tf = import_tensorflow()
    dim = source[0].shape[1] if len(source) else 2048
    targets = np.asarray(targets)
    if targets.ndim == 2:  # multi-label: a 0/1 row per video
        targets = targets.astype(np.float32)
        labels = tf.TensorSpec((None, targets.shape[1]), tf.float32)
    else:
        targets = targets.astype(np.int32)
        labels = tf.TensorSpec((None,), tf.int32)

    def make_batch(rows):
        return pad_sequences([source[int(i)] for i in rows]), targets[rows]

    signature = (tf.TensorSpec((None, None, dim), tf.float32), labels)
    return batched_dataset(
        len(source), make_batch, signature, batch_size, shuffle, seed, shard, repeat
    )
