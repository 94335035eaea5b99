"""Windows of frames and the spans of rows: the grouping, hand-computed windows on videos of
known frame rate (25, 29.97 and variable), the clip backbone (a tiny VideoPrism, random
weights in a keras-hub preset folder) against keras-hub's own model, and schema 4."""

from __future__ import annotations

import importlib.util
from fractions import Fraction

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from vidcache.features.cache import CacheReader, read_settings
from vidcache.features.settings import FeatureSettings, SamplingSpec
from vidcache.features.video.sampling import windows
from vidcache.features.video.windowrows import RowMaker, WindowOwner
from vidcache.pipeline.cli import cli

TINY = "videoprism-tiny"
SIZE = 36  # 2 x 2 patches of 18 px

needs_hub = pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None,
    reason="the hub extra (keras-hub) is not installed: pip install 'vidcache[hub]'",
)


def invoke(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.mark.parametrize(
    ("count", "size", "stride", "expected"),
    [
        (20, 16, 16, [(0, 16), (16, 4)]),  # the last window short: padded by the consumer
        (20, 16, 4, [(0, 16), (4, 16)]),  # the second full window reaches the end: no more
        (21, 16, 4, [(0, 16), (4, 16), (8, 13)]),
        (5, 16, 16, [(0, 5)]),  # shorter than one window: one short window
        (16, 16, 16, [(0, 16)]),
        (10, 3, 5, [(0, 3), (5, 3)]),  # gaps: frames 3, 4, 8, 9 are in no window
        (6, 4, 1, [(0, 4), (1, 4), (2, 4)]),
        (0, 4, 4, []),
    ],
)
def test_windows_by_hand(count, size, stride, expected):
    got = [(start, len(group)) for start, group in windows(range(count), size, stride)]
    assert got == expected
    for start, group in windows(range(count), size, stride):
        assert group == list(range(start, start + len(group)))


def test_frame_pooling_takes_each_frame_from_its_most_central_window():
    """Windows of 4 every 2 over 8 frames: frames 0-2 from window 0 (frame 2 sits at place 2
    there, place 0 in window 1: distances 0.5 and 1.5), 3-4 from window 1, 5-7 from 2."""
    maker = RowMaker("frame", 4)
    rows = []
    for start, group in windows(range(8), 4, 2):
        owner = WindowOwner(start, tuple((i, i / 10) for i in group))
        vectors = np.array([[start, i] for i in group], np.float32)  # which window, which frame
        rows += maker.add(owner, vectors)
    rows += maker.finish()
    assert [int(r[0][1]) for r in rows] == list(range(8))  # every frame once, in order
    assert [int(r[0][0]) for r in rows] == [0, 0, 0, 2, 2, 4, 4, 4]
    assert [r[2] for r in rows] == list(range(8))  # the frame's own index and time
    assert rows[3][3] == (2, 5, 0.2, 0.5)  # its span: the window it came from


def test_window_pooling_is_the_mean_at_the_centre():
    maker = RowMaker("window", 4)
    owner = WindowOwner(6, ((12, 0.4), (15, 0.5), (18, 0.6)))  # a short last window
    vectors = np.arange(8, dtype=np.float32).reshape(4, 2)
    [(vector, time, index, span)] = maker.add(owner, vectors)
    np.testing.assert_array_equal(vector, vectors.mean(axis=0))
    assert (time, index, span) == (0.5, 15, (12, 18, 0.4, 0.6))
    assert maker.finish() == []


def test_frame_settings_keep_their_json_and_window_settings_check_everything():
    frames = FeatureSettings("random:seed=0", "x", image_size=75)
    assert "window" not in frames.to_json() and "stride" not in frames.to_json()
    assert SamplingSpec(window=8).stride == 8
    with pytest.raises(ValueError, match="stride needs a window"):
        SamplingSpec(stride=2)
    with pytest.raises(ValueError, match="--window needs a clip backbone"):
        FeatureSettings("random:seed=0", "x", image_size=75, sampling=SamplingSpec(window=4))
    windowed = FeatureSettings.for_backbone(
        "videoprism-base", weights="random:seed=0", weights_sha256="x", image_size=288,
        sampling=SamplingSpec(window=16, stride=4), pooling="frame",
    )  # fmt: skip
    again = FeatureSettings.from_json(windowed.to_json())
    assert again == windowed and again.sampling.stride == 4 and again.pooling == "frame"
    with pytest.raises(ValueError, match="takes windows of 16 frames"):
        FeatureSettings.for_backbone(
            "videoprism-base", weights="r", weights_sha256="x", image_size=288,
            sampling=SamplingSpec(window=8),
        )  # fmt: skip
    with pytest.raises(ValueError, match="multiple of 18"):
        FeatureSettings.for_backbone(
            "videoprism-base", weights="r", weights_sha256="x", image_size=100,
            sampling=SamplingSpec(window=16),
        )  # fmt: skip
    bad = windowed.to_json().replace('"stride":4', '"stride":0')
    with pytest.raises(ValueError, match="sampling.stride is 0"):
        FeatureSettings.from_json(bad)


@pytest.fixture(scope="module")
def tiny_prism(tmp_path_factory):
    """A 4-frame VideoPrism registered from here, and a keras-hub preset folder of that
    shape with random weights: what a real preset folder looks like to vidcache."""
    import keras
    import keras_hub

    from vidcache.features.backbones import register, unregister
    from vidcache.features.backbones.videoprism import VideoTower, videoprism_backbone

    tower = VideoTower(4, 18, 16, 32, 2, 1, 1, image_size=SIZE)
    register(videoprism_backbone(TINY, tower, "videoprism_tiny"))
    keras.utils.set_random_seed(7)
    model = keras_hub.models.VideoPrismBackbone(**tower.arguments(SIZE))
    preset = tmp_path_factory.mktemp("prism") / "videoprism_tiny"
    model.save_to_preset(str(preset))
    yield model, preset
    unregister(TINY)


def _clip(path, count, rate, seed=1):
    from conftest import random_frames

    from vidcache.features.synthetic import write_video

    frames = random_frames(count, seed=seed, height=SIZE, width=SIZE + 12)
    return write_video(path, frames, rate, "libx264rgb", "rgb24", {"crf": "0"})


def _keras_hub_rows(model, video, settings):
    """What keras-hub's own model gives on vidcache's frames: per-frame token means of each
    (padded) window."""
    from vidcache.features.video.decode import VideoReader
    from vidcache.features.video.frames import frames_as_settings
    from vidcache.features.video.windowrows import pad_window

    with VideoReader(video) as reader:
        frames = list(frames_as_settings(reader, settings))
    out = []
    size, stride = settings.sampling.window, settings.sampling.stride
    for start, group in windows(frames, size, stride):
        clip = pad_window([g[2] for g in group], size).astype(np.float32) / 255.0
        tokens = np.asarray(model(clip[None]))[0]  # (frames, patches, width)
        out.append((start, group, tokens.mean(axis=1)))
    return out


@needs_hub
@pytest.mark.parametrize("pooling", ["window", "frame"])
def test_tiny_videoprism_through_the_cli_is_keras_hubs_model(tmp_path, tiny_prism, pooling):
    model, preset = tiny_prism
    video = _clip(tmp_path / "v" / "a" / "one.mkv", 11, 25)
    out = tmp_path / "w.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", TINY, "--weights", preset,
           "--image-size", SIZE, "--fps", 0, "--stride", 3, "--pooling", pooling, "-q")  # fmt: skip
    settings = read_settings(out)
    assert (settings.sampling.window, settings.sampling.stride, settings.pooling) == (
        4,
        3,
        pooling,
    )
    expected = _keras_hub_rows(model, video, settings)
    with CacheReader(out) as cache:
        rows = cache.rows("a/one.mkv")
        assert cache.schema_version == 4
    if pooling == "window":
        # windows at frames 0-3, 3-6, 6-9 and a short one 9-10 (padded by frame 10)
        assert [tuple(s) for s in rows.span_frames] == [(0, 3), (3, 6), (6, 9), (9, 10)]
        np.testing.assert_allclose(rows.span_times, rows.span_frames / 25)
        want = np.stack([tokens.mean(axis=0) for _, _, tokens in expected])
        assert list(rows.frame_indices) == [2, 5, 8, 10]  # the centre frames (place len // 2)
    else:
        assert list(rows.frame_indices) == list(range(11))
        maker = RowMaker("frame", 4)
        made = []
        for start, group, tokens in expected:
            owner = WindowOwner(start, tuple((i, t) for i, t, _ in group))
            made += maker.add(owner, tokens)
        made += maker.finish()
        want = np.stack([m[0] for m in made])
        assert [tuple(s) for s in rows.span_frames] == [m[3][:2] for m in made]
    assert rows.features.shape == (len(want), 16)
    np.testing.assert_allclose(rows.features, want, rtol=1e-4, atol=1e-5)


def test_spans_are_exact_at_29_97_and_variable_frame_rates(tmp_path, tiny_prism):
    """Kept frames and windows by hand: 29.97 fps (1001/30000 s apart) sampled at 10 fps
    keeps frames 0, 3, 6, ... 18; windows of 4 every 2 are frames 0-9, 6-15 and 12-18."""
    from quirks import restamped

    _, preset = tiny_prism
    _clip(tmp_path / "ntsc" / "n.mp4", 20, Fraction(30000, 1001))
    out = tmp_path / "n.h5"
    invoke("extract", tmp_path / "ntsc", "-o", out, "--backbone", TINY, "--weights", "random",
           "--image-size", SIZE, "--fps", 10, "--stride", 2, "-q")  # fmt: skip
    with CacheReader(out) as cache:
        frames, times = cache.spans("n.mp4")
    assert frames.tolist() == [[0, 9], [6, 15], [12, 18]]
    np.testing.assert_allclose(times, frames * 1001 / 30000, rtol=0, atol=1e-9)

    (tmp_path / "vfr").mkdir()
    restamped(tmp_path / "vfr" / "v.mkv", [0, 40, 80, 200, 240, 500, 540, 580])
    out = tmp_path / "v.h5"
    invoke("extract", tmp_path / "vfr", "-o", out, "--backbone", TINY, "--weights", "random",
           "--image-size", SIZE, "--fps", 0, "--window", 4, "--stride", 3, "-q")  # fmt: skip
    with CacheReader(out) as cache:
        frames, times = cache.spans("v.mkv")
        stamps = cache.timestamps("v.mkv")
    assert frames.tolist() == [[0, 3], [3, 6], [6, 7]]
    assert times.tolist() == [[0.0, 0.2], [0.2, 0.54], [0.54, 0.58]]
    assert stamps.tolist() == [0.08, 0.5, 0.58]  # the centre frames (places 2, 2 and 1)


def test_a_damaged_span_is_found_and_spans_survive_compaction(tmp_path, tiny_prism):
    _clip(tmp_path / "v" / "a.mkv", 6, 25)
    _clip(tmp_path / "v" / "b.mkv", 5, 25, seed=2)
    out = tmp_path / "w.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", TINY, "--weights", "random",
           "--image-size", SIZE, "--fps", 0, "-q")  # fmt: skip
    with CacheReader(out) as cache:
        before = {v: cache.rows(v) for v in cache.entries()}
    invoke("compact", out)
    with CacheReader(out) as cache:
        assert cache.schema_version == 4
        for video_id, rows in before.items():
            after = cache.rows(video_id)
            np.testing.assert_array_equal(after.span_frames, rows.span_frames)
            np.testing.assert_array_equal(after.span_times, rows.span_times)
            np.testing.assert_array_equal(after.features, rows.features)
    with h5py.File(out, "r+") as f:
        f["rows/span_times"][0, 1] += 0.04  # one end time moved by a frame
    result = invoke("verify", out, code=1)
    assert "damaged" in result.output


@needs_hub
@pytest.mark.parametrize("pooling", ["window", "frame"])
def test_stage_two_on_windows_and_the_stream_gives_the_stored_rows(tmp_path, tiny_prism, pooling):
    """train-rnn, evaluate and predict take a window cache (a row is a time step), and
    predict --stream emits, as the video plays, exactly the rows extraction stored."""
    from vidcache.features.backbone import FeatureExtractor
    from vidcache.features.backbones import WeightsSpec
    from vidcache.features.video.decode import VideoReader
    from vidcache.features.video.discover import discover
    from vidcache.features.video.sampling import sample
    from vidcache.pipeline.inference.predict import _window_rows, predict_videos, stream_predict
    from vidcache.pipeline.training import load_run

    _, preset = tiny_prism
    for label, seed in (("a", 1), ("a", 2), ("b", 3), ("b", 4)):
        _clip(tmp_path / "v" / label / f"{label}{seed}.mkv", 9 + seed, 25, seed=seed)
    out = tmp_path / "w.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", TINY, "--weights", preset,
           "--image-size", SIZE, "--fps", 0, "--stride", 2, "--pooling", pooling, "-q")  # fmt: skip
    run = tmp_path / "run"
    invoke("train-rnn", out, "-o", run, "--units", 4, "--epochs", 1, "--val-split", 0.5,
           "-q")  # fmt: skip
    assert "top-1" in invoke("evaluate", run, out).output
    video = tmp_path / "v" / "b" / "b4.mkv"
    loaded = load_run(run)
    settings = loaded.settings
    extractor = FeatureExtractor(
        SIZE, WeightsSpec("file", path=preset), batch_size=1, backbone=TINY
    )
    with VideoReader(video) as reader:
        streamed = list(
            _window_rows(sample(reader.frames(), settings.sampling), settings, extractor)
        )
    with CacheReader(out) as cache:
        stored = cache.rows("b/b4.mkv")
    assert [t for t, _, _ in streamed] == stored.timestamps.tolist()
    np.testing.assert_allclose(np.stack([f for _, f, _ in streamed]), stored.features, atol=1e-5)
    updates = []
    report = stream_predict(loaded, str(video), weights_path=preset,
                            on_update=lambda n, t, output: updates.append(n))  # fmt: skip
    (offline,) = predict_videos(loaded, discover([video]), weights_path=preset, batch_size=8)
    assert report.frames == len(stored.timestamps) == updates[-1]
    np.testing.assert_allclose(dict(report.top)["b"], dict(offline.top)["b"], atol=1e-4)


def test_spans_survive_export_and_import_and_inspect_shows_them(tmp_path, tiny_prism):
    _clip(tmp_path / "v" / "a.mkv", 7, 25)
    out = tmp_path / "w.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", TINY, "--weights", "random",
           "--image-size", SIZE, "--fps", 0, "--stride", 2, "-q")  # fmt: skip
    invoke("export", out, tmp_path / "npy")
    spans = np.load(tmp_path / "npy" / "a_spans.npy")
    assert spans.tolist() == [[0, 3, 0, 120], [2, 5, 80, 200], [4, 6, 160, 240]]
    invoke("import", tmp_path / "npy", "-o", tmp_path / "back.h5")
    with CacheReader(out) as cache, CacheReader(tmp_path / "back.h5") as back:
        assert back.schema_version == 4 and back.settings == cache.settings
        for got, want in zip(back.spans("a.mkv"), cache.spans("a.mkv")):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(back.features("a.mkv"), cache.features("a.mkv"))
    lines = invoke("inspect", out, "--spans", "a.mkv").output.splitlines()
    assert lines[0].endswith("'a.mkv', 3 rows")
    assert lines[2].split() == ["0", "0.080", "2", "0-3", "0.000-0.120"]  # centre: place 2
    summary = invoke("inspect", out).output
    assert "windows of 4 frames every 2" in summary
    missing = invoke("inspect", out, "--spans", "b.mkv", code=1)
    assert "holds 'b.mkv'" in missing.output


def test_window_options_that_do_not_fit_are_one_line(tmp_path, tiny_prism):
    _clip(tmp_path / "v" / "a.mkv", 4, 25)
    out = tmp_path / "x.h5"
    cases = [
        (["--window", 4], "InceptionV3 makes one vector per frame; --window needs a clip backbone"),
        (["--pooling", "frame"], "--pooling chooses a clip backbone's rows; InceptionV3 makes"),
        (["--backbone", TINY, "--window", 8], f"{TINY} takes windows of 4 frames (--window 4)"),
        (["--backbone", TINY, "--image-size", 40], "image_size must be a multiple of 18"),
        (["--stride", 2], "--stride needs --window"),
    ]
    for extra, message in cases:
        result = invoke("extract", tmp_path / "v", "-o", out, "--weights", "random", *extra,
                        code=2)  # fmt: skip
        assert message in result.output, result.output
        assert "Traceback" not in result.output
    assert not out.exists()


def test_a_preset_of_another_videoprism_is_one_line(tmp_path, tiny_prism):
    import keras_hub

    from vidcache.features.backbones.videoprism import VideoTower

    _clip(tmp_path / "v" / "a.mkv", 4, 25)
    other = keras_hub.models.VideoPrismBackbone(
        **VideoTower(4, 18, 16, 32, 2, 2, 1, image_size=SIZE).arguments(SIZE)
    )
    other.save_to_preset(str(tmp_path / "two_layers"))
    result = invoke("extract", tmp_path / "v", "-o", tmp_path / "x.h5", "--backbone", TINY,
                    "--weights", tmp_path / "two_layers", "--image-size", SIZE, code=1)  # fmt: skip
    assert (
        result.output.strip()
        .splitlines()[-1]
        .endswith(
            f"holds another VideoPrism (4 frames, patch 18, width 16, 2+1 layers, {SIZE} px) than "
            f"{TINY} (4 frames, patch 18, width 16, 1+1 layers, {SIZE} px)"
        )
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("extract", tmp_path / "v", "-o", tmp_path / "x.h5", "--backbone", TINY,
                    "--weights", empty, "--image-size", SIZE, code=1)  # fmt: skip
    assert "is not a keras-hub VideoPrism preset folder" in result.output
    assert not (tmp_path / "x.h5").exists()


def test_fusing_windows_with_frames_needs_rows_at_the_same_times(tmp_path, tiny_prism):
    """A window cache pooled per frame lines up with a frame cache of the same sampling and
    fuses; one pooled per window is refused in one line."""
    from vidcache.features.cache import CacheReader as Reader
    from vidcache.features.errors import SettingsMismatch
    from vidcache.features.fusion import FusedReader

    for name, seed in (("a/1.mkv", 1), ("b/2.mkv", 2)):
        _clip(tmp_path / "v" / name, 6, 25, seed=seed)
    common = ["--weights", "random", "--fps", 0, "-q"]
    invoke("extract", tmp_path / "v", "-o", tmp_path / "frames.h5", "--backbone",
           "mobilenetv3-large", "--image-size", 32, *common)  # fmt: skip
    for pooling in ("frame", "window"):
        invoke("extract", tmp_path / "v", "-o", tmp_path / f"{pooling}.h5", "--backbone", TINY,
               "--image-size", SIZE, "--pooling", pooling, *common)  # fmt: skip
    fused = FusedReader([Reader(tmp_path / "frames.h5"), Reader(tmp_path / "frame.h5")])
    assert fused.features("a/1.mkv").shape == (6, 960 + 16)
    with pytest.raises(SettingsMismatch, match="one row per window of 4 frames every 4"):
        FusedReader([Reader(tmp_path / "frames.h5"), Reader(tmp_path / "window.h5")])
    result = invoke("train-rnn", tmp_path / "frames.h5", tmp_path / "window.h5", "--fuse",
                    "-o", tmp_path / "run", code=1)  # fmt: skip
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith(
            "Error: fused feature sets must sample the same frames (rows at the same times)"
        )
    )


def test_a_window_cache_posing_as_schema_3_is_refused(tmp_path, tiny_prism):
    """A schema-3 file whose settings say windows (an older writer would add rows without
    spans to it) is one line, as is a schema-4 file whose settings say frames."""
    from vidcache.features.cache import rootattrs

    _clip(tmp_path / "v" / "a.mkv", 5, 25)
    out = tmp_path / "w.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", TINY, "--weights", "random",
           "--image-size", SIZE, "--fps", 0, "-q")  # fmt: skip
    with h5py.File(out, "r+") as f:
        f.attrs["schema_version"] = 3
        f["index"].attrs["encoding-version"] = "3"
        rootattrs.stamp(f)
    for command in (["inspect", out], ["verify", out], ["train-rnn", out, "-o", tmp_path / "r"]):
        result = invoke(*command, code=1)
        assert (
            result.output.strip()
            .splitlines()[-1]
            .endswith("damaged cache (its settings say windows, but it is a schema-3 file)")
        ), result.output


def test_like_shards_and_merge_follow_the_windows(tmp_path, tiny_prism):
    for n in range(4):
        _clip(tmp_path / "v" / f"c{n}.mkv", 5 + n, 25, seed=n)
    whole = tmp_path / "whole.h5"
    options = ["--backbone", TINY, "--weights", "random", "--image-size", SIZE, "--fps", 0,
               "--stride", 2, "--pooling", "frame", "-q"]  # fmt: skip
    invoke("extract", tmp_path / "v", "-o", whole, *options)
    for k in range(2):
        invoke(
            "extract", tmp_path / "v", "-o", tmp_path / f"s{k}.h5", *options, "--shard", f"{k}/2"
        )
    invoke("merge", tmp_path / "s0.h5", tmp_path / "s1.h5", "-o", tmp_path / "merged.h5")
    invoke("extract", tmp_path / "v", "-o", tmp_path / "like.h5", "--like", whole, "-q")
    refused = invoke("extract", tmp_path / "v", "-o", tmp_path / "x.h5", "--like", whole,
                     "--stride", 3, code=2)  # fmt: skip
    assert "drop --stride" in refused.output
    with CacheReader(whole) as a:
        for other in ("merged.h5", "like.h5"):
            with CacheReader(tmp_path / other) as b:
                assert b.settings == a.settings and sorted(b.entries()) == sorted(a.entries())
                for video_id in a.entries():
                    x, y = a.rows(video_id), b.rows(video_id)
                    np.testing.assert_array_equal(x.span_frames, y.span_frames)
                    np.testing.assert_allclose(x.features, y.features, rtol=1e-5, atol=1e-6)


def test_a_hostile_spans_file_is_one_line_and_the_rest_imports(tmp_path, tiny_prism):
    """An export of windows whose _spans.npy was tampered with: each bad one is a line
    naming the file, the good videos import, nothing else is written."""
    for n in range(5):
        _clip(tmp_path / "v" / f"c{n}.mkv", 5, 25, seed=n)
    out = tmp_path / "w.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", TINY, "--weights", "random",
           "--image-size", SIZE, "--fps", 0, "--stride", 2, "-q")  # fmt: skip
    folder = tmp_path / "npy"
    invoke("export", out, folder)
    good = np.load(folder / "c0_spans.npy")
    np.save(folder / "c1_spans.npy", np.full_like(good, np.nan))
    np.save(folder / "c2_spans.npy", good[:, :3])
    backwards = good.copy()
    backwards[0, 2:] = backwards[0, 2:][::-1] + [0, -1]
    np.save(folder / "c3_spans.npy", backwards)
    (folder / "c4_spans.npy").unlink()
    result = invoke("import", folder, "-o", tmp_path / "back.h5", code=1)
    lines = result.output
    assert "c1_spans.npy: holds NaN or infinite values" in lines
    assert "c2_spans.npy: (2, 3) float64, not (2, 4) numbers" in lines
    assert "c3_spans.npy: a span that ends before it starts" in lines
    assert f"c4_{TINY}.npy: no _spans.npy beside it (the export is of windows)" in lines
    assert "Traceback" not in lines
    with CacheReader(tmp_path / "back.h5") as back:
        assert sorted(back.entries()) == ["c0.mkv"]
