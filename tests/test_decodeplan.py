"""Decode plans: the frames sampling keeps come out bit for bit as a sequential decode gives
them, for every codec and GOP structure the tests can make, with less decoding; files whose
index cannot be trusted fall back to sequential decoding."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL, random_frames

from vidcache.features.errors import VideoDecodeError
from vidcache.features.settings import SamplingSpec
from vidcache.features.synthetic import write_video
from vidcache.features.video import decode as decode_module
from vidcache.features.video.decode import VideoReader
from vidcache.features.video.decodeplan import PacketIndex, index_problem, plan, start_of
from vidcache.pipeline.cli import cli

# (file name, codec, pixel format, encoder options): GOP size and B-frames set explicitly.
FILES = [
    ("h264-bframes.mp4", "libx264", "yuv420p", {"g": "12", "bf": "3", "sc_threshold": "0"}),
    ("h264-nobframes.mkv", "libx264", "yuv420p", {"g": "10", "bf": "0"}),
    ("h264-longgop.mp4", "libx264", "yuv420p", {"g": "250", "bf": "3"}),
    ("hevc.mp4", "libx265", "yuv420p", {"x265-params": "log-level=none:keyint=12:bframes=3"}),
    ("vp8.webm", "libvpx", "yuv420p", {"g": "10"}),
    ("vp9.webm", "libvpx-vp9", "yuv420p", {"g": "10"}),
    ("av1.mkv", "libsvtav1", "yuv420p", {"g": "12"}),
    ("mpeg4.avi", "mpeg4", "yuv420p", {"g": "10"}),
    ("mpeg4-bframes.avi", "mpeg4", "yuv420p", {"g": "10", "bf": "2"}),
    ("mjpeg.avi", "mjpeg", "yuvj420p", {}),
]

# AVI stores no presentation timestamps: with B-frames FFmpeg's guesses cannot be trusted
# for planning (tests/quirks.py has the files where they are wrong), so these decode fully.
GUESSED = {"mpeg4-bframes.avi"}

SAMPLINGS = [
    SamplingSpec(fps=3.0),
    SamplingSpec(fps=None),
    SamplingSpec(fps=None, num_frames=4),
    SamplingSpec(fps=None, num_frames=50),  # more than the file holds: repeats
    SamplingSpec(fps=2.0, max_frames=3),
    SamplingSpec(fps=None, keyframes=True),
    SamplingSpec(fps=0.5, keyframes=True, max_frames=2),
]


def moving(count: int = 41) -> list[np.ndarray]:
    """Frames that change a little each step (so encoders make P and B frames)."""
    base = random_frames(1, seed=3, height=60, width=80)[0]
    frames = []
    for i in range(count):
        frame = np.roll(base, 2 * i, axis=1)
        frame[:, : (3 * i) % 80] //= 2
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gop")
    frames = moving()
    return {
        name: write_video(folder / name, frames, 10, codec, pix_fmt, options)
        for name, codec, pix_fmt, options in FILES
    }


def decode(path, sampling: SamplingSpec, mode: str, monkeypatch):
    monkeypatch.setenv(decode_module.DECODE_ENV, mode)
    with VideoReader(path) as reader:
        kept = [(i, t, f.to_ndarray(format="rgb24")) for i, t, f in reader.sampled(sampling)]
        return kept, reader.stats


def assert_same(planned, sequential):
    assert [(i, t) for i, t, _ in planned] == [(i, t) for i, t, _ in sequential]
    for (_, _, a), (_, _, b) in zip(planned, sequential):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", [f[0] for f in FILES])
def test_planned_frames_equal_sequential_ones_for_every_codec(videos, name, monkeypatch):
    for sampling in SAMPLINGS:
        sequential, old = decode(videos[name], sampling, "sequential", monkeypatch)
        planned, new = decode(videos[name], sampling, "auto", monkeypatch)
        assert_same(planned, sequential)
        if name in GUESSED:
            assert not new.planned and "AVI with B-frames" in new.fallback
            continue
        assert new.planned and new.fallback is None, (sampling, new)
        assert new.decoded <= max(old.decoded, new.frames)
    if name in GUESSED:
        return
    # Sparse sampling decodes less than every frame, keyframes nothing but keyframes.
    _, sparse = decode(videos[name], SamplingSpec(fps=None, num_frames=2), "auto", monkeypatch)
    kept, keys = decode(videos[name], SamplingSpec(fps=None, keyframes=True), "auto", monkeypatch)
    if name != "mjpeg.avi":
        assert sparse.decoded < sparse.frames
        assert keys.decoded == len(kept) < keys.frames


def test_long_gop_with_bframes_skips_what_no_kept_frame_needs(videos, monkeypatch):
    sampling = SamplingSpec(fps=None, num_frames=3)  # frames 6, 20, 34 of 41, one GOP
    _, old = decode(videos["h264-longgop.mp4"], sampling, "sequential", monkeypatch)
    _, new = decode(videos["h264-longgop.mp4"], sampling, "auto", monkeypatch)
    assert new.planned and old.decoded == 35
    assert new.decoded < 0.8 * old.decoded  # non-reference B-frames were skipped


def test_a_raw_stream_without_timestamps_falls_back_to_sequential(tmp_path, monkeypatch):
    path = write_video(tmp_path / "raw.h264", moving(20), 10, "libx264", "yuv420p", {"g": "5"})
    for sampling in (SamplingSpec(fps=3.0), SamplingSpec(fps=None, keyframes=True)):
        sequential, _ = decode(path, sampling, "sequential", monkeypatch)
        planned, stats = decode(path, sampling, "auto", monkeypatch)
        assert not stats.planned and stats.fallback == "frame packets without timestamps"
        assert len(planned) > 1
        assert_same(planned, sequential)


def test_an_index_that_lies_is_caught_while_decoding_and_finished_sequentially(videos, monkeypatch):
    """Timestamps shifted in the index: the first decoded frame does not match, the plan
    is abandoned and the file decoded sequentially, with the same result."""
    honest = VideoReader.packet_index

    def lying(self):
        index = honest(self)
        return PacketIndex(index.pts + 1, index.keyframe, index.time_base, index.origin)

    path = videos["h264-bframes.mp4"]
    for sampling in (SamplingSpec(fps=3.0), SamplingSpec(fps=None, num_frames=4)):
        sequential, _ = decode(path, sampling, "sequential", monkeypatch)
        monkeypatch.setattr(VideoReader, "packet_index", lying)
        planned, stats = decode(path, sampling, "auto", monkeypatch)
        monkeypatch.setattr(VideoReader, "packet_index", honest)
        assert not stats.planned and "timestamp the index lacks" in stats.fallback
        assert_same(planned, sequential)


def test_a_plan_abandoned_midway_gives_the_rest_sequentially(videos, monkeypatch):
    """The index is right for the first GOP and wrong after: frames given by the plan
    are not given twice."""
    honest = VideoReader.packet_index

    def half_lying(self):
        index = honest(self)
        pts = index.pts.copy()
        pts[pts > np.sort(pts)[20]] += 1
        return PacketIndex(pts, index.keyframe, index.time_base, index.origin)

    path = videos["h264-nobframes.mkv"]
    sampling = SamplingSpec(fps=None, num_frames=6)
    sequential, _ = decode(path, sampling, "sequential", monkeypatch)
    monkeypatch.setattr(VideoReader, "packet_index", half_lying)
    planned, stats = decode(path, sampling, "auto", monkeypatch)
    assert stats.fallback is not None
    assert_same(planned, sequential)


@pytest.mark.parametrize(
    "sampling",
    [SamplingSpec(fps=None, num_frames=4), SamplingSpec(fps=5.0), SamplingSpec(keyframes=True)],
)
def test_a_truncated_file_is_reported_whether_or_not_its_tail_is_decoded(
    tmp_path, sampling, monkeypatch
):
    path = write_video(tmp_path / "full.mkv", moving(40), 10, "libx264", "yuv420p", {"g": "8"})
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for mode in ("sequential", "auto"):
        monkeypatch.setenv(decode_module.DECODE_ENV, mode)
        with VideoReader(cut) as reader:
            with pytest.raises(VideoDecodeError, match="truncated: frames end at"):
                list(reader.sampled(sampling))


def test_an_unknown_decode_mode_is_one_clear_line(videos, monkeypatch):
    monkeypatch.setenv(decode_module.DECODE_ENV, "fast")
    with VideoReader(videos["vp9.webm"]) as reader:
        with pytest.raises(VideoDecodeError, match="VIDCACHE_DECODE='fast'"):
            list(reader.sampled(SamplingSpec()))


# The plan itself, on made-up indexes.


def index_of(pts, keys, den=10):
    return PacketIndex(np.asarray(pts), np.asarray(keys, bool), (1, den), 0.0)


def test_sparse_targets_get_one_segment_each_from_their_keyframe():
    pts = list(range(30))
    keys = [i % 10 == 0 for i in range(30)]
    made = plan(index_of(pts, keys), SamplingSpec(fps=None, num_frames=3))
    assert [t.index for t in made.kept] == [5, 15, 25]
    assert [(s.start, s.end) for s in made.segments] == [(0, 5), (10, 15), (20, 25)]
    assert made.packets == 18


def test_targets_sharing_a_gop_share_one_run_of_decoding():
    made = plan(index_of(list(range(30)), [i % 10 == 0 for i in range(30)]), SamplingSpec(fps=4))
    # 10 fps sampled at 4 fps keeps frames 0, 3, 5, 8, 10, ...: each GOP decoded once, up
    # to its last kept frame (frame 9 is needed by nothing).
    assert [t.index for t in made.kept][:5] == [0, 3, 5, 8, 10]
    assert [(s.start, s.end) for s in made.segments] == [(0, 8), (10, 18), (20, 28)]
    assert [sorted(s.targets) for s in made.segments][0] == [0, 3, 5, 8]


def test_a_leading_picture_decodes_from_the_keyframe_before():
    """Open GOP: the frame shown just before a keyframe comes after it in the file and
    needs the previous GOP, so decoding starts at the previous keyframe."""
    pts = [0, 2, 1, 3, 6, 4, 5, 8, 7]  # decode order; keyframes at positions 0 and 4
    keys = [True, False, False, False, True, False, False, False, False]
    index = index_of(pts, keys)
    assert start_of(index, [0, 4], 5) == 0  # pts 4 < 6: before the keyframe it follows
    assert start_of(index, [0, 4], 7) == 4
    made = plan(index, SamplingSpec(fps=None, num_frames=1))  # frame 4 (pts 4)
    assert [(s.start, s.end) for s in made.segments] == [(0, 5)]


def test_indexes_that_cannot_be_planned():
    assert index_problem([0, None, 2], [True, False, False]) == "frame packets without timestamps"
    assert index_problem([0, 1, 1], [True, False, False]) == "two frame packets with one timestamp"
    assert index_problem([0, 1], [False, True]) == "the first frame packet is not a keyframe"
    assert index_problem([], []) == "no frame packets"
    # A kept frame with no keyframe before it cannot be planned either.
    assert plan(index_of([0, 1], [False, True]), SamplingSpec()) is None
    broken = PacketIndex(np.arange(3), np.ones(3, bool), (1, 10), 0.0, problem="no timestamps")
    assert plan(broken, SamplingSpec()) is None


def test_max_frames_stops_before_the_end_and_skips_the_truncation_check():
    index = index_of(list(range(30)), [i % 10 == 0 for i in range(30)])
    assert not plan(index, SamplingSpec(fps=None, max_frames=5)).exhausted
    assert plan(index, SamplingSpec(fps=None, max_frames=30)).exhausted
    assert plan(index, SamplingSpec(fps=2.0)).exhausted


# Keyframe sampling from the command line.

FAST = ["--weights", "random", "--image-size", str(SMALL), "--batch-size", "4", "-q"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_keyframe_sampling_is_recorded_refused_when_mixed_and_followed_by_like(tmp_path):
    clips = tmp_path / "clips"
    frames = moving(30)
    for n in range(2):
        write_video(clips / f"c{n}.mp4", frames[n:], 10, "libx264", "yuv420p", {"g": "8"})
    cache = tmp_path / "keys.h5"
    result = invoke("extract", clips, "-o", cache, "--sampling", "keyframes", "--fps", "0", *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads(invoke("inspect", cache, "--json").output)
    assert summary["settings"]["sampling"] == {
        "fps": None, "num_frames": None, "max_frames": None, "keyframes": True
    }  # fmt: skip
    keys = []
    for n in range(2):
        with VideoReader(clips / f"c{n}.mp4") as reader:
            keys.append(sum(bool(f.key_frame) for _, f in reader.frames()))
    assert min(keys) >= 4 and summary["frames"] == sum(keys)
    assert "keyframes" in invoke("inspect", cache).output
    # Every frame, into the keyframe cache: refused, naming the difference.
    mixed = invoke("extract", clips, "-o", cache, "--fps", "0", *FAST)
    assert mixed.exit_code == 1
    assert "holds features made with other settings (sampling:" in mixed.output
    refused = invoke("extract", clips, "-o", tmp_path / "x.h5", "--sampling", "keyframes",
                     "--num-frames", "4", *FAST)  # fmt: skip
    assert refused.exit_code == 2
    assert "--num-frames cannot be used with --sampling keyframes" in refused.output
    like = tmp_path / "like.h5"
    assert invoke("extract", clips, "-o", like, "--like", cache, "-q").exit_code == 0
    copied = json.loads(invoke("inspect", like, "--json").output)
    assert copied["settings"]["sampling"]["keyframes"] is True
    assert copied["frames"] == summary["frames"]


def write_vfr(path, frames, gaps_ms, options):
    """H.264 in Matroska with frames at irregular times (variable frame rate)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 80, 60, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = options
        pts = 0
        for array, gap in zip(frames, gaps_ms):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame))
            pts += gap
        container.mux(stream.encode())
    return path


def test_variable_frame_rate_gives_the_same_frames(tmp_path, monkeypatch):
    gaps = [40, 40, 40, 300, 10, 10, 10, 500, 40, 80] * 4  # 41 frames, 25 fps to 2 fps
    path = write_vfr(tmp_path / "vfr.mkv", moving(), gaps,
                     {"g": "12", "bf": "3", "sc_threshold": "0"})  # fmt: skip
    with VideoReader(path) as reader:
        steps = np.diff(reader.packet_index().pts)
    assert len(set(steps.tolist())) > 2  # really irregular
    for sampling in SAMPLINGS:
        sequential, _ = decode(path, sampling, "sequential", monkeypatch)
        planned, stats = decode(path, sampling, "auto", monkeypatch)
        assert stats.planned, stats.fallback
        assert_same(planned, sequential)


@pytest.mark.parametrize("name", [f[0] for f in FILES])
def test_decoder_threads_give_the_same_frames(videos, name, tmp_path, monkeypatch):
    """Sparse sampling gives the decoder threads (slice threads by plan, frame threads in
    sequence): forced on for every sampling here, the frames are those of one thread."""
    paths = [videos[name]]
    if name == "h264-longgop.mp4":  # and a file cut into slices, which slice threads split
        paths.append(write_video(tmp_path / "sliced.mp4", moving(), 10, "libx264", "yuv420p",
                                 {"g": "250", "bf": "3", "slices": "4"}))  # fmt: skip
    for path in paths:
        for sampling in SAMPLINGS:
            monkeypatch.setattr(decode_module, "SPARSE_DECODE_THREADS", 1)
            alone, _ = decode(path, sampling, "auto", monkeypatch)
            monkeypatch.setattr(decode_module, "SPARSE_DECODE_THREADS", 2)
            monkeypatch.setattr(decode_module, "SPARSE_DECODES_PER_KEPT", 0)
            threaded, stats = decode(path, sampling, "auto", monkeypatch)
            monkeypatch.setattr(decode_module, "SPARSE_DECODES_PER_KEPT", 8)
            assert_same(threaded, alone)
            if sampling.num_frames is not None or stats.planned:
                assert stats.threads == 2, (name, sampling)


def test_only_sparse_sampling_gets_decoder_threads(videos, monkeypatch):
    monkeypatch.setattr(decode_module, "SPARSE_DECODE_THREADS", 2)
    path = videos["h264-longgop.mp4"]  # 41 frames, one keyframe
    _, dense = decode(path, SamplingSpec(fps=None), "auto", monkeypatch)
    _, sparse = decode(path, SamplingSpec(fps=None, num_frames=2), "auto", monkeypatch)
    assert (dense.threads, sparse.threads) == (1, 2)  # 41 decoded for 41 kept; 37 for 2
