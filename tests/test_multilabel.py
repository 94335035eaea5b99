"""``--task multilabel``: labels split at ';', sigmoid outputs, mAP / GAP@20 / hit@1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_train import DIM, write_cache

from vidcache.pipeline.cli import cli
from vidcache.pipeline.training.tasks.multilabel import label_matrix, tags_of

NAMES = ("ball", "dog", "grass", "rain", "car")


def tagged_videos(count: int, seed: int):
    """Videos with 2-3 of five labels each: every label adds its own direction to the
    frames, in its own stretch of time (so the labels are all there, at different times)."""
    directions = np.random.default_rng(0).normal(size=(len(NAMES), DIM))
    rng = np.random.default_rng(seed)
    videos = {}
    for n in range(count):
        chosen = sorted(rng.choice(len(NAMES), size=int(rng.integers(2, 4)), replace=False))
        x = rng.normal(scale=0.3, size=(8, DIM))
        for k, c in enumerate(chosen):
            x[2 * k : 2 * k + 4] += directions[c]
        videos[f"v{seed}_{n:03d}.mp4"] = (";".join(NAMES[c] for c in chosen), x.astype(np.float32))
    return videos


def test_labels_split_at_semicolons_and_map_one_by_one():
    assert tags_of(" dog; ball ;dog;", {}) == ["dog", "ball"]
    assert tags_of("dog;ball", {"dog": "animal", "ball": ""}) == ["animal"]
    assert tags_of(None, {}) == []
    m = label_matrix([["b", "z"], []], ["a", "b"])
    assert m.tolist() == [[0, 1], [0, 0]]


@pytest.mark.slow
def test_a_multilabel_run_ranks_held_out_labels(tmp_path):
    train = write_cache(tmp_path / "train.h5", tagged_videos(60, seed=1))
    test = write_cache(tmp_path / "test.h5", tagged_videos(20, seed=2))
    run = tmp_path / "ml"
    result = CliRunner().invoke(
        cli,
        ["train-rnn", str(train), "-o", str(run), "--task", "multilabel", "--units", "16",
         "--epochs", "40", "--patience", "40", "--lr", "0.01", "--class-weight", "balanced",
         "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "multilabel (lstm) trained" in result.output and "GAP@20" in result.output
    assert json.loads((run / "labels.json").read_text()) == sorted(NAMES)
    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["evaluate", str(run), str(test), "-o", str(out)])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["map"] >= 0.9 and m["videos"] == 20, m
    assert 0 <= m["gap@20"] <= 1 and m["hit@1"] >= 0.9 and m["f1"] > 0.8, m

    from vidcache.pipeline.training import load_run
    from vidcache.pipeline.training.tasks.multilabel import Multilabel

    loaded = load_run(run)
    label, x = tagged_videos(1, seed=3)["v3_000.mp4"]
    (p,) = Multilabel.predict(loaded, [x], [np.arange(8) / 5], 3, None)
    assert sorted(p["labels"]) == sorted(label.split(";"))
    assert len(p["top"]) >= 3 and p["top"][0][1] >= p["top"][-1][1]
    loaded.config["threshold"] = 1.0 - 1e-9  # what predict --threshold sets
    (strict,) = Multilabel.predict(loaded, [x], [np.arange(8) / 5], 3, None)
    assert len(strict["labels"]) < len(p["labels"]) and len(strict["top"]) == 3


def test_predict_threshold_is_for_multilabel_runs_and_checked_before_loading(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"not loaded")  # the check comes first
    (run / "config.json").write_text('{"task": "classify"}')
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    result = CliRunner().invoke(cli, ["predict", str(run), str(clip), "--threshold", "0.3"])
    assert result.exit_code == 2
    assert (
        "--threshold is for multi-label runs; " in result.output and "classify run" in result.output
    )
