"""tf.distribute on this machine: two logical CPU devices (mirrored), and two worker
processes on 127.0.0.1 configured by TF_CONFIG (multi-worker). Every run is bounded in
time and stops by itself."""

import csv
import json
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import finish
from test_train import ordered_videos, write_cache

from vidcache.pipeline.cli import cli
from vidcache.pipeline.training import load_run

ARGS = ["--units", "16", "--epochs", "60", "--patience", "60", "--lr", "3e-3"]
ARGS += ["--val-split", "0.25", "-q"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(cache, run, *extra, env=None, timeout=240):
    return subprocess.Popen(
        [sys.executable, "-m", "vidcache", "train-rnn", str(cache), "-o", str(run), *ARGS, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, **(env or {})),
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_cache(tmp_path_factory.mktemp("d") / "f.h5", ordered_videos(per_class=12))


@pytest.mark.slow
def test_mirrored_on_two_cpu_devices_learns_as_one_process(cache, tmp_path):
    process = train(cache, tmp_path / "run", "--distribute", "mirrored",
                    env={"VIDCACHE_CPU_REPLICAS": "2"})  # fmt: skip
    output = finish(process)
    assert process.returncode == 0, output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["distribution"] == {
        "strategy": "mirrored", "replicas": 2, "workers": 1,
        "global_batch_size": 16, "per_replica_batch_size": 8,
    }  # fmt: skip
    run = load_run(tmp_path / "run")  # a plain model: loads and predicts anywhere
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["top1"] >= 0.8  # as the one-process test of the same task
    assert run.classes == ["down", "peak", "up"]


@pytest.mark.slow
def test_two_workers_on_loopback_train_one_run_written_by_the_chief(cache, tmp_path):
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    run = tmp_path / "run"
    processes = [
        train(cache, run, "--distribute", "multi-worker", "--tensorboard",
              env={"TF_CONFIG": json.dumps(
                  {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]  # fmt: skip
    outputs = [finish(p) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    # Keras' own callbacks drove the loop: history.csv has fit's columns, accuracy included;
    # --tensorboard wrote its logs; -q kept the progress bar away.
    with open(run / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    # The loss of the global batch, scaled once: near ln 3 for 3 classes before learning.
    assert 0.9 < float(rows[0]["loss"]) < 1.4
    assert (
        0 <= float(rows[-1]["accuracy"]) <= 1 and max(float(r["val_accuracy"]) for r in rows) >= 0.8
    )
    assert any((run / "logs" / "train").iterdir()) and any((run / "logs" / "validation").iterdir())
    assert not any("step" in o and "━" in o for o in outputs)
    config = json.loads((run / "config.json").read_text())
    assert config["distribution"]["strategy"] == "multi-worker"
    assert config["distribution"]["workers"] == 2 and config["distribution"]["replicas"] == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["top1"] >= 0.8
    # Both workers trained the same model in lock step: the same validation result.
    lines = [next(line for line in o.splitlines() if "validation top-1" in line) for o in outputs]
    assert lines[0] == lines[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the worker wrote nothing


def test_distribution_errors_are_one_line(cache, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = CliRunner().invoke(
        cli, ["train-rnn", str(cache), "-o", str(tmp_path / "r"), "--distribute", "multi-worker"]
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(
        "Error: --distribute multi-worker needs TF_CONFIG"
    )
    monkeypatch.setenv("TF_CONFIG", "{not json")
    result = CliRunner().invoke(
        cli, ["train-rnn", str(cache), "-o", str(tmp_path / "r"), "--distribute", "multi-worker"]
    )
    assert result.output.splitlines()[-1].startswith("Error: TF_CONFIG is not valid")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_train_e2e_on_two_cpu_devices_and_on_two_workers(
    tmp_path, dataset, small_config, run_extract
):
    from vidcache.pipeline.training import TrainConfig, train_rnn

    run_extract([dataset], tmp_path / "f.h5", small_config())
    train_rnn([tmp_path / "f.h5"], tmp_path / "run",
              TrainConfig(units=4, epochs=1, verbose=0, val_split=0.5, dropout=0.0))  # fmt: skip
    stage_two = json.loads((tmp_path / "run" / "metrics.json").read_text())["top1"]

    def e2e(out, kind, env):
        command = [sys.executable, "-m", "vidcache", "train-e2e", str(tmp_path / "run"),
                   str(dataset), "-o", str(out), "--epochs", "2", "--cache-cut", "-q",
                   "--distribute", kind]  # fmt: skip
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, **env),
            start_new_session=True,
        )

    # All three at once: their start-up (imports, model builds) overlaps.
    mirrored = e2e(tmp_path / "m", "mirrored", {"VIDCACHE_CPU_REPLICAS": "2"})
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    processes = [
        e2e(tmp_path / "w", "multi-worker", {"TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]  # fmt: skip
    output = finish(mirrored)
    assert mirrored.returncode == 0, output
    outputs = [finish(p) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    for out, kind, workers_count in (
        (tmp_path / "m", "mirrored", 1),
        (tmp_path / "w", "multi-worker", 2),
    ):
        comparison = json.loads((out / "comparison.json").read_text())
        assert comparison["stage_two_top1"] == stage_two  # the exact hand-over
        assert comparison["distribution"]["strategy"] == kind
        assert comparison["distribution"]["replicas"] == 2
        assert comparison["distribution"]["workers"] == workers_count
        assert comparison["distribution"]["global_batch_size"] == 2
        assert len(comparison["val_losses"]) == 2 and comparison["seconds_per_epoch"] > 0
        assert (out / "model.keras").is_file() and (out / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5", "m", "run", "videos", "w"]
