"""SIGTERM is Ctrl-C (a batch scheduler's pre-emption): every command stops with exit 130,
keeps what it finished and leaves nothing behind (no lock file, no temporary copy, no empty
run folder); Ctrl-C is honoured from the first instant, also where the shell that started
the process ignores SIGINT (background jobs). Real processes, real signals."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import finish

from vidcache.features.cache import CacheEntry, CacheReader, FeatureCache

BIN = Path(sys.executable).parent


def big_cache(path: Path, videos: int = 300, rows: int = 40) -> Path:
    from test_integrity import SETTINGS8

    settings = SETTINGS8.__class__(**{**SETTINGS8.__dict__, "feature_dim": 2048})
    with FeatureCache.open(path, settings, {}) as cache:
        for i in range(videos):
            entry = CacheEntry(f"v{i:03d}", f"/v/{i}", "ab"[i % 2], "file", 1, 0.0, f"sha256:{i}",
                               rows, 5.0)  # fmt: skip
            features = np.random.default_rng(i).random((rows, 2048), np.float32)
            cache.write_rows(entry, features, np.arange(rows) / 5, np.arange(rows))
        cache.delete_videos([f"v{i:03d}" for i in range(0, videos, 3)])
    return path


def start(args, ignore_sigint: bool = False) -> subprocess.Popen:
    def child():
        os.setsid()
        if ignore_sigint:  # as a shell starts a background job
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=child)  # fmt: skip


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".lock" in p.name or "rewrite" in p.name)


def test_sigterm_during_compact_keeps_the_cache_and_leaves_nothing(tmp_path):
    path = big_cache(tmp_path / "c.h5")
    with CacheReader(path) as reader:
        expected = {v: reader.features(v) for v in reader.entries()}
    rng = random.Random(0)
    outcomes = []
    # start-up (imports; the interpreter itself needs ~0.1 s before any handler can
    # exist), opening, copying
    for delay in (0.25, 0.5, rng.uniform(0.6, 1.0)):
        process = start([BIN / "vidcache", "compact", path, "-q"])
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        output = finish(process, 120)
        outcomes.append(process.returncode)
        assert process.returncode in (0, 130), output
        assert "Traceback" not in output
        if process.returncode == 130:
            assert output.strip().splitlines()[-1] == "Interrupted.", output
        assert leftovers(tmp_path) == []
        with CacheReader(path) as reader:
            assert sorted(reader.entries()) == sorted(expected)
            for video_id, features in expected.items():
                np.testing.assert_array_equal(reader.features(video_id), features)
    print(f"\ncompact under SIGTERM: exit statuses {outcomes}")
    assert 130 in outcomes


@pytest.mark.parametrize(
    "sig, delay, ignore",
    [
        (signal.SIGTERM, 0.5, False),  # during start-up (TensorFlow's import)
        (signal.SIGINT, 1.0, True),  # start-up, started as a background job
        (signal.SIGTERM, None, False),  # mid-training: the best model is kept
    ],
)
def test_train_rnn_stops_on_sigterm_and_ctrl_c_at_any_moment(tmp_path, sig, delay, ignore):
    from test_train import ordered_videos, write_cache

    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=4))
    run = tmp_path / "run"
    args = [BIN / "train-rnn", cache, "-o", run, "--epochs", "500", "--patience", "500",
            "--units", "4"]  # fmt: skip
    process = start(args, ignore_sigint=ignore)
    if delay is None:  # wait for the first epoch to be written
        deadline = time.time() + 90
        while not (run / "model.keras").exists() and time.time() < deadline:
            time.sleep(0.2)
    else:
        time.sleep(delay)
    process.send_signal(sig)
    output = finish(process, 120)
    assert process.returncode == 130, output
    assert "Traceback" not in output
    if delay is None:
        assert "Interrupted: the best model so far is kept." in output
        assert (run / "model.keras").is_file() and (run / "metrics.json").is_file()
    else:
        assert output.strip().splitlines()[-1] == "Interrupted."
        assert not run.exists()  # nothing was written: no empty run folder
    assert leftovers(tmp_path) == []


def test_a_signal_during_a_compiled_modules_initialisation_is_an_interruption(monkeypatch):
    """Ctrl-C or SIGTERM while a compiled module initialises (TensorFlow's, at start-up)
    reaches Python as ``ImportError: initialization failed`` caused by the
    KeyboardInterrupt: it is "Interrupted." and exit 130 too, not a traceback (seen once
    in a CI run of the test above, the signal landing inside TensorFlow's import)."""
    from vidcache import _entry
    from vidcache.features.errors import interrupted
    from vidcache.pipeline import cli as commands

    def failing_import(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    assert interrupted(ImportError("x").with_traceback(None)) is False
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        monkeypatch.setattr(commands, "train_rnn_script", failing_import)
        with pytest.raises(SystemExit) as stopped:
            _entry.train_rnn()
        assert stopped.value.code == 130
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    # The same inside a command (the in-process path every command wraps).
    from vidcache.pipeline.cli.common import core_errors

    with pytest.raises(SystemExit) as stopped:
        core_errors(failing_import)()
    assert stopped.value.code == 130
    with pytest.raises(ImportError, match="a real one"):
        core_errors(lambda: (_ for _ in ()).throw(ImportError("a real one")))()


def test_an_interrupt_click_turns_into_aborted_is_exit_130(monkeypatch, capsys):
    """A signal landing while click parses or dispatches (outside the command's own
    handler) is an interruption, not click's "Aborted!" and exit 1."""
    import click
    import pytest

    from vidcache import _entry
    from vidcache.pipeline import cli as cli_module

    @click.command()
    def interrupted_early():
        raise KeyboardInterrupt  # what SIGTERM raises anywhere inside click's main

    monkeypatch.setattr(cli_module, "cli", interrupted_early)
    monkeypatch.setattr("sys.argv", ["vidcache"])
    with pytest.raises(SystemExit) as exit_info:
        _entry._run("cli")
    assert exit_info.value.code == 130
    assert "Interrupted." in capsys.readouterr().err
