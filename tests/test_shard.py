"""Shards any scheduler can run, and merging them back."""

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL
from test_train import SETTINGS, write_cache

from vidcache.features.cache import CacheReader
from vidcache.features.cache.maintenance import DuplicateVideo, merge
from vidcache.features.errors import SettingsMismatch
from vidcache.features.settings import FeatureSettings
from vidcache.features.shard import ShardError, parse_shard, select_shard, shard_of
from vidcache.features.video.discover import VideoSource
from vidcache.pipeline.cli import cli

FAST = ["--weights", "random", "--image-size", str(SMALL), "--batch-size", "4", "-q"]
PINNED = [4, 1, 4, 3, 4, 4, 4, 1]


def test_shards_partition_the_ids_stably():
    assert parse_shard("3/16") == (3, 16)
    for bad in ("16/16", "-1/4", "a/b", "3", "1/0"):
        with pytest.raises(ShardError, match="--shard"):
            parse_shard(bad)
    ids = [f"class{i % 7}/v_{i:04d}.avi" for i in range(400)]
    sources = [VideoSource(f"/d/{v}", v) for v in ids]
    shares = [select_shard(sources, k, 4) for k in range(4)]
    assert sorted(s.video_id for share in shares for s in share) == sorted(ids)
    assert all(60 < len(share) < 140 for share in shares)  # roughly even
    # adding videos moves none of the others: the shard depends on the id alone
    assert shard_of("class0/v_0000.avi", 4) == shard_of("class0/v_0000.avi", 4)
    assert [shard_of(v, 4) for v in ids[:8]] == [
        shard_of(v, 4) for v in ([*ids[:8], "new/x.avi"])[:8]
    ]
    # pinned: a change of the hash would move videos between the shards of running jobs
    assert shard_of("UCF101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 16) == 0
    assert [shard_of(f"v{i}", 5) for i in range(8)] == PINNED


def test_extracting_in_shards_and_merging_equals_one_run(tmp_path, dataset):
    whole = tmp_path / "whole.h5"
    assert (
        CliRunner().invoke(cli, ["extract", str(dataset), "-o", str(whole), *FAST]).exit_code == 0
    )
    shards = tmp_path / "shards"
    for k in range(2):
        part = str(shards / f"part-{k}.h5")
        result = CliRunner().invoke(
            cli, ["extract", str(dataset), "-o", part, "--shard", f"{k}/2", *FAST]
        )
        assert result.exit_code == 0, result.output
    merged = tmp_path / "merged.h5"
    result = CliRunner().invoke(cli, ["merge", str(shards), "-o", str(merged)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{merged}: 4 videos from 2 caches, ")
    with CacheReader(whole) as one, CacheReader(merged) as two:
        assert list(one.entries()) == list(two.entries()) and one.settings == two.settings
        for video_id in one.entries():
            np.testing.assert_allclose(two.features(video_id), one.features(video_id), atol=1e-5)
    result = CliRunner().invoke(cli, ["merge", str(shards), "-o", str(merged)])
    assert result.exit_code == 1 and "exists; merge into a new file" in result.output


def test_merge_refuses_other_settings_and_conflicting_duplicates(tmp_path):
    x = np.ones((3, 8), np.float32)
    a = write_cache(tmp_path / "a.h5", {"v1": ("up", x), "v2": ("down", x)})
    b = write_cache(tmp_path / "b.h5", {"v2": ("down", x), "v3": ("up", x)})  # v2: same content
    report = merge([a, b], tmp_path / "ab.h5")
    assert report.videos == 3 and report.feature_bytes == 3 * x.nbytes
    other = FeatureSettings(weights="imagenet", weights_sha256="cd" * 32, feature_dim=8)
    c = write_cache(tmp_path / "c.h5", {"v4": ("up", x)}, other)
    with pytest.raises(SettingsMismatch, match="only caches of one kind can be merged"):
        merge([a, c], tmp_path / "ac.h5")
    d = tmp_path / "d.h5"
    write_cache(d, {"v1": ("up", 2 * x)}, SETTINGS)
    from vidcache.features.cache import CacheLock, FeatureCache

    with CacheLock(d), FeatureCache.open(d, SETTINGS, {}) as cache:  # other content for v1
        entry = cache.entries()["v1"]
        entry.fingerprint = "sha256:other"
        cache.write_rows(entry, 2 * x, np.arange(3) / 5, np.arange(3))
    with pytest.raises(DuplicateVideo, match="'v1' is in .* with different content"):
        merge([a, d], tmp_path / "ad.h5")
    assert not (tmp_path / "ac.h5").exists() and not (tmp_path / "ad.h5").exists()


def test_evaluate_and_inspect_read_a_folder_of_shards_as_one_dataset(tmp_path):
    import json

    from test_train import ordered_videos

    from vidcache.pipeline.training import TrainConfig, train_rnn

    videos = ordered_videos(per_class=3, seed=5)
    shards = tmp_path / "shards"
    for k in range(2):
        share = {v: videos[v] for v in videos if shard_of(v, 2) == k}
        write_cache(shards / f"part-{k}.h5", share)
    whole = write_cache(tmp_path / "whole.h5", videos)
    train_rnn([whole], tmp_path / "run", TrainConfig(units=4, epochs=1, verbose=0))

    metrics = {}
    for name, target in (("folder", shards), ("whole", whole)):
        result = CliRunner().invoke(
            cli, ["evaluate", str(tmp_path / "run"), str(target), "-o", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert metrics["folder"]["examples"] == metrics["whole"]["examples"] == len(videos)
    assert metrics["folder"]["top1"] == metrics["whole"]["top1"]
    assert metrics["folder"]["confusion"] == metrics["whole"]["confusion"]
    assert len(metrics["folder"]["cache"]) == 2

    result = CliRunner().invoke(cli, ["inspect", str(shards), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    with CacheReader(whole) as reader:
        assert summary["videos"] == len(reader.entries()) == len(videos)
    assert summary["path"] == f"2 caches in {shards}" and len(summary["caches"]) == 2
    result = CliRunner().invoke(cli, ["inspect", str(shards)])
    assert result.output.startswith(f"2 caches in {shards}: vidcache feature cache, schema 3")

    other = FeatureSettings(weights="imagenet", weights_sha256="cd" * 32, feature_dim=8)
    write_cache(shards / "stranger.h5", {"x": ("up", np.ones((3, 8), np.float32))}, other)
    result = CliRunner().invoke(cli, ["inspect", str(shards)])
    assert result.exit_code == 1 and "they are not one dataset" in result.output


def test_extract_like_a_cache_or_a_run_copies_its_settings(tmp_path):
    import json

    from conftest import lossless, random_frames

    from vidcache.features.cache import read_settings

    old, new = tmp_path / "old", tmp_path / "new"
    lossless(old / "a" / "one.mkv", random_frames(6, seed=1))
    lossless(new / "b" / "two.mkv", random_frames(6, seed=2))
    first = ["extract", str(old), "-o", str(tmp_path / "old.h5"), "--weights", "random"]
    first += ["--seed", "3", "--image-size", str(SMALL), "--num-frames", "4", "-q"]
    first += ["--dtype", "float16", "--resize", "stretch"]
    assert CliRunner().invoke(cli, first).exit_code == 0
    like = ["extract", str(new), "-o", str(tmp_path / "new.h5"), "--like", str(tmp_path / "old.h5")]
    result = CliRunner().invoke(cli, [*like, "-q"])
    assert result.exit_code == 0, result.output
    copied = read_settings(tmp_path / "new.h5")
    assert copied.differences(read_settings(tmp_path / "old.h5")) == []
    with CacheReader(tmp_path / "new.h5") as reader:
        assert reader.entries()["b/two.mkv"].num_frames == 4

    run = tmp_path / "run"  # a run folder: its config.json records the feature settings
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"feature_settings": copied.to_dict()}))
    again = ["extract", str(new), "-o", str(tmp_path / "run.h5"), "--like", str(run), "-q"]
    assert CliRunner().invoke(cli, again).exit_code == 0
    assert read_settings(tmp_path / "run.h5").differences(copied) == []

    other = dict(copied.to_dict(), weights_sha256="ab" * 32)  # other weights, same name
    (run / "config.json").write_text(json.dumps({"feature_settings": other}))
    again[3] = str(tmp_path / "other.h5")
    result = CliRunner().invoke(cli, again)
    assert result.exit_code == 1 and "not abababababab as the cache or run to copy" in result.output
    result = CliRunner().invoke(cli, [*like, "--image-size", "99"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1].endswith("sets the feature settings; drop --image-size")
    result = CliRunner().invoke(cli, [*like[:4], "-o", str(tmp_path / "x.h5"), "--like", str(new)])
    assert result.exit_code == 1 and "is not a vidcache run" in result.output


def test_folder_fps_matters_only_where_folders_of_frames_are(tmp_path):
    """--folder-fps cannot change the features of video files: caches of files that differ
    only in it are one kind; with folders of frames on both sides they are not."""
    from dataclasses import replace

    from conftest import lossless, random_frames
    from test_train import ordered_videos

    from vidcache.features.cache.entry import CacheEntry
    from vidcache.features.synthetic import write_frame_folder
    from vidcache.models.data import open_caches
    from vidcache.pipeline.training import TrainConfig, evaluate_run, train_rnn

    five = replace(SETTINGS, folder_fps=5.0)
    files = write_cache(tmp_path / "files5.h5", ordered_videos(per_class=3), five)
    other = write_cache(tmp_path / "files25.h5", ordered_videos(per_class=2, seed=4))  # 25
    train_rnn([files], tmp_path / "run", TrainConfig(units=4, epochs=1, verbose=0))
    metrics, _ = evaluate_run(tmp_path / "run", other)  # refused before this change
    assert metrics["examples"] == 6
    readers, settings = open_caches([files, other])
    assert settings == five
    for reader in readers:
        reader.close()
    assert merge([files, other], tmp_path / "merged.h5").videos == 9  # 6 ids in both

    # A cache holding a folder of frames at another rate is still another kind.
    with_folder = write_cache(tmp_path / "folder.h5", ordered_videos(per_class=1, seed=7))
    from vidcache.features.cache import CacheLock, FeatureCache

    with CacheLock(with_folder), FeatureCache.open(with_folder, SETTINGS, {}) as cache:
        entry = CacheEntry("f/frames", "/v/f/frames", "up", "frames", 1, 0.0, "sha256:f", 3, 25.0)
        cache.write_rows(entry, np.ones((3, 8), np.float32), np.arange(3) / 25, np.arange(3))
    folder_five = write_cache(tmp_path / "folder5.h5", ordered_videos(per_class=1, seed=8), five)
    with CacheLock(folder_five), FeatureCache.open(folder_five, five, {}) as cache:
        entry = CacheEntry("g/frames", "/v/g/frames", "up", "frames", 1, 0.0, "sha256:g", 3, 5.0)
        cache.write_rows(entry, np.ones((3, 8), np.float32), np.arange(3) / 5, np.arange(3))
    with pytest.raises(SettingsMismatch, match="folder_fps"):
        open_caches([with_folder, folder_five])
    with pytest.raises(SettingsMismatch, match="folder_fps"):
        evaluate_run(tmp_path / "run", with_folder)  # the run's rate was 5

    # extract: a run over video files ignores --folder-fps; one over folders does not.
    videos = tmp_path / "videos"
    lossless(videos / "a" / "one.mkv", random_frames(3, seed=1))
    base = ["extract", str(videos), "-o", str(tmp_path / "x.h5"), *FAST]
    assert CliRunner().invoke(cli, [*base, "--folder-fps", "5"]).exit_code == 0
    lossless(videos / "a" / "two.mkv", random_frames(3, seed=2))
    result = CliRunner().invoke(cli, base)  # default --folder-fps 25
    assert result.exit_code == 0, result.output
    write_frame_folder(videos / "b" / "clip", random_frames(3, seed=3))
    result = CliRunner().invoke(cli, base)
    assert result.exit_code == 1 and "folder_fps: 5.0 != 25.0" in result.output
