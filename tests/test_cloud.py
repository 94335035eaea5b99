"""Videos in a bucket: an S3-compatible server on 127.0.0.1 (moto's server mode, started and
stopped by this module, checking credentials and policies as S3 does).

Listing with class-folder labels, change detection by size and ETag, a CSV of URLs, and
the failures (a denied object, a missing prefix, wrong keys): one line each, the rest goes
on, nothing written, no credential shown.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, lossless, random_frames

from vidcache.features.cache import CacheReader
from vidcache.features.settings import SamplingSpec

fsspec = pytest.importorskip("fsspec")
pytest.importorskip("s3fs")
pytest.importorskip("moto")

BUCKET = "vids"
DENIED = f"arn:aws:s3:::{BUCKET}/locked/c0/locked.mkv"
ARGS = ["--weights", "random", "--seed", "0", "--image-size", str(SMALL)]
ARGS += ["--batch-size", "4", "--fps", "0", "-q"]


@pytest.fixture(scope="module")
def s3():
    """The server, its keys in this process's environment (restored afterwards)."""
    from vidcache.features.remote.loopback import s3_server

    with s3_server(auth=True, deny=(DENIED,)) as server:
        saved = {k: os.environ.get(k) for k in server.environment()}
        os.environ.update(server.environment())
        try:
            fs = fsspec.filesystem("s3", skip_instance_cache=True)
            fs.mkdir(BUCKET)
            yield server
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def store():
    return fsspec.filesystem("s3", skip_instance_cache=True)


def upload(folder: Path, prefix: str) -> str:
    store().put(str(folder) + "/", f"{BUCKET}/{prefix}/", recursive=True)
    return f"s3://{BUCKET}/{prefix}/"


@pytest.fixture
def clips(tmp_path):
    root = tmp_path / "clips"
    for clip in range(4):
        lossless(root / f"c{clip % 2}" / f"clip_{clip}.mkv", random_frames(6, seed=clip))
    return root


def test_a_bucket_extracts_as_the_local_folder_and_reruns_by_etag(
    s3, tmp_path, clips, run_extract, small_config
):
    url = upload(clips, "same")
    config = small_config(sampling=SamplingSpec(fps=None))
    local, remote = tmp_path / "local.h5", tmp_path / "remote.h5"
    run_extract([clips], local, config)
    summary = run_extract([url], remote, config)
    assert [o.status for o in summary.outcomes] == ["extracted"] * 4
    with CacheReader(local) as a, CacheReader(remote) as b:
        assert list(a.entries()) == list(b.entries()) == [
            "c0/clip_0.mkv", "c0/clip_2.mkv", "c1/clip_1.mkv", "c1/clip_3.mkv"
        ]  # fmt: skip
        for video_id, entry in b.entries().items():
            assert np.array_equal(a.features(video_id), b.features(video_id))
            assert entry.label == a.entries()[video_id].label == video_id[:2]
            assert entry.path == f"{url}{video_id}"
            assert entry.fingerprint.startswith("etag:")  # the store's version, recorded
            assert entry.size == a.entries()[video_id].size
    # Nothing changed: nothing read. One object rewritten with new content: it alone.
    assert {o.status for o in run_extract([url], remote, config).outcomes} == {"cached"}
    lossless(tmp_path / "new.mkv", random_frames(6, seed=99))
    store().put_file(str(tmp_path / "new.mkv"), f"{BUCKET}/same/c1/clip_3.mkv")
    summary = run_extract([url], remote, config)
    assert {o.video_id: o.status for o in summary.outcomes}["c1/clip_3.mkv"] == "extracted"
    assert sum(o.status == "cached" for o in summary.outcomes) == 3
    # An object deleted from the bucket is pruned like a deleted file.
    store().rm(f"{BUCKET}/same/c0/clip_0.mkv")
    summary = run_extract([url], remote, small_config(sampling=SamplingSpec(fps=None), prune=True))
    assert summary.pruned == 1
    with CacheReader(remote) as reader:
        assert "c0/clip_0.mkv" not in reader.entries()


def test_a_csv_of_urls_lists_videos_and_labels_csvs_match_urls(
    s3, tmp_path, clips, run_extract, small_config
):
    url = upload(clips, "listed")
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,label,note\n{url}c0/clip_0.mkv,walk,a\nc1/clip_1.mkv,run,b\n")
    store().put_file(str(listing), f"{BUCKET}/listed/list.csv")
    out = tmp_path / "f.h5"
    config = small_config(sampling=SamplingSpec(fps=None))
    summary = run_extract([f"{url}list.csv"], out, config)
    assert sorted(o.status for o in summary.outcomes) == ["extracted", "extracted"]
    with CacheReader(out) as reader:
        entries = reader.entries()
    assert entries[f"{BUCKET}/listed/c0/clip_0.mkv"].label == "walk"
    assert entries["c1/clip_1.mkv"].label == "run"
    assert entries["c1/clip_1.mkv"].path == f"{url}c1/clip_1.mkv"

    from vidcache.features.video.discover import apply_labels, discover

    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,label\n{url}c0/clip_2.mkv,jump\n")
    sources, unmatched = apply_labels(discover([url]), labels)
    assert unmatched == []
    assert {s.video_id: s.label for s in sources}["c0/clip_2.mkv"] == "jump"


def extract_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "vidcache", "extract", *args, *ARGS],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, **(env or {})),
    )


def test_denied_object_missing_prefix_and_wrong_keys_are_one_line_each(s3, tmp_path, clips):
    lossless(clips / "c0" / "locked.mkv", random_frames(6, seed=7))
    url = upload(clips, "locked")
    out = tmp_path / "f.h5"
    result = extract_cli(url, f"s3://{BUCKET}/no-such-prefix/", "-o", str(out))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "rror" in line]
    assert errors == [
        f"Error: s3://{BUCKET}/no-such-prefix/: cannot be listed: no such object or prefix"
    ]
    assert f"{url}c0/locked.mkv: cannot be read from the store: access denied" in result.stderr
    assert "4 extracted, 0 already cached, 1 failed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    with CacheReader(out) as reader:
        assert len(reader.entries()) == 4  # the rest went on
    for secret in (s3.secret,):
        assert secret not in result.stdout + result.stderr
        assert secret.encode() not in out.read_bytes()

    # Wrong keys: one line, no cache made, the key shown nowhere.
    wrong = tmp_path / "wrong.h5"
    result = extract_cli(url, "-o", str(wrong), env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and lines[0].startswith(f"Error: {url}: cannot be listed: access denied")
    assert "not-the-secret" not in result.stdout + result.stderr and not wrong.exists()
    # No keys at all: said so.
    bare = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    result = extract_cli(url, "-o", str(wrong), env=bare)
    assert result.returncode == 1 and not wrong.exists()
    assert "Traceback" not in result.stderr


def test_hostile_keys_are_ids_never_paths(s3, tmp_path, clips, monkeypatch):
    """Keys with ``..`` segments, backslashes and odd characters; a cache object named to
    climb: every key is data (an id, a label), nothing is written outside the output, the
    copies folder and the temporary folder."""
    import boto3
    from click.testing import CliRunner
    from hostile import changed_outside, tree

    from vidcache.pipeline.cli import cli

    client = boto3.client("s3")
    body = (clips / "c0" / "clip_0.mkv").read_bytes()
    keys = ["hostile/../../escape.mkv", "hostile/..\\up.mkv", "hostile/a b/\u00e9t\u00e9 ?.mkv",
            "hostile/.../dots.mkv", "hostile/c1/%2e%2e%2fx.mkv"]  # fmt: skip
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    client.put_object(Bucket=BUCKET, Key="caches/..", Body=b"not a cache")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("VIDCACHE_REMOTE_CACHE", str(work / "copies"))
    monkeypatch.setenv("VIDCACHE_DOWNLOAD_DIR", str(work / "tmp"))
    (work / "tmp").mkdir()
    before = tree(tmp_path)
    out = work / "f.h5"
    result = CliRunner().invoke(cli, ["extract", f"s3://{BUCKET}/hostile/", "-o", str(out), *ARGS])
    assert result.exit_code in (0, 1) and "Traceback" not in result.output, result.output
    with CacheReader(out) as reader:
        ids = set(reader.entries())
    assert ids  # what s3fs lists of them is extracted under its key, whatever its text
    assert all(not i.startswith("/") for i in ids)
    result = CliRunner().invoke(cli, ["inspect", f"s3://{BUCKET}/caches/.."])
    assert result.exit_code == 1 and result.output.count("Error:") == 1, result.output
    result = CliRunner().invoke(
        cli, ["train-rnn", f"s3://{BUCKET}/caches/..", "-o", str(work / "run"), "-q"]
    )
    assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
    assert changed_outside(before, tree(tmp_path), ["work"]) == []
    assert list((work / "tmp").iterdir()) == []  # every local copy removed


def test_a_full_download_disk_is_one_line_per_video_and_keeps_what_was_done(
    s3, tmp_path, small_disk, monkeypatch, run_extract, small_config
):
    """Local copies go to a real 8 MiB disk: a video that does not fit is one failed video
    (said why), the others are extracted, the cache is whole."""
    folder = tmp_path / "sizes"
    lossless(folder / "c0" / "small.mkv", random_frames(4, seed=1))
    (folder / "c0" / "big.mkv").write_bytes(os.urandom(12 << 20))  # no room for its copy
    url = upload(folder, "sizes")
    monkeypatch.setenv("VIDCACHE_DOWNLOAD_DIR", str(small_disk))
    out = tmp_path / "f.h5"
    summary = run_extract([url], out, small_config(sampling=SamplingSpec(fps=None)))
    outcome = {o.video_id: o for o in summary.outcomes}
    assert outcome["c0/small.mkv"].status == "extracted"
    assert outcome["c0/big.mkv"].status == "failed"
    assert outcome["c0/big.mkv"].reason.startswith("no room for a local copy of 12 MiB in ")
    assert "set VIDCACHE_DOWNLOAD_DIR" in outcome["c0/big.mkv"].reason
    with CacheReader(out) as reader:
        assert list(reader.entries()) == ["c0/small.mkv"]
    assert list(small_disk.iterdir()) == []  # the copy of the small one was removed


def test_a_shard_replaced_by_another_run_is_not_overwritten(s3, tmp_path):
    """Two runs on one bucket output: a staged shard whose remote changed since it was
    staged is kept staged (one note), the other run's shard stays as it was."""
    from vidcache.pipeline.extraction.bucket import _upload_one
    from vidcache.pipeline.extraction.outcomes import Reporter

    notes = []

    class Notes(Reporter):
        def note(self, text: str) -> None:
            notes.append(text)

    url = f"s3://{BUCKET}/race/"
    name = "shard-00000-of-00001.h5"
    store().pipe(f"{BUCKET}/race/{name}", b"the other run's shard")
    staged = tmp_path / name
    staged.write_bytes(b"this run's shard")
    (tmp_path / (name + ".base")).write_text("etag:what-it-was-when-staged")
    fs = store()
    assert _upload_one(fs, url, staged, Notes()) is False
    assert store().cat(f"{BUCKET}/race/{name}") == b"the other run's shard"
    assert staged.exists() and "was replaced by another run" in notes[0]
    # Staged from what is there now: uploaded whole, and the stage emptied.
    version = "etag:" + store().info(f"{BUCKET}/race/{name}")["ETag"].strip('"')
    (tmp_path / (name + ".base")).write_text(version)
    assert _upload_one(fs, url, staged, Notes()) is True
    assert store().cat(f"{BUCKET}/race/{name}") == b"this run's shard"
    assert not staged.exists() and not (tmp_path / (name + ".base")).exists()


def test_without_the_cloud_extra_a_url_says_what_to_install(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from vidcache.features.remote import urls
    from vidcache.pipeline.cli import cli

    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "fsspec.core", None)
    monkeypatch.setattr(urls, "_FILE_SYSTEMS", {})
    out = tmp_path / "f.h5"
    result = CliRunner().invoke(cli, ["extract", "gs://bucket/videos/", "-o", str(out), *ARGS])
    assert result.exit_code == 1 and not out.exists()
    assert result.output.splitlines()[0] == (
        "Error: gs://bucket/videos/: reading a URL needs fsspec; install it with "
        "pip install 'vidcache[cloud-gcs]'"
    )
    assert "Traceback" not in result.output
