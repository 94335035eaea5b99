"""Prediction on new videos and as a stream, with a real (small, random-init) CNN."""

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import lossless, random_frames

from vidcache.features.errors import SettingsMismatch, WeightsUnavailable
from vidcache.features.settings import FeatureSettings
from vidcache.features.video.discover import discover
from vidcache.pipeline.cli import cli
from vidcache.pipeline.extraction.reproduce import weights_for
from vidcache.pipeline.inference.predict import predict_videos, stream_predict
from vidcache.pipeline.training import TrainConfig, load_run, train_rnn


@pytest.fixture
def run(tmp_path, dataset, small_config, run_extract):
    cache = tmp_path / "f.h5"
    run_extract([dataset], cache, small_config())
    train_rnn([cache], tmp_path / "run", TrainConfig(units=4, epochs=1, verbose=0, val_split=0.5))
    return tmp_path / "run"


def test_predict_reuses_cached_videos_and_extracts_new_ones(tmp_path, dataset, run):
    new = lossless(tmp_path / "new" / "clip.mkv", random_frames(6, seed=123))
    loaded = load_run(run)
    sources = discover([dataset / "left" / "left_c0.mkv", new])
    predictions = predict_videos(loaded, sources, top_k=2, batch_size=4)
    assert [p.source for p in predictions] == ["cache", "extracted"]
    for p in predictions:
        assert len(p.top) == 2 and abs(sum(q for _, q in p.top) - 1) < 1e-5
        assert {c for c, _ in p.top} == {"left", "right"}
    offline = loaded.model.predict(
        np.stack([load_cached(tmp_path / "f.h5", "left/left_c0.mkv")]), verbose=0
    )[0]
    assert dict(predictions[0].top)["left"] == pytest.approx(float(offline[0]), abs=1e-6)


def load_cached(path, video_id):
    from vidcache.features.cache import CacheReader

    with CacheReader(path) as reader:
        return reader.features(video_id)


def test_the_final_streamed_prediction_equals_the_offline_one(tmp_path, run):
    clip = lossless(tmp_path / "s" / "clip.mkv", random_frames(10, seed=5))
    loaded = load_run(run)
    updates = []
    report = stream_predict(
        loaded, str(clip), every=2, top_k=2, on_update=lambda n, t, output: updates.append(n)
    )
    (offline,) = predict_videos(loaded, discover([clip]), top_k=2, batch_size=4)
    assert report.frames == 5 and updates == [2, 4, 5]  # and the last frame, always
    assert [c for c, _ in report.top] == [c for c, _ in offline.top]
    np.testing.assert_allclose([q for _, q in report.top], [q for _, q in offline.top], atol=1e-4)
    assert len(report.cnn_seconds) == 5 and min(report.step_seconds) > 0


def test_features_that_cannot_be_reproduced_are_refused(tmp_path, run):
    config_path = run / "config.json"
    config = json.loads(config_path.read_text())
    config["feature_settings"]["weights_sha256"] = "0" * 64
    config_path.write_text(json.dumps(config))
    clip = lossless(tmp_path / "n" / "clip.mkv", random_frames(4))
    with pytest.raises(SettingsMismatch, match="cannot reproduce the run's features"):
        predict_videos(load_run(run), discover([clip]))
    config["feature_settings"]["weights"] = "file:mine.h5"
    with pytest.raises(WeightsUnavailable, match="weights file mine.h5; pass it with --weights"):
        weights_for(FeatureSettings.from_json(json.dumps(config["feature_settings"])))


def test_cli_predict_json_csv_and_stream(tmp_path, dataset, run):
    runner = CliRunner()
    video = dataset / "right" / "right_c1.mkv"
    result = runner.invoke(cli, ["predict", str(run), str(video), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)
    assert entry["source"] == "cache" and len(entry["top"]) == 2 and entry["error"] is None
    result = runner.invoke(cli, ["predict", str(run), str(video), "--csv", "--top", "1"])
    assert result.output.splitlines()[0] == "path,rank,label,probability"
    assert result.output.splitlines()[1].startswith(f"{video.resolve()},1,")
    result = runner.invoke(cli, ["predict", str(run), str(video), "--stream", "--every", "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("frame 1: ") and lines[-2].startswith("final after 3 frames: ")
    assert lines[-1].startswith("latency per frame (median after the first): CNN ")
    # JSON lines (the final one last, after the last frame though --every skips it) and CSV:
    # stdout holds only the predictions, the summary is on stderr.
    for form in ("--json", "--csv"):
        result = runner.invoke(cli, ["predict", str(run), str(video), "--stream", form,
                                     "--every", "2"])  # fmt: skip
        assert result.exit_code == 0, result.output
        rows = result.stdout.splitlines()
        assert "final after 3 frames" in result.stderr and "final" not in result.stdout
        if form == "--json":
            frames = [json.loads(row) for row in rows]
            assert [f["frame"] for f in frames] == [2, 3] and len(frames[-1]["top"]) == 2
            final = frames[-1]["top"][0]
        else:
            assert rows[0] == "frame,time,label,probability" and len(rows) == 3
            final = dict(zip(("label", "probability"), rows[-1].split(",")[2:]))
        assert final["label"] == entry["top"][0]["label"]
        assert abs(float(final["probability"]) - entry["top"][0]["probability"]) < 1e-4
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk")
    result = runner.invoke(cli, ["predict", str(run), str(bad)])
    assert result.exit_code == 1
    assert f"{bad.resolve()}: skipped: not a readable video" in result.output


def test_evaluate_and_predict_on_videos_keep_their_features_in_a_cache(tmp_path, run):
    test = tmp_path / "test"
    for k, label in enumerate(("left", "right")):
        lossless(test / label / f"{label}_t.mkv", random_frames(6, seed=50 + k))
    outputs, metrics = [], []
    for _ in range(2):
        result = CliRunner().invoke(cli, ["evaluate", str(run), str(test), "-q"])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
        metrics.append(json.loads((run / "eval-test" / "metrics.json").read_text()))
    assert f"{run / 'eval-test' / 'features.h5'}: 2 extracted, 0 already cached" in outputs[0]
    assert "0 extracted, 2 already cached" in outputs[1]  # the second time: no CNN
    assert metrics[0]["examples"] == 2 and metrics[0]["top1"] == metrics[1]["top1"]
    assert metrics[0]["confusion"] == metrics[1]["confusion"]

    clip = lossless(tmp_path / "new" / "clip.mkv", random_frames(6, seed=77))
    kept = tmp_path / "kept.h5"
    sources = []
    for _ in range(2):
        result = CliRunner().invoke(
            cli, ["predict", str(run), str(clip), "--cache", str(kept), "--json"]
        )
        assert result.exit_code == 0, result.output
        sources.append(json.loads(result.output[result.output.index("[") :])[0]["source"])
    assert sources == ["extracted", "cache"]
    result = CliRunner().invoke(cli, ["evaluate", str(run), str(kept), "--cache", str(kept)])
    assert result.exit_code == 2 and "no videos were given" in result.output


@pytest.mark.slow
def test_the_batch_recipe_scores_each_dataset_and_costs_nothing_the_second_time(tmp_path, run):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "docs" / "examples" / "evaluate-datasets.sh"
    folders = []
    for n in range(2):
        folder = tmp_path / f"batch{n}"
        for k, label in enumerate(("left", "right")):
            lossless(folder / label / f"{label}_{n}.mkv", random_frames(6, seed=60 + 2 * n + k))
        folders.append(str(folder))
    env = dict(os.environ, VIDCACHE=f"{sys.executable} -m vidcache")
    tables, logs = [], []
    for _ in range(2):
        done = subprocess.run(["bash", str(script), str(run), *folders], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        tables.append(done.stdout)
        logs.append(done.stderr)
    lines = tables[0].splitlines()
    assert lines[0] == "| dataset | videos | top-1 | top-5 | macro F1 |" and len(lines) == 4
    assert lines[2].startswith(f"| {folders[0]} | 2 | ")
    assert tables[1] == tables[0]
    assert logs[0].count("2 extracted, 0 already cached") == 2
    assert logs[1].count("0 extracted, 2 already cached") == 2  # the second time: no CNN


def test_a_run_on_another_backbone_predicts_with_that_backbone(tmp_path, dataset):
    """The backbone is in the run's settings: predict (offline and streamed, frame by frame
    at batch 1) rebuilds it, and the two agree (every backbone's batch-1 features: below)."""
    backbone, name, dim = "mobilenetv3-large", "MobileNetV3Large", 960
    runner = CliRunner()
    cache, run = tmp_path / "m.h5", tmp_path / "run"
    result = runner.invoke(cli, ["extract", str(dataset), "-o", str(cache), "--backbone",
                                 backbone, "--weights", "random", "--image-size",
                                 "32", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["train-rnn", str(cache), "-o", str(run), "--units", "4",
                                 "--epochs", "1", "--val-split", "0.5", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    loaded = load_run(run)
    assert loaded.settings.backbone == name and loaded.settings.feature_dim == dim
    clip = lossless(tmp_path / "new" / "clip.mkv", random_frames(6, seed=9))
    (offline,) = predict_videos(loaded, discover([clip]), top_k=2, batch_size=4)
    assert not offline.error and offline.source == "extracted"
    streamed = stream_predict(loaded, str(clip), every=1, top_k=2)
    assert [c for c, _ in streamed.top] == [c for c, _ in offline.top]
    np.testing.assert_allclose([q for _, q in streamed.top], [q for _, q in offline.top], atol=1e-4)


@pytest.mark.slow
def test_every_backbone_gives_the_same_features_frame_by_frame_as_in_batches():
    """What ``predict --stream`` adds per backbone: its extractor at batch 1, one frame at a
    time, equals the batched extractor ``predict`` and ``extract-features`` use (InceptionV3
    and MobileNetV3Large also end to end, above; CLIP-ViT-L14 is B32's code; the clip
    encoders stream windows, test_windows)."""
    from vidcache.features.backbone import FeatureExtractor
    from vidcache.features.backbones import WeightsSpec, backbone_names, get_backbone

    tested = ("InceptionV3", "MobileNetV3Large", "CLIP-ViT-L14")  # end to end, or B32's code
    names = [
        n
        for n in backbone_names()
        if n not in tested and not get_backbone(n).takes_windows and not get_backbone(n).hears
    ]
    if importlib.util.find_spec("keras_hub") is None:
        names = [n for n in names if not n.startswith("CLIP")]
    for name in names:
        size = max(get_backbone(name).min_image_size, 32)
        frames = np.random.default_rng(1).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
        batched = FeatureExtractor(size, WeightsSpec("random", seed=2), "float32", 3, name)
        single = FeatureExtractor(size, WeightsSpec("random", seed=2), "float32", 1, name)
        streamed = np.stack([single(frame[None])[0] for frame in frames])
        np.testing.assert_allclose(streamed, batched(frames), rtol=1e-4, atol=1e-5, err_msg=name)
