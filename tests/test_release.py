"""The 0.2.0 release: one version everywhere, --version on every console script, the same
exit codes in every command (130 for Ctrl-C), settings that hash the same however their
numbers were written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_train import ordered_videos, write_cache

import vidcache
from vidcache.features.cache import CacheReader
from vidcache.features.settings import FeatureSettings, SamplingSpec
from vidcache.pipeline.cli import cli, extract_features_command, train_rnn_script
from vidcache.pipeline.extraction.local import library_versions

ROOT = Path(__file__).resolve().parents[1]


def test_one_version_in_the_package_the_commands_and_new_caches():
    text = (ROOT / "vidcache" / "_version.py").read_text()
    assert f'__version__ = "{vidcache.__version__}"' in text and vidcache.__version__ == "0.2.0"
    assert "version = attr: vidcache._version.__version__" in (ROOT / "setup.cfg").read_text()
    for command, name in ((cli, "vidcache"), (extract_features_command, "extract-features"),
                          (train_rnn_script, "train-rnn")):  # fmt: skip
        result = CliRunner().invoke(command, ["--version"])
        assert result.exit_code == 0 and result.output == f"{name}, version 0.2.0\n"
    assert library_versions()["vidcache"] == "0.2.0"
    assert "## [0.2.0]" in (ROOT / "CHANGELOG.md").read_text()
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "vidcache" / "py.typed").exists()


def test_settings_hash_the_same_however_their_numbers_are_written():
    base = dict(weights="random:seed=0", weights_sha256="ab" * 32)
    a = FeatureSettings(**base, sampling=SamplingSpec(fps=5), folder_fps=25, image_size=299.0)
    b = FeatureSettings(**base, sampling=SamplingSpec(fps=5.0), folder_fps=25.0)
    assert a == b and a.digest() == b.digest() and hash(a) == hash(b)
    assert isinstance(a.sampling.fps, float) and isinstance(a.image_size, int)
    assert FeatureSettings.from_json(b.to_json()).digest() == b.digest()
    # what caches of 0.1 and 0.2 stored (floats written as floats) still matches
    stored = json.loads(b.to_json())
    assert stored["sampling"]["fps"] == 5.0 and stored["folder_fps"] == 25.0


@pytest.mark.slow
def test_ctrl_c_in_train_rnn_keeps_the_best_model_and_exits_130(tmp_path):
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=8))
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "vidcache", "train-rnn", str(cache), "-o",
         str(run), "--epochs", "10000", "--patience", "10000", "--units", "4", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (run / "model.keras").exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # the first epoch's checkpoint
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # where every thread is stuck (faulthandler)
            process.send_signal(signal.SIGABRT)
            output, _ = process.communicate(timeout=30)
            pytest.fail(f"train-rnn did not stop 60 s after Ctrl-C:\n{output[-8000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, output
    assert "Interrupted: the best model so far is kept." in output
    assert json.loads((run / "metrics.json").read_text())["top1"] >= 0


def test_usage_errors_exit_2_and_core_errors_exit_1(tmp_path):
    usage = CliRunner().invoke(cli, ["train-rnn", str(tmp_path / "missing.h5"), "-o", "x"])
    assert usage.exit_code == 2
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not a cache")
    result = CliRunner().invoke(cli, ["inspect", str(bad)])
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    with pytest.raises(Exception):
        CacheReader(bad)
