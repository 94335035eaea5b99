"""The backbone registry: InceptionV3 as its first entry reproduces 0.2.0's caches, the
weights identity is written and parsed in one place, and a backbone registered from outside
vidcache (a toy mean-colour one, defined here) runs through the command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vidcache.features.backbones import (
    Backbone,
    WeightsSpec,
    backbone_names,
    get_backbone,
    register,
    registry,
    unregister,
)
from vidcache.features.cache import CacheReader, read_settings
from vidcache.features.errors import WeightsUnavailable
from vidcache.features.settings import FeatureSettings
from vidcache.pipeline.cli import cli

RELEASE = Path(__file__).parent / "data" / "release-0.2.0"


def invoke(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def test_inception_v3_reproduces_a_cache_made_by_0_2_0(tmp_path):
    videos = shutil.copytree(RELEASE / "videos", tmp_path / "videos")
    out = tmp_path / "features.h5"
    invoke("extract", videos, "-o", out, "--weights", "random", "--seed", "0",
           "--image-size", 75, "--fps", 5, "-q")  # fmt: skip
    old, new = read_settings(RELEASE / "features.h5"), read_settings(out)
    assert new.to_json() == old.to_json()
    assert new.digest() == old.digest()
    assert new.weights_sha256 == old.weights_sha256
    with CacheReader(RELEASE / "features.h5") as before, CacheReader(out) as after:
        assert sorted(after.entries()) == sorted(before.entries())
        assert sorted(before.entries()) == ["blue/clip.mp4", "red/clip.mp4"]
        for video_id in before.entries():
            a, b = before.rows(video_id), after.rows(video_id)
            np.testing.assert_array_equal(b.frame_indices, a.frame_indices)
            np.testing.assert_array_equal(b.timestamps, a.timestamps)
            # Bit-identical on the machine that made the file; another CPU may choose other
            # oneDNN kernels, so the test allows float32 rounding and no more.
            np.testing.assert_allclose(b.features, a.features, rtol=1e-5, atol=1e-6)


def test_weights_identity_round_trips():
    for identity, spec in (
        ("imagenet", WeightsSpec("imagenet")),
        ("random:seed=7", WeightsSpec("random", seed=7)),
        ("random:seed=-3", WeightsSpec("random", seed=-3)),
        ("file:mine.weights.h5", WeightsSpec("file", path=Path("mine.weights.h5"))),
    ):
        assert WeightsSpec.from_identity(identity) == spec
        assert spec.identity == identity
    assert WeightsSpec.from_identity("file:x.h5").file_name == "x.h5"
    assert WeightsSpec("random", seed=2).file_name is None
    for bad in ("import:CLIP", "random:seed=", "random:seed=1.5", "file:", "Imagenet", ""):
        with pytest.raises(ValueError, match="not a vidcache weights identity"):
            WeightsSpec.from_identity(bad)


def test_registry_lookups_and_settings_fields():
    assert backbone_names()[0] == "InceptionV3"
    inception = get_backbone()
    assert inception.settings_fields() == {
        "backbone": "InceptionV3",
        "pooling": "avg",
        "feature_dim": 2048,
        "preprocess": "keras.applications.inception_v3.preprocess_input",
    }
    # The registry's fields are FeatureSettings' defaults: old settings records stay equal.
    assert FeatureSettings.for_backbone("InceptionV3", weights="imagenet", weights_sha256="x") == (
        FeatureSettings(weights="imagenet", weights_sha256="x")
    )
    with pytest.raises(ValueError, match=r"unknown backbone 'VGG16'; known: InceptionV3"):
        get_backbone("VGG16")
    with pytest.raises(ValueError, match="image_size must be at least 75 for InceptionV3"):
        FeatureSettings(weights="imagenet", weights_sha256="x", image_size=64)
    with pytest.raises(ValueError, match="already registered"):
        register(Backbone("InceptionV3", 3, 1, 1, lambda s: None, lambda x: x, "x"))


def _mean_colour_model(input_shape):
    import keras

    inputs = keras.Input(input_shape)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))


def _to_unit(frames):
    return frames / 255.0


MEAN_COLOUR = Backbone(
    name="MeanColour",
    feature_dim=3,
    min_image_size=8,
    default_image_size=32,
    build=_mean_colour_model,
    preprocess=_to_unit,
    preprocess_name="x / 255",
)


@pytest.fixture
def mean_colour():
    register(MEAN_COLOUR)
    yield MEAN_COLOUR
    unregister(MEAN_COLOUR.name)


def test_a_backbone_registered_from_outside_runs_through_the_cli(tmp_path, mean_colour):
    from conftest import lossless, solid_frames

    lossless(tmp_path / "v" / "a" / "grey.mkv", solid_frames([(128, 128, 128)] * 4))
    lossless(tmp_path / "v" / "b" / "red.mkv", solid_frames([(255, 0, 0), (0, 0, 255)] * 2))
    out = tmp_path / "mean.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", "MeanColour", "--weights",
           "random", "--image-size", 16, "--fps", 0, "-q")  # fmt: skip
    settings = read_settings(out)
    assert (settings.backbone, settings.feature_dim, settings.preprocess) == (
        "MeanColour",
        3,
        "x / 255",
    )
    assert settings.image_size == 16
    with CacheReader(out) as cache:
        grey, red = cache.features("a/grey.mkv"), cache.features("b/red.mkv")
        np.testing.assert_allclose(grey, np.full((4, 3), 128 / 255), atol=0.01)
        np.testing.assert_allclose(red, [[1, 0, 0], [0, 0, 1]] * 2, atol=0.02)
    # --like copies the backbone; an explicit --backbone beside it is refused.
    copy = tmp_path / "copy.h5"
    invoke("extract", tmp_path / "v", "-o", copy, "--like", out, "-q")
    assert read_settings(copy) == settings
    refused = invoke("extract", tmp_path / "v", "-o", copy, "--like", out, "--backbone",
                     "InceptionV3", code=2)  # fmt: skip
    assert "drop --backbone" in refused.output
    # Below the backbone's own minimum input:
    small = invoke("extract", tmp_path / "v", "-o", tmp_path / "s.h5", "--backbone",
                   "MeanColour", "--weights", "random", "--image-size", 4, code=2)  # fmt: skip
    assert "--image-size" in small.output
    # It has no pretrained file; `vidcache weights` says so in one line.
    none = invoke("weights", "--backbone", "MeanColour", "--check", code=1)
    assert "MeanColour has no pretrained weights file" in none.output
    # Once it is gone, its caches still read, and --like says what is missing.
    unregister("MeanColour")
    with CacheReader(out) as cache:
        assert cache.features("a/grey.mkv").shape == (4, 3)
    gone = invoke("extract", tmp_path / "v", "-o", copy, "--like", out, code=1)
    assert "made with the backbone MeanColour, which this installation does not have" in (
        gone.output
    )


def test_unknown_backbone_is_a_usage_error(tmp_path):
    result = invoke("extract", tmp_path, "--backbone", "VGG16", code=2)
    assert (
        "'VGG16' is not a registered backbone "
        "(InceptionV3, CLIP-ViT-B32, CLIP-ViT-L14, EfficientNetV2S, MobileNetV3Large, ResNet50, "
        "logmel, videoprism-base, videoprism-large, whisper-base, whisper-tiny)" in result.output
    )


def test_backbone_plugins_load_and_a_broken_one_warns(monkeypatch):
    class Broken:
        name, value = "broken", "nowhere.module:register"

        def load(self):
            raise ImportError("No module named 'nowhere'")

    class Working:
        name, value = "mean", "tests.test_backbones:register_mean_colour"

        def load(self):
            return lambda: register(MEAN_COLOUR)

    monkeypatch.setattr(registry, "_builtins_loaded", False)
    monkeypatch.setattr(
        "importlib.metadata.entry_points",
        lambda group: [Broken(), Working()] if group == registry.ENTRY_POINT_GROUP else [],
    )
    try:
        with pytest.warns(UserWarning, match=r"backbone plugin broken \(nowhere.module:register\)"):
            assert backbone_names()[0] == "InceptionV3" and "MeanColour" in backbone_names()
    finally:
        unregister(MEAN_COLOUR.name)


def test_weights_unavailable_names_the_backbone(tmp_path, monkeypatch):
    from vidcache.features.backbones import pretrained_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="ImageNet weights for InceptionV3 are not in"):
        pretrained_weights("InceptionV3", download=False)


KERAS_APPLICATIONS = [
    # (name on the command line, recorded name, feature dim, reference builder, preprocess)
    ("resnet50", "ResNet50", 2048, "ResNet50", "resnet.preprocess_input"),
    ("efficientnetv2-s", "EfficientNetV2S", 1280, "EfficientNetV2S", None),
    ("mobilenetv3-large", "MobileNetV3Large", 960, "MobileNetV3Large", None),
]


@pytest.mark.slow
@pytest.mark.parametrize("alias,name,dim,builder,preprocess", KERAS_APPLICATIONS)
def test_keras_applications_backbones_give_what_keras_gives(alias, name, dim, builder, preprocess):
    """Each entry's features are keras.applications' own model on its own preprocessing,
    built with the same seed (random weights: no network here)."""
    import keras

    from vidcache.features.backbone import FeatureExtractor

    entry = get_backbone(alias)
    assert (entry.name, entry.feature_dim) == (name, dim)
    extractor = FeatureExtractor(32, WeightsSpec("random", seed=3), "float32", 4, alias)
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    features = extractor(frames)
    assert features.shape == (3, dim) and np.isfinite(features).all()
    keras.utils.set_random_seed(3)
    options = {} if preprocess else {"include_preprocessing": True}
    reference = getattr(keras.applications, builder)(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg", **options
    )
    x = frames.astype("float32")
    if preprocess:
        x = keras.applications.resnet.preprocess_input(x)
    expected = np.asarray(reference(x, training=False))
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(features[0] - features[1]).max() > 0  # different frames, different rows


def test_a_keras_application_backbone_through_the_cli(tmp_path, monkeypatch):
    from conftest import lossless, random_frames

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    lossless(tmp_path / "v" / "a" / "one.mkv", random_frames(3, seed=1))
    out = tmp_path / "m.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", "MobileNetV3-Large", "--weights",
           "random", "--image-size", 32, "--fps", 0, "-q")  # fmt: skip
    settings = read_settings(out)
    assert (settings.backbone, settings.feature_dim, settings.image_size) == (
        "MobileNetV3Large",
        960,
        32,
    )
    with CacheReader(out) as cache:
        assert cache.features("a/one.mkv").shape == (3, 960)
    # Another backbone into the same cache is refused in one line.
    mixed = invoke("extract", tmp_path / "v", "-o", out, "--backbone", "resnet50", "--weights",
                   "random", "--image-size", 32, "--fps", 0, code=1)  # fmt: skip
    assert "backbone" in mixed.output.splitlines()[-1]
    # Where its real weights would come from, in one line.
    missing = invoke("weights", "--backbone", "resnet50", "--check", code=1)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in missing.output


def test_weights_list_names_every_backbone_and_its_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").touch()
    lines = invoke("weights", "--list").output.splitlines()
    assert lines[0] == f"Keras cache: {tmp_path / 'models'}"
    assert [line.split(":")[0] for line in lines[1:]] == backbone_names()
    resnet = next(line for line in lines if line.startswith("ResNet50:"))
    assert "2048-d, 224 px (at least 32)" in resnet and "(present)" in resnet
    inception = next(line for line in lines if line.startswith("InceptionV3:"))
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 (missing)" in inception


@pytest.mark.slow
def test_every_backbone_extracts_every_format_the_tests_make(tmp_path):
    """One clip per demo format (H.264, MPEG-4, VP9, FFV1, MJPEG) and a folder of frames,
    through every built-in backbone at its smallest input (CLIP-ViT-L14 and videoprism-large
    left out: the same code as their smaller siblings, at three to four times the build
    cost; the keras-hub ones only with the hub extra)."""
    import importlib.util

    from vidcache.features.synthetic import DEMO_FORMATS, write_video

    rng = np.random.default_rng(0)
    videos = tmp_path / "v"
    for number, (ext, codec, pix_fmt) in enumerate(DEMO_FORMATS):
        frames = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
        write_video(videos / f"c{number}.{ext}", frames, 10, codec, pix_fmt)
    from PIL import Image

    (videos / "frames").mkdir()
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            videos / "frames" / f"{index:03d}.png"
        )
    names = [n for n in backbone_names() if n not in ("CLIP-ViT-L14", "videoprism-large")]
    names = [n for n in names if not get_backbone(n).hears]  # sound: tests/test_audio.py
    if importlib.util.find_spec("keras_hub") is None:
        names = [n for n in names if get_backbone(n).extra != "hub"]
    for name in names:
        entry = get_backbone(name)
        out = tmp_path / f"{name}.h5"
        size = max(entry.min_image_size, 32)
        size += -size % entry.image_multiple  # a transformer's patches tile the frame
        # a clip backbone pools per frame here: one row per frame, as for the others
        pooling = ["--pooling", "frame"] if entry.takes_windows else []
        invoke("extract", videos, "-o", out, "--backbone", name, "--weights", "random",
               "--image-size", size, "--fps", 0, "--folder-fps", 10, *pooling,
               "-q")  # fmt: skip
        with CacheReader(out) as cache:
            entries = cache.entries()
            assert len(entries) == len(DEMO_FORMATS) + 1, (name, sorted(entries))
            for video_id in entries:
                features = cache.features(video_id)
                assert features.shape == (3, entry.feature_dim), (name, video_id)
                assert np.isfinite(features).all()
