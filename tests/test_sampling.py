import pytest

from vidcache.features.settings import SamplingSpec
from vidcache.features.video.sampling import count_indices, sample, sample_by_count, sample_by_rate


def frames_at(fps, count):
    return [(i / fps, f"f{i}") for i in range(count)]


def test_rate_sampling_keeps_every_sixth_frame_of_30fps_at_5fps():
    kept = list(sample_by_rate(frames_at(30, 61), fps=5, max_frames=None))
    assert [index for index, _, _ in kept] == list(range(0, 61, 6))
    assert [round(t, 6) for _, t, _ in kept] == [round(i / 5, 6) for i in range(11)]


def test_rate_sampling_never_upsamples_a_slow_video():
    kept = list(sample_by_rate(frames_at(2, 5), fps=5, max_frames=None))
    assert [index for index, _, _ in kept] == [0, 1, 2, 3, 4]


def test_rate_sampling_handles_non_integer_ratio():
    # 25 fps at 10 fps: slots every 0.1 s; kept frames are the first at or after each slot.
    kept = [index for index, _, _ in sample_by_rate(frames_at(25, 26), fps=10, max_frames=None)]
    assert kept == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25]


def test_rate_sampling_with_timestamps_that_do_not_start_at_zero():
    frames = [(3.0 + i / 10, i) for i in range(10)]
    assert [i for i, _, _ in sample_by_rate(frames, fps=5, max_frames=None)] == [0, 2, 4, 6, 8]


def test_no_rate_keeps_every_frame_and_max_frames_caps():
    assert len(list(sample_by_rate(frames_at(30, 20), fps=None, max_frames=None))) == 20
    assert [i for i, _, _ in sample_by_rate(frames_at(30, 20), fps=None, max_frames=7)] == list(
        range(7)
    )


def test_max_frames_stops_before_decoding_the_rest():
    consumed = []

    def lazy():
        for i in range(1000):
            consumed.append(i)
            yield i / 30, i

    kept = list(sample_by_rate(lazy(), fps=5, max_frames=3))
    assert [i for i, _, _ in kept] == [0, 6, 12]
    assert len(consumed) <= 19


@pytest.mark.parametrize(
    "total, n, expected",
    [
        (100, 4, [12, 37, 62, 87]),
        (10, 10, list(range(10))),
        (3, 6, [0, 0, 1, 1, 2, 2]),
        (1, 3, [0, 0, 0]),
    ],
)
def test_count_indices_are_segment_centres(total, n, expected):
    assert count_indices(total, n) == expected


def test_count_sampling_yields_exactly_n_frames_with_repeats():
    kept = list(sample_by_count(frames_at(10, 3), count_indices(3, 6)))
    assert [i for i, _, _ in kept] == [0, 0, 1, 1, 2, 2]
    assert [f for _, _, f in kept] == ["f0", "f0", "f1", "f1", "f2", "f2"]


def test_count_sampling_pads_with_last_frame_when_video_is_shorter_than_counted():
    kept = list(sample_by_count(frames_at(10, 4), [1, 3, 5, 7]))
    assert [i for i, _, _ in kept] == [1, 3, 3, 3]


def test_sample_dispatches_on_spec():
    assert len(list(sample(frames_at(30, 90), SamplingSpec(fps=None, num_frames=8), total=90))) == 8
    with pytest.raises(ValueError, match="frame count"):
        list(sample(frames_at(30, 90), SamplingSpec(fps=None, num_frames=8)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fps": 5, "num_frames": 4}, "exclude each other"),
        ({"fps": None, "num_frames": 4, "max_frames": 2}, "exclude each other"),
        ({"fps": 0}, "fps must be positive"),
        ({"max_frames": 0}, "max_frames must be at least 1"),
    ],
)
def test_invalid_sampling_specs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingSpec(**kwargs)
