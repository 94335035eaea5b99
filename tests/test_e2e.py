"""Stage three: the end-to-end model built from a stage-two run."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL

from vidcache.features.backbone import WeightsSpec, build_backbone
from vidcache.features.errors import SettingsMismatch
from vidcache.models.e2e import (
    E2EError,
    build_e2e,
    cut_layer_name,
    freeze,
    length_batches,
    split_backbone,
)
from vidcache.models.heads import build_classifier
from vidcache.pipeline.cli import cli
from vidcache.pipeline.training import TrainConfig, train_rnn
from vidcache.pipeline.training.e2e import E2EConfig, train_e2e


@pytest.fixture(scope="module")
def parts():
    """A random-init backbone (frozen up to mixed8) and a small head on its features."""
    import keras

    backbone, _ = build_backbone(SMALL, WeightsSpec("random", seed=0))
    freeze(backbone, cut_layer_name("mixed9"))
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, SMALL, SMALL, 3), dtype=np.uint8)
    scaled = keras.applications.inception_v3.preprocess_input(frames.astype(np.float32))
    features = np.stack([np.asarray(backbone(clip)) for clip in scaled])
    head = build_classifier(
        3,
        features.reshape(-1, 2048).mean(0),
        features.reshape(-1, 2048).var(0),
        units=4,
        dropout=0.0,
    )
    return backbone, head, frames, scaled, features


def test_unfreeze_from_names_the_cut():
    assert cut_layer_name("mixed9") == "mixed8" and cut_layer_name("mixed1") == "mixed0"
    assert cut_layer_name("all") is None
    for bad in ("mixed0", "mixed11", "block9"):
        with pytest.raises(E2EError, match="--unfreeze-from must be mixed1 ... mixed10 or all"):
            cut_layer_name(bad)


def test_only_the_top_blocks_train_and_batch_norm_stays_frozen(parts):
    import keras

    backbone = parts[0]
    names = [layer.name for layer in backbone.layers]
    cut = names.index("mixed8")
    for index, layer in enumerate(backbone.layers):
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable
        elif layer.weights:
            assert layer.trainable == (index > cut), layer.name
    assert len(backbone.trainable_weights) == 18  # the 18 conv kernels of mixed9 and mixed10


def test_the_hand_over_from_stage_two_is_exact_and_bn_runs_in_inference_mode(parts):
    backbone, head, frames, _, features = parts
    model = build_e2e(head, backbone, SMALL)
    expected = np.asarray(head(features))
    # Float rounding only: the head standardises by variances fitted on 8 frames.
    np.testing.assert_allclose(np.asarray(model(frames)), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(model(frames, training=True)), expected, rtol=1e-4, atol=1e-5
    )


def test_cut_cache_training_follows_the_same_loss_trajectory(parts):
    import keras

    backbone, head, frames, scaled, _ = parts
    labels = np.array([0, 2])
    bottom, top = split_backbone(backbone, "mixed8")
    activations = np.stack([np.asarray(bottom(clip)) for clip in scaled])
    start = [w.numpy().copy() for w in backbone.weights + head.weights]

    def trajectory(model, inputs):
        for weight, value in zip(backbone.weights + head.weights, start):
            weight.assign(value)
        model.compile(keras.optimizers.SGD(1e-3), "sparse_categorical_crossentropy")
        return [float(model.train_on_batch(inputs, labels)) for _ in range(3)]

    full = trajectory(build_e2e(head, backbone, SMALL), frames)
    cached = trajectory(build_e2e(head, top, SMALL, activations.shape[2:]), activations)
    assert len(set(full)) == 3  # the weights move
    np.testing.assert_allclose(cached, full, rtol=1e-4)


def test_equal_length_batches():
    batches = length_batches([3, 5, 3, 3, 5], 2, seed=None)
    assert batches == [[0, 2], [3], [1, 4]]
    shuffled = length_batches([3, 5, 3, 3, 5], 2, seed=1)
    assert sorted(i for b in shuffled for i in b) == [0, 1, 2, 3, 4]
    assert all(len({[3, 5, 3, 3, 5][i] for i in b}) == 1 for b in shuffled)


@pytest.mark.slow
def test_train_e2e_end_to_end_and_refuses_another_backbone(
    tmp_path, dataset, small_config, run_extract
):
    import keras

    cache = tmp_path / "f.h5"
    run_extract([dataset], cache, small_config())
    train_rnn(
        [cache],
        tmp_path / "run",
        TrainConfig(units=4, epochs=1, verbose=0, val_split=0.5, dropout=0.0),
    )
    result = CliRunner().invoke(
        cli,
        [
            "train-e2e",
            str(tmp_path / "run"),
            str(dataset),
            "-o",
            str(tmp_path / "e2e"),
            "--epochs",
            "1",
            "--cache-cut",
            "-q",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    comparison = json.loads((tmp_path / "e2e" / "comparison.json").read_text())
    run_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert comparison["stage_two_top1"] == run_metrics["top1"]  # same split, exact hand-over
    assert {
        "model.keras",
        "history.csv",
        "metrics.json",
        "config.json",
        "learning_curves.png",
        "confusion_matrix.png",
    } <= {p.name for p in (tmp_path / "e2e").iterdir()}
    model = keras.models.load_model(tmp_path / "e2e" / "model.keras")  # safe mode
    assert model.input.shape[-3:] == (SMALL, SMALL, 3)

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["feature_settings"]["weights_sha256"] = "0" * 64
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SettingsMismatch, match="cannot rebuild the backbone of run"):
        train_e2e(tmp_path / "run", [dataset], tmp_path / "e2e2", E2EConfig(epochs=1, verbose=0))


def test_memory_estimate_reduces_the_batch_or_says_what_to_do(parts):
    from vidcache.models.e2e import bytes_per_frame, fit_batch_size

    backbone = parts[0]
    full = bytes_per_frame(backbone, "mixed8")
    cached = bytes_per_frame(backbone, "mixed8", cached=True)
    everything = bytes_per_frame(backbone, None)
    assert 0 < cached < full < everything
    assert fit_batch_size(8, 10, 1000, available=10**9) == 8
    assert fit_batch_size(8, 10, 10**6, available=50 * 10**6) == 3
    with pytest.raises(E2EError, match=r"one video of 10 frames needs about .* use --cache-cut"):
        fit_batch_size(8, 10, 10**9, available=10**9)


@pytest.mark.slow
def test_frames_cache_keeps_decoded_frames_for_later_epochs(
    tmp_path, dataset, small_config, run_extract
):
    import h5py

    cache = tmp_path / "f.h5"
    run_extract([dataset], cache, small_config())
    train_rnn([cache], tmp_path / "run", TrainConfig(units=4, epochs=1, verbose=0, val_split=0.5))
    result = train_e2e(
        tmp_path / "run",
        [dataset],
        tmp_path / "e2e",
        E2EConfig(epochs=2, verbose=0, frames_cache=True),
    )
    with h5py.File(tmp_path / "e2e" / "frames_cache.h5", "r") as f:
        assert len(f) == 4 and all(f[k].shape == (3, SMALL, SMALL, 3) for k in f)
        assert all(f[k].dtype == np.uint8 for k in f)
    assert result["batch_size"] == 2 and result["estimated_gib_per_step"] > 0


@pytest.mark.slow
def test_fine_tuning_that_hurts_keeps_the_hand_over(tmp_path, dataset, small_config, run_extract):
    cache = tmp_path / "f.h5"
    run_extract([dataset], cache, small_config())
    train_rnn(
        [cache],
        tmp_path / "run",
        TrainConfig(units=4, epochs=5, verbose=0, val_split=0.5, dropout=0.0),
    )
    result = train_e2e(
        tmp_path / "run",
        [dataset],
        tmp_path / "e2e",
        E2EConfig(epochs=2, verbose=0, cache_cut=True, optimizer="sgd", lr=50.0, patience=2),
    )
    assert result["best_epoch"] == 0 and result["kept"].startswith("stage two")
    assert all(loss > result["handover_val_loss"] for loss in result["val_losses"])
    assert result["end_to_end_top1"] == result["stage_two_top1"]
    saved = json.loads((tmp_path / "e2e" / "comparison.json").read_text())
    assert saved["best_epoch"] == 0 and len(saved["val_losses"]) >= 1


@pytest.mark.slow
def test_train_e2e_on_another_convolutional_backbone(tmp_path, dataset):
    """MobileNetV3Large (32 px, random weights): the hand-over is exact with its own
    preprocessing inside the model, the default cut is its last two blocks, and the saved
    model loads; a block it does not have is one line naming its range."""
    import keras

    cache = tmp_path / "m.h5"
    invoke = CliRunner().invoke
    result = invoke(cli, ["extract", str(dataset), "-o", str(cache), "--backbone",
                          "mobilenetv3-large", "--weights", "random", "--image-size", "32",
                          "--fps", "0", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    train_rnn(
        [cache],
        tmp_path / "run",
        TrainConfig(units=4, epochs=1, verbose=0, val_split=0.5, dropout=0.0),
    )
    bad = invoke(cli, ["train-e2e", str(tmp_path / "run"), str(dataset), "-o",
                       str(tmp_path / "bad"), "--unfreeze-from", "mixed9", "-q"])  # fmt: skip
    assert bad.exit_code == 1 and not (tmp_path / "bad").exists()  # refused before any work
    assert bad.output.strip().splitlines()[-1] == (
        "Error: --unfreeze-from must be expanded_conv_1 ... expanded_conv_14 or all. "
        "Received: mixed9"
    )
    # Without --cache-cut: the frames go through the saved model's own preprocessing layer.
    out = tmp_path / "e2e"
    result = invoke(cli, ["train-e2e", str(tmp_path / "run"), str(dataset), "-o", str(out),
                          "--epochs", "1", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    comparison = json.loads((out / "comparison.json").read_text())
    run_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert comparison["stage_two_top1"] == run_metrics["top1"]  # exact hand-over
    assert comparison["unfreeze_from"] == "expanded_conv_13"
    config = json.loads((out / "config.json").read_text())
    assert config["e2e"]["unfreeze_from"] == "expanded_conv_13"
    model = keras.models.load_model(out / "model.keras")  # safe mode: the layer is registered
    assert model.get_layer("preprocess").get_config()["backbone"] == "MobileNetV3Large"


def test_every_convolutional_backbone_names_its_blocks():
    """Each cut point's last layer exists and everything after it depends on it alone (the
    top model builds), for every backbone that can be fine-tuned end to end; CLIP and the
    clip encoders (VideoPrism) and the audio backbones cannot."""
    from vidcache.features.backbones import backbone_names, get_backbone

    for name in backbone_names():
        entry = get_backbone(name)
        if entry.blocks is None:
            assert name.startswith("CLIP") or entry.takes_windows or entry.hears
            continue
        backbone, _ = build_backbone(
            max(entry.min_image_size, 32), WeightsSpec("random", seed=0), backbone=name
        )
        blocks = entry.blocks(backbone)
        assert len(blocks) >= 8, name
        cut = cut_layer_name(blocks[-2][0], blocks)
        bottom, top = split_backbone(backbone, cut)
        assert top.output.shape[-1] == entry.feature_dim
