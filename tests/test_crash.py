"""Real processes: kill -9 in the middle of a run, a second run on a busy cache, Ctrl-C."""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL, lossless, random_frames
from test_extract import reference_features, stored

from vidcache.features.video.discover import discover
from vidcache.pipeline.cli import cli
from vidcache.pipeline.extraction.local import CACHED, EXTRACTED

pytestmark = pytest.mark.slow

CLIPS = 24
ARGS = [
    "--weights",
    "random",
    "--seed",
    "0",
    "--image-size",
    str(SMALL),
    "--batch-size",
    "4",
    "--fps",
    "0",
    "-q",
]


@pytest.fixture
def many(tmp_path):
    """24 clips of 16 frames, every frame kept: long enough to be caught mid-run."""
    root = tmp_path / "many"
    for clip in range(CLIPS):
        lossless(root / f"c{clip % 2}" / f"clip_{clip:02d}.mkv", random_frames(16, seed=clip))
    return root


def start(root, out, *extra):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "vidcache", "extract", str(root), "-o", str(out), *ARGS, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def committed(out):
    """Records committed now, read as a SWMR reader while the writer runs (polling only)."""
    try:
        with h5py.File(out, "r", swmr=True) as f:
            return int(f["commit"][0])
    except (OSError, KeyError):
        return 0


def wait_for(condition, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            if process.returncode not in (0, -signal.SIGKILL, 130):
                output, _ = process.communicate()
                raise AssertionError(f"the run exited with {process.returncode}:\n{output}")
            return False
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_kill_9_at_any_moment_keeps_finished_videos_and_the_next_run_completes(
    tmp_path, many, extractor, small_config, run_extract
):
    out = tmp_path / "f.h5"
    config = small_config(sampling=small_config().sampling.__class__(fps=None))
    references = {s.video_id: reference_features(extractor, s, config)[0] for s in discover([many])}
    kept = 0
    for target in (3, 12):  # kill while more than `target` videos are done
        process = start(many, out)
        alive = wait_for(lambda: committed(out) > target, process)
        if alive:
            time.sleep((target % 5) * 0.03)  # land at varying points inside a batch
            process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        videos = stored(out)  # opens with the normal reader: the file is intact
        assert len(videos) >= kept
        for video_id, (features, _, entry) in videos.items():
            assert entry.num_frames == 16 and features.shape == (16, 2048)
            np.testing.assert_allclose(features, references[video_id], rtol=1e-4, atol=1e-5)
        kept = len(videos)
        if kept == CLIPS:
            break
    assert kept < CLIPS, "every run finished before it could be killed"
    summary = run_extract([many], out, config)
    assert summary.count(CACHED) == kept and summary.count(EXTRACTED) == CLIPS - kept
    assert len(stored(out)) == CLIPS


def test_a_concurrent_run_is_refused_and_ctrl_c_stops_cleanly(tmp_path, many):
    out = tmp_path / "f.h5"
    process = start(many, out)
    try:
        assert wait_for(lambda: committed(out) >= 1, process)
        result = CliRunner().invoke(cli, ["extract", str(many), "-o", str(out), *ARGS])
        assert result.exit_code == 1
        assert result.output.splitlines()[-1] == (
            f"Error: f.h5 is being written by another vidcache run (pid {process.pid}); "
            "wait for it to finish or write to another file"
        )
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        process.__exit__(None, None, None)  # closes its pipe whatever happened
    assert process.returncode == 130, output
    assert "Interrupted: every video finished before the stop is kept" in output
    assert "Traceback" not in output
    done = len(stored(out))
    assert 1 <= done < CLIPS
    assert not (tmp_path / "f.h5.lock").exists()


def test_overwrite_keeps_the_old_cache_until_the_new_one_is_done(tmp_path, many):
    """kill -9 in the middle of an --overwrite run: the old cache is whole and the next run
    removes the new file; Ctrl-C: the videos finished so far replace the old cache."""
    out = tmp_path / "f.h5"
    old_args = ["--max-frames", "2"]
    result = CliRunner().invoke(cli, ["extract", str(many), "-o", str(out), *ARGS, *old_args])
    assert result.exit_code == 0, result.output
    old = {vid: (f.tobytes(), e.num_frames) for vid, (f, _, e) in stored(out).items()}
    assert len(old) == CLIPS

    process = start(many, out, "--overwrite")
    new_file = tmp_path / f".f.h5.rewrite-{process.pid}"
    assert wait_for(lambda: committed(new_file) >= 2, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert {vid: (f.tobytes(), e.num_frames) for vid, (f, _, e) in stored(out).items()} == old
    assert new_file.exists()
    again = CliRunner().invoke(cli, ["extract", str(many), "-o", str(out), *ARGS, *old_args])
    assert f"0 extracted, {CLIPS} already cached" in again.output
    assert not new_file.exists()  # removed by the next run that locked the cache

    process = start(many, out, "--overwrite")
    new_file = tmp_path / f".f.h5.rewrite-{process.pid}"
    try:
        assert wait_for(lambda: committed(new_file) >= 1, process)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        process.__exit__(None, None, None)
    assert process.returncode == 130, output
    videos = stored(out)
    assert 1 <= len(videos) < CLIPS
    assert {e.num_frames for _, _, e in videos.values()} == {16}  # the new settings' rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5", "many"]
