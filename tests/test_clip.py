"""The CLIP backbones through keras-hub (the ``hub`` extra): the image embedding is
keras-hub's own ``CLIPBackbone.get_vision_embeddings``, real weights load from a local preset
folder (made here, randomly initialised: no network), and every wrong folder or missing
package is one line."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from click.testing import CliRunner

from vidcache.features.backbones import WeightsSpec, get_backbone, register, unregister
from vidcache.features.cache import CacheReader, read_settings
from vidcache.pipeline.cli import cli

TINY = "CLIP-Tiny"


def invoke(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def test_without_keras_hub_clip_is_one_line(tmp_path, monkeypatch):
    """Runs without the extra too: choosing CLIP then names the extra to install."""
    import sys

    from conftest import lossless, random_frames

    monkeypatch.setitem(sys.modules, "keras_hub", None)  # import keras_hub -> ImportError
    lossless(tmp_path / "v" / "a.mkv", random_frames(2, seed=1))
    result = invoke("extract", tmp_path / "v", "-o", tmp_path / "c.h5", "--backbone", "clip",
                    "--weights", "random", "--image-size", 64, code=1)  # fmt: skip
    assert result.output.strip().splitlines()[-1] == (
        "Error: the CLIP-ViT-B32 backbone needs keras-hub, which is not installed: "
        "pip install 'vidcache[hub]'"
    )
    assert not (tmp_path / "c.h5").exists()


needs_hub = pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None,
    reason="the hub extra (keras-hub) is not installed: pip install 'vidcache[hub]'",
)


@pytest.fixture
def tiny_clip(tmp_path):
    """A small CLIP tower registered from here, and a keras-hub preset folder of that shape
    with random weights: what a real preset folder looks like to vidcache."""
    import keras
    import keras_hub

    from vidcache.features.backbones.clip import VisionTower, clip_backbone

    tower = VisionTower(16, 32, 2, 2, 64, projection_dim=24, image_size=64)
    register(clip_backbone(TINY, tower, "clip_tiny", aliases=()))
    keras.utils.set_random_seed(5)
    vision = keras_hub.models.CLIPVisionEncoder(
        patch_size=16, hidden_dim=32, num_layers=2, num_heads=2, intermediate_dim=64,
        image_shape=(64, 64, 3),
    )  # fmt: skip
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=50, embedding_dim=16, hidden_dim=16, num_layers=1, num_heads=2,
        intermediate_dim=32, max_sequence_length=8,
    )  # fmt: skip
    clip = keras_hub.models.CLIPBackbone(vision, text, projection_dim=24)
    preset = tmp_path / "clip_tiny"
    clip.save_to_preset(str(preset))
    yield clip, preset
    unregister(TINY)


@needs_hub
def test_features_are_keras_hubs_image_embedding(tiny_clip):
    from vidcache.features.backbone import FeatureExtractor
    from vidcache.features.backbones.clip import MEAN, STD

    clip, preset = tiny_clip
    extractor = FeatureExtractor(64, WeightsSpec("file", path=preset), "float32", 4, TINY)
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    features = extractor(frames)
    x = (frames.astype(np.float32) / 255.0 - MEAN) / STD
    expected = np.asarray(clip.get_vision_embeddings(x))
    assert features.shape == (3, 24)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(features[0] - features[1]).max() > 0


@needs_hub
def test_a_preset_folder_through_the_cli(tmp_path, tiny_clip):
    from conftest import lossless, random_frames

    _, preset = tiny_clip
    lossless(tmp_path / "v" / "a" / "one.mkv", random_frames(3, seed=1))
    out = tmp_path / "c.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", TINY, "--weights", preset,
           "--image-size", 64, "--fps", 0, "-q")  # fmt: skip
    settings = read_settings(out)
    assert (settings.backbone, settings.feature_dim, settings.pooling) == (
        TINY,
        24,
        "cls-projected",
    )
    assert settings.weights == "file:clip_tiny"
    with CacheReader(out) as cache:
        assert cache.features("a/one.mkv").shape == (3, 24)
    # The preset's position table is for 64 px: another size is one line.
    wrong_size = invoke("extract", tmp_path / "v", "-o", tmp_path / "s.h5", "--backbone", TINY,
                        "--weights", preset, "--image-size", 80, code=1)  # fmt: skip
    assert "preset weights are for 64 px frames; extract with --image-size 64" in (
        wrong_size.output
    )
    # A folder that is no preset, and a preset folder given to a Keras-file backbone.
    empty = tmp_path / "empty"
    empty.mkdir()
    not_preset = invoke("extract", tmp_path / "v", "-o", tmp_path / "e.h5", "--backbone", TINY,
                        "--weights", empty, "--image-size", 64, code=1)  # fmt: skip
    assert f"{empty} is not a keras-hub CLIP preset folder" in not_preset.output
    keras_file = invoke("extract", tmp_path / "v", "-o", tmp_path / "k.h5", "--backbone",
                        "resnet50", "--weights", preset, "--image-size", 64, code=1)  # fmt: skip
    assert "is a folder; ResNet50 loads a Keras weights file" in keras_file.output
    for name in ("s.h5", "e.h5", "k.h5"):
        assert not (tmp_path / name).exists()


@needs_hub
def test_another_towers_preset_is_refused(tmp_path, tiny_clip):
    """A real B/32 entry given the tiny preset: the shapes differ, one line says how."""
    from vidcache.features.backbone import build_backbone
    from vidcache.features.errors import WeightsUnavailable

    _, preset = tiny_clip
    with pytest.raises(WeightsUnavailable, match="holds another CLIP .patch 16, width 32"):
        build_backbone(224, WeightsSpec("file", path=preset), backbone="clip-vit-b32")


@needs_hub
@pytest.mark.slow
def test_clip_vit_b32_extracts_videos_at_75px(tmp_path):
    """The real ViT-B/32 entry, randomly initialised at 75 px (2x2 patches): 512-d image
    embeddings, and the settings say what they are."""
    from conftest import lossless, random_frames

    entry = get_backbone("clip-vit-b32")
    assert (entry.name, entry.feature_dim, entry.default_image_size) == ("CLIP-ViT-B32", 512, 224)
    assert get_backbone("clip-vit-l14").feature_dim == 768
    lossless(tmp_path / "v" / "a.mkv", random_frames(3, seed=2))
    out = tmp_path / "c.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", "clip-vit-b32", "--weights",
           "random", "--seed", 1, "--image-size", 75, "--fps", 0, "-q")  # fmt: skip
    settings = read_settings(out)
    assert settings.backbone == "CLIP-ViT-B32" and settings.weights == "random:seed=1"
    assert settings.preprocess.startswith("clip:")
    with CacheReader(out) as cache:
        features = cache.features("a.mkv")
    assert features.shape == (3, 512) and np.isfinite(features).all()
    assert np.abs(features[0] - features[2]).max() > 0
    missing = invoke("weights", "--backbone", "clip", "--check", code=1)
    assert "clip_vit_base_patch32" in missing.output


@needs_hub
def test_weights_list_says_where_clip_weights_come_from(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    lines = CliRunner().invoke(cli, ["weights", "--list"]).output.splitlines()
    clip = next(line for line in lines if line.startswith("CLIP-ViT-B32:"))
    assert "512-d, 224 px (at least 32)" in clip
    assert "real weights: the keras-hub preset folder clip_vit_base_patch32" in clip
    assert "hub extra installed" in clip
