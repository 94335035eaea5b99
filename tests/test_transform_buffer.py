import numpy as np
import pytest
from PIL import Image

from vidcache.features.cache.buffer import FeatureBuffer
from vidcache.features.video.transform import fit_frame, scaled_size


@pytest.mark.parametrize(
    "size_in, policy, expected",
    [
        ((320, 240), "center-crop", (100, 100 * 240 // 240)),
        ((320, 240), "stretch", (100, 100)),
        ((240, 320), "center-crop", (100, 133)),
    ],
)
def test_scaled_size(size_in, policy, expected):
    width, height = size_in
    got = scaled_size(width, height, 100, policy)
    assert min(got) == 100
    if policy == "center-crop":
        assert got == ((133, 100) if width > height else (100, 133))
    else:
        assert got == expected


def striped(width=120, height=60):
    """Left third red, middle green, right third blue."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 3, 0] = 255
    image[:, width // 3 : 2 * width // 3, 1] = 255
    image[:, 2 * width // 3 :, 2] = 255
    return image


def test_center_crop_keeps_the_middle_and_stretch_keeps_everything():
    image = Image.fromarray(striped(180, 60))  # the centre square is exactly the green third
    crop = fit_frame(image, 30, "center-crop")
    stretch = fit_frame(image, 30, "stretch")
    assert crop.shape == stretch.shape == (30, 30, 3) and crop.dtype == np.uint8
    assert (crop[:, 3:-3, 1] > 200).all() and (crop[:, 3:-3, 0::2] < 50).all()  # green only
    assert stretch[15, 2, 0] > 200 and stretch[15, 15, 1] > 200 and stretch[15, 27, 2] > 200


def test_buffer_spills_to_disk_and_reads_back_in_order():
    rows = np.arange(7 * 4, dtype=np.float32).reshape(7, 4)
    buffer = FeatureBuffer(4, spill_rows=3)
    for i, row in enumerate(rows):
        buffer.append(row, i / 10, i * 2)
    assert buffer.spilled and len(buffer) == 7
    blocks = list(buffer.blocks(block_rows=2))
    assert max(len(b) for b in blocks) <= 3
    np.testing.assert_array_equal(np.concatenate(blocks), rows)
    assert buffer.frame_indices == [0, 2, 4, 6, 8, 10, 12]
    buffer.close()


def test_buffer_in_memory_only_below_the_limit():
    buffer = FeatureBuffer(2, spill_rows=10)
    buffer.append(np.ones(2), 0.0, 0)
    assert not buffer.spilled
    np.testing.assert_array_equal(np.concatenate(list(buffer.blocks())), [[1, 1]])


def test_one_reformatter_per_thread_gives_the_pixels_of_a_new_one_per_frame(tmp_path):
    """fit_frame keeps its swscale context from frame to frame (and per thread); the pixels
    are those of PyAV's to_ndarray with a fresh one each time, for every size and policy."""
    import threading

    from vidcache.features.synthetic import write_video
    from vidcache.features.video.decode import VideoReader

    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)
    path = write_video(tmp_path / "a.mp4", frames, 10)
    with VideoReader(path) as reader:
        decoded = [frame for _, frame in reader.frames()]
    results = {}

    def fit_all(key):
        results[key] = [fit_frame(f, s, p) for s in (32, 75) for p in ("center-crop", "stretch")
                        for f in decoded]  # fmt: skip

    threads = [threading.Thread(target=fit_all, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = []
    for size in (32, 75):
        for policy in ("center-crop", "stretch"):
            for frame in decoded:
                width, height = scaled_size(frame.width, frame.height, size, policy)
                array = frame.to_ndarray(
                    format="rgb24", width=width, height=height, interpolation="BILINEAR"
                )
                top, left = (height - size) // 2, (width - size) // 2
                expected.append(array[top : top + size, left : left + size])
    for key in range(3):
        assert len(results[key]) == len(expected)
        for got, want in zip(results[key], expected):
            np.testing.assert_array_equal(got, want)
