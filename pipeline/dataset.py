"""``vidcache.dataset``: a cache as a ``tf.data.Dataset``, for people who write their own
Keras model on it, built exactly as ``train-rnn`` builds its own batches (the same split,
label encoding, padding and masking convention)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidcache.features.errors import VidcacheError
from vidcache.models.annotations import cached_paths
from vidcache.models.data import (
    SequenceSource,
    check_classes,
    collect_examples,
    make_dataset,
    open_caches,
)
from vidcache.models.split import UCF101_GROUP
from vidcache.pipeline.training.fitting import TrainConfig, split_examples

SPLITS = ("train", "val", "test", "all")


def dataset(
    *caches: str | Path,
    split: str = "train",
    batch_size: int = 16,
    shuffle: bool | None = None,
    val_split: float = 0.2,
    group_regex: str = UCF101_GROUP,
    split_file: str | Path | None = None,
    label_map: dict[str, str] | None = None,
    seq_len: int | None = None,
    max_len: int | None = None,
    stream: bool = False,
    seed: int = 0,
):
    """The labelled videos of one or more caches as a ``tf.data.Dataset`` of
    ``(features (B, T, D) float32, labels (B,) int32)`` batches.

    Sequences are zero-padded at the end to the longest of their batch (put a
    ``keras.layers.Masking()`` first in the model, as ``train-rnn`` does); labels are the
    indices of the sorted class names. The split is ``train-rnn``'s for the same options:
    the same seed, ``val_split``, ``group_regex`` or ``split_file`` give the same videos.

    Args:
        *caches: cache files, or folders of shard caches (one kind of settings).
        split: ``"train"``, ``"val"``, ``"test"`` (a split file's test rows) or ``"all"``.
            Defaults to ``"train"``.
        batch_size: videos per batch. Defaults to 16.
        shuffle: a new seeded order every epoch. Defaults to True for ``"train"``, False
            otherwise.
        val_split: share of each class held out for validation. Defaults to 0.2.
        group_regex: clips matching it share a group never split. Defaults to UCF101's.
        split_file: CSV ``path,split`` with train/val/test rows. Defaults to None.
        label_map: ``{old: new}`` label renames; ``""`` drops a class. Defaults to None.
        seq_len: resample every sequence to this many steps. Defaults to None.
        max_len: crop sequences to this many steps. Defaults to None.
        stream: read from the caches per batch instead of loading the split now (data
            larger than memory; the caches stay open). Defaults to False.
        seed: the split's and the shuffle's seed. Defaults to 0.

    Returns:
        The dataset, with ``class_names`` (like ``keras.utils.image_dataset_from_directory``),
        ``video_ids`` (in unshuffled order) and ``settings`` (the caches' feature settings)
        set on it.

    Raises:
        VidcacheError: no cache, an unknown split, unreadable caches, or data ``train-rnn``
            would refuse (one class, a class with one clip).

    Example:
        >>> import keras, vidcache
        >>> train = vidcache.dataset("features.h5", split="train", batch_size=16)
        >>> val = vidcache.dataset("features.h5", split="val", batch_size=16)
        >>> model = keras.Sequential([keras.layers.Masking(), keras.layers.GRU(64),
        ...                           keras.layers.Dense(len(train.class_names), "softmax")])
        >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> model.fit(train, validation_data=val, epochs=10, shuffle=False)  # it shuffles itself
    """
    from vidcache.features.shard import expand_caches

    if not caches:
        raise VidcacheError("vidcache.dataset needs at least one cache")
    if split not in SPLITS:
        raise VidcacheError(f"split must be one of {SPLITS}. Received: split={split!r}")
    paths = expand_caches(caches)
    readers, settings = open_caches(paths)
    try:
        examples = collect_examples(readers, label_map or None)
        classes = check_classes(examples)
        if split == "all":
            rows = list(range(len(examples)))
        else:
            config = TrainConfig(
                val_split=val_split,
                group_regex=group_regex,
                split_file=str(split_file) if split_file else None,
                seed=seed,
            )
            notes: list[str] = []
            rows = split_examples(examples, config, cached_paths(readers), notes)[split]
            for note in notes:
                warnings.warn(note, stacklevel=2)
        if not rows:
            raise VidcacheError(f"the {split!r} split of {paths[0]} holds no videos")
        chosen = [examples[i] for i in rows]
        index = {name: i for i, name in enumerate(classes)}
        source = SequenceSource(readers, chosen, stream, seq_len, max_len)
        targets = np.array([index[e.label] for e in chosen], np.int32)
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    if not stream:  # everything is in memory
        for reader in readers:
            reader.close()
    shuffle = split == "train" if shuffle is None else shuffle
    data = make_dataset(source, targets, batch_size, shuffle=shuffle, seed=seed)
    data.class_names = classes
    data.video_ids = [e.video_id for e in chosen]
    data.settings = settings
    return data


__all__: Sequence[str] = ["dataset"]
