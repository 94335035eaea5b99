import os

import av
import numpy as np
import pytest
from conftest import lossless, random_frames, solid_frames

from vidcache.features.errors import VideoDecodeError
from vidcache.features.settings import SamplingSpec
from vidcache.features.synthetic import render_clip, write_frame_folder, write_video
from vidcache.features.video.decode import FrameFolderReader, VideoReader, open_source
from vidcache.features.video.discover import VideoSource
from vidcache.features.video.sampling import sample
from vidcache.features.video.transform import fit_frame


def test_decoded_frames_are_exact_rgb_with_timestamps(tmp_path):
    frames = solid_frames([(255, 0, 0), (0, 255, 0), (0, 0, 255)]) + random_frames(3)
    path = lossless(tmp_path / "clip.mkv", frames, fps=10)
    with VideoReader(path) as reader:
        decoded = list(reader.frames())
        assert reader.info.fps == 10 and (reader.info.width, reader.info.height) == (64, 48)
        assert reader.info.codec == "h264"
    assert [round(t, 6) for t, _ in decoded] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    arrays = [frame.to_ndarray(format="rgb24") for _, frame in decoded]
    for original, got in zip(frames, arrays):
        np.testing.assert_array_equal(got, original)
    # RGB, not BGR: the red frame has its energy in channel 0 after fitting too.
    fitted = fit_frame(decoded[0][1], 75)
    assert fitted.shape == (75, 75, 3)
    assert (fitted[..., 0] == 255).all() and (fitted[..., 1:] == 0).all()


def test_frame_folder_reads_like_a_video(tmp_path):
    frames = random_frames(4)
    folder = write_frame_folder(tmp_path / "clip", frames)
    with FrameFolderReader(folder, fps=2) as reader:
        decoded = list(reader.frames())
        assert reader.info.frame_count == 4 and reader.info.duration == 2.0
    assert [t for t, _ in decoded] == [0.0, 0.5, 1.0, 1.5]
    np.testing.assert_array_equal(np.asarray(decoded[2][1].load()), frames[2])


@pytest.mark.parametrize(
    "ext, codec, pix_fmt",
    [
        ("mp4", "libx264", "yuv420p"),
        ("avi", "mpeg4", "yuv420p"),
        ("webm", "libvpx-vp9", "yuv420p"),
        ("mkv", "ffv1", "yuv420p"),
        ("avi", "mjpeg", "yuvj420p"),
    ],
)
def test_every_demo_format_decodes_with_sampling(tmp_path, ext, codec, pix_fmt):
    path = write_video(tmp_path / f"c.{ext}", render_clip("grow", 30, 64, 48), 10, codec, pix_fmt)
    source = VideoSource(path, path.name)
    with open_source(source) as reader:
        kept = list(sample(reader.frames(), SamplingSpec(fps=5)))
        assert [i for i, _, _ in kept] == list(range(0, 30, 2))
    with open_source(source) as reader:
        total = reader.count_frames()
        kept = list(sample(reader.frames(), SamplingSpec(fps=None, num_frames=4), total))
    assert total == 30 and [i for i, _, _ in kept] == [3, 11, 18, 26]


def truncated(tmp_path, ext, codec):
    path = write_video(tmp_path / f"full.{ext}", render_clip("grow", 40, 64, 48), 10, codec)
    data = path.read_bytes()
    path.unlink()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 44100, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def header_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return path


def bad_file(tmp_path, kind):
    if kind == "empty":
        path = tmp_path / "empty.mp4"
        path.write_bytes(b"")
    elif kind == "junk":
        path = tmp_path / "junk.mp4"
        path.write_bytes(os.urandom(4096))
    elif kind == "audio":
        path = audio_only(tmp_path / "audio.mp4")
    elif kind == "zero-frames":
        path = header_only(tmp_path / "zero.mkv")
    elif kind == "truncated-mp4":
        path = truncated(tmp_path, "mp4", "libx264")
    elif kind == "truncated-mkv":
        path = truncated(tmp_path, "mkv", "ffv1")
    elif kind == "missing":
        path = tmp_path / "gone.mp4"
        path.symlink_to(tmp_path / "nowhere.mp4")
    return path


BAD = {
    "empty": "file is empty",
    "junk": "not a readable video (Invalid data found when processing input)",
    "audio": "no video stream (has: audio)",
    "zero-frames": "no frames: the file ends right after its header",
    "truncated-mp4": "not a readable video (Invalid data found when processing input)",
    "truncated-mkv": "truncated: frames end at",
    "missing": "no such file or directory",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_inputs_raise_one_line_reasons(tmp_path, kind):
    path = bad_file(tmp_path, kind)
    with pytest.raises(VideoDecodeError) as info:
        with VideoReader(path) as reader:
            for _ in reader.frames():
                pass
    assert str(info.value).startswith(BAD[kind])
    assert "\n" not in str(info.value)


def test_unreadable_frame_in_a_folder_names_the_frame(tmp_path):
    folder = write_frame_folder(tmp_path / "clip", random_frames(2))
    (folder / "frame_00002.png").write_bytes(b"not a png")
    reader = FrameFolderReader(folder, 25)
    _, lazy = list(reader.frames())[1]
    with pytest.raises(VideoDecodeError, match="cannot read frame frame_00002.png"):
        fit_frame(lazy, 75)


def half_rate_avi(path, frames: int = 20):
    """An AVI declaring 50 fps whose frames are stamped at every other 1/50 s slot (like
    real AVIs whose header claims twice their frame rate): it declares about twice the
    frames it holds, and those frames span the whole declared duration."""
    import fractions

    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=50)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    stream.codec_context.time_base = fractions.Fraction(1, 50)
    for i, image in enumerate(random_frames(frames, seed=3)):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = 2 * i, fractions.Fraction(1, 50)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.mark.parametrize(
    "spec, rows",
    [
        (SamplingSpec(fps=None, num_frames=8), 8),
        (SamplingSpec(fps=5.0), 4),
        (SamplingSpec(fps=None), 20),
        (SamplingSpec(fps=None, num_frames=None, max_frames=6), 6),
    ],
)
def test_an_avi_declaring_twice_its_frame_rate_is_not_truncated(tmp_path, spec, rows):
    from vidcache.features.video.frames import sampled_frames

    path = half_rate_avi(tmp_path / "half.avi")
    with VideoReader(path) as reader:
        assert reader.info.frame_count >= 38  # declared: about twice the 20 it holds
        assert reader.count_frames() == 20  # counted: the frames it really holds
        kept = list(sampled_frames(reader, spec, 75, "center-crop"))
    assert len(kept) == rows
    times = [seconds for _, seconds, _ in kept]
    assert times == sorted(times)
    if not spec.max_frames:
        assert times[-1] >= 0.5  # spread over the whole clip
    if spec.num_frames:  # evenly spaced over the 20 real frames, none repeated
        assert len({index for index, _, _ in kept}) == 8


def test_a_half_rate_avi_cut_short_is_still_truncated(tmp_path):
    path = half_rate_avi(tmp_path / "half.avi", frames=40)
    short = tmp_path / "short.avi"
    data = path.read_bytes()
    short.write_bytes(data[: len(data) // 2])  # the header (declares 79 frames) and half
    with VideoReader(short) as reader:
        with pytest.raises(VideoDecodeError, match="truncated: frames end at"):
            reader.count_frames()
    with VideoReader(short) as reader:
        with pytest.raises(VideoDecodeError, match="truncated: frames end at"):
            list(reader.frames())
