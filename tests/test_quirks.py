"""Real files' quirks (tests/quirks.py): the decode plan gives the same frames and timestamps
as decoding every frame, and work stays bounded by what a file holds, whatever its
timestamps claim."""

from __future__ import annotations

import signal
from contextlib import contextmanager

import pytest
from quirks import QUIRK_FILES
from test_decodeplan import SAMPLINGS, assert_same, decode

from vidcache.features.settings import SamplingSpec

QUIRKS = QUIRK_FILES

# Every sampling mode, with rates that make slot arithmetic meet the absurd gaps.
EVERY_MODE = SAMPLINGS + [SamplingSpec(fps=5.0), SamplingSpec(fps=0.01, max_frames=9)]


@contextmanager
def bounded(seconds: int):
    """Fail (instead of hanging the suite) when the block runs past ``seconds``."""

    def alarm(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def quirk_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quirks")
    return {name: make(folder / name) for name, make in QUIRKS.items()}


@pytest.mark.parametrize("name", sorted(QUIRKS))
def test_planned_equals_sequential_on_real_file_quirks(quirk_files, name, monkeypatch):
    with bounded(60):
        for sampling in EVERY_MODE:
            sequential, _ = decode(quirk_files[name], sampling, "sequential", monkeypatch)
            planned, stats = decode(quirk_files[name], sampling, "auto", monkeypatch)
            assert_same(planned, sequential)
            if name.endswith(".avi"):
                assert not stats.planned and "AVI with B-frames" in stats.fallback


def test_avi_quirk_files_really_have_the_quirks(quirk_files):
    """The generators make what they say: decoded timestamps out of order in the packed
    file, and guessed pts one tick past dts in H.264 AVI."""
    import av

    with av.open(str(quirk_files["packed-bframes.avi"])) as container:
        shown = [frame.pts for frame in container.decode(video=0)]
    assert shown != sorted(shown)
    with av.open(str(quirk_files["h264-bframes.avi"])) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        assert stream.codec_context.has_b_frames
    assert all(p.pts == p.dts + 1 for p in packets)


def test_the_plan_notices_frames_shown_out_of_timestamp_order(quirk_files, monkeypatch):
    """Without the AVI rule, the check on each decoded frame still abandons the plan."""
    from vidcache.features.video import decode as decode_module

    monkeypatch.setattr(decode_module, "_GUESSED_PTS_FORMATS", frozenset())
    _, stats = decode(
        quirk_files["packed-bframes.avi"], SamplingSpec(fps=None), "auto", monkeypatch
    )
    assert stats.fallback == "the decoder shows frames out of timestamp order"


def test_a_ten_to_the_ninth_second_gap_extracts_at_once(
    tmp_path, quirk_files, run_extract, small_config
):
    """The issue's file: two frames, the second at 10^9 s, --fps 5, in a folder with a
    normal video; both are extracted with the timestamps the file holds."""
    import shutil

    from conftest import lossless, random_frames

    from vidcache.features.cache import CacheReader

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(quirk_files["gap.mkv"], videos / "gap.mkv")
    lossless(videos / "normal.mkv", random_frames(4))
    with bounded(60):
        run_extract([videos], tmp_path / "f.h5", small_config(sampling=SamplingSpec(fps=5.0)))
    with CacheReader(tmp_path / "f.h5") as reader:
        assert reader.rows("gap.mkv").timestamps.tolist() == [0.0, 1e9]
        assert len(reader.rows("normal.mkv").features) == 2


def test_a_cache_removes_only_its_own_leftovers(tmp_path):
    """``b.h5``'s clean-up leaves ``a.b.h5``'s live rewrite (and anything not a PID) alone."""
    from vidcache.features.cache import remove_leftovers

    names = [".b.h5.rewrite-456", ".b.h5.creating-7", "..b.h5.rewrite-4.creating-4",
             ".a.b.h5.rewrite-123", ".a.b.h5.creating-9", ".b.h5.rewrite-x",
             ".b.h5.rewrite-1.bak"]  # fmt: skip
    for name in names:
        (tmp_path / name).write_bytes(b"")
    removed = remove_leftovers(tmp_path / "b.h5")
    assert sorted(p.name for p in removed) == sorted(names[:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:])


@pytest.mark.parametrize("name", sorted(QUIRKS))
def test_a_plan_split_between_decoders_equals_sequential_on_quirks(quirk_files, name, monkeypatch):
    """Every plan split between two decoders, every sequential decode with frame threads
    (both forced here): the same frames as one decoder gives."""
    from vidcache.features.video import decode as decode_module

    monkeypatch.setattr(decode_module, "SPARSE_DECODES_PER_KEPT", 0)
    with bounded(60):
        for sampling in EVERY_MODE:
            monkeypatch.setattr(decode_module, "SPARSE_DECODE_THREADS", 1)
            sequential, _ = decode(quirk_files[name], sampling, "sequential", monkeypatch)
            monkeypatch.setattr(decode_module, "SPARSE_DECODE_THREADS", 2)
            threaded, stats = decode(quirk_files[name], sampling, "auto", monkeypatch)
            assert_same(threaded, sequential)
            assert stats.threads == 2 or not (stats.planned or sampling.num_frames)
