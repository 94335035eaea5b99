"""Stage two: splits, masking, standardisation, streaming, runs, evaluation, prediction."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vidcache.features.cache import CacheEntry, FeatureCache
from vidcache.features.cache.buffer import FeatureBuffer
from vidcache.features.settings import FeatureSettings
from vidcache.models.heads import build_classifier
from vidcache.models.split import SplitError, group_of, stratified_group_split
from vidcache.models.stream import StreamError, StreamingModel
from vidcache.pipeline.cli import cli
from vidcache.pipeline.training import TrainConfig, evaluate_run, load_run, train_rnn

DIM = 8
SETTINGS = FeatureSettings(
    weights="random:seed=0", weights_sha256="ab" * 32, image_size=75, feature_dim=DIM
)


def write_cache(path, videos, settings=SETTINGS):
    """A cache from arrays: ``{video_id: (label, (T, D) features)}``."""
    with FeatureCache.open(path, settings, {}) as cache:
        for video_id, (label, x) in videos.items():
            entry = CacheEntry(
                video_id, f"/v/{video_id}", label, "file", 1, 0.0, f"sha256:{video_id}", len(x), 5.0
            )
            with FeatureBuffer(x.shape[1]) as buffer:
                for t, row in enumerate(x):
                    buffer.append(row, t / 5, t)
                cache.write_video(entry, buffer, "float32")
    return path


def ordered_videos(per_class=12, steps=8, seed=0):
    """Classes that differ only in order: a ramp up, a ramp down, and up-then-down, each a
    reordering of the same frames (plus per-clip offsets)."""
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 1, steps)
    orders = {
        "up": np.arange(steps),
        "down": np.arange(steps)[::-1],
        "peak": np.r_[np.arange(0, steps, 2), np.arange(1, steps, 2)[::-1]],
    }
    direction = rng.normal(size=DIM)
    videos = {}
    for clip in range(per_class):
        offset = rng.normal(size=DIM) * 0.3
        frames = base[:, None] * direction[None, :] + offset + 2.0
        for label, order in orders.items():
            videos[f"{label}/v_{label}_g{clip:02d}_c01.mp4"] = (label, frames[order])
    return videos


def test_group_of_follows_ucf101_names_and_falls_back_to_the_id():
    assert group_of("Archery/v_Archery_g03_c02.avi", "Archery") == "Archery/03"
    assert group_of("clip.mp4", "x") == "clip.mp4"
    assert group_of("a/s01_take2.mp4", "a", r"s(\d+)_") == "a/01"


def test_grouped_stratified_split_never_leaks_and_keeps_every_class_on_both_sides():
    labels, groups = [], []
    for label in ("a", "b", "c"):
        for group in range(5):
            for clip in range(1 + group % 3):
                labels.append(label)
                groups.append(f"{label}/{group}")
    train, val = stratified_group_split(labels, groups, 0.25, seed=3)
    assert sorted(train + val) == list(range(len(labels)))
    assert not {groups[i] for i in train} & {groups[i] for i in val}
    for label in ("a", "b", "c"):
        assert any(labels[i] == label for i in val) and any(labels[i] == label for i in train)
    assert stratified_group_split(labels, groups, 0.25, seed=3) == (train, val)
    # A class with all its clips in one group is split clip by clip, with a note; a class
    # with a single clip cannot be split at all, and says how to get out.
    notes = []
    train, val = stratified_group_split(["x", "x", "y", "y"], ["g", "g", "1", "2"], 0.5, 0, notes)
    assert sorted(train + val) == [0, 1, 2, 3] and len(train) == len(val) == 2
    assert len(notes) == 1 and "'x' (2 clips)" in notes[0] and "--group-regex" in notes[0]
    with pytest.raises(SplitError, match="class 'x' has a single clip.*--label-map"):
        stratified_group_split(["x", "y", "y"], ["g", "1", "2"], 0.5, 0)


def test_masking_ignores_padding():
    model = build_classifier(3, np.zeros(DIM), np.ones(DIM), units=4, layers=2, dropout=0.0)
    x = np.random.default_rng(0).normal(size=(1, 5, DIM)).astype(np.float32) + 1
    padded = np.concatenate([x, np.zeros((1, 4, DIM), np.float32)], axis=1)
    np.testing.assert_allclose(model(x), model(padded), atol=1e-6)
    mean_model = build_classifier(3, np.zeros(DIM), np.ones(DIM), head="mean", units=4)
    np.testing.assert_allclose(mean_model(x), mean_model(padded), atol=1e-6)
    attention = build_classifier(3, np.zeros(DIM), np.ones(DIM), head="transformer", units=8,
                                 layers=2, dropout=0.0)  # fmt: skip
    np.testing.assert_allclose(attention(x), attention(padded), atol=1e-5)
    # Causal: a frame never sees later ones, so a prefix gives the prefix's answer.
    longer = np.concatenate([x, x[:, :3] + 5], axis=1)
    assert not np.allclose(attention(x), attention(longer), atol=1e-3)


@pytest.mark.parametrize(
    "head, layers, readout, cell",
    [("lstm", 1, "pooled", "lstm"), ("lstm", 2, "pooled", "lstm"), ("lstm", 1, "last", "lstm"),
     ("mean", 1, "pooled", "lstm"), ("lstm", 2, "pooled", "gru"), ("lstm", 1, "last", "gru"),
     ("transformer", 2, "pooled", "lstm"), ("transformer", 1, "last", "lstm")],
)  # fmt: skip
def test_streaming_equals_offline_at_every_step(head, layers, readout, cell):
    rng = np.random.default_rng(1)
    model = build_classifier(
        3, rng.normal(size=DIM), rng.uniform(0.5, 2, DIM), head=head, units=6, layers=layers,
        readout=readout, cell=cell, attention_heads=2,
    )  # fmt: skip
    if head == "transformer":
        assert {layer.name for layer in model.layers} >= {f"attention_{i}" for i in range(layers)}
    if head == "lstm":
        assert {layer.name for layer in model.layers} >= {f"{cell}_{i}" for i in range(layers)}
    assert ("pooled" in [layer.name for layer in model.layers]) == (
        head == "lstm" and readout == "pooled"
    )
    x = rng.normal(size=(7, DIM)).astype(np.float32)
    stream = StreamingModel(model)
    for t in range(7):
        online = stream.step(x[t])
        np.testing.assert_allclose(online, model(x[None, : t + 1])[0], atol=1e-5)
    stream.reset()
    np.testing.assert_allclose(stream.step(x[0]), model(x[None, :1])[0], atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_models_refuse_to_stream(cell):
    model = build_classifier(2, np.zeros(DIM), np.ones(DIM), units=4, bidirectional=True,
                             cell=cell)  # fmt: skip
    # The pooled readout joins the last state of each direction (2 x units) and the mean.
    assert model.get_layer("pooled").output.shape[-1] == 4 * 4
    with pytest.raises(StreamError, match="bidirectional model cannot run as a stream"):
        StreamingModel(model)


def test_cell_is_checked():
    with pytest.raises(ValueError, match="cell must be one of"):
        build_classifier(2, np.zeros(DIM), np.ones(DIM), cell="rnn")
    with pytest.raises(ValueError, match="the mean head has no recurrent cell"):
        build_classifier(2, np.zeros(DIM), np.ones(DIM), head="mean", cell="gru")


def test_training_writes_a_complete_run_and_standardises_on_train_only(tmp_path):
    videos = ordered_videos()
    cache = write_cache(tmp_path / "f.h5", videos)
    result = train_rnn(
        [cache], tmp_path / "run", TrainConfig(units=8, epochs=3, verbose=0, val_split=0.25)
    )
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "model.keras",
        "labels.json",
        "config.json",
        "history.csv",
        "metrics.json",
        "learning_curves.png",
        "confusion_matrix.png",
    } <= names
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    train_ids, val_ids = config["split"]["train"], config["split"]["val"]
    assert len(val_ids) == 9 and not set(train_ids) & set(val_ids)
    assert config["caches"][0]["settings_sha256"] == SETTINGS.digest()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"top1", "top5", "per_class", "confusion", "macro_f1"} <= set(metrics)
    assert sum(map(sum, metrics["confusion"])) == 9 == result.metrics["examples"]

    run = load_run(tmp_path / "run")  # safe mode
    mean = run.model.get_layer("standardize").mean
    train_frames = np.concatenate([videos[i][1] for i in train_ids])
    all_frames = np.concatenate([v[1] for v in videos.values()])
    np.testing.assert_allclose(np.ravel(mean), train_frames.mean(0), rtol=1e-5)
    assert not np.allclose(np.ravel(mean), all_frames.mean(0), rtol=1e-5)


@pytest.mark.slow
def test_the_lstm_learns_order_that_the_mean_baseline_cannot(tmp_path):
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=12))
    common = dict(epochs=60, patience=60, verbose=0, units=16, lr=3e-3, val_split=0.25)
    lstm = train_rnn([cache], tmp_path / "lstm", TrainConfig(**common))
    mean = train_rnn([cache], tmp_path / "mean", TrainConfig(head="mean", **common))
    assert lstm.metrics["top1"] >= 0.8
    assert mean.metrics["top1"] <= 0.5  # chance is 1/3: every class has the same frames


def test_a_gru_cell_learns_order_too_and_is_checked_on_the_command_line(tmp_path):
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=12))
    result = invoke(["train-rnn", cache, "-o", tmp_path / "gru", "--cell", "gru", "--units",
                     16, "--epochs", 60, "--patience", 60, "--lr", 3e-3, "--val-split", 0.25,
                     "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "gru" / "config.json").read_text())
    assert config["train"]["cell"] == "gru"
    assert json.loads((tmp_path / "gru" / "metrics.json").read_text())["top1"] >= 0.8
    assert "gru_0" in [layer.name for layer in load_run(tmp_path / "gru").model.layers]
    for extra, message in (
        (["--head", "mean"], "Error: --cell gru needs the lstm head (--head mean has none)"),
    ):
        result = invoke(["train-rnn", cache, "-o", tmp_path / "x", "--cell", "gru", *extra])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "x").exists()


def test_a_transformer_head_trains_reloads_streams_and_is_checked_on_the_command_line(tmp_path):
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=6))
    result = invoke(["train-rnn", cache, "-o", tmp_path / "tf", "--head", "transformer",
                     "--units", 8, "--attention-heads", 2, "--layers", 2, "--epochs", 2,
                     "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "tf" / "config.json").read_text())
    assert config["train"]["head"] == "transformer" and config["train"]["attention_heads"] == 2
    model = load_run(tmp_path / "tf").model  # safe mode: the layers are registered
    assert {"attention_0", "attention_1", "readout"} <= {layer.name for layer in model.layers}
    x = ordered_videos(per_class=1, seed=3)["up/v_up_g00_c01.mp4"][1].astype(np.float32)
    stream = StreamingModel(model)
    for t in range(len(x)):
        np.testing.assert_allclose(stream.step(x[t]), model(x[None, : t + 1])[0], atol=1e-5)
    for extra, message in (
        (["--units", 6], "Error: --units 6 must be a multiple of --attention-heads 4"),
        (["--bidirectional"], "Error: --bidirectional: the transformer head is causal only"),
    ):
        result = invoke(["train-rnn", cache, "-o", tmp_path / "x", "--head", "transformer", *extra])
        assert result.exit_code == 2 and message in result.output, result.output
    result = invoke(["train-rnn", cache, "-o", tmp_path / "x", "--attention-heads", 2])
    assert result.exit_code == 2 and "--attention-heads needs --head transformer" in result.output
    assert not (tmp_path / "x").exists()


def test_save_load_round_trip_and_evaluate_on_another_cache(tmp_path):
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=4))
    train_rnn([cache], tmp_path / "run", TrainConfig(units=4, epochs=1, verbose=0))
    run = load_run(tmp_path / "run")
    x = ordered_videos(per_class=1, seed=9)["up/v_up_g00_c01.mp4"][1][None].astype(np.float32)
    reloaded = load_run(tmp_path / "run").model
    np.testing.assert_allclose(run.model(x), reloaded(x), atol=1e-6)
    other = write_cache(tmp_path / "other.h5", ordered_videos(per_class=2, seed=5))
    metrics, out = evaluate_run(tmp_path / "run", other)
    assert metrics["examples"] == 6 and (out / "confusion_matrix.png").exists()
    stranger = write_cache(
        tmp_path / "stranger.h5",
        ordered_videos(per_class=2),
        FeatureSettings(weights="imagenet", weights_sha256="cd" * 32, feature_dim=DIM),
    )
    with pytest.raises(Exception, match="other settings than run"):
        evaluate_run(tmp_path / "run", stranger)


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize(
    "videos, message",
    [
        (
            {"a.mp4": ("", np.ones((3, DIM))), "b.mp4": ("", np.ones((3, DIM)))},
            "no labelled videos in",
        ),
        (
            {"a.mp4": ("x", np.ones((3, DIM))), "b.mp4": ("x", np.ones((3, DIM)))},
            "only one class ('x'); a classifier needs two or more",
        ),
        (
            {
                "a.mp4": ("x", np.ones((3, DIM))),
                "b.mp4": ("x", np.ones((3, DIM))),
                "c.mp4": ("y", np.ones((3, DIM))),
            },
            "class(es) with a single clip: y;",
        ),
    ],
)
def test_unusable_caches_are_one_line_errors(tmp_path, videos, message):
    cache = write_cache(
        tmp_path / "f.h5", {k: (lab, x.astype(np.float32)) for k, (lab, x) in videos.items()}
    )
    result = invoke(["train-rnn", cache, "-o", tmp_path / "run", "-q"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_mixed_caches_unknown_runs_and_corrupt_files_are_refused(tmp_path):
    a = write_cache(tmp_path / "a.h5", ordered_videos(per_class=2))
    b = write_cache(
        tmp_path / "b.h5",
        {"z.mp4": ("up", np.ones((2, DIM), np.float32))},
        FeatureSettings(weights="imagenet", weights_sha256="cd" * 32, feature_dim=DIM),
    )
    result = invoke(["train-rnn", a, b, "-o", tmp_path / "run", "-q"])
    assert result.exit_code == 1 and "hold features made with other settings" in result.output
    result = invoke(["evaluate", tmp_path, a])
    assert result.exit_code == 1 and result.output == (
        f"Error: {tmp_path} is not a vidcache run (missing model.keras, config.json)\n"
    )
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    result = invoke(["train-rnn", corrupt, "-o", tmp_path / "run", "-q"])
    assert result.exit_code == 1 and "damaged cache, HDF5 cannot open it" in result.output


def test_cli_train_with_a_split_file_and_label_map(tmp_path):
    videos = ordered_videos(per_class=4)
    cache = write_cache(tmp_path / "f.h5", videos)
    rows = ["path,split"] + [
        f"{vid},{'val' if vid.endswith('g00_c01.mp4') else 'test' if 'g01' in vid else 'train'}"
        for vid in videos
    ]
    (tmp_path / "split.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "map.csv").write_text("label,new_label\npeak,\n")
    result = invoke(
        [
            "train-rnn",
            cache,
            "-o",
            tmp_path / "run",
            "--split-file",
            tmp_path / "split.csv",
            "--label-map",
            tmp_path / "map.csv",
            "--epochs",
            "2",
            "--units",
            "4",
            "-q",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "validation top-1" in result.output and "test top-1" in result.output
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == ["down", "up"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(config["split"]["val"]) == 2 and len(config["split"]["test"]) == 2


def test_streamed_training_matches_in_memory_training(tmp_path):
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=4))
    common = dict(units=4, epochs=2, verbose=0, seed=1)
    a = train_rnn([cache], tmp_path / "a", TrainConfig(**common))
    b = train_rnn([cache], tmp_path / "b", TrainConfig(stream=True, **common))
    history_a = (tmp_path / "a" / "history.csv").read_text().splitlines()
    history_b = (tmp_path / "b" / "history.csv").read_text().splitlines()
    assert len(history_a) == len(history_b) == 3
    losses = [[float(v) for v in line.split(",")[1:]] for line in (history_a[1], history_b[1])]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    assert a.metrics["confusion"] == b.metrics["confusion"]


def test_ctrl_c_during_training_keeps_the_best_model_so_far(tmp_path, monkeypatch):
    import keras

    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=4))
    real = keras.callbacks.CSVLogger.on_epoch_end

    def interrupt_after_two(self, epoch, logs=None):
        real(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(keras.callbacks.CSVLogger, "on_epoch_end", interrupt_after_two)
    result = train_rnn([cache], tmp_path / "run", TrainConfig(units=4, epochs=20, verbose=0))
    assert result.interrupted
    assert json.loads((tmp_path / "run" / "config.json").read_text())["interrupted"] is True
    assert load_run(tmp_path / "run").model is not None
    assert (tmp_path / "run" / "metrics.json").exists()


def test_sequence_shaping_and_balanced_class_weights():
    from vidcache.models.data import shape_sequence
    from vidcache.pipeline.training.fitting import class_weights

    x = np.arange(10)[:, None] * np.ones((1, 2))
    np.testing.assert_array_equal(shape_sequence(x, 4, None)[:, 0], [1, 3, 6, 8])
    np.testing.assert_array_equal(shape_sequence(x, None, 3)[:, 0], [0, 1, 2])
    assert shape_sequence(x, None, None) is x
    weights = class_weights(np.array([0, 0, 0, 1]), 2)
    assert weights == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}


def test_constant_dimensions_are_not_blown_up_by_standardisation():
    from vidcache.models.data import SequenceSource, standardization

    class Fixed(SequenceSource):
        def __init__(self, arrays):
            self._memory, self.examples = arrays, arrays

    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    x[:, 2] = 0.0  # a dead channel
    mean, variance = standardization(Fixed([x]))
    np.testing.assert_allclose(variance[[0, 1, 3]], x[:, [0, 1, 3]].var(0), rtol=1e-4)
    assert variance[2] == pytest.approx(x.var(0).mean(), rel=1e-4)


def test_a_migrated_schema1_cache_trains_to_the_same_model(tmp_path):
    from vidcache.features.cache.legacy import write_schema1
    from vidcache.features.cache.maintenance import migrate

    videos = [
        (
            CacheEntry(vid, f"/v/{vid}", label, "file", 1, 0.0, f"sha256:{vid}", len(x), 5.0),
            x.astype(np.float32),
            np.arange(len(x)) / 5,
        )
        for vid, (label, x) in ordered_videos(per_class=4).items()
    ]
    old = tmp_path / "old.h5"
    write_schema1(old, SETTINGS, videos)
    new = tmp_path / "new.h5"
    migrate(old, new)
    config = TrainConfig(units=4, epochs=3, verbose=0, seed=3)
    results = [train_rnn([path], tmp_path / path.stem, config) for path in (old, new)]
    assert results[0].metrics == results[1].metrics
    x = videos[0][1][None]
    np.testing.assert_array_equal(
        load_run(tmp_path / "old").model(x), load_run(tmp_path / "new").model(x)
    )
