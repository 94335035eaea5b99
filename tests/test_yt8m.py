"""YouTube-8M frame-level TFRecords: import exactly, refuse what is not frame-level,
resume, and train a fused multi-label run on the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vidcache.features.cache import CacheReader
from vidcache.features.yt8m import write_records
from vidcache.pipeline.cli import cli


def yt8m_videos(count: int, seed: int, seconds=(3, 9), noise: int = 120):
    """Videos whose 8-bit rows carry their labels: label k raises rgb byte k and audio
    byte k for the video's whole length; the other bytes are noise in [0, ``noise``)."""
    rng = np.random.default_rng(seed)
    videos = []
    for n in range(count):
        t = int(rng.integers(*seconds))
        labels = sorted(rng.choice(4, size=int(rng.integers(1, 3)), replace=False).tolist())
        rgb = rng.integers(0, noise, size=(t, 1024), dtype=np.uint8)
        audio = rng.integers(0, noise, size=(t, 128), dtype=np.uint8)
        rgb[:, labels], audio[:, labels] = 250, 250
        videos.append((f"Yt{seed}{n:03d}", labels, rgb, audio))
    return videos


def test_import_is_exact_refuses_bad_records_and_resumes(tmp_path):
    import tensorflow as tf

    good = yt8m_videos(5, seed=1)
    write_records(tmp_path / "a.tfrecord", good[:3])
    write_records(tmp_path / "b.tfrecord", good[3:])
    # Damaged and foreign records beside good ones: a video-level Example, a record whose
    # frame has the wrong size, garbage bytes, and a file cut short.
    level = tf.train.Example()
    level.features.feature["id"].bytes_list.value.append(b"Vid0")
    level.features.feature["mean_rgb"].float_list.value.extend([0.0] * 1024)
    short = [("Bad0", [1], np.zeros((2, 1000), np.uint8), np.zeros((2, 128), np.uint8))]
    write_records(tmp_path / "c.tfrecord", short)
    with tf.io.TFRecordWriter(str(tmp_path / "d.tfrecord")) as writer:
        writer.write(level.SerializeToString())
        writer.write(b"\x08\x96\x01 not a protobuf")
    cut = tmp_path / "e.tfrecord"
    write_records(cut, yt8m_videos(2, seed=9))
    cut.write_bytes(cut.read_bytes()[:-50])
    (tmp_path / "vocabulary.csv").write_text("Index,TrainVideoCount,Name\n0,9,Dog\n2,4,Car\n")
    files = [str(tmp_path / f"{c}.tfrecord") for c in "abcde"]
    vocabulary = str(tmp_path / "vocabulary.csv")
    args = [
        "import",
        "--format",
        "yt8m",
        *files,
        "-o",
        str(tmp_path / "out"),
        "--vocabulary",
        vocabulary,
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output  # some records were skipped, named
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped ")]
    assert any("c.tfrecord record 1: Bad0: a 'rgb' frame is not 1024 bytes" in s for s in skipped)
    assert any("d.tfrecord record 1: a video-level record" in s for s in skipped)
    assert any("d.tfrecord record 2: " in s for s in skipped)
    assert any("e.tfrecord: damaged after record 1" in s for s in skipped), skipped
    assert "imported 6 videos" in result.output  # a, b, and e's first record
    for part, width in (("rgb", 1024), ("audio", 128)):
        with CacheReader(tmp_path / "out" / f"{part}.h5") as cache:
            assert cache.settings.backbone == f"yt8m-{part}" and cache.settings.feature_dim == width
            for video_id, labels, rgb, audio in good:
                q = rgb if part == "rgb" else audio
                x = cache.features(video_id)
                np.testing.assert_array_equal(x, q.astype(np.float32) * (4 / 255) + 4 / 512 - 2)
                np.testing.assert_array_equal(cache.timestamps(video_id), np.arange(len(q)))
                names = {0: "Dog", 2: "Car"}
                entry = cache.entries()[video_id]
                assert entry.label == ";".join(names.get(i, str(i)) for i in labels)
    again = CliRunner().invoke(cli, args[:5] + ["-o", str(tmp_path / "out")])
    assert "imported 0 videos" in again.output and "5 already imported" in again.output
    refused = CliRunner().invoke(cli, ["import", "--format", "yt8m", str(tmp_path / "d.tfrecord"),
                                       "-o", str(tmp_path / "none")])  # fmt: skip
    assert refused.exit_code == 1 and "no frame-level record could be imported" in refused.output
    # -o keeps its meaning per format: a cache file for npy (as before), a folder for yt8m.
    usage = {
        ("--format", "yt8m", files[0], "-o", vocabulary): "--format yt8m writes a folder",
        (str(tmp_path), "-o", str(tmp_path / "out"), "--fps", "1"): "npy writes a cache file",
        (files[0], "-o", str(tmp_path / "x.h5")): "--format npy imports one folder",
        (
            str(tmp_path),
            "-o",
            str(tmp_path / "x.h5"),
            "--shard",
            "0/2",
        ): "--shard needs --format yt8m",
    }
    for extra, message in usage.items():
        result = CliRunner().invoke(cli, ["import", *extra])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_imported_rgb_and_audio_train_a_fused_multilabel_run(tmp_path):
    # Noise in 1,148 of 1,152 dimensions would be memorised by any model from 64 videos:
    # here the other bytes are constant, so what is learnt is the labels' bytes.
    write_records(tmp_path / "train.tfrecord", yt8m_videos(80, seed=2, noise=1))
    records = str(tmp_path / "train.tfrecord")
    result = CliRunner().invoke(
        cli, ["import", "--format", "yt8m", records, "-o", str(tmp_path / "yt8m")]
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train-rnn", str(tmp_path / "yt8m" / "rgb.h5"), str(tmp_path / "yt8m" / "audio.h5"),
        "--fuse", "--task", "multilabel", "-o", str(run), "--head", "mean", "--epochs", "40",
        "-q",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["map"] > 0.9 and metrics["videos"] == 16, metrics  # chance: about 0.4
