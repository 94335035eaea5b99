import numpy as np
import pytest
from conftest import SMALL, SMALL_BATCH

from vidcache.features import backbone
from vidcache.features.backbone import (
    FeatureExtractor,
    WeightsSpec,
    build_backbone,
    imagenet_weights,
)
from vidcache.features.errors import WeightsUnavailable


def frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, SMALL, SMALL, 3), dtype=np.uint8)


def test_compiled_call_equals_keras_preprocess_input_then_model(extractor):
    import keras

    batch = frames(3)
    ours = extractor(batch)
    reference = extractor.model.predict(
        keras.applications.inception_v3.preprocess_input(batch.astype(np.float32)), verbose=0
    )
    assert ours.shape == (3, 2048) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_padding_a_short_batch_does_not_change_features(extractor):
    batch = frames(SMALL_BATCH, seed=1)
    full = extractor(batch)
    for n in (1, 3):
        np.testing.assert_allclose(extractor(batch[:n]), full[:n], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at most 4 frames per call"):
        extractor(frames(SMALL_BATCH + 1))


def test_random_weights_are_reproducible_and_seed_dependent(extractor):
    _, same = build_backbone(SMALL, WeightsSpec("random", seed=0))
    _, other = build_backbone(SMALL, WeightsSpec("random", seed=1))
    assert same == extractor.weights_sha256 != other


def test_weights_file_loads_and_has_the_same_digest(tmp_path, extractor):
    path = tmp_path / "mine.weights.h5"
    extractor.model.save_weights(path)
    spec = WeightsSpec.parse(str(path))
    assert spec.identity == "file:mine.weights.h5"
    model, digest = build_backbone(SMALL, spec)
    assert digest == extractor.weights_sha256


def test_bad_weights_file_and_missing_path_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(
        WeightsUnavailable, match=r"^cannot load InceptionV3 notop weights from .*junk.h5: "
    ):
        build_backbone(SMALL, WeightsSpec.parse(str(junk)))
    with pytest.raises(WeightsUnavailable, match="weights file nope.h5 does not exist"):
        WeightsSpec.parse("nope.h5")


def test_missing_imagenet_weights_without_network_says_how_to_provide_them(tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://...: None -- [Errno -3] name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailable) as info:
        imagenet_weights()
    text = str(info.value)
    assert "\n" not in text
    assert "could not be downloaded (URL fetch failure" in text
    assert text.startswith("ImageNet weights for InceptionV3 are not in the Keras cache")
    assert str(tmp_path / "keras" / "models" / backbone.IMAGENET_FILE) in text
    assert "--weights PATH" in text
    with pytest.raises(WeightsUnavailable, match="are not in .*; fetch https://storage"):
        imagenet_weights(download=False)


def test_damaged_imagenet_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / backbone.IMAGENET_FILE).write_bytes(b"partial download")
    with pytest.raises(WeightsUnavailable, match="is damaged"):
        imagenet_weights()


def test_bfloat16_features_stay_close_to_float32(extractor):
    low = FeatureExtractor(SMALL, WeightsSpec("random", seed=0), "bfloat16", SMALL_BATCH)
    assert low.weights_sha256 == extractor.weights_sha256
    assert low.model.compute_dtype == "bfloat16"
    batch = frames(SMALL_BATCH, seed=2)
    a, b = extractor(batch), low(batch)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.98
