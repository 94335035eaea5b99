"""The task registry: a task defined outside vidcache (a toy "video length" regression,
defined here, registered from this module, no vidcache module edited) trains, evaluates and
predicts through the command line; the built-in tasks are the registry's first entries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vidcache.models.data import DataError, collect_examples
from vidcache.pipeline.cli import cli
from vidcache.pipeline.training import RunError, load_run
from vidcache.pipeline.training.tasks import get_task, register, task_names, unregister
from vidcache.pipeline.training.tasks.base import Task
from vidcache.pipeline.training.tasks.regress import Regress


class VideoLength(Regress):
    """How long each video is, in seconds (its last frame's timestamp): the targets come
    from the cache itself, so the task needs no annotations file."""

    name = "video-length"
    summary = "seconds per video, from the cached timestamps"
    annotations = None

    def check(self):
        pass

    def targets_of(self, readers):
        videos = collect_examples(readers, None, labelled_only=False)
        return videos, lengths(readers, videos), None, ["seconds"], False

    @classmethod
    def evaluate(cls, run, readers, annotations, config, out_dir):
        videos = collect_examples(readers, None, labelled_only=False)
        targets = lengths(readers, videos)
        return cls.score_run(run, readers, videos, targets, None, [], config)


def lengths(readers, videos) -> list[np.ndarray]:
    return [np.array([readers[v.cache].timestamps(v.video_id)[-1]], np.float32) for v in videos]


@pytest.fixture
def video_length():
    register(VideoLength)
    yield VideoLength
    unregister(VideoLength.name)


def invoke(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def test_the_built_in_tasks_come_first():
    assert task_names()[:4] == ["classify", "caption", "regress", "segment"]
    for name in ("classify", "caption", "regress", "segment"):
        task = get_task(name)
        assert issubclass(task, Task) and task.name == name
    with pytest.raises(ValueError, match="unknown task 'nope'; known: classify, caption"):
        get_task("nope")
    with pytest.raises(ValueError, match="already registered"):
        register(type("Other", (Regress,), {"name": "classify"}))
    with pytest.raises(ValueError, match="not a Task subclass"):
        register(dict)


def test_a_task_registered_from_outside_runs_through_the_cli(tmp_path, video_length):
    from conftest import lossless, solid_frames
    from test_backbones import MEAN_COLOUR

    from vidcache.features.backbones import register as register_backbone
    from vidcache.features.backbones import unregister as unregister_backbone

    register_backbone(MEAN_COLOUR)  # a CNN-free backbone: the test is about the task
    try:
        for k, frames in enumerate((3, 4, 5, 6, 7, 8, 9, 10)):
            colours = [(30 * k, 100, 200 - 20 * k)] * frames
            lossless(tmp_path / "v" / f"clip{k}.mkv", solid_frames(colours, 16, 16))
        cache = tmp_path / "f.h5"
        invoke("extract", tmp_path / "v", "-o", cache, "--backbone", "MeanColour",
               "--weights", "random", "--image-size", 8, "--fps", 0, "-q")  # fmt: skip
        run = tmp_path / "run"
        trained = invoke("train-rnn", cache, "-o", run, "--task", "video-length",
                         "--units", 8, "--epochs", 3, "--val-split", 0.25, "-q")  # fmt: skip
        # The task's own words, through the skeleton: the regression line.
        assert f"{run}: video-length (lstm) trained 3 epochs" in trained.output
        assert "validation MSE" in trained.output
        assert "predicting the training mean" in trained.output
        config = json.loads((run / "config.json").read_text())
        assert config["task"] == "video-length"
        assert config["targets"]["names"] == ["seconds"]
        assert sorted(config["split"]["train"] + config["split"]["val"]) == sorted(
            f"clip{k}.mkv" for k in range(8)
        )
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["split"] == "val" and metrics["videos"] == 2
        assert (run / "learning_curves.png").is_file() and (run / "history.csv").is_file()

        evaluated = invoke("evaluate", run, cache)
        assert f"{cache}: MSE" in evaluated.output and "on 8 videos" in evaluated.output
        predicted = invoke("predict", run, tmp_path / "v" / "clip7.mkv", "--json")
        (one,) = json.loads(predicted.stdout)
        assert one["names"] == ["seconds"] and len(one["values"]) == 1
        streamed = invoke("predict", run, tmp_path / "v" / "clip7.mkv", "--stream")
        assert "frame 10 (0.90 s): seconds" in streamed.stdout
        # A task of another task's options is refused in one line, as for the built-ins.
        refused = invoke("train-rnn", cache, "-o", tmp_path / "r2", "--task", "video-length",
                         "--beam", 2, code=2)  # fmt: skip
        assert "--attention and --beam need --task caption" in refused.output

        # Without the task, its name is no choice, and its runs say what is missing.
        unregister(VideoLength.name)
        unknown = invoke("train-rnn", cache, "-o", tmp_path / "r3", "--task", "video-length",
                         code=2)  # fmt: skip
        assert "'video-length' is not one of 'classify', 'caption', 'regress'" in unknown.output
        with pytest.raises(RunError, match="a 'video-length' run, a task this installation"):
            load_run(run)
    finally:
        unregister_backbone(MEAN_COLOUR.name)


def test_the_skeleton_refuses_what_the_task_refuses(tmp_path, video_length):
    """A task's own checks run before any data is read (the caption task's, here)."""
    from vidcache.pipeline.training import TrainConfig, train_rnn

    with pytest.raises(DataError, match="a caption run needs --captions CSV"):
        train_rnn([tmp_path / "nothing.h5"], tmp_path / "run", TrainConfig(task="caption"))
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        train_rnn([tmp_path / "nothing.h5"], tmp_path / "run", TrainConfig(task="nope"))


def test_task_plugins_load_and_a_broken_one_warns(monkeypatch):
    """An entry point in the vidcache.tasks group names a Task class; one that fails to
    load is a warning naming it, and the rest still load."""
    from vidcache.pipeline.training import tasks

    class Broken:
        name, value = "broken", "nowhere.module:Task"

        def load(self):
            raise ImportError("No module named 'nowhere'")

    class Working:
        name, value = "length", "tests.test_task_plugin:VideoLength"

        def load(self):
            return VideoLength

    monkeypatch.setattr(tasks, "_plugins_loaded", False)
    monkeypatch.setattr(
        "importlib.metadata.entry_points",
        lambda group: [Broken(), Working()] if group == tasks.ENTRY_POINT_GROUP else [],
    )
    try:
        with pytest.warns(UserWarning, match=r"task plugin broken \(nowhere.module:Task\)"):
            assert task_names() == [
                "classify",
                "caption",
                "regress",
                "segment",
                "multilabel",
                "video-length",
            ]
        assert get_task("video-length") is VideoLength
    finally:
        unregister(VideoLength.name)
