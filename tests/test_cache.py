import json
import math
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vidcache.features.buffer import FeatureBuffer
from vidcache.features.cache import (
    SCHEMA_VERSION,
    CacheEntry,
    CacheLock,
    CacheReader,
    FeatureCache,
    decode_key,
    encode_key,
    read_settings,
)
from vidcache.features.errors import CacheFormatError, CacheLocked
from vidcache.features.settings import FeatureSettings

SETTINGS = FeatureSettings(weights="random:seed=0", weights_sha256="ab" * 32, image_size=75)


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


def write(cache, video, rows, dtype="float32"):
    """Commit ``rows`` through a spilling buffer, as the pipeline does."""
    with FeatureBuffer(rows.shape[1], spill_rows=2) as buffer:
        for i, row in enumerate(rows):
            buffer.append(row, i * 0.2, i * 2)
        cache.write_video(video, buffer, dtype)


@given(st.text(min_size=1).filter(lambda s: s not in (".", "..")))
def test_keys_round_trip_and_never_contain_a_slash(video_id):
    key = encode_key(video_id)
    assert "/" not in key and decode_key(key) == video_id


def test_write_then_read_back_with_provenance(tmp_path):
    path = tmp_path / "f.h5"
    rows = np.random.default_rng(0).random((5, 2048), dtype=np.float32)
    with FeatureCache.open(path, SETTINGS, {"keras": "3"}) as cache:
        write(cache, entry(), rows, "float32")
        write(cache, entry("B/x.mp4", label=""), rows[:2], "float32")
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
    with FeatureCache.open(path, SETTINGS, {}) as cache:
        write(cache, entry(), np.ones((3, 2048), np.float32), "float16")
    # The recipe in docs/cache-format.md:
    with h5py.File(path, "r") as f:
        settings = json.loads(f.attrs["settings"])
        for key, video in f["videos"].items():
            features = video["features"][()]
            label = video.attrs["label"]
    assert settings["image_size"] == 75 and f"{SCHEMA_VERSION}" == "1"
    assert features.shape == (3, 2048) and features.dtype == np.float16 and label == "A"
    assert key == "A%2Fclip one.mp4"


def test_replacing_a_video_keeps_one_copy(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureCache.open(path, SETTINGS, {}) as cache:
        write(cache, entry(), np.zeros((4, 8), np.float32), "float32")
        write(cache, entry(fingerprint="sha256:11"), np.ones((2, 8), np.float32), "float32")
        entries = cache.entries()
    assert list(entries) == ["A/clip one.mp4"] and entries["A/clip one.mp4"].num_frames == 2


def test_incomplete_group_is_ignored_by_readers_and_removed_by_writers(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureCache.open(path, SETTINGS, {}) as cache:
        write(cache, entry(), np.zeros((2, 8), np.float32), "float32")
    with h5py.File(path, "r+") as f:  # what a torn commit could leave: no attributes yet
        f["videos"].create_group("half").create_dataset("features", data=np.zeros((3, 8)))
    with CacheReader(path) as reader:
        assert list(reader.entries()) == ["A/clip one.mp4"]
    with FeatureCache.open(path, SETTINGS, {}) as cache:
        assert list(cache.entries()) == ["A/clip one.mp4"]
    with h5py.File(path, "r") as f:
        assert "half" not in f["videos"]


def test_nan_duration_and_unicode_survive(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureCache.open(path, SETTINGS, {}) as cache:
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
    with pytest.raises(CacheFormatError, match="schema version 99; this vidcache reads version 1"):
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
