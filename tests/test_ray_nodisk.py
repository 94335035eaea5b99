"""``--engine ray`` without a shared disk: the actors' rows come back through Ray's object
store and the driver commits them.

On a local Ray (2 small workers, each in a working folder of its own); the detection runs
against a Ray whose processes live in a mount namespace where the output folder is another
(empty) disk, and reads its videos from a bucket on an S3-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import finish, lossless, random_frames
from test_ray import ARGS, committed, no_ray_left, ours, ray_processes, same_features

from vidcache.features.cache import CacheReader
from vidcache.features.settings import SamplingSpec

pytest.importorskip("ray")
CLIPS = 10


@pytest.fixture
def clips(tmp_path):
    root = tmp_path / "clips"
    for clip in range(CLIPS):
        lossless(root / f"c{clip % 2}" / f"clip_{clip:02d}.mkv", random_frames(12, seed=clip))
    return root


def start(inputs, out, *extra, env=None):
    return ours(subprocess.Popen(
        [sys.executable, "-m", "vidcache", "extract", *map(str, inputs), "-o", str(out),
         *ARGS, "--engine", "ray", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
    ))  # fmt: skip


def wait_for(condition, process, seconds: float = 180) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_killed_workers_and_a_killed_driver_lose_nothing_and_do_nothing_twice(
    tmp_path, clips, run_extract, small_config
):
    reference = tmp_path / "reference.h5"
    run_extract([clips], reference, small_config(sampling=SamplingSpec(fps=None)))
    before = ray_processes()
    out = tmp_path / "f.h5"
    work = tmp_path / "node-disks"
    work.mkdir()
    nodisk = ("--workers", "2", "--shards", "8", "--no-shared-disk")  # blocks of 1-3 videos
    env = {"VIDCACHE_WORK_DIR": str(work)}

    # A worker killed once the driver has committed a video: its block is retried.
    process = start([clips], out, *nodisk, env=env)
    killed = []
    try:

        def kill_a_worker() -> bool:
            if committed(out) < 1:
                return False
            busy = [p for p, c in ray_processes().items() if "NodeWorker.extract_block" in c]
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            return bool(busy)

        wait_for(kill_a_worker, process)
        output = finish(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert killed, "the run ended before a worker could be killed"
    assert process.returncode == 0, output
    assert "ray: --no-shared-disk: rows sent through Ray's object store" in output
    assert "died; retrying it on a new worker" in output
    assert f"{out}: {CLIPS} extracted, 0 already cached, 0 failed" in output
    assert not (tmp_path / "f.h5.parts").exists()  # nothing was written beside the output
    same_features(reference, out)  # nothing lost, nothing twice, the same numbers
    assert no_ray_left(before), ray_processes()

    # The driver killed (with its Ray) after some commits: the rerun does only the rest.
    out.unlink()
    process = start([clips], out, *nodisk, env=env)
    try:
        assert wait_for(lambda: committed(out) >= 2, process), finish(process)
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    with CacheReader(out) as reader:
        kept = len(reader.entries())
    assert 0 < kept < CLIPS
    clean = tmp_path / "clean-disks"
    clean.mkdir()
    output = finish(start([clips], out, *nodisk, env={"VIDCACHE_WORK_DIR": str(clean)}))
    assert f"{out}: {CLIPS - kept} extracted, {kept} already cached, 0 failed" in output, output
    same_features(reference, out)
    assert list(clean.iterdir()) == []  # workers stopped by the driver leave nothing behind
    shutil.rmtree(work)  # what killed workers left on their disks


def forget_cluster(address: str) -> None:
    """Remove the address `ray start` leaves for later `ray.init()` calls, if it is ours."""
    current = Path("/tmp/ray/ray_current_cluster")
    try:
        if current.read_text().strip().endswith(":" + address.rsplit(":", 1)[1]):
            current.unlink()
    except OSError:
        pass


def can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ray_head_that_cannot_see(folder: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """A Ray head (and its workers) in a mount namespace of their own where ``folder`` is an
    empty disk: a node that shares no disk with the driver, on this machine."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray = str(Path(sys.executable).parent / "ray")
    head = [ray, "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
            "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
            "--disable-usage-stats", "--object-store-memory", str(128 << 20)]  # fmt: skip
    script = f'mount -t tmpfs -o size=16m node-disk "{folder}" && exec "$@"'
    process = ours(subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *head],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    ))  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as client:
            if client.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"127.0.0.1:{port}"
        if process.poll() is not None:
            break
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("the Ray head did not start")


@pytest.mark.slow
@pytest.mark.skipif(not can_unshare(), reason="needs mount namespaces (unshare -m, as root)")
def test_a_bucket_on_a_cluster_without_shared_disk_is_detected_and_equals_one_process(
    tmp_path, clips, run_extract, small_config
):
    pytest.importorskip("moto")
    from test_cloud import BUCKET

    from vidcache.features.remote.loopback import s3_server

    reference = tmp_path / "reference.h5"
    run_extract([clips], reference, small_config(sampling=SamplingSpec(fps=None)))
    folder = tmp_path / "driver-disk"
    folder.mkdir()
    out = folder / "f.h5"
    before = ray_processes()
    import secrets

    # Ray 2.59+ asks a token of whoever joins a cluster: one made for this test, given to both
    ray_token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    with s3_server() as server:
        env = dict(os.environ, **server.environment(), **ray_token)
        import fsspec

        fs = fsspec.filesystem("s3", skip_instance_cache=True, endpoint_url=server.endpoint,
                               key=server.key, secret=server.secret)  # fmt: skip
        fs.mkdir(BUCKET)
        fs.put(str(clips) + "/", f"{BUCKET}/videos/", recursive=True)
        head, address = ray_head_that_cannot_see(folder, env)
        try:
            joins = {**server.environment(), **ray_token}
            process = start(
                [f"s3://{BUCKET}/videos/"], out, "--address", address, "--workers", "2", env=joins
            )
            output = finish(process, timeout=240)
        finally:
            os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops its processes
            try:
                head.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()
            forget_cluster(address)
    assert process.returncode == 0, output
    assert f"ray: 1 of 1 Ray node(s) cannot read {folder}" in output
    assert "rows sent through Ray's object store" in output
    assert f"{out}: {CLIPS} extracted, 0 already cached, 0 failed" in output
    assert sorted(p.name for p in folder.iterdir()) == ["f.h5"]  # no probe, no parts left
    same_features(reference, out)
    with CacheReader(out) as reader:
        assert all(e.path.startswith(f"s3://{BUCKET}/videos/") for e in reader.entries().values())
    assert no_ray_left(before), ray_processes()


@pytest.mark.slow
def test_shards_in_a_bucket_are_uploaded_whole_and_reruns_touch_only_their_shard(tmp_path, clips):
    pytest.importorskip("moto")
    import fsspec
    from click.testing import CliRunner
    from test_cloud import BUCKET

    from vidcache.features.remote.loopback import s3_server
    from vidcache.pipeline.cli import cli

    stage = tmp_path / "stage"
    with s3_server() as server:
        saved = dict(os.environ)
        os.environ.update(server.environment(), VIDCACHE_STAGE_DIR=str(stage),
                          VIDCACHE_REMOTE_CACHE=str(tmp_path / "copies"))  # fmt: skip
        try:
            fs = fsspec.filesystem("s3", skip_instance_cache=True)
            fs.mkdir(BUCKET)
            fs.put(str(clips) + "/", f"{BUCKET}/in/", recursive=True)
            out = f"s3://{BUCKET}/features/"
            run = ("--workers", "1", "--shards", "2", "--no-shared-disk")  # the driver writes
            output = finish(start([f"s3://{BUCKET}/in/"], out, *run))
            assert f"{out}: {CLIPS} extracted, 0 already cached, 0 failed" in output, output
            fs.invalidate_cache()
            names = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{BUCKET}/features"))
            assert names == ["shard-00000-of-00002.h5", "shard-00001-of-00002.h5"]
            tags = {n: fs.info(f"{BUCKET}/features/{n}")["ETag"] for n in names}
            assert not list(stage.rglob("*.h5"))  # uploaded, nothing left staged

            # inspect reads the shards' indexes in place; train-rnn reads copies
            result = CliRunner().invoke(cli, ["inspect", out, "--json"])
            assert result.exit_code == 0 and f'"videos": {CLIPS}' in result.output, result.output
            result = CliRunner().invoke(
                cli, ["train-rnn", out, "-o", str(tmp_path / "run"), "--epochs", "1", "-q"]
            )
            assert result.exit_code == 0, result.output
            result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "run"), out])
            assert result.exit_code == 0 and f"{CLIPS} videos" in result.output, result.output

            # One new video: its shard alone is downloaded, extended and uploaded again.
            lossless(tmp_path / "new.mkv", random_frames(12, seed=50))
            fs.put_file(str(tmp_path / "new.mkv"), f"{BUCKET}/in/c0/clip_new.mkv")
            output = finish(start([f"s3://{BUCKET}/in/"], out, *run))
            assert f"{out}: 1 extracted, {CLIPS} already cached, 0 failed" in output, output
            fs.invalidate_cache()
            now = {n: fs.info(f"{BUCKET}/features/{n}")["ETag"] for n in names}
            assert sum(now[n] != tags[n] for n in names) == 1
            result = CliRunner().invoke(cli, ["inspect", out, "--json"])
            assert f'"videos": {CLIPS + 1}' in result.output

            # The driver killed mid-run: the rerun continues what it staged and uploaded.
            for k in range(6):
                lossless(tmp_path / "more" / f"m{k}.mkv", random_frames(12, seed=60 + k))
            fs.put(str(tmp_path / "more") + "/", f"{BUCKET}/in/c1/", recursive=True)
            before = {}  # each remote shard's commit count: a staged copy starts there
            for name in names:
                fs.get_file(f"{BUCKET}/features/{name}", str(tmp_path / name))
                before[name] = committed(tmp_path / name)
            process = start([f"s3://{BUCKET}/in/"], out, *run)
            try:

                def staged_a_commit() -> bool:
                    return any(committed(p) > before[p.name] for p in stage.rglob("shard-*.h5"))

                assert wait_for(staged_a_commit, process), finish(process)
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
            output = finish(start([f"s3://{BUCKET}/in/"], out, *run))
            done = re.search(r"(\d+) extracted, (\d+) already cached, 0 failed", output)
            assert done, output
            assert int(done.group(1)) < 6 and int(done.group(1)) + int(done.group(2)) == CLIPS + 7
            assert not list(stage.rglob("*.h5"))
            held = []
            for name in names:
                with CacheReader(f"{out}{name}") as reader:
                    held.extend(reader.entries())
            assert sorted(held) == sorted(set(held)) and len(held) == CLIPS + 7  # once each
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.mark.slow
def test_a_full_disk_under_the_driver_is_one_line_and_keeps_every_commit(
    tmp_path, clips, small_disk
):
    """The driver commits what the workers send onto a disk that fills: one line, every
    video committed before is whole, and the run after space is freed does the rest."""
    out = small_disk / "f.h5"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * max(0, shutil.disk_usage(small_disk).free - (3 << 20)))
    nodisk = ("--workers", "2", "--shards", "8", "--no-shared-disk")
    process = start([clips], out, *nodisk)
    output = finish(process)
    assert process.returncode == 1, output
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "disk full" in errors[0], output
    assert "Traceback" not in output
    with CacheReader(out) as reader:
        kept = len(reader.entries())
        for video_id in reader.entries():
            reader.rows(video_id)  # each one whole (checked against its CRC-32)
    filler.unlink()
    output = finish(start([clips], out, *nodisk))
    assert f"{out}: {CLIPS - kept} extracted, {kept} already cached, 0 failed" in output, output
