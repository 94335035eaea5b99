import json
import math
import subprocess
import sys
import textwrap
from dataclasses import replace

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vidcache.features.cache import (
    SCHEMA_VERSION,
    CacheEntry,
    CacheLock,
    CacheReader,
    FeatureCache,
    decode_key,
    encode_key,
    maintenance,
    read_settings,
)
from vidcache.features.cache.buffer import FeatureBuffer
from vidcache.features.cache.legacy import write_schema1
from vidcache.features.errors import CacheDamaged, CacheFormatError, CacheLocked
from vidcache.features.settings import FeatureSettings

SETTINGS = FeatureSettings(weights="random:seed=0", weights_sha256="ab" * 32, image_size=75)
SETTINGS8 = replace(SETTINGS, feature_dim=8)


def entry(video_id="A/clip one.mp4", **changes):
    values = dict(
        video_id=video_id,
        path=f"/data/{video_id}",
        label="A",
        kind="file",
        size=10,
        mtime=1.5,
        fingerprint="sha256:00",
        num_frames=0,
        fps=10.0,
        duration=1.0,
        meta={"split": "train"},
    )
    values.update(changes)
    return CacheEntry(**values)


def write(cache, video, rows):
    """Commit ``rows`` through a spilling buffer, as the pipeline does."""
    with FeatureBuffer(rows.shape[1], spill_rows=2) as buffer:
        for i, row in enumerate(rows):
            buffer.append(row, i * 0.2, i * 2)
        cache.write_video(video, buffer)


@given(st.text(min_size=1).filter(lambda s: s not in (".", "..")))
def test_keys_round_trip_and_never_contain_a_slash(video_id):
    key = encode_key(video_id)
    assert "/" not in key and decode_key(key) == video_id


def test_write_then_read_back_with_provenance(tmp_path):
    path = tmp_path / "f.h5"
    rows = np.random.default_rng(0).random((5, 2048), dtype=np.float32)
    with FeatureCache.open(path, SETTINGS, {"keras": "3"}) as cache:
        write(cache, entry(), rows)
        write(cache, entry("B/x.mp4", label=""), rows[:2])
    with CacheReader(path) as reader:
        assert reader.settings == SETTINGS and reader.versions == {"keras": "3"}
        entries = reader.entries()
        assert sorted(entries) == ["A/clip one.mp4", "B/x.mp4"]
        got = entries["A/clip one.mp4"]
        assert (got.num_frames, got.label, got.meta, got.fps) == (5, "A", {"split": "train"}, 10.0)
        assert got.extracted_at
        np.testing.assert_array_equal(reader.features("A/clip one.mp4"), rows)
        np.testing.assert_allclose(reader.timestamps("A/clip one.mp4"), [0, 0.2, 0.4, 0.6, 0.8])
        with pytest.raises(KeyError, match="'nope' is not in"):
            reader.features("nope")
    assert read_settings(path) == SETTINGS


def test_the_documented_plain_h5py_recipe_works(tmp_path):
    path = tmp_path / "f.h5"
    settings16 = replace(SETTINGS, dtype="float16")
    with FeatureCache.open(path, settings16, {}) as cache:
        write(cache, entry(), np.ones((3, 2048), np.float32))
        write(cache, entry("B/x.mp4"), np.full((2, 2048), 2, np.float32))
        write(cache, entry("B/x.mp4", fingerprint="sha256:22"), np.full((4, 2048), 3, np.float32))
    # The recipe in docs/cache-format.md (latest record per id wins, tombstones drop):
    with h5py.File(path, "r") as f:
        settings = json.loads(f.attrs["settings"])
        n = int(f["commit"][0])
        index = f["index"]
        ids = index["video_id/bytes"][()].tobytes()
        ends = index["video_id/offsets"][: n + 1]
        latest = {ids[ends[i] : ends[i + 1]].decode(): i for i in range(n)}
        videos = {}
        for video_id, i in latest.items():
            if not index["deleted"][i]:
                start, count = index["row_start"][i], index["num_frames"][i]
                videos[video_id] = f["rows/features"][start : start + count]
    assert settings["image_size"] == 75 and SCHEMA_VERSION == 3
    assert sorted(videos) == ["A/clip one.mp4", "B/x.mp4"]
    assert videos["B/x.mp4"].shape == (4, 2048) and (videos["B/x.mp4"] == 3).all()
    assert videos["A/clip one.mp4"].dtype == np.float16


def test_replace_touch_and_delete_are_records_and_compact_frees_the_rows(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureCache.open(path, SETTINGS8, {}) as cache:
        write(cache, entry(), np.zeros((4, 8), np.float32))
        write(cache, entry("B"), np.ones((3, 8), np.float32))
        write(cache, entry(fingerprint="sha256:11"), np.ones((2, 8), np.float32))
        cache.touch_video(replace(cache.entries()["B"], path="/moved/B", mtime=9.0))
        assert cache.delete_videos(["nope"]) == 0
        entries = cache.entries()
    assert list(entries) == ["A/clip one.mp4", "B"] and entries["A/clip one.mp4"].num_frames == 2
    with CacheReader(path) as reader:
        assert reader.stats() == {"records": 4, "videos": 2, "rows": 9, "live_rows": 5}
        assert reader.entries()["B"].path == "/moved/B"
        np.testing.assert_array_equal(reader.features("B"), np.ones((3, 8)))
    with FeatureCache.open(path, SETTINGS8, {}) as cache:
        assert cache.delete_videos(["B"]) == 1
    report = maintenance.compact(path)
    assert report.videos == 1
    with CacheReader(path) as reader:
        assert reader.stats() == {"records": 1, "videos": 1, "rows": 2, "live_rows": 2}
        np.testing.assert_array_equal(reader.features("A/clip one.mp4"), np.ones((2, 8)))


def test_a_flipped_byte_in_feature_data_is_caught_and_verify_repairs(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureCache.open(path, SETTINGS8, {}) as cache:
        write(cache, entry("A"), np.full((3, 8), 0.5, np.float32))
        write(cache, entry("B"), np.full((3, 8), 0.25, np.float32))
    with h5py.File(path, "r") as f:
        offset = f["rows/features"].id.get_offset()
        chunk = f["rows/features"].id.get_chunk_info(0)
        offset = chunk.byte_offset if offset is None else offset
    raw = bytearray(path.read_bytes())
    raw[offset + 3 * 8 * 4 + 5] ^= 0x10  # a byte of B's first row
    path.write_bytes(bytes(raw))
    with CacheReader(path) as reader:
        np.testing.assert_array_equal(reader.features("A"), np.full((3, 8), 0.5))
        with pytest.raises(CacheDamaged, match="video 'B' is damaged \\(checksum mismatch"):
            reader.features("B")
    report = maintenance.verify(path)
    assert list(report.damaged) == ["B"] and report.videos == 2
    assert maintenance.repair(path, report.damaged) == 1
    with CacheReader(path) as reader:
        assert list(reader.entries()) == ["A"]


def test_schema1_files_are_read_as_they_are_and_migrate_to_the_same_content(tmp_path):
    old = tmp_path / "old.h5"
    rng = np.random.default_rng(1)
    videos = [
        (
            entry(f"c/{name}", label=name[0]),
            rng.random((3 + i, 8), np.float32),
            np.arange(3 + i) / 5,
        )
        for i, name in enumerate(["b-1.mp4", "a/x.mp4", "a%b.mp4", "Été.mkv"])
    ]
    write_schema1(old, SETTINGS8, videos)
    before = old.read_bytes()
    with CacheReader(old) as reader:
        assert reader.schema_version == 1
        order = list(reader.entries())
        expected = {
            v: (reader.features(v), reader.timestamps(v), reader.entries()[v]) for v in order
        }
    new = tmp_path / "new.h5"
    report = maintenance.migrate(old, new)
    assert report.videos == 4 and old.read_bytes() == before
    with CacheReader(new) as reader:
        assert reader.schema_version == 3 and reader.settings == SETTINGS8
        assert list(reader.entries()) == order  # same order: same splits, same training
        for video_id, (x, t, e) in expected.items():
            np.testing.assert_array_equal(reader.features(video_id), x)
            np.testing.assert_array_equal(reader.timestamps(video_id), t)
            assert reader.entries()[video_id] == e
    with pytest.raises(CacheFormatError, match="schema 1 cache; upgrade it with 'vidcache migrate"):
        FeatureCache.open(old, SETTINGS8, {})
    maintenance.migrate(old)  # in place
    with CacheReader(old) as reader:
        assert reader.schema_version == 3 and list(reader.entries()) == order


def test_nan_duration_and_unicode_survive(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureCache.open(path, SETTINGS8, {}) as cache:
        write(
            cache,
            entry("Été/çà 1.mkv", duration=math.nan, label="Été"),
            np.zeros((1, 8), np.float32),
        )
    with CacheReader(path) as reader:
        got = reader.entries()["Été/çà 1.mkv"]
    assert math.isnan(got.duration) and got.label == "Été"


def test_not_a_cache_files_are_refused_with_the_reason(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"hello")
    with pytest.raises(CacheFormatError, match="junk.h5 is not a readable HDF5 file"):
        CacheReader(junk)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(CacheFormatError, match="not a vidcache feature cache \\(format=None\\)"):
        CacheReader(other)
    future = tmp_path / "future.h5"
    with FeatureCache.open(future, SETTINGS, {}):
        pass
    with h5py.File(future, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(CacheFormatError, match="schema version 99; this vidcache reads versions 1"):
        CacheReader(future)
    with pytest.raises(CacheFormatError, match="no such cache file"):
        CacheReader(tmp_path / "missing.h5")


def test_lock_refuses_a_second_writer_in_another_process(tmp_path):
    path = tmp_path / "f.h5"
    with CacheLock(path):
        code = textwrap.dedent(f"""
            from vidcache.features.cache import CacheLock
            from vidcache.features.errors import CacheLocked
            try:
                CacheLock({str(path)!r}).acquire()
            except CacheLocked as exc:
                print(exc)
        """)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip().startswith("f.h5 is being written by another vidcache run (pid ")
    with CacheLock(path):  # released: free again
        pass


def test_lock_is_not_reentrant_across_handles(tmp_path):
    path = tmp_path / "f.h5"
    with CacheLock(path):
        with pytest.raises(CacheLocked):
            CacheLock(path).acquire()


def test_many_videos_are_read_in_blocks_and_checked(tmp_path, monkeypatch):
    from vidcache.features.cache import rows

    monkeypatch.setattr(rows, "BLOCK_ROWS", 5)  # several blocks, some videos across chunks
    path = tmp_path / "f.h5"
    rng = np.random.default_rng(3)
    rows = {f"v{i}": rng.random((1 + i % 4, 8), dtype=np.float32) for i in range(12)}
    with FeatureCache.open(path, SETTINGS8, {}) as cache:
        for video_id, x in rows.items():
            write(cache, entry(video_id), x)
        write(cache, entry("v3"), np.ones((2, 8), np.float32))  # a replaced one: a gap
        rows["v3"] = np.ones((2, 8), np.float32)
    with CacheReader(path) as reader:
        wanted = ["v7", "v3", "v0", "v11", "v5"]
        got = reader.features_many(wanted)
        assert set(got) == set(wanted)
        for video_id in wanted:
            np.testing.assert_array_equal(got[video_id], rows[video_id])
        with pytest.raises(KeyError, match="'nope' is not in"):
            reader.features_many(["v1", "nope"])
