"""Fused feature sets (``train-rnn A.h5 B.h5 --fuse``): two backbones' caches of the same
videos read as one per-frame concatenation, for every task; the run records both settings,
evaluates on both caches in any order, refuses a cache that lacks a part, and predicts from
videos (offline and streamed) by running both backbones."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_train import DIM, SETTINGS, write_cache

from vidcache.features.cache import CacheReader
from vidcache.features.errors import SettingsMismatch
from vidcache.features.fusion import FusedReader, FusedSettings
from vidcache.features.settings import SamplingSpec
from vidcache.models.data import DataError
from vidcache.pipeline.cli import cli
from vidcache.pipeline.training import TrainConfig, evaluate_run, load_run, train_rnn

OTHER = dataclasses.replace(
    SETTINGS, backbone="MobileNetV3Large", image_size=32, feature_dim=5, pooling="avg"
)


def _pair(tmp_path, clips=12, steps=6, seed=0):
    """Two synthetic caches of the same videos: 8-d and 5-d rows per frame; the class is
    in the second set only."""
    rng = np.random.default_rng(seed)
    first, second = {}, {}
    for clip in range(clips):
        label = ("a", "b")[clip % 2]
        video_id = f"{label}/clip_{clip:02d}.mp4"
        first[video_id] = (label, rng.normal(size=(steps, DIM)).astype(np.float32))
        signal = (1.0 if label == "a" else -1.0) + 0.1 * rng.normal(size=(steps, 5))
        second[video_id] = (label, signal.astype(np.float32))
    a = write_cache(tmp_path / "a.h5", first)
    b = write_cache(tmp_path / "b.h5", second, OTHER)
    return a, b, first, second


def test_a_fused_reader_concatenates_the_parts_per_frame(tmp_path):
    a, b, first, second = _pair(tmp_path)
    # A video only one part holds is left out, and counted.
    write_cache(tmp_path / "c.h5", {**second, "a/extra.mp4": ("a", np.ones((6, 5), np.float32))},
                OTHER)  # fmt: skip
    with FusedReader([CacheReader(a), CacheReader(tmp_path / "c.h5")]) as fused:
        assert sorted(fused.entries()) == sorted(first)
        assert fused.left_out == {str(a): 0, str(tmp_path / "c.h5"): 1}
        video_id = "b/clip_03.mp4"
        expected = np.concatenate([first[video_id][1], second[video_id][1]], axis=1)
        np.testing.assert_array_equal(fused.features(video_id), expected)
        many = fused.features_many(sorted(first))
        np.testing.assert_array_equal(many[video_id], expected)
        assert fused.settings.feature_dim == DIM + 5
        assert fused.settings.backbone == "InceptionV3+MobileNetV3Large"
    settings = FusedSettings((SETTINGS, OTHER))
    assert FusedSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_parts_that_sample_other_frames_are_refused_in_one_line(tmp_path):
    a, _, first, second = _pair(tmp_path)
    other_fps = dataclasses.replace(OTHER, sampling=SamplingSpec(fps=2.0))
    b = write_cache(tmp_path / "fps.h5", second, other_fps)
    with pytest.raises(SettingsMismatch, match="fused feature sets must sample the same frames"):
        FusedReader([CacheReader(a), CacheReader(b)])
    shorter = {v: (label, x[:4]) for v, (label, x) in second.items()}
    c = write_cache(tmp_path / "short.h5", shorter, OTHER)
    with pytest.raises(SettingsMismatch, match="holds 4 frames, .* 6; fused caches must sample"):
        FusedReader([CacheReader(a), CacheReader(c)])
    result = CliRunner().invoke(cli, ["train-rnn", str(a), "-o", str(tmp_path / "r"), "--fuse"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: --fuse reads two caches or more, one per feature set"
    )
    with pytest.raises(DataError):
        train_rnn([a], tmp_path / "r", TrainConfig(fuse=True, verbose=0))


def test_a_fused_run_records_both_parts_and_refuses_a_cache_that_lacks_one(tmp_path):
    a, b, _, _ = _pair(tmp_path)
    config = TrainConfig(
        units=4, epochs=40, patience=40, verbose=0, fuse=True, dropout=0.0, lr=1e-2
    )
    result = train_rnn([a, b], tmp_path / "run", config)
    assert result.metrics["top1"] == 1.0  # the class is in the second part only
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [c["path"] for c in saved["caches"]] == [str(a.resolve()), str(b.resolve())]
    assert [p["backbone"] for p in saved["feature_settings"]["fused"]] == [
        "InceptionV3",
        "MobileNetV3Large",
    ]
    run = load_run(tmp_path / "run")
    assert isinstance(run.settings, FusedSettings) and run.model.input_shape[-1] == DIM + 5
    # Evaluation: the caches in any order; the same figures as training's validation.
    metrics, _ = evaluate_run(tmp_path / "run", [b, a], tmp_path / "eval")
    assert metrics["examples"] == 12 and metrics["top1"] == 1.0
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "run"), str(a)])
    assert result.exit_code == 1
    assert "no cache given holds its part 2 (MobileNetV3Large, 32 px" in result.output
    result = CliRunner().invoke(
        cli, ["extract", str(tmp_path), "-o", str(tmp_path / "x.h5"), "--like",
              str(tmp_path / "run")]
    )  # fmt: skip
    assert result.exit_code == 1 and "trained on fused feature sets" in result.output


@pytest.mark.parametrize("task", ["caption", "regress"])
def test_captioning_and_regression_train_on_fused_sets(tmp_path, task):
    a, b, first, _ = _pair(tmp_path)
    references = tmp_path / "refs.csv"
    with open(references, "w", newline="") as handle:
        writer = csv.writer(handle)
        if task == "caption":
            writer.writerows((v, f"a clip of class {label}") for v, (label, _) in first.items())
        else:
            writer.writerow(["path", "value"])
            writer.writerows((v, 1.0 if label == "a" else -1.0) for v, (label, _) in first.items())
    option = {"captions": str(references)} if task == "caption" else {"targets": str(references)}
    config = TrainConfig(task=task, units=8, epochs=2, verbose=0, fuse=True, **option)
    train_rnn([a, b], tmp_path / "run", config)
    run = load_run(tmp_path / "run")
    assert run.task == task and isinstance(run.settings, FusedSettings)
    metrics, _ = evaluate_run(tmp_path / "run", [b, a], tmp_path / "eval", references)
    assert metrics["videos"] == 12


@pytest.mark.slow
def test_predict_and_stream_run_both_backbones(tmp_path, dataset):
    """Real videos through two real backbones (InceptionV3 75 px, MobileNetV3Large 32 px,
    random weights): training on the fused caches, predicting the videos offline (both
    CNNs rebuilt from the run) and streamed frame by frame give the same outputs."""
    from vidcache.pipeline.inference.predict import predict_videos, stream_predict

    runner = CliRunner()
    caches = []
    for name, backbone, size in (("i", "InceptionV3", 75), ("m", "mobilenetv3-large", 32)):
        cache = tmp_path / f"{name}.h5"
        result = runner.invoke(cli, ["extract", str(dataset), "-o", str(cache), "--backbone",
                                     backbone, "--weights", "random", "--image-size", str(size),
                                     "--fps", "0", "-q"])  # fmt: skip
        assert result.exit_code == 0, result.output
        caches.append(cache)
    result = runner.invoke(cli, ["train-rnn", *map(str, caches), "--fuse", "-o",
                                 str(tmp_path / "run"), "--units", "4", "--epochs", "1",
                                 "--val-split", "0.5", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = load_run(tmp_path / "run")
    assert run.model.input_shape[-1] == 2048 + 960
    with FusedReader([CacheReader(c) for c in caches]) as fused:
        clip = "left/left_c0.mkv"
        cached = fused.features(clip)
    offline = np.asarray(run.model(cached[None]))[0]
    # The run's caches moved away: both CNNs run on the video again.
    for cache in caches:
        cache.rename(cache.with_suffix(".moved"))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "clip.mkv").write_bytes((dataset / clip).read_bytes())
    from vidcache.features.video.discover import discover

    predicted = predict_videos(run, discover([fresh]), top_k=2, cache=tmp_path / "k.h5")[0]
    assert predicted.source == "extracted" and not predicted.error
    assert {name for name, _ in predicted.top} == set(run.classes)
    np.testing.assert_allclose(
        sorted(p for _, p in predicted.top), sorted(offline), rtol=1e-4, atol=1e-5
    )
    assert (tmp_path / "k.1-InceptionV3.h5").is_file()
    assert (tmp_path / "k.2-MobileNetV3Large.h5").is_file()
    updates = []
    report = stream_predict(
        run, str(fresh / "clip.mkv"), every=1, on_update=lambda n, t, out: updates.append(out)
    )
    assert report.frames == len(cached) == 6
    for t, streamed in enumerate(updates, start=1):  # the offline output of the frames so far
        np.testing.assert_allclose(
            streamed, np.asarray(run.model(cached[None, :t]))[0], rtol=1e-4, atol=1e-5
        )
