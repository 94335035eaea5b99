"""Captioning and regression on the same caches: models, search, runs, prediction."""

import csv
import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_train import DIM, write_cache

from vidcache.models.captioner import CaptionDecoder, StreamingCaptioner, build_captioner
from vidcache.models.heads import build_regressor
from vidcache.models.stream import StreamingModel
from vidcache.models.text import END, START
from vidcache.pipeline.cli import cli
from vidcache.pipeline.training import TrainConfig, evaluate_run, load_run, train_rnn

VOCAB = 12


def _captioner(attention, seed=0, encoder="lstm"):
    import keras

    keras.utils.set_random_seed(seed)
    return build_captioner(
        VOCAB, np.zeros(DIM), np.ones(DIM), units=8, embedding_dim=4, attention=attention,
        dropout=0, encoder=encoder, attention_heads=2, layers=2,
    )  # fmt: skip


#: (attention, encoder) pairs: every captioner the command line can build.
CAPTIONERS = [(a, e) for e in ("lstm", "gru", "transformer") for a in (False, True)]


@pytest.mark.parametrize("attention, encoder", CAPTIONERS)
def test_teacher_forcing_shapes_and_masking_of_frames_and_words(attention, encoder):
    model = _captioner(attention, encoder=encoder)
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(2, 6, DIM)).astype(np.float32)
    frames[1, 4:] = 0.0  # video 1 has 4 frames
    tokens = np.array([[START, 5, 6, 7, 8], [START, 5, 6, 0, 0]], np.int32)  # caption 1: 2 words
    logits = np.asarray(model([frames, tokens]))
    assert logits.shape == (2, 5, VOCAB)
    # The padded row equals the same video and caption given alone, unpadded.
    alone = np.asarray(model([frames[1:, :4], tokens[1:, :3]]))
    np.testing.assert_allclose(logits[1, :3], alone[0], atol=1e-5)
    # Whatever sits in padded word positions changes nothing before them.
    other = tokens.copy()
    other[1, 3:] = [9, 10]
    np.testing.assert_allclose(np.asarray(model([frames, other]))[1, :3], logits[1, :3], atol=1e-6)


def test_padded_words_carry_no_loss():
    import keras

    from vidcache.pipeline.training.tasks.caption import caption_dataset

    inputs = np.array([[START, 4, 5], [START, 6, 0]], np.int32)
    targets = np.array([[4, 5, END], [6, END, 0]], np.int32)
    source = [np.ones((3, DIM), np.float32), np.ones((2, DIM), np.float32)]
    (frames, tokens), y, weights = next(
        iter(caption_dataset(source, [(0, 0), (1, 1)], inputs, targets, batch_size=2))
    )
    assert frames.shape == (2, 3, DIM) and tokens.shape == y.shape == weights.shape == (2, 3)
    np.testing.assert_array_equal(weights, [[1, 1, 1], [1, 1, 0]])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    logits = np.random.default_rng(1).normal(size=(2, 3, VOCAB)).astype(np.float32)
    changed = np.array(y)
    changed[1, 2] = 9  # a padded target position
    assert float(loss(y, logits, sample_weight=weights)) == pytest.approx(
        float(loss(changed, logits, sample_weight=weights))
    )


@pytest.mark.parametrize("attention, encoder", [(False, "lstm"), (True, "lstm"), (True, "gru")])
def test_beam_search_of_width_one_is_greedy_decoding(attention, encoder):
    model = _captioner(attention, seed=3, encoder=encoder)
    decoder = CaptionDecoder(model)
    rng = np.random.default_rng(2)
    videos = [rng.normal(size=(n, DIM)).astype(np.float32) for n in (3, 5, 7, 4)]
    padded = np.zeros((4, 7, DIM), np.float32)
    for i, v in enumerate(videos):
        padded[i, : len(v)] = v
    greedy = decoder.greedy(padded, max_words=6)
    assert greedy == [decoder.beam(v, 1, max_words=6) for v in videos]
    assert greedy == decoder.captions(videos, 1, 6, batch_size=3)  # batching changes nothing
    for v in videos:
        words = decoder.beam(v, 3, max_words=4)
        assert len(words) <= 4 and START not in words and END not in words and 0 not in words
    # Beams of several videos searched together give each video's own result.
    assert decoder.captions(videos, 3, 6, batch_size=4) == [decoder.beam(v, 3, 6) for v in videos]


def test_one_frame_videos_caption_with_attention():
    """A short folder of frames can be one frame: attention over it is that frame, with no
    Keras warning (warnings are errors here; a user saw one per video)."""
    decoder = CaptionDecoder(_captioner(True, seed=3))
    one = np.random.default_rng(2).normal(size=(1, DIM)).astype(np.float32)
    assert decoder.captions([one, one], 2, 4, batch_size=2) == [decoder.beam(one, 2, 4)] * 2


@pytest.mark.parametrize("attention, encoder", CAPTIONERS)
def test_a_streamed_caption_equals_the_offline_caption(attention, encoder):
    model = _captioner(attention, seed=5, encoder=encoder)
    decoder = CaptionDecoder(model)
    assert decoder.kind == encoder
    x = np.random.default_rng(4).normal(size=(6, DIM)).astype(np.float32)
    for beam in (1, 3):
        stream = StreamingCaptioner(model, beam, max_words=6)
        assert stream.caption() == []
        for t, row in enumerate(x, start=1):
            stream.step(row)
            # What the decoder starts from equals the offline encoding of the frames so far.
            streamed, offline = stream.encoding(), decoder.encode(x[None, :t])
            for a, b in zip(streamed[:3], offline[:3]):
                np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)
            if t in (3, 6):  # the caption of the frames so far
                assert stream.caption() == decoder.captions([x[:t]], beam, 6)[0]
        assert stream.frames == 6


def _demo_cache(tmp_path, run_extract, small_config, clips_per_class):
    from vidcache.features.synthetic import make_demo_dataset

    root = tmp_path / "videos"
    make_demo_dataset(root, clips_per_class)
    run_extract([root], tmp_path / "features.h5", small_config(folder_fps=5))
    return root, tmp_path / "features.h5"


@pytest.mark.slow
def test_a_tiny_caption_run_learns_the_demo_captions(tmp_path, run_extract, small_config):
    root, cache = _demo_cache(tmp_path, run_extract, small_config, clips_per_class=8)
    run = tmp_path / "cap"
    result = CliRunner().invoke(
        cli,
        [
            "train-rnn", str(cache), "-o", str(run), "--task", "caption",
            "--captions", str(root / "captions.csv"), "--units", "48",
            "--embedding-dim", "16", "--epochs", "60", "--patience", "60",
            "--batch-size", "8", "--val-split", "0.25", "-q",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    baseline = metrics["baseline_most_common"]
    assert metrics["bleu4"] > baseline["bleu4"] + 0.2, metrics
    assert metrics["cider_d"] > baseline["cider_d"] + 1.0, metrics
    assert "BLEU-1..4" in result.output and "baseline (always" in result.output
    assert {p.name for p in run.iterdir()} >= {
        "model.keras", "vectorizer.keras", "config.json", "history.csv", "metrics.json",
        "val_captions.csv", "learning_curves.png",
    }  # fmt: skip
    with open(run / "val_captions.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == metrics["videos"]

    # predict prints a caption; the video is in the run's cache, so nothing is extracted.
    clip = root / "grow" / "grow_c01.mp4"
    printed = CliRunner().invoke(cli, ["predict", str(run), str(clip), "--beam", "2"])
    assert printed.exit_code == 0, printed.output
    caption = printed.output.strip().split(": ", 1)[1]
    assert "square" in caption.split()
    streamed = CliRunner().invoke(
        cli, ["predict", str(run), str(clip), "--stream", "--every", "4", "--beam", "2"]
    )
    assert streamed.exit_code == 0, streamed.output
    assert f"final after 15 frames: {caption}\n" in streamed.output
    assert streamed.output.startswith("frame 4 (0.60 s): ")
    evaluated, out = evaluate_run(run, cache, tmp_path / "eval", root / "captions.csv")
    assert evaluated["videos"] == 24 and evaluated["bleu4"] > baseline["bleu4"]
    assert (out / "captions.csv").is_file() and "coco" not in evaluated
    if importlib.util.find_spec("pycocoevalcap") is not None:
        result = CliRunner().invoke(
            cli, ["evaluate", str(run), str(cache), "--captions", str(root / "captions.csv"),
                  "--scorer", "coco", "-o", str(tmp_path / "eval-coco")],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "coco-caption scorer: BLEU-4 " in result.output and "METEOR" in result.output
        saved = json.loads((tmp_path / "eval-coco" / "metrics.json").read_text())
        assert 0 < saved["coco"]["meteor"] <= 1 and saved["coco"]["videos"] == 24


def _regression_data(tmp_path, per_frame, per_clip=12, steps=8):
    rng = np.random.default_rng(0)
    direction = rng.normal(size=DIM)
    videos, rows = {}, []
    for clip in range(per_clip * 3):
        # A hidden value walks at random; each frame shows it along one direction, plus noise.
        projection = np.cumsum(rng.normal(size=steps))
        x = projection[:, None] * direction + 0.1 * rng.normal(size=(steps, DIM)) + 1.0
        video_id = f"v/clip_{clip:02d}.mp4"
        videos[video_id] = ("", x.astype(np.float32))
        if per_frame:  # the running mean so far: needs memory of earlier frames
            values = np.cumsum(projection) / np.arange(1, steps + 1)
            rows += [(video_id, f"{t / 5:.6g}", f"{v:.6f}") for t, v in enumerate(values)]
        else:  # net change over the clip: needs the order
            rows.append((video_id, f"{projection[-1] - projection[0]:.6f}"))
    cache = write_cache(tmp_path / "reg.h5", videos)
    targets = tmp_path / "targets.csv"
    with open(targets, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "time", "steer"] if per_frame else ["path", "delta"])
        writer.writerows(rows)
    return cache, targets


@pytest.mark.parametrize("per_frame", [False, True])
def test_regression_learns_a_synthetic_target(tmp_path, per_frame):
    cache, targets = _regression_data(tmp_path, per_frame)
    config = TrainConfig(
        task="regress", targets=str(targets), units=32, epochs=60, patience=60, dropout=0.0,
        lr=3e-3, verbose=0,
    )  # fmt: skip
    result = train_rnn([cache], tmp_path / "run", config)
    m = result.metrics
    assert m["mse"] < 0.25 * m["baseline_mean"]["mse"], m
    assert m["per_frame"] is per_frame and (("frames" in m) is per_frame)
    run = load_run(tmp_path / "run")
    assert run.task == "regress" and run.per_frame is per_frame
    assert run.target_names == (["steer"] if per_frame else ["delta"])
    evaluated, _ = evaluate_run(tmp_path / "run", cache, tmp_path / "eval", targets)
    assert evaluated["videos"] == 36 and evaluated["mse"] < evaluated["baseline_mean"]["mse"]
    runner = CliRunner()
    result = runner.invoke(cli, ["evaluate", str(tmp_path / "run"), str(cache)])
    assert result.exit_code == 2 and "give the references with --targets CSV" in result.output
    result = runner.invoke(
        cli, ["train-e2e", str(tmp_path / "run"), str(tmp_path), "-o", str(tmp_path / "e2e")]
    )
    assert result.exit_code == 1 and "starts from a classification run" in result.output


@pytest.mark.parametrize("head, cell", [("lstm", "lstm"), ("lstm", "gru"), ("transformer", "lstm")])
def test_per_frame_regression_streams_the_offline_value_at_every_frame(head, cell):
    import keras

    keras.utils.set_random_seed(0)
    model = build_regressor(
        np.array([2.0, -1.0]), np.array([4.0, 0.25]), np.zeros(DIM), np.ones(DIM), per_frame=True,
        units=4, layers=2, dropout=0.0, cell=cell, head=head, attention_heads=2,
    )  # fmt: skip
    x = np.random.default_rng(0).normal(size=(6, DIM)).astype(np.float32)
    offline = np.asarray(model(x[None]))[0]
    assert offline.shape == (6, 2)
    stream = StreamingModel(model)
    np.testing.assert_allclose([stream.step(row) for row in x], offline, atol=1e-5)
    # Outputs are in the targets' units: the inverse of the targets' standardisation.
    scale = model.get_layer("target_scale")
    np.testing.assert_allclose(np.asarray(scale(np.zeros((1, 1, 2))))[0, 0], [2.0, -1.0])


def test_cli_task_errors_are_one_line(tmp_path):
    cache = write_cache(tmp_path / "c.h5", {"a.mp4": ("", np.ones((3, DIM), np.float32))})
    runner = CliRunner()
    result = runner.invoke(
        cli, ["train-rnn", str(cache), "-o", str(tmp_path / "r"), "--task", "caption"]
    )
    assert result.exit_code != 0 and "--task caption needs --captions CSV" in result.output
    captions = tmp_path / "captions.csv"
    captions.write_text("elsewhere.mp4,a caption\n")
    result = runner.invoke(
        cli,
        ["train-rnn", str(cache), "-o", str(tmp_path / "r"), "--task", "caption",
         "--captions", str(captions)],
    )  # fmt: skip
    assert result.exit_code == 1 and "no cached video has a caption" in result.output
    targets = tmp_path / "t.csv"
    targets.write_text("a.mp4,1\n")
    result = runner.invoke(
        cli, ["train-rnn", str(cache), "-o", str(tmp_path / "r"), "--targets", str(targets)]
    )
    assert result.exit_code != 0 and "--targets needs --task regress" in result.output


def _split_file(path, video_ids):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "split"])
        for i, video_id in enumerate(video_ids):
            writer.writerow([video_id, ("train", "train", "val", "test")[i % 4]])
    return path


def test_a_split_file_with_test_rows_scores_the_test_videos_too(tmp_path):
    cache, targets = _regression_data(tmp_path, per_frame=True, per_clip=4)
    ids = [f"v/clip_{clip:02d}.mp4" for clip in range(12)]
    split = _split_file(tmp_path / "split.csv", ids)
    config = TrainConfig(
        task="regress", targets=str(targets), split_file=str(split), units=4, epochs=2, verbose=0
    )
    result = train_rnn([cache], tmp_path / "reg", config)
    saved = json.loads((tmp_path / "reg" / "metrics.json").read_text())
    assert result.test_metrics["videos"] == 3 and saved["test"]["frames"] == 3 * 8
    assert saved["videos"] == 3 and "mse" in saved["test"]

    captions = tmp_path / "captions.csv"
    captions.write_text(
        "".join(f"{vid},a clip number {i % 3}\n{vid},clip {i % 3}\n" for i, vid in enumerate(ids))
    )
    config = TrainConfig(
        task="caption", captions=str(captions), split_file=str(split), units=8, embedding_dim=4,
        epochs=2, verbose=0,
    )  # fmt: skip
    result = train_rnn([cache], tmp_path / "cap", config)
    assert result.test_metrics["videos"] == 3
    assert "baseline_most_common" in result.test_metrics
    for name in ("val", "test"):
        with open(tmp_path / "cap" / f"{name}_captions.csv", newline="") as handle:
            assert len(list(csv.DictReader(handle))) == 3
    assert json.loads((tmp_path / "cap" / "config.json").read_text())["task"] == "caption"


def test_cli_regression_run_and_evaluate_print_errors_next_to_the_baseline(tmp_path):
    cache, targets = _regression_data(tmp_path, per_frame=False, per_clip=4)
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(
        cli,
        ["train-rnn", str(cache), "-o", str(run), "--task", "regress", "--targets",
         str(targets), "--units", "4", "--epochs", "2", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "regress (lstm) trained 2 epochs" in result.output and "validation MSE" in result.output
    assert "on 3 videos (predicting the training mean: MSE" in result.output
    result = runner.invoke(cli, ["evaluate", str(run), str(cache), "--targets", str(targets)])
    assert result.exit_code == 0, result.output
    assert "on 12 videos (predicting the training mean" in result.output
    assert (run / "eval-reg" / "metrics.json").is_file()
    frames = tmp_path / "frames.csv"
    frames.write_text("path,time,v\nv/clip_00.mp4,0,1\n")
    result = runner.invoke(cli, ["evaluate", str(run), str(cache), "--targets", str(frames)])
    assert result.exit_code == 1 and "the run predicts per-video delta" in result.output


@pytest.mark.parametrize(
    "encoder", [["--cell", "gru"], ["--head", "transformer", "--layers", 2, "--attention-heads", 2]]
)
def test_caption_runs_with_a_gru_or_transformer_encoder(tmp_path, encoder):
    from test_train import ordered_videos

    videos = ordered_videos(per_class=4)
    cache = write_cache(tmp_path / "f.h5", videos)
    captions = tmp_path / "captions.csv"
    with open(captions, "w", newline="") as handle:
        csv.writer(handle).writerows((v, f"a ramp {label}") for v, (label, _) in videos.items())
    run = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        ["train-rnn", str(cache), "-o", str(run), "--task", "caption", "--captions",
         str(captions), "--units", "8", "--embedding-dim", "4",
         "--epochs", "2", "-q", *map(str, encoder)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    loaded = load_run(run)  # safe mode: the encoder's layers are registered
    assert CaptionDecoder(loaded.model).kind == ("gru" if "gru" in encoder else "transformer")
    metrics, _ = evaluate_run(run, cache, tmp_path / "eval", captions)
    assert metrics["videos"] == 12 and 0 <= metrics["bleu4"] <= 1
