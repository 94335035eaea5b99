"""The Ray engine, on a local Ray that the run starts and stops itself (2 small workers).

A worker is killed with SIGKILL while it extracts: its shard is retried on a new worker,
and the result equals a one-process run, video for video.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL, finish, lossless, random_frames

from vidcache.features.cache import CacheReader
from vidcache.features.settings import SamplingSpec
from vidcache.pipeline.cli import cli

CLIPS = 12
ARGS = ["--weights", "random", "--seed", "0", "--image-size", str(SMALL)]
ARGS += ["--batch-size", "4", "--fps", "0", "-q"]


@pytest.fixture
def clips(tmp_path):
    root = tmp_path / "clips"
    for clip in range(CLIPS):
        lossless(root / f"c{clip % 2}" / f"clip_{clip:02d}.mkv", random_frames(16, seed=clip))
    return root


#: The sessions of the processes these tests started (each driver runs in a session of its
#: own, and the Ray it starts lives in it): what another test file's Ray does, running
#: beside these on another xdist worker, is not theirs to judge.
SESSIONS: set[int] = set()


def ray_processes(ours_only: bool = True) -> dict[int, str]:
    """Ray's processes on this machine (its workers, raylet, GCS), by pid; those in a
    session these tests started (``ours_only``), or all."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            session = os.getsid(int(entry.name))
        except OSError:
            continue
        if ours_only and session not in SESSIONS:
            continue
        if "ray::" in command or "raylet" in command or "gcs_server" in command:
            found[int(entry.name)] = command
    return found


def ours(process: subprocess.Popen) -> subprocess.Popen:
    """Count the processes of ``process``'s session (started with a new one) as ours."""
    SESSIONS.add(process.pid)
    return process


def committed(path: Path) -> int:
    try:
        with h5py.File(path, "r", swmr=True) as f:
            return int(f["commit"][0])
    except (OSError, KeyError):
        return 0


def start(clips, out, *extra):
    return ours(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vidcache",
                "extract",
                str(clips),
                "-o",
                str(out),
                *ARGS,
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ray's own processes are stopped with the group if need be
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    )


def no_ray_left(before: dict[int, str]) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not set(ray_processes()) - set(before):
            return True
        time.sleep(0.2)
    return False


def same_features(one: Path, two: Path) -> None:
    with CacheReader(one) as a, CacheReader(two) as b:
        assert list(a.entries()) == list(b.entries()) and a.settings == b.settings
        for video_id in a.entries():
            np.testing.assert_allclose(b.features(video_id), a.features(video_id), atol=1e-5)


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_cache_equals_one_process(
    tmp_path, clips, run_extract, small_config
):
    reference = tmp_path / "reference.h5"
    run_extract([clips], reference, small_config(sampling=SamplingSpec(fps=None)))
    before = ray_processes()
    out = tmp_path / "f.h5"
    process = start(clips, out, "--engine", "ray", "--workers", "2", "--shards", "4")
    killed = None
    try:
        deadline = time.monotonic() + 180
        while killed is None and time.monotonic() < deadline and process.poll() is None:
            parts = sorted((tmp_path / "f.h5.parts").glob("*.h5"))
            if any(committed(part) >= 1 for part in parts):
                busy = [p for p, c in ray_processes().items() if "ray::ExtractWorker.run" in c]
                if busy:
                    killed = busy[0]
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        output = finish(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert killed is not None, "the run ended before a worker could be killed"
    assert process.returncode == 0, output
    assert "died; retrying it on a new worker (attempt 2 of 4)" in output
    assert f"{out}: {CLIPS} extracted, 0 already cached, 0 failed" in output
    assert not (tmp_path / "f.h5.parts").exists()
    same_features(reference, out)  # nothing lost, nothing twice, the same numbers
    assert no_ray_left(before), ray_processes()

    # A second run has nothing to do and starts no Ray at all.
    again = finish(start(clips, out, "--engine", "ray", "--workers", "2"))
    assert f"{out}: 0 extracted, {CLIPS} already cached, 0 failed" in again


@pytest.mark.slow
def test_a_folder_of_shards_is_resumable_and_read_as_one_dataset(tmp_path, clips):
    before = ray_processes()
    folder = tmp_path / "shards"
    output = finish(start(clips, folder, "--engine", "ray", "--workers", "1", "--shards", "3"))
    assert f"{folder}: {CLIPS} extracted, 0 already cached, 0 failed" in output, output
    names = sorted(p.name for p in folder.glob("*.h5"))
    assert names == [f"shard-0000{k}-of-00003.h5" for k in range(3)]
    counts = []
    for name in names:
        with CacheReader(folder / name) as reader:
            counts.append(len(reader.entries()))
    assert sum(counts) == CLIPS and min(counts) > 0
    result = CliRunner().invoke(cli, ["inspect", str(folder), "--json"])
    assert result.exit_code == 0 and f'"videos": {CLIPS}' in result.output
    (clips / "c0" / "clip_00.mkv").unlink()
    lossless(clips / "c1" / "clip_99.mkv", random_frames(16, seed=99))
    output = finish(start(clips, folder, "--engine", "ray", "--workers", "1", "--prune"))
    assert f"{folder}: 1 extracted, {CLIPS - 1} already cached, 0 failed, 1 pruned" in output
    assert no_ray_left(before), ray_processes()


def test_engine_options_are_checked_in_one_line(tmp_path, clips, monkeypatch):
    out = str(tmp_path / "f.h5")
    result = CliRunner().invoke(cli, ["extract", str(clips), "-o", out, "--workers", "2"])
    assert result.exit_code == 2  # a usage error
    assert result.output.splitlines()[-1] == "Error: --workers need --engine ray"
    result = CliRunner().invoke(
        cli, ["extract", str(clips), "-o", out, "--engine", "ray", "--shard", "0/2"]
    )
    assert result.output.splitlines()[-1] == (
        "Error: --shard runs one share here; --engine ray shards by itself"
    )
    result = CliRunner().invoke(cli, ["extract", str(clips), "-o", str(tmp_path)])
    assert "is a folder; give a cache file" in result.output.splitlines()[-1]
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = CliRunner().invoke(cli, ["extract", str(clips), "-o", out, "--engine", "ray", *ARGS])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "Error: --engine ray needs Ray, which is not installed; install it with "
        "pip install 'vidcache[ray]'"
    )


@pytest.mark.slow
def test_overwrite_keeps_the_old_cache_until_the_new_one_holds_data(tmp_path, clips):
    """As the local engine: Ray missing, or a run that extracts nothing, leaves the old
    cache whole; a run that extracts replaces it in one rename."""
    from test_decode import bad_file

    out = tmp_path / "f.h5"
    result = CliRunner().invoke(
        cli, ["extract", str(clips), "-o", str(out), *ARGS, "--max-frames", "2"]
    )
    assert result.exit_code == 0, result.output

    def snapshot():
        with CacheReader(out) as reader:
            return {vid: reader.features(vid).tobytes() for vid in reader.entries()}

    old = snapshot()
    broken = tmp_path / "broken" / "x"
    broken.mkdir(parents=True)
    for kind in ("junk", "zero-frames"):
        bad_file(broken, kind)
    before = ray_processes()
    output = finish(start(broken.parent, out, "--engine", "ray", "--workers", "1", "--overwrite"))
    assert f"no video was extracted: {out} is kept as it was" in output, output
    assert snapshot() == old
    output = finish(start(clips, out, "--engine", "ray", "--workers", "1", "--overwrite"))
    assert f"{out}: {CLIPS} extracted, 0 already cached, 0 failed" in output, output
    with CacheReader(out) as reader:
        assert {e.num_frames for e in reader.entries().values()} == {16}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "clips", "f.h5"]
    assert no_ray_left(before), ray_processes()


@pytest.mark.slow
def test_an_audio_backbone_runs_on_ray_as_in_one_process(tmp_path):
    """logmel through --engine ray (one worker, two shards) gives the local run's rows and
    the spans each heard; the worker builds what the local engine builds."""
    from vidcache.features.audio.synthetic import tone_sequence, write_av

    for k in range(4):
        write_av(tmp_path / "v" / f"c{k}.mp4", [np.zeros((16, 16, 3), np.uint8)] * 20, 10,
                 tone_sequence([300 + 200 * k, 900], 1.0, 16000))  # fmt: skip
    before = ray_processes()
    common = ["--backbone", "logmel", "--fps", "5", "-q"]
    local = tmp_path / "local.h5"
    result = CliRunner().invoke(cli, ["extract", str(tmp_path / "v"), "-o", str(local), *common])
    assert result.exit_code == 0, result.output
    command = [sys.executable, "-m", "vidcache", "extract", str(tmp_path / "v"), "-o",
               str(tmp_path / "ray.h5"), *common, "--engine", "ray", "--workers", "1",
               "--shards", "2"]  # fmt: skip
    process = ours(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True))  # fmt: skip
    output = finish(process)
    assert "4 extracted, 0 already cached, 0 failed" in output, output
    same_features(local, tmp_path / "ray.h5")
    with CacheReader(local) as a, CacheReader(tmp_path / "ray.h5") as b:
        for video_id in a.entries():
            np.testing.assert_array_equal(a.spans(video_id)[1], b.spans(video_id)[1])
    assert no_ray_left(before), ray_processes()
