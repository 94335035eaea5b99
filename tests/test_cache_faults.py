"""Fault injection on the schema-2 cache, in real processes: kill -9 at random moments,
a full disk (a small tmpfs), damaged files through every command, readers during a write."""

import random
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from cache_writer import spans, video
from click.testing import CliRunner
from conftest import lossless, random_frames

from vidcache.features.cache import CacheReader
from vidcache.pipeline.cli import cli

pytestmark = pytest.mark.slow
WRITER = Path(__file__).with_name("cache_writer.py")
DIM = 64


def start(path, first=0, last=100_000, *extra):
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(first), str(last), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(path, first, last, *extra) -> int:
    """Run a writer to the end; its exit code."""
    return subprocess.run(
        [sys.executable, str(WRITER), str(path), str(first), str(last), *extra],
        capture_output=True,
        timeout=120,
    ).returncode


def check_content(path, committed):
    """Every printed (committed) video is there, whole, with its own content."""
    with CacheReader(path) as reader:
        entries = reader.entries()
        assert set(committed) <= set(entries), sorted(set(committed) - set(entries))[:3]
        for video_id in entries:
            i = int(video_id[6:11])
            _, features, stamps, _ = video(i, DIM)
            rows = reader.rows(video_id)  # checksum verified
            np.testing.assert_array_equal(rows.features, features)
            np.testing.assert_array_equal(rows.timestamps, stamps)
        return entries


def test_kill_9_while_writing_windows_keeps_every_committed_span(tmp_path):
    """Schema 4: rows and their spans are written in the same step 1 before the commit."""
    path = tmp_path / "w.h5"
    rng = random.Random(20261205)
    committed: list[str] = []
    for _ in range(6):
        process = start(path, 0, 100_000, str(DIM), "--windows")
        process.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.4))
        process.kill()
        out, _ = process.communicate(timeout=60)
        committed += out.split()
        entries = check_content(path, committed)
        with CacheReader(path) as reader:
            assert reader.schema_version == 4
            for video_id in entries:
                want = spans(int(video_id[6:11]))
                for got, expected in zip(reader.spans(video_id), want):
                    np.testing.assert_array_equal(got, expected)
    assert committed and finish(path, 0, len(entries) + 20, str(DIM), "--windows") == 0


def test_kill_9_at_random_moments_never_loses_a_committed_video(tmp_path):
    path = tmp_path / "f.h5"
    rng = random.Random(20261123)
    committed: list[str] = []
    healed_for_plain_readers = 0
    for _ in range(12):
        process = start(path)
        process.stdout.readline()  # started writing
        time.sleep(rng.uniform(0.0, 0.5))
        process.kill()
        out, _ = process.communicate(timeout=60)
        committed += out.split()
        # a SWMR reader opens the crashed file as it is, before any healing
        with h5py.File(path, "r", swmr=True) as f:
            assert int(f["commit"][0]) >= len(set(committed))
        entries = check_content(path, committed)  # vidcache's reader heals it
        with h5py.File(path, "r") as f:  # and then any plain HDF5 reader opens it
            healed_for_plain_readers += int(f["commit"][0]) >= len(entries)
    assert healed_for_plain_readers == 12
    # a resumed run completes; the result equals an uninterrupted run's
    last = len(entries) + 50
    assert finish(path, 0, last) == 0
    clean = tmp_path / "clean.h5"
    assert finish(clean, 0, last) == 0
    with CacheReader(path) as resumed, CacheReader(clean) as fresh:
        assert list(resumed.entries()) == list(fresh.entries())
        for video_id in fresh.entries():
            np.testing.assert_array_equal(resumed.features(video_id), fresh.features(video_id))


@pytest.mark.parametrize("checked", [True, False], ids=["space-check", "hdf5-enospc"])
def test_a_full_disk_keeps_every_committed_video_and_a_rerun_completes(small_disk, checked):
    path = small_disk / "f.h5"
    extra = [str(2048)] + ([] if checked else ["--no-space-check"])
    process = start(path, 0, 100_000, *extra)
    out, err = process.communicate(timeout=120)
    committed = out.split()
    assert process.returncode != 0 and len(committed) > 5
    if checked:  # stopped by the writer's own check, with one clear line
        assert err.strip().splitlines()[-1].startswith("vidcache.features.errors.DiskFull: ")
        assert "disk full" in err and "every video committed before is kept" in err
    with CacheReader(path) as reader:
        assert set(committed) <= set(reader.entries())
        for video_id in committed:
            i = int(video_id[6:11])
            np.testing.assert_array_equal(reader.features(video_id), video(i, 2048)[1])
    moved = small_disk.parent / "f.h5"  # room again: the same run finishes elsewhere
    moved.write_bytes(path.read_bytes())
    assert finish(moved, 0, len(committed) + 5, "2048") == 0
    with CacheReader(moved) as reader:
        assert len(reader.entries()) == len(committed) + 5


def test_readers_during_a_write_see_committed_videos(tmp_path):
    path = tmp_path / "f.h5"
    process = start(path)
    try:
        process.stdout.readline()
        seen = []
        for _ in range(5):
            result = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
            assert result.exit_code == 0, result.output
            with CacheReader(path) as reader:
                seen.append(len(reader.entries()))
                for video_id in list(reader.entries())[-3:]:
                    reader.features(video_id)
            time.sleep(0.1)
        assert seen == sorted(seen) and seen[-1] > seen[0]
    finally:
        process.kill()
        process.communicate(timeout=60)
    check_content(path, [])


def test_every_writing_command_heals_a_killed_writer_and_refuses_a_live_one(tmp_path):
    from vidcache.features.cache.session import CacheSession
    from vidcache.features.errors import CacheLocked

    path = tmp_path / "f.h5"
    process = start(path)
    try:
        process.stdout.readline()  # writing
        with pytest.raises(CacheLocked, match="being written by another vidcache run"):
            with CacheSession(path):
                pass
        for command in (["compact"], ["migrate"]):
            refused = CliRunner().invoke(cli, [*command, str(path), "-q"])
            assert refused.exit_code != 0, (command, refused.output)
            assert "being written by another vidcache run" in refused.output, command
    finally:
        process.kill()
    committed = process.communicate(timeout=60)[0].split()
    with h5py.File(path, "r", swmr=True) as f:  # the flags a killed writer leaves
        assert int(f["commit"][0]) >= len(set(committed))
    with pytest.raises(OSError):  # a plain HDF5 reader cannot open it yet
        h5py.File(path, "r").close()
    with CacheSession(path) as session:  # the session heals it before any read
        assert session.healed and session.settings().feature_dim == DIM
    h5py.File(path, "r").close()  # now any HDF5 reader opens it
    with CacheSession(path) as session:
        assert not session.healed  # nothing left to heal
    check_content(path, committed)

    process = start(path, 5000)  # killed again: a maintenance command heals it itself
    process.stdout.readline()
    time.sleep(0.2)
    process.kill()
    committed += process.communicate(timeout=60)[0].split()
    compacted = CliRunner().invoke(cli, ["compact", str(path), "-q"])
    assert compacted.exit_code == 0, compacted.output
    check_content(path, committed)


HOLD = """
import sys, time, h5py
f = h5py.File(sys.argv[1], "r")
print("open", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_open(path, seconds):
    """Another process that opens the cache for reading (no SWMR) and keeps it open."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "open\n"
    return process


def test_a_writer_waits_for_a_brief_reader_and_refuses_a_long_one_clearly(tmp_path, monkeypatch):
    path = tmp_path / "f.h5"
    assert finish(path, 0, 5) == 0
    reader = hold_open(path, 1.0)  # HDF5 locks the file while this reader has it
    try:
        assert finish(path, 5, 10) == 0  # waits for it, then writes
    finally:
        reader.kill()
        reader.communicate(timeout=60)
    assert len(check_content(path, [])) == 10

    import vidcache.features.cache.files as cache_module

    monkeypatch.setattr(cache_module, "READER_WAIT_SECONDS", 0.5)
    videos, cache = tmp_path / "videos", tmp_path / "g.h5"
    extract = ["extract", str(videos), "-o", str(cache), "--weights", "random", "-q"]
    extract += ["--image-size", "75", "--fps", "0"]
    lossless(videos / "a" / "one.mkv", random_frames(3, seed=1))
    assert CliRunner().invoke(cli, extract).exit_code == 0
    lossless(videos / "a" / "two.mkv", random_frames(3, seed=2))
    reader = hold_open(cache, 60)
    try:
        result = CliRunner().invoke(cli, extract)
    finally:
        reader.kill()
        reader.communicate(timeout=60)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "Error: g.h5 is open in another process (a training run, a reader or a viewer) "
        "and stayed open for 0.5 s; close it and run again"
    )
    with CacheReader(cache) as kept:
        assert list(kept.entries()) == ["a/one.mkv"]
    assert CliRunner().invoke(cli, extract).exit_code == 0  # the reader gone, it goes on
    with CacheReader(cache) as kept:
        assert list(kept.entries()) == ["a/one.mkv", "a/two.mkv"]


def damaged_copies(tmp_path) -> dict:
    """A good cache, and copies damaged in each way a disk or a copy can damage one."""
    good = tmp_path / "good.h5"
    assert finish(good, 0, 40) == 0
    data = good.read_bytes()
    with h5py.File(good, "r") as f:
        features = f["rows/features"].id.get_chunk_info(0).byte_offset
        index = f["index/video_id/offsets"].id.get_chunk_info(0).byte_offset
    files = {}

    def damaged(name, raw):
        files[name] = tmp_path / f"{name}.h5"
        files[name].write_bytes(bytes(raw))

    damaged("truncated", data[: len(data) // 2])
    damaged("cut-superblock", data[:20])  # the HDF5 signature, then nothing
    raw = bytearray(data)
    raw[index : index + 64] = b"\xff" * 64  # the offsets of the id column
    damaged("scribbled-index", raw)
    raw = bytearray(data)
    raw[2048:2600] = bytes(range(256)) * 2 + bytes(40)  # metadata near the start
    damaged("scribbled-metadata", raw)
    raw = bytearray(data)
    raw[features + 100] ^= 0xFF
    damaged("scribbled-data", raw)
    damaged("not-hdf5", b"GIF89a" + data[6:1000])
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    files["other-format"] = tmp_path / "other.h5"
    future = tmp_path / "future.h5"
    future.write_bytes(data)
    with h5py.File(future, "r+") as f:
        f.attrs["schema_version"] = 7
    files["other-schema"] = future
    return files


def test_every_command_reports_damaged_files_in_one_line(tmp_path):
    files = damaged_copies(tmp_path)
    videos = tmp_path / "videos"
    lossless(videos / "a.mkv", random_frames(2))
    for name, path in files.items():
        commands = [
            ["inspect", path],
            ["verify", path],
            ["train-rnn", path, "-o", tmp_path / f"run-{name}", "-q"],
            ["compact", path],
            ["migrate", path, "-o", tmp_path / f"migrated-{name}.h5"],
            ["extract", videos, "-o", path, "--weights", "random", "-q"],
        ]
        for args in commands:
            result = CliRunner().invoke(cli, [str(a) for a in args])
            lines = result.output.strip().splitlines()
            where = f"{name}: {args[0]}: {result.output!r}"
            if name == "scribbled-data" and args[0] in ("inspect", "compact", "migrate"):
                # the index is intact: inspect works; rewrites refuse to copy damaged rows
                assert result.exit_code == (0 if args[0] == "inspect" else 1), where
                continue
            if name == "scribbled-index" and args[0] == "verify":  # names the records
                assert result.exit_code == 1 and lines[0].startswith("damaged: index record #0")
                continue
            if name == "scribbled-data" and args[0] == "verify":
                assert result.exit_code == 1 and lines[0].startswith("damaged: clips/"), where
                continue
            assert result.exit_code != 0, where
            assert not isinstance(result.exception, Exception) or isinstance(
                result.exception, SystemExit
            ), where
            errors = [line for line in lines if line.startswith("Error: ")]
            assert len(errors) == 1 and str(path) in errors[0], where
            assert "Traceback" not in result.output, where
    # --overwrite replaces a damaged cache without reading it (the old one is not healed,
    # not checked: it is what the user asked to replace)
    path = files["cut-superblock"]
    args = ["extract", videos, "-o", path, "--weights", "random", "-q", "--overwrite"]
    replaced = CliRunner().invoke(cli, [str(a) for a in [*args, "--image-size", 75]])
    assert replaced.exit_code == 0, replaced.output
    with CacheReader(path) as reader:
        assert list(reader.entries()) == ["a.mkv"]
