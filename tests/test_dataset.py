"""``vidcache.dataset``: a cache as ``tf.data``, batch for batch what train-rnn uses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_train import ordered_videos, write_cache

import vidcache
from vidcache.features.cache import CacheReader
from vidcache.features.errors import VidcacheError
from vidcache.models.data import make_dataset
from vidcache.pipeline.cli import cli


def test_the_dataset_is_train_rnns_split_labels_and_batches(tmp_path):
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=6))
    run = tmp_path / "run"
    train = ["train-rnn", str(cache), "-o", str(run), "--epochs", "1", "--units", "4", "-q"]
    assert CliRunner().invoke(cli, train).exit_code == 0
    config = json.loads((run / "config.json").read_text())
    classes = json.loads((run / "labels.json").read_text())
    classes = classes["classes"] if isinstance(classes, dict) else classes
    for split in ("train", "val"):
        data = vidcache.dataset(cache, split=split, batch_size=4, shuffle=False)
        assert data.video_ids == config["split"][split]  # the same videos, in order
        assert data.class_names == classes and data.settings.feature_dim == 8
        with CacheReader(cache) as reader:
            entries = reader.entries()
            expected = [reader.features(v) for v in data.video_ids]
        seen = 0
        for x, y in data:
            x, y = x.numpy(), y.numpy()
            for row in range(len(y)):
                video_id = data.video_ids[seen]
                assert classes[y[row]] == entries[video_id].label
                length = len(expected[seen])
                np.testing.assert_array_equal(x[row, :length], expected[seen])
                assert not x[row, length:].any()  # zero padding, masked by the model
                seen += 1
        assert seen == len(data.video_ids)
    # batch for batch what train-rnn's own pipeline makes from the same rows
    data = vidcache.dataset(cache, split="val", batch_size=3, shuffle=False)
    with CacheReader(cache) as reader:
        from vidcache.models.data import SequenceSource, collect_examples

        examples = {e.video_id: e for e in collect_examples([reader])}
        chosen = [examples[v] for v in data.video_ids]
        targets = np.array([classes.index(e.label) for e in chosen], np.int32)
        own = make_dataset(SequenceSource([reader], chosen), targets, 3)
        for (a, b), (c, d) in zip(data, own, strict=True):
            np.testing.assert_array_equal(a.numpy(), c.numpy())
            np.testing.assert_array_equal(b.numpy(), d.numpy())


def test_a_shuffled_training_set_fits_a_keras_model_and_bad_requests_are_one_line(tmp_path):
    import keras

    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=4))
    train = vidcache.dataset(cache, split="train", batch_size=4)
    val = vidcache.dataset(cache, split="val", batch_size=4)
    model = keras.Sequential(
        [keras.layers.Masking(), keras.layers.GRU(4), keras.layers.Dense(3, "softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train, validation_data=val, epochs=2, verbose=0, shuffle=False)
    assert len(history.history["val_accuracy"]) == 2
    with pytest.raises(VidcacheError, match="split must be one of"):
        vidcache.dataset(cache, split="validation")
    with pytest.raises(VidcacheError, match="at least one cache"):
        vidcache.dataset()
