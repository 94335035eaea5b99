"""Nothing silent: index checksums, and every command on damaged copies of a cache.

The flip test damages one byte at a time in every structure of a small real cache (each
index column, the record checks, the commit count, tombstones, text bytes and offsets,
object headers, the rows, the superblock) and runs every command on each copy in a worker
process (``fault_worker.py``): each must give a correct result or one clear line, never a
traceback, a hang or a silently changed video.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import fill, lossless, random_frames

from vidcache.features.cache import (
    CacheEntry,
    CacheLock,
    CacheReader,
    FeatureCache,
    integrity,
    maintenance,
    store,
)
from vidcache.features.errors import CacheDamaged, CacheFormatError, CacheUnwritable
from vidcache.features.settings import FeatureSettings
from vidcache.pipeline.cli import cli

WORKER = Path(__file__).with_name("fault_worker.py")
SETTINGS8 = FeatureSettings(weights="random:seed=0", weights_sha256="ab" * 32, feature_dim=8)


def entry(video_id: str, label: str = "a", **changes) -> CacheEntry:
    values = dict(
        video_id=video_id, path=f"/data/{video_id}", label=label, kind="file", size=10,
        mtime=1.0, fingerprint=f"sha256:{video_id}", num_frames=0, fps=25.0,
        meta={"split": "train"},
    )  # fmt: skip
    values.update(changes)
    return CacheEntry(**values)


def small_cache(path: Path, videos: int = 5) -> Path:
    with FeatureCache.open(path, SETTINGS8, {}) as cache:
        for i in range(videos):
            rows = np.full((2 + i, 8), i, np.float32)
            cache.write_rows(
                entry(f"v{i}", "ab"[i % 2]), rows, np.arange(2 + i) / 5, np.arange(2 + i)
            )
        cache.delete_videos(["v1"])
    return path


# --- the checks themselves ------------------------------------------------------------------


def test_record_checks_vectorised_equal_one_at_a_time_and_catch_every_single_change():
    rng = np.random.default_rng(0)
    n = 50
    numbers = [rng.integers(-5, 1 << 40, n), rng.random(n), rng.integers(0, 2, n).astype("u1")]
    words = [bytes(rng.integers(97, 123, rng.integers(0, 12)).astype(np.uint8)) for _ in range(n)]
    offsets = np.cumsum([0] + [len(w) for w in words])
    text = (np.frombuffer(b"".join(words), np.uint8), offsets)
    checks = integrity.record_checks(numbers, [text])
    for i in range(n):  # the writer computes one record at a time, with its own offsets
        one = integrity.record_checks(
            [column[i : i + 1] for column in numbers],
            [(np.frombuffer(words[i], np.uint8), np.array([0, len(words[i])]))],
        )
        assert one[0] == checks[i]
    for column in range(3):  # any one numeric field changed
        changed = [c.copy() for c in numbers]
        changed[column][7] = changed[column][7] + 1 if column != 2 else 1 - changed[column][7]
        assert integrity.failing(checks, integrity.record_checks(changed, [text])).tolist() == [7]
    data = text[0].copy()
    for position in range(len(data)):  # any one byte of the text, flipped in any bit
        for bit in (0, 7):
            data[position] ^= 1 << bit
            bad = integrity.failing(checks, integrity.record_checks(numbers, [(data, offsets)]))
            owner = int(np.searchsorted(offsets, position, side="right")) - 1
            assert bad.tolist() == [owner]
            data[position] ^= 1 << bit
    moved = offsets.copy()
    moved[10] += 1  # a record boundary moved: both records around it fail
    bad = integrity.failing(checks, integrity.record_checks(numbers, [(text[0], moved)]))
    assert set(bad.tolist()) <= {9, 10} and len(bad)


def test_a_damaged_record_is_refused_in_one_line_and_repair_drops_exactly_it(tmp_path):
    path = small_cache(tmp_path / "f.h5")
    with h5py.File(path, "r+") as f:  # v3's label reads "z" instead of "b": one byte
        labels = f["index/label/bytes"]
        start = int(f["index/label/offsets"][3])
        labels[start] = ord("z")
    with pytest.raises(CacheDamaged, match="the index record of video 'v3' fails its checksum"):
        CacheReader(path)
    report = maintenance.verify(path)
    assert report.damaged_records == [(3, "v3")] and report.checked
    assert maintenance.repair(path, report) == 1
    with CacheReader(path) as reader:
        assert list(reader.entries()) == ["v0", "v2", "v4"] and reader.checked
        assert reader.entries()["v2"].label == "a"
        np.testing.assert_array_equal(reader.features("v4"), np.full((6, 8), 4))


def test_a_damaged_commit_count_is_never_believed(tmp_path):
    path = small_cache(tmp_path / "f.h5")
    with h5py.File(path, "r+") as f:
        f["commit"][0] = 2  # 6 records committed; the count now hides 4
    with pytest.raises(CacheDamaged, match="commit count, 2, fails its checksum"):
        CacheReader(path)
    with pytest.raises(CacheDamaged, match="commit count"):
        maintenance.compact(path)  # never frees the rows of the hidden videos
    report = maintenance.verify(path)
    assert report.count_damaged and report.videos == 4  # the records that check out
    maintenance.repair(path, report)
    with CacheReader(path) as reader:
        assert list(reader.entries()) == ["v0", "v2", "v3", "v4"]


def test_schema2_files_open_unverified_and_a_rewrite_adds_the_checks(tmp_path):
    path = tmp_path / "old.h5"
    small_cache(path)
    with h5py.File(path, "r+") as f:  # the layout vidcache 0.1.x wrote: no checks
        del f["index/record_check"]
        count = int(f["commit"][0])
        del f["commit"]
        f["commit"] = np.array([count])
        f.attrs["schema_version"] = 2
        del f.attrs["attrs_sha256"]  # made since 0.3
        f["index"].attrs["encoding-version"] = "2"  # as the schema-2 writer set it
    with CacheReader(path) as reader:
        assert reader.schema_version == 2 and not reader.checked
        before = {v: reader.features(v) for v in reader.entries()}
    with FeatureCache.open(path, SETTINGS8, {}) as cache:  # still extended as it is
        cache.write_rows(entry("v9"), np.ones((1, 8)), [0.0], [0])
    result = CliRunner().invoke(cli, ["verify", str(path)])
    assert result.exit_code == 0 and "index records unverified (no checksums)" in result.output
    maintenance.compact(path)
    with CacheReader(path) as reader:
        assert reader.schema_version == 3 and reader.checked
        assert list(reader.entries()) == [*before, "v9"]
        for video_id, features in before.items():
            np.testing.assert_array_equal(reader.features(video_id), features)


def test_the_reader_is_chosen_by_the_index_encoding(tmp_path):
    """A file says how its videos are laid out; an encoding no reader knows, or one that
    disagrees with the file's schema version, is one line naming it."""
    from vidcache.features.cache import layouts

    path = small_cache(tmp_path / "c.h5")
    with h5py.File(path, "r") as f:
        assert layouts.encoding_of(f, path, 3) == ("vidcache-video-index", "3")
    with h5py.File(path, "r+") as f:
        f["index"].attrs["encoding-version"] = "2"
    with pytest.raises(CacheFormatError, match="encoded as vidcache-video-index version 2, but"):
        CacheReader(path)
    with h5py.File(path, "r+") as f:
        f["index"].attrs["encoding-type"] = "someone-elses-index"
        f["index"].attrs["encoding-version"] = "3"
    with pytest.raises(CacheFormatError, match="someone-elses-index version 3, which this"):
        CacheReader(path)
    layouts.register_layout("someone-elses-index", "3", layouts.IndexedLayout)
    try:  # one registry line, and the same file reads
        with CacheReader(path) as reader:
            assert list(reader.entries()) == ["v0", "v2", "v3", "v4"]
    finally:
        layouts.unregister_layout("someone-elses-index", "3")
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 1 and result.output.count("Error: ") == 1, result.output


def test_a_programming_error_is_not_reported_as_damage(tmp_path, monkeypatch):
    path = small_cache(tmp_path / "f.h5")

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(store.integrity, "record_checks", broken)
    with pytest.raises(TypeError, match="a bug"):
        CacheReader(path)


# --- one writer per file ----------------------------------------------------------------------


HOLD = """
import sys, time
from vidcache.features.cache import CacheLock, FeatureCache
from vidcache.features.settings import FeatureSettings
s = FeatureSettings(weights="random:seed=0", weights_sha256="ab" * 32, feature_dim=8)
with CacheLock(sys.argv[1]), FeatureCache.open(sys.argv[1], s, {}):
    print("writing", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
def test_one_writer_per_file_through_a_symlink_a_relative_path_a_hard_link_and_a_bind_mount(
    tmp_path,
):
    path = small_cache(tmp_path / "c.h5")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.h5").symlink_to(path)
    os.link(path, tmp_path / "hard.h5")
    names = {
        "symlink": tmp_path / "link.h5",
        "relative": tmp_path / "sub" / ".." / "c.h5",
        "hard link": tmp_path / "hard.h5",
    }
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "--bind", str(tmp_path), str(mount)]).returncode == 0:
        names["bind mount"] = mount / "c.h5"
    try:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout.readline() == "writing\n"
            for kind, name in names.items():
                for args in (["compact", name], ["migrate", name]):
                    result = CliRunner().invoke(cli, [str(a) for a in args])
                    assert result.exit_code == 1, (kind, args, result.output)
                    assert "is being written by another vidcache run" in result.output, kind
                with pytest.raises(Exception, match="is being written by another vidcache run"):
                    CacheLock(name).acquire()
        finally:
            holder.kill()
            holder.communicate(timeout=60)
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    with CacheReader(path) as reader:
        assert list(reader.entries()) == ["v0", "v2", "v3", "v4"]


def test_the_lock_is_not_lost_to_the_unlink_race(tmp_path):
    """A run that opened the lock file just before its holder released (unlinked) it must
    not believe it holds the lock while a third run holds the new lock file."""
    path = tmp_path / "c.h5"
    first = CacheLock(path).acquire()
    stale = open(first.path)  # a second run opened the name before the release
    first.release()
    third = CacheLock(path).acquire()  # a new lock file under the same name
    try:
        import fcntl

        fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the old inode is free...
        with pytest.raises(Exception, match="is being written"):
            CacheLock(path).acquire()  # ...but the name leads to the held one
    finally:
        stale.close()
        third.release()


def test_compact_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path):
    real = small_cache(tmp_path / "real.h5")
    link = tmp_path / "link.h5"
    link.symlink_to(real)
    result = CliRunner().invoke(cli, ["compact", str(link), "-q"])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == real
    with CacheReader(real) as reader:
        assert reader.stats()["rows"] == reader.stats()["live_rows"]


def test_leftovers_of_a_killed_rewrite_are_removed_by_the_next_run(tmp_path):
    path = small_cache(tmp_path / "c.h5")
    leftovers = [
        tmp_path / ".c.h5.rewrite-99999",
        tmp_path / "..c.h5.rewrite-99999.creating-99999",
        tmp_path / ".c.h5.creating-99998",
    ]
    for leftover in leftovers:
        leftover.write_bytes(b"x" * 1000)
    keep = tmp_path / ".other.h5.rewrite-99999"
    keep.write_bytes(b"x")
    with CacheLock(path):
        pass
    assert not any(p.exists() for p in leftovers) and keep.exists()


# --- full and read-only places ----------------------------------------------------------------


@pytest.mark.slow
def test_a_disk_with_no_byte_free_gives_one_line_in_every_writing_command(tmp_path, small_disk):
    path = small_cache(small_disk / "c.h5")
    link = tmp_path / "link.h5"
    link.symlink_to(path)  # the free-space check must look at the target's disk
    videos = tmp_path / "videos"
    lossless(videos / "a.mkv", random_frames(2))
    fill(small_disk)
    new_link = tmp_path / "new-link.h5"
    new_link.symlink_to(small_disk / "new.h5")
    before = path.read_bytes()
    for name, new in ((path, small_disk / "new.h5"), (link, new_link)):
        for args in (
            ["compact", name],
            ["migrate", name, "-o", small_disk / "m.h5"],
            ["merge", name, "-o", small_disk / "merged.h5"],
            ["extract", videos, "-o", new, "--weights", "random", "--image-size", "75", "-q"],
        ):
            result = CliRunner().invoke(cli, [str(a) for a in args])
            where = f"{args}: {result.output!r}"
            assert (
                result.exit_code == 1
                and result.exception is None
                or isinstance(result.exception, SystemExit)
            ), where
            errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
            assert len(errors) == 1 and "disk full" in errors[0], where
            named = new if args[0] == "extract" else name
            names = (named.name, named.resolve().name, "m.h5", "merged.h5")
            assert any(n in errors[0] for n in names), where
    assert path.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["c.h5", "filler"]  # no leftovers


@pytest.mark.slow
def test_a_read_only_mount_is_named_as_such(tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    path = small_cache(source / "c.h5")
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(mount)]).returncode:
        pytest.skip("cannot bind-mount read-only here")
    try:
        if os.access(mount, os.W_OK):
            subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=False)
        cache = mount / "c.h5"
        for args in (["inspect", cache], ["verify", cache]):
            result = CliRunner().invoke(cli, [str(a) for a in args])
            assert result.exit_code == 0, result.output
        for args in (["compact", cache], ["migrate", cache], ["verify", "--repair", cache]):
            result = CliRunner().invoke(cli, [str(a) for a in args])
            errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
            if args[1] == "--repair":  # nothing damaged: nothing to write
                assert result.exit_code == 0, result.output
                continue
            assert result.exit_code == 1 and len(errors) == 1, result.output
            assert "c.h5" in errors[0] and "read-only" in errors[0], errors[0]
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    with CacheReader(path) as reader:
        assert list(reader.entries()) == ["v0", "v2", "v3", "v4"]


@pytest.mark.slow
def test_an_immutable_cache_is_named_as_unwritable_not_damaged(tmp_path):
    path = small_cache(tmp_path / "c.h5")
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("chattr +i does not work here")
    try:
        result = CliRunner().invoke(cli, ["compact", str(path)])
        assert result.exit_code == 1 and result.output == (
            f"Error: {path}: cannot write (opening it for writing): permission denied "
            "(Operation not permitted)\n"
        )
        with pytest.raises(CacheUnwritable, match="permission denied"):
            with CacheLock(path), FeatureCache.open(path, SETTINGS8, {}):
                pass  # what extract-features and predict --cache do
        assert CliRunner().invoke(cli, ["inspect", str(path)]).exit_code == 0
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


# --- kill -9 inside absorb (the Ray engine's hand-over) --------------------------------------

ABSORB = """
import sys
from pathlib import Path
from vidcache.features.cache import maintenance
print("start", flush=True)
maintenance.absorb(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
print("done", flush=True)
"""


@pytest.mark.slow
def test_kill_9_inside_absorb_keeps_the_target_whole_and_a_rerun_completes(tmp_path):
    import random

    from cache_writer import settings, video

    shards = []
    for number in range(6):  # 1,800 videos of 2048-d rows: absorbing them takes a while
        shard = tmp_path / f"shard-{number}.h5"
        made = [video(i, 2048) for i in range(number * 300, number * 300 + 300)]
        with FeatureCache.open(shard, settings(2048), {}) as cache:
            for start in range(0, 300, 100):
                part = made[start : start + 100]
                rows = [store.Rows(f, t, x) for _, f, t, x in part]
                cache.write_batch([e for e, *_ in part], rows)
        shards.append(shard)
    target = tmp_path / "target.h5"
    rng = random.Random(7)
    seen = []
    for _ in range(6):
        process = subprocess.Popen(
            [sys.executable, "-c", ABSORB, str(target), *map(str, shards)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout.readline() == "start\n"
        time.sleep(rng.uniform(0.0, 0.3))
        process.kill()
        process.communicate(timeout=60)
        if target.exists():
            with CacheReader(target) as reader:  # whole, checked, and only real videos
                entries = reader.entries()
                for video_id in list(entries)[:: max(1, len(entries) // 20)]:
                    i = int(video_id[6:11])
                    np.testing.assert_array_equal(reader.features(video_id), video(i, 2048)[1])
                seen.append(reader.stats()["records"])  # grows with each committed batch
    maintenance.absorb(target, shards)
    with CacheReader(target) as reader:
        assert len(reader.entries()) == 1800
        assert maintenance.verify(target).whole
    print("records in the target after each kill:", seen)
    assert seen == sorted(seen) and any(n % 1800 for n in seen)  # some kills landed inside


# --- every command on damaged copies -----------------------------------------------------------


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """A small real cache with replaced, touched and deleted videos (so superseded records
    and tombstones exist), the videos it was made from, and a run trained on it."""
    root = tmp_path_factory.mktemp("flip")
    videos = root / "videos"
    for label in range(3):
        for clip in range(2):
            lossless(videos / f"l{label}" / f"c{clip}.mkv", random_frames(3, seed=label * 7 + clip))
    lossless(videos / "l0" / "gone.mkv", random_frames(2, seed=99))
    cache = root / "cache.h5"
    extract = ["extract", str(videos), "-o", str(cache), "--weights", "random", "--seed", "0"]
    extract += ["--image-size", "75", "--fps", "0", "-q"]
    runner = CliRunner()
    assert runner.invoke(cli, extract).exit_code == 0
    lossless(videos / "l1" / "c0.mkv", random_frames(3, seed=50))  # replaced: new rows
    os.utime(videos / "l2" / "c1.mkv", (1e9, 1e9))  # touched: a new record, same rows
    (videos / "l0" / "gone.mkv").unlink()  # pruned: a tombstone
    result = runner.invoke(cli, [*extract, "--prune"])
    assert result.exit_code == 0, result.output
    run = root / "run"
    train = ["train-rnn", str(cache), "-o", str(run), "--epochs", "1", "--units", "4", "-q"]
    assert runner.invoke(cli, train).exit_code == 0
    good = root / "good.h5"
    cache.rename(good)  # so predict finds the videos only in the --cache it is given
    with CacheReader(good) as reader:
        assert reader.stats()["records"] == 10 and len(reader.entries()) == 6
    return {"good": good, "videos": videos, "run": run, "root": root}


def flip_positions(good: Path, every: bool = False) -> list[tuple[str, int]]:
    """Byte offsets in every structure of ``good`` that holds something: the superblock,
    every object header, and in each dataset one of its first, middle and last used items
    in turn (all three with ``every``; ``VIDCACHE_FLIP_ALL=1`` runs the test that way, 3x
    the copies)."""
    positions = [(f"superblock+{i}", i) for i in (8, 9, 11, 12, 20, 28, 36, 44)]
    with h5py.File(good, "r") as f:
        count = int(f["commit"][0])
        objects = {"/": f}
        f.visititems(lambda name, obj: objects.update({name: obj}))  # None: visit all
        for number, (name, obj) in enumerate(sorted(objects.items())):
            header = h5py.h5o.get_info(obj.id).addr
            positions += [(f"header {name}+{k}", header + k) for k in (6, 30)]
            if not isinstance(obj, h5py.Dataset) or obj.shape[0] == 0:
                continue
            offset = obj.id.get_offset()
            if offset is None:
                offset = obj.id.get_chunk_info(0).byte_offset
            item = obj.dtype.itemsize * int(np.prod(obj.shape[1:]))
            used = {"commit": 2}.get(name, count + 1 if name.endswith("offsets") else count)
            if name.endswith("/bytes"):
                used = int(f[name.replace("bytes", "offsets")][count])
            elif name.startswith("rows/"):
                used = obj.shape[0]
            items = sorted({0, used // 2, max(0, used - 1)})
            for k in items if every else [items[number % len(items)]]:
                positions.append((f"{name}[{k}]", offset + k * item + (item - 1 if k % 2 else 0)))
    return positions


def run_worker(spec: dict, tmp_path: Path, timeout: float = 120) -> list[dict]:
    """Run the fault worker over the copies of ``spec``; a command that takes longer than
    ``timeout`` is recorded as a hang, and the worker goes on after that copy."""
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    lines, first = [], 0
    while first < len(spec["copies"]):
        process = subprocess.Popen(
            [sys.executable, str(WORKER), str(spec_file), str(first)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            while True:
                ready, _, _ = select.select([process.stdout], [], [], timeout)
                if not ready:
                    name = spec["copies"][first][0]
                    lines.append({"copy": first, "name": name, "command": "?", "verdict": "HANG"})
                    first += 1
                    break
                line = process.stdout.readline()
                if not line:
                    lines.append({"copy": first, "name": spec["copies"][first][0],
                                  "command": "?", "verdict": "BAD: the worker died"})  # fmt: skip
                    first += 1
                    break
                found = json.loads(line)
                if found.get("done"):
                    first = found["copy"] + 1
                    if first >= len(spec["copies"]):
                        break
                    continue
                lines.append(found)
        finally:
            process.kill()
            process.communicate()
    return lines


def summarise(lines: list[dict], title: str) -> None:
    """Print the figures (``pytest -s`` shows them): copies, how many the reader refused
    (detected) or read exactly as the good cache (harmless), and the verdicts."""
    verdicts = Counter(line["verdict"].split(":")[0] for line in lines)
    readers = [line for line in lines if line["command"] == "reader"]
    refused = sum(line["exit"] for line in readers)
    print(
        f"\n{title}: {len(readers)} damaged copies: {refused} detected by the reader, "
        f"{len(readers) - refused} read exactly as the good cache; {len(lines)} command runs: "
        f"{dict(verdicts)}"
    )


def worker_spec(real_cache: dict, tmp_path: Path) -> dict:
    """What the fault worker needs besides the damaged copies."""
    spec = {"good": real_cache["good"], "videos": real_cache["videos"], "run": real_cache["run"]}
    spec = {key: str(value) for key, value in spec.items()}
    spec["work"] = str(tmp_path / "work")
    return spec


def damaged_copy(folder: Path, good: bytes, name: str, raw: bytes) -> list:
    path = folder / f"{len(list(folder.iterdir()))}.h5"
    path.write_bytes(raw)
    return [name, str(path)]


@pytest.mark.slow
def test_one_flipped_byte_anywhere_is_a_correct_result_or_one_line(real_cache, tmp_path):
    good = real_cache["good"]
    data = good.read_bytes()
    copies = tmp_path / "copies"
    copies.mkdir()
    spec = worker_spec(real_cache, tmp_path)
    spec["copies"] = []
    for name, offset in flip_positions(good, every=os.environ.get("VIDCACHE_FLIP_ALL") == "1"):
        raw = bytearray(data)
        raw[offset] ^= 0x5A
        spec["copies"].append(damaged_copy(copies, data, name, bytes(raw)))
    lines = run_worker(spec, tmp_path)
    summarise(lines, "one byte flipped")
    bad = [line for line in lines if line["verdict"] != "ok"]
    assert not bad, "\n".join(f"{b['name']}: {b['command']}: {b['verdict']}" for b in bad[:10])


@pytest.mark.slow
def test_a_truncated_cache_is_one_line_in_every_command(real_cache, tmp_path):
    good = real_cache["good"]
    data = good.read_bytes()
    copies = tmp_path / "copies"
    copies.mkdir()
    spec = worker_spec(real_cache, tmp_path)
    cuts = [0, 1, 7, 8, 9, 11, 12, 15, 16, 40, 47, 48, 100, 1000, 4096]
    cuts += [len(data) // 4, len(data) // 2, len(data) - 4096, len(data) - 1]
    spec["copies"] = [damaged_copy(copies, data, f"cut at {n}", data[:n]) for n in cuts]
    lines = run_worker(spec, tmp_path)
    summarise(lines, "truncated")
    bad = [line for line in lines if line["verdict"] != "ok"]
    assert not bad, "\n".join(f"{b['name']}: {b['command']}: {b['verdict']}" for b in bad[:10])
