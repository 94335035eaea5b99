"""README.md's Python examples run as written, in a folder laid out as they assume
(``data/videos`` of demo clips, a trained ``runs/lstm``), with ImageNet weights replaced
by random ones exactly where the README says that is the way to try vidcache offline."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_says_where_random_weights_stand_in():
    first = python_blocks()[0]
    assert 'WeightsSpec("imagenet")' in first and 'WeightsSpec("random")' in first


@pytest.mark.slow
def test_the_readme_python_examples_run_as_written(tmp_path, monkeypatch):
    from test_train import ordered_videos, write_cache

    from vidcache.features.synthetic import make_demo_dataset
    from vidcache.pipeline.cli import cli

    make_demo_dataset(tmp_path / "data" / "videos", clips_per_class=2)
    cache = write_cache(tmp_path / "small.h5", ordered_videos(per_class=3))
    run = ["train-rnn", str(cache), "-o", str(tmp_path / "runs" / "lstm"), "--units", "4",
           "--epochs", "1", "-q"]  # fmt: skip
    assert CliRunner().invoke(cli, run).exit_code == 0
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert len(blocks) == 2
    # Offline there are no ImageNet weights: the README's own way out.
    first = blocks[0].replace('WeightsSpec("imagenet")', 'WeightsSpec("random")', 1)
    scope: dict = {}
    exec(compile(first, "README.md (Python API)", "exec"), scope)
    from vidcache.pipeline.extraction.outcomes import EXTRACTED

    assert scope["summary"].count(EXTRACTED) == 6 and scope["x"].shape[1] == 2048
    assert scope["run"].classes == ["down", "peak", "up"]
    shutil.copy("data/features.h5", "features.h5")
    scope = {}
    exec(compile(blocks[1], "README.md (own Keras model)", "exec"), scope)
    assert scope["train"].class_names == ["grow", "pulse", "shrink"]
    assert os.path.exists("features.h5")
