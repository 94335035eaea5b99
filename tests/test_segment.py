"""``--task segment``: segments CSV, heads (MS-TCN, LSTM, per-frame baseline), metrics,
evaluate, predict and streams, on cached features whose phases are known per frame."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_train import DIM, write_cache

from vidcache.models.annotations import AnnotationError
from vidcache.models.segments import frame_labels, read_segments, runs_in_seconds
from vidcache.pipeline.cli import cli

FPS = 5


def phased_videos(count: int, seed: int):
    """Videos of a square's size per frame: still (background), growing, shrinking, still.
    A size alone does not say whether the square grows or shrinks (both phases pass
    through the same sizes): only the frames around it do, so the per-frame baseline
    cannot tell them apart and a temporal model can.

    Returns:
        ``({video_id: (label, (T, DIM) features)}, [(video_id, start, end, label)])``.
    """
    direction = np.random.default_rng(0).normal(size=DIM)  # the same "camera" for all
    rng = np.random.default_rng(seed)
    videos, rows = {}, []
    for n in range(count):
        still0, grow, shrink, still1 = (int(k) for k in rng.integers([2, 6, 6, 2], [6, 14, 14, 6]))
        top = rng.uniform(0.6, 1.0)
        # Each phase's first frame already moves its way (a causal model can see it).
        sizes = np.concatenate([
            np.full(still0, 0.1), np.linspace(0.1, top, grow + 1)[1:],
            np.linspace(top, 0.1, shrink + 1)[1:], np.full(still1, 0.1),
        ])  # fmt: skip
        x = sizes[:, None] * direction + rng.normal(scale=0.02, size=(len(sizes), DIM))
        video = f"clip{seed}_{n:02d}.mp4"
        videos[video] = ("", x.astype(np.float32))
        rows += [
            (video, still0 / FPS, (still0 + grow) / FPS, "grow"),
            (video, (still0 + grow) / FPS, (still0 + grow + shrink) / FPS, "shrink"),
        ]
    return videos, rows


def write_segments(path, rows, header=True):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(["video", "start", "end", "label"])
        writer.writerows(rows)
    return path


def test_segments_csv_labels_every_frame_and_refuses_what_it_cannot_use(tmp_path):
    path = write_segments(
        tmp_path / "s.csv", [("a.mp4", 0.4, 1.0, "cut"), ("a.mp4", 1.0, 1.2, "mix")]
    )
    table = read_segments(path)
    stamps = np.arange(8) / FPS  # 0, 0.2, ... 1.4
    labels = frame_labels(stamps, table["a.mp4"], "background")
    assert labels == ["background"] * 2 + ["cut"] * 3 + ["mix"] + ["background"] * 2
    runs = runs_in_seconds(labels, stamps, "background")
    assert [label for *_, label in runs] == ["cut", "mix"]
    np.testing.assert_allclose([r[:2] for r in runs], [(0.4, 1.0), (1.0, 1.2)])
    bad = {
        "overlap": ([("a", 0, 2, "x"), ("a", 1, 3, "y")], "lines 2 and 3 overlap"),
        "order": ([("a", 2, 1, "x")], "needs 0 <= start < end"),
        "nan": ([("a", "nan", 1, "x")], "needs 0 <= start < end"),
        "word": ([("a", "zero", 1, "x")], "start and end are seconds"),
        "fields": ([("a", 0, 1)], "needs 'video,start,end,label'"),
        "label": ([("a", 0, 1, "\x00")], "needs 'video,start,end,label'"),
    }
    for name, (rows, message) in bad.items():
        with pytest.raises(AnnotationError, match=message):
            read_segments(write_segments(tmp_path / f"{name}.csv", rows))


@pytest.fixture(scope="module")
def segment_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    train, rows = phased_videos(24, seed=1)
    test, test_rows = phased_videos(8, seed=2)
    return (
        write_cache(root / "train.h5", train), write_segments(root / "train.csv", rows),
        write_cache(root / "test.h5", test), write_segments(root / "test.csv", test_rows), root,
    )  # fmt: skip


def _train(data, name, *options):
    cache, segments, *_, root = data
    run = root / name
    args = ["train-rnn", str(cache), "-o", str(run), "--task", "segment", "--segments",
            str(segments), "--epochs", "60", "--patience", "60", "--batch-size", "8",
            "--lr", "0.01", "-q", *options]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return run, result.output


def _evaluate(data, run):
    _, _, test, test_segments, _ = data
    out = run / "eval"
    result = CliRunner().invoke(
        cli, ["evaluate", str(run), str(test), "--segments", str(test_segments), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_tcn_and_lstm_segment_held_out_clips_that_the_per_frame_baseline_cannot(segment_data):
    from vidcache.pipeline.training import load_run

    tcn, printed = _train(segment_data, "tcn", "--head", "tcn", "--causal", "--stages", "2",
                          "--stage-layers", "4", "--units", "16", "--dropout", "0.1")  # fmt: skip
    assert "segment (tcn) trained" in printed and "F1@10/25/50" in printed
    lstm, _ = _train(segment_data, "lstm", "--units", "32", "--dropout", "0")
    mean, _ = _train(segment_data, "mean", "--head", "mean", "--units", "16", "--dropout", "0")
    figures = {name: _evaluate(segment_data, run) for name, run in
               (("tcn", tcn), ("lstm", lstm), ("mean", mean))}  # fmt: skip
    for name in ("tcn", "lstm"):
        m = figures[name]
        assert m["frame_accuracy"] >= 0.95 and m["f1@50"] >= 0.9, (name, m)
    assert figures["mean"]["frame_accuracy"] < 0.9, figures["mean"]  # grow/shrink: guesses
    assert figures["mean"]["edit"] < figures["lstm"]["edit"]
    validation = json.loads((tcn / "metrics.json").read_text())
    assert {"frame_accuracy", "edit", "f1@10", "f1@25", "f1@50"} <= set(validation)
    assert json.loads((tcn / "labels.json").read_text()) == ["background", "grow", "shrink"]
    assert (tcn / "segments.png").stat().st_size > 0  # true against predicted, validation
    assert (tcn / "eval" / "segments.png").stat().st_size > 0

    # Streams equal offline at every frame: the causal TCN over its receptive field, the
    # LSTM step by step, the per-frame baseline frame by frame.
    from vidcache.pipeline.training.tasks.segment import Segment, frame_probabilities

    x = phased_videos(1, seed=3)[0]["clip3_00.mp4"][1]
    for run_dir in (tcn, lstm, mean):
        run = load_run(run_dir)
        offline = frame_probabilities(run.model, [x])[0]
        stream = Segment.stream(run, None)
        streamed = np.stack([stream.step(row) for row in x])
        np.testing.assert_allclose(streamed, offline, atol=2e-5)
        (predicted,) = Segment.predict(run, [x], [np.arange(len(x)) / FPS], 3, None)
        assert [s[2] for s in predicted["segments"]][:3] == ["background", "grow", "shrink"]


def test_segment_options_are_checked_before_any_work(segment_data, tmp_path):
    cache, segments, *_ = segment_data
    base = ["train-rnn", str(cache), "-o", str(tmp_path / "r"), "--task", "segment",
            "--segments", str(segments)]  # fmt: skip
    cases = {
        ("--stages", "2"): "--stages needs --head tcn",
        ("--head", "tcn", "--bidirectional"): "--bidirectional cannot be used with --task segment",
    }
    for extra, message in cases.items():
        result = CliRunner().invoke(cli, [*base, *extra])
        assert result.exit_code == 2 and message in result.output, result.output
    plain = ["train-rnn", str(cache), "-o", str(tmp_path / "r")]
    for extra, message in {
        ("--head", "tcn"): "--head tcn needs --task segment",
        ("--segments", str(segments)): "--segments needs --task segment",
        ("--causal",): "--causal needs --task segment",
    }.items():
        result = CliRunner().invoke(cli, [*plain, *extra])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "r").exists()


def test_tcn_outputs_ignore_padding_and_the_causal_one_only_the_past(tmp_path):
    import keras

    from vidcache.models.stream import StreamError
    from vidcache.models.tcn import (
        StagewiseLoss,
        build_tcn,
        final_probabilities,
        receptive_field,
        tcn_stream,
    )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 30, DIM)).astype(np.float32)
    padded = np.concatenate([x, np.zeros((1, 9, DIM), np.float32)], axis=1)
    for causal in (False, True):
        keras.utils.set_random_seed(1)
        model = build_tcn(3, np.zeros(DIM), np.ones(DIM), stages=2, layers=3, units=8,
                          causal=causal)  # fmt: skip
        alone = np.asarray(model(x))
        np.testing.assert_allclose(np.asarray(model(padded))[:, :30], alone, atol=1e-5)
        assert alone.shape == (1, 30, 2, 3)
        changed = x.copy()
        changed[0, 20] += 1.0  # a later frame changes
        moved = np.abs(np.asarray(model(changed)) - alone).max(axis=(0, 2, 3)) > 1e-6
        assert moved[:20].any() != causal  # the acausal one looks ahead
    assert receptive_field(model) == 2 * 2 * (1 + 2 + 4) + 1
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), alone, atol=1e-6)
    np.testing.assert_allclose(final_probabilities(alone).sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(StreamError, match="train with --causal"):
        tcn_stream(build_tcn(3, np.zeros(DIM), np.ones(DIM), stages=1, layers=2, units=4))

    # The loss, by hand: cross-entropy of each stage plus 0.15 x the truncated squared
    # change of log-probabilities from the frame before (none at the first frame).
    logits = rng.normal(scale=3, size=(1, 4, 2, 3)).astype(np.float32)
    labels = np.array([[0, 2, 1, 1]])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, labels[:, :, None, None].repeat(2, 2), -1)[..., 0].sum(2)
    smooth = np.minimum((logp[:, 1:] - logp[:, :-1]) ** 2, 16).mean(-1).sum(2)
    expected = ce + 0.15 * np.pad(smooth, [[0, 0], [1, 0]])
    got = np.asarray(StagewiseLoss(0.15).call(labels, logits))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_frame_label_files_label_each_row_by_its_own_frame(tmp_path):
    from test_train import SETTINGS

    from vidcache.features.cache import CacheEntry, CacheReader, FeatureCache
    from vidcache.features.cache.buffer import FeatureBuffer
    from vidcache.pipeline.training import TrainConfig
    from vidcache.pipeline.training.tasks.segment import labelled_frames

    # Two videos sampled every other frame (frame indices 0, 2, 4, ...), as --fps would.
    cache = tmp_path / "f.h5"
    with FeatureCache.open(cache, SETTINGS, {}) as writer:
        for name, rows in (("a.mp4", 4), ("b.mp4", 3)):
            entry = CacheEntry(name, f"/v/{name}", "", "file", 1, 0.0, f"sha256:{name}", rows, 5.0)
            with FeatureBuffer(DIM) as buffer:
                for t in range(rows):
                    buffer.append(np.full(DIM, t + 1.0, np.float32), 2 * t / 10, 2 * t)
                writer.write_video(entry, buffer, "float32")
    labels = tmp_path / "groundTruth"
    labels.mkdir()
    (labels / "a.txt").write_text("\n".join(["pour"] * 3 + ["stir"] * 5) + "\n")
    (labels / "b.txt").write_text("cut\ncut\nmix\n")  # shorter than b's frames
    (labels / "notes.md").write_text("not a label file")
    with CacheReader(cache) as reader:
        examples, rows, notes = labelled_frames([reader], labels, TrainConfig(task="segment"))
    got = {e.video_id: list(r) for e, r in zip(examples, rows)}
    assert got == {"a.mp4": ["pour", "pour", "stir", "stir"], "b.mp4": ["cut", "mix", "background"]}
    assert notes == ["1 frame(s) lie past the end of their label file: background"]

    from vidcache.models.annotations import AnnotationError
    from vidcache.models.segments import read_frame_label_files

    bad = {"empty line": b"cut\n\nmix\n", "not UTF-8": b"\xff\xfe\x00"}
    for name, raw in bad.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        (folder / "v.txt").write_bytes(raw)
        with pytest.raises(AnnotationError, match="v.txt"):
            read_frame_label_files(folder)
    (tmp_path / "planted").mkdir()  # a link to a file outside the folder named
    (tmp_path / "planted" / "v.txt").symlink_to(labels / "a.txt")
    with pytest.raises(AnnotationError, match="outside"):
        read_frame_label_files(tmp_path / "planted")
