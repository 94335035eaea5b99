import os
import signal
import time
from dataclasses import replace

import numpy as np
import pytest
from conftest import SMALL, lossless, random_frames
from test_decode import bad_file

from vidcache.features.cache import CacheReader
from vidcache.features.errors import SettingsMismatch
from vidcache.features.settings import SamplingSpec
from vidcache.features.synthetic import write_frame_folder
from vidcache.features.video.decode import open_source
from vidcache.features.video.discover import discover
from vidcache.features.video.sampling import sample
from vidcache.features.video.transform import fit_frame
from vidcache.pipeline.extraction.local import CACHED, EXTRACTED, FAILED, Reporter


def reference_features(extractor, source, config):
    """Features of one video computed alone: decode, sample, fit, CNN in its own batches."""
    with open_source(source, config.folder_fps) as reader:
        total = reader.count_frames() if config.sampling.num_frames else None
        kept = list(sample(reader.frames(), config.sampling, total))
        images = np.stack([fit_frame(f, config.image_size, config.resize) for _, _, f in kept])
    rows = [
        extractor(images[i : i + extractor.batch_size])
        for i in range(0, len(images), extractor.batch_size)
    ]
    return np.concatenate(rows), np.array([t for _, t, _ in kept])


def stored(path):
    with CacheReader(path) as reader:
        return {
            vid: (reader.features(vid), reader.timestamps(vid), entry)
            for vid, entry in reader.entries().items()
        }


def statuses(summary):
    return {o.video_id: o.status for o in summary.outcomes}


@pytest.mark.parametrize("workers", [1, 3])
def test_cross_video_batches_give_the_same_features_as_one_video_at_a_time(
    tmp_path, dataset, extractor, small_config, run_extract, workers
):
    # 6 frames at 10 fps, 5 fps sampling: 3 frames a video, batches of 4 span videos.
    config = small_config(decode_workers=workers)
    summary = run_extract([dataset], tmp_path / "f.h5", config)
    assert summary.count(EXTRACTED) == 4 and summary.frames == 12 and not summary.failures
    cache = stored(tmp_path / "f.h5")
    for source in discover([dataset]):
        features, times, entry = cache[source.video_id]
        expected, expected_times = reference_features(extractor, source, config)
        np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(times, expected_times)
        assert entry.label == source.label and entry.num_frames == 3
        assert entry.fps == 10 and entry.codec == "h264" and entry.fingerprint.startswith("sha256:")


def test_rerun_skips_cached_videos_and_handles_changed_touched_and_new_ones(
    tmp_path, dataset, small_config, run_extract
):
    out = tmp_path / "f.h5"
    run_extract([dataset], out, small_config())
    before = stored(out)
    again = run_extract([dataset], out, small_config())
    assert set(statuses(again).values()) == {CACHED} and again.frames == 0

    changed = dataset / "left" / "left_c0.mkv"
    lossless(changed, random_frames(8, seed=99))
    touched = dataset / "right" / "right_c0.mkv"
    os.utime(touched, (time.time() + 100, time.time() + 100))
    lossless(dataset / "right" / "right_new.mkv", random_frames(4, seed=7))
    third = run_extract([dataset], out, small_config())
    assert statuses(third) == {
        "left/left_c0.mkv": EXTRACTED,
        "left/left_c1.mkv": CACHED,
        "right/right_c0.mkv": CACHED,
        "right/right_c1.mkv": CACHED,
        "right/right_new.mkv": EXTRACTED,
    }
    after = stored(out)
    assert after["left/left_c0.mkv"][0].shape == (4, 2048)  # 8 frames at 5 of 10 fps
    assert after["right/right_c0.mkv"][2].mtime == pytest.approx(os.stat(touched).st_mtime)
    np.testing.assert_array_equal(after["right/right_c1.mkv"][0], before["right/right_c1.mkv"][0])


def test_prune_drops_videos_whose_source_is_gone(tmp_path, dataset, small_config, run_extract):
    out = tmp_path / "f.h5"
    run_extract([dataset], out, small_config())
    (dataset / "left" / "left_c1.mkv").unlink()
    run_extract([dataset], out, small_config())
    assert "left/left_c1.mkv" in stored(out)
    summary = run_extract([dataset], out, small_config(prune=True))
    assert summary.pruned == 1 and sorted(stored(out)) == [
        "left/left_c0.mkv",
        "right/right_c0.mkv",
        "right/right_c1.mkv",
    ]


def test_other_settings_are_refused_and_overwrite_replaces(
    tmp_path, dataset, small_config, run_extract
):
    out = tmp_path / "f.h5"
    run_extract([dataset], out, small_config())
    with pytest.raises(SettingsMismatch, match=r"sampling: .*'num_frames': 2"):
        run_extract([dataset], out, small_config(sampling=SamplingSpec(fps=None, num_frames=2)))
    summary = run_extract(
        [dataset], out, small_config(sampling=SamplingSpec(fps=None, num_frames=2), overwrite=True)
    )
    assert summary.count(EXTRACTED) == 4
    assert {e.num_frames for _, _, e in stored(out).values()} == {2}


def test_same_declared_settings_but_other_weights_are_refused(
    tmp_path, dataset, small_config, extractor
):
    from vidcache.pipeline.extraction.local import extract_features

    out = tmp_path / "f.h5"
    sources = discover([dataset])
    extract_features(sources[:1], out, small_config(), extractor_factory=lambda c: extractor)

    class Retrained:  # same declared identity (random:seed=0), other tensors
        weights_sha256 = "0" * 64
        batch_size = extractor.batch_size

    with pytest.raises(SettingsMismatch, match="weights_sha256"):
        extract_features(sources, out, small_config(), extractor_factory=lambda c: Retrained())


def test_bad_inputs_are_reported_and_the_rest_of_the_batch_goes_on(
    tmp_path, dataset, small_config, run_extract
):
    kinds = ("empty", "junk", "audio", "zero-frames", "truncated-mkv", "missing")
    for kind in kinds:
        target = dataset / "left" / f"bad_{kind}"
        target.mkdir()
        bad_file(target, kind)
    summary = run_extract([dataset], tmp_path / "f.h5", small_config())
    assert summary.count(EXTRACTED) == 4 and summary.count(FAILED) == len(kinds)
    reasons = {o.video_id.split("/")[1]: o.reason for o in summary.failures}
    assert reasons["bad_empty"] == "file is empty"
    assert reasons["bad_audio"] == "no video stream (has: audio)"
    assert reasons["bad_truncated-mkv"].startswith("truncated: frames end at")
    assert reasons["bad_missing"] == "No such file or directory"
    assert sorted(stored(tmp_path / "f.h5")) == [
        "left/left_c0.mkv",
        "left/left_c1.mkv",
        "right/right_c0.mkv",
        "right/right_c1.mkv",
    ]


def test_strict_stops_at_the_first_failure_and_keeps_finished_work(
    tmp_path, dataset, small_config, run_extract
):
    (dataset / "left" / "aaa_junk.mp4").write_bytes(b"junk")
    summary = run_extract([dataset], tmp_path / "f.h5", small_config(strict=True))
    assert summary.stopped_early and summary.count(FAILED) == 1
    assert summary.count(EXTRACTED) < 4


def test_spilled_buffers_and_num_frames_sampling(
    tmp_path, dataset, extractor, small_config, run_extract
):
    config = small_config(sampling=SamplingSpec(fps=None, num_frames=5), spill_rows=2)
    run_extract([dataset], tmp_path / "f.h5", config)
    (source, *_) = discover([dataset])
    features, times, entry = stored(tmp_path / "f.h5")[source.video_id]
    expected, expected_times = reference_features(extractor, source, config)
    assert features.shape == (5, 2048) and entry.source_frames == -1
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(times, [0.0, 0.1, 0.3, 0.4, 0.5])  # frames 0,1,3,4,5 of 6


def test_frame_folders_float16_storage_and_label_metadata(tmp_path, small_config, run_extract):
    root = tmp_path / "v"
    write_frame_folder(root / "jump" / "clip", random_frames(10), ext="jpg")
    summary = run_extract([root], tmp_path / "f.h5", small_config(folder_fps=5, dtype="float16"))
    assert summary.count(EXTRACTED) == 1
    features, times, entry = stored(tmp_path / "f.h5")["jump/clip"]
    assert features.dtype == np.float16 and features.shape == (10, 2048)
    assert entry.kind == "frames" and entry.label == "jump" and entry.codec == "images"
    np.testing.assert_allclose(times, np.arange(10) / 5)


def test_ctrl_c_stops_after_the_current_batch_and_keeps_committed_videos(
    tmp_path, dataset, small_config, run_extract
):
    class InterruptAfterFirstVideo(Reporter):
        def video(self, outcome):
            if outcome.status == EXTRACTED:
                os.kill(os.getpid(), signal.SIGINT)

    for clip in range(4):  # more work so the stop lands mid-run
        lossless(dataset / "left" / f"more_{clip}.mkv", random_frames(6, seed=50 + clip))
    out = tmp_path / "f.h5"
    summary = run_extract([dataset], out, small_config(), reporter=InterruptAfterFirstVideo())
    assert summary.interrupted
    done = summary.count(EXTRACTED)
    assert 1 <= done < 8 and len(stored(out)) == done
    rest = run_extract([dataset], out, small_config())
    assert rest.count(CACHED) == done and rest.count(EXTRACTED) == 8 - done


def test_an_unexpected_error_in_one_video_does_not_end_the_run(
    tmp_path, dataset, small_config, run_extract, monkeypatch
):
    import vidcache.features.video.frames as module  # where extraction fits its frames

    real = module.fit_frame

    def flaky(frame, size, policy):
        if getattr(flaky, "calls", 0) == 0:
            flaky.calls = 1
            raise RuntimeError("boom")
        return real(frame, size, policy)

    monkeypatch.setattr(module, "fit_frame", flaky)
    summary = run_extract([dataset], tmp_path / "f.h5", small_config())
    assert [o.reason for o in summary.failures] == ["unexpected RuntimeError: boom"]
    assert summary.count(EXTRACTED) == 3


def test_nothing_to_do_builds_no_model(tmp_path, dataset, small_config, run_extract):
    from vidcache.pipeline.extraction.local import extract_features

    out = tmp_path / "f.h5"
    run_extract([dataset], out, small_config())

    def no_model(config):
        raise AssertionError("the model was built although every video is cached")

    summary = extract_features(discover([dataset]), out, small_config(), extractor_factory=no_model)
    assert summary.count(CACHED) == 4


def test_settings_of_the_run_are_stamped_on_the_cache(
    tmp_path, dataset, small_config, run_extract, extractor
):
    out = tmp_path / "f.h5"
    config = small_config(resize="stretch")
    run_extract([dataset], out, config)
    with CacheReader(out) as reader:
        assert reader.settings == replace(config.settings(extractor.weights_sha256))
        assert reader.settings.image_size == SMALL and reader.settings.resize == "stretch"
        assert {"tensorflow", "keras", "h5py", "av", "vidcache"} <= set(reader.versions)


def test_overwrite_keeps_the_old_cache_when_the_run_fails_before_writing(
    tmp_path, dataset, small_config, run_extract
):
    from vidcache.features.errors import WeightsUnavailable
    from vidcache.pipeline.extraction.local import extract_features

    out = tmp_path / "f.h5"
    run_extract([dataset], out, small_config())

    def unavailable(config):
        raise WeightsUnavailable("no weights here")

    with pytest.raises(WeightsUnavailable):
        extract_features(
            discover([dataset]),
            out,
            small_config(image_size=99, overwrite=True),
            extractor_factory=unavailable,
        )
    assert len(stored(out)) == 4


def test_overwrite_that_extracts_nothing_keeps_the_old_cache(
    tmp_path, dataset, small_config, run_extract
):
    out = tmp_path / "f.h5"
    run_extract([dataset], out, small_config())
    before = {vid: f.tobytes() for vid, (f, _, _) in stored(out).items()}
    broken = tmp_path / "broken" / "x"
    broken.mkdir(parents=True)
    for kind in ("junk", "zero-frames"):
        bad_file(broken, kind)
    notes = []
    reporter = Reporter()
    reporter.note = notes.append
    summary = run_extract([broken.parent], out, small_config(overwrite=True), reporter=reporter)
    assert summary.count(FAILED) == 2
    assert notes == [f"no video was extracted: {out} is kept as it was"]
    assert {vid: f.tobytes() for vid, (f, _, _) in stored(out).items()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "f.h5", "videos"]


def test_a_moved_dataset_is_not_re_extracted_and_its_new_paths_are_recorded(
    tmp_path, dataset, small_config, run_extract
):
    out = tmp_path / "f.h5"
    run_extract([dataset], out, small_config())
    moved = dataset.rename(tmp_path / "moved")  # like `mv`: same ids, sizes and mtimes
    summary = run_extract([moved], out, small_config())
    assert set(statuses(summary).values()) == {CACHED}
    assert {e.path for _, _, e in stored(out).values()} == {
        str(p.resolve()) for p in moved.rglob("*.mkv")
    }


def test_strict_also_stops_on_a_source_that_vanished_before_extraction(
    tmp_path, dataset, small_config, run_extract
):
    (dataset / "left" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    summary = run_extract([dataset], tmp_path / "f.h5", small_config(strict=True))
    assert summary.stopped_early and summary.count(FAILED) == 1 and summary.frames == 0
    assert not (tmp_path / "f.h5").exists()


def test_decoding_starts_while_the_model_is_built(tmp_path, dataset, small_config, extractor):
    """The decode threads open the first video before the CNN exists and fill the queue
    while it is built (then wait for it); a build that fails stops them (no thread left
    behind, nothing written)."""
    import threading
    import time

    from vidcache.features.errors import WeightsUnavailable
    from vidcache.features.video.discover import discover
    from vidcache.pipeline.extraction import producer as producer_module
    from vidcache.pipeline.extraction.local import extract_features

    opened, original = [], producer_module.open_source

    def spy(source, folder_fps):
        opened.append(time.perf_counter())
        return original(source, folder_fps)

    producer_module.open_source = spy
    try:
        built = []

        def slow_build(config):
            deadline = time.perf_counter() + 20
            while not opened and time.perf_counter() < deadline:
                time.sleep(0.01)  # a build that takes until decoding has begun...
            time.sleep(1.0)  # ...and until the one-batch queue is full
            built.append(time.perf_counter())
            return extractor

        sources = discover([dataset])
        summary = extract_features(sources, tmp_path / "a.h5", small_config(queue_batches=1),
                                   extractor_factory=slow_build)  # fmt: skip
        assert opened and opened[0] < built[0] and len(summary.outcomes) == len(sources)

        def failing_build(config):
            raise WeightsUnavailable("no weights here")

        with pytest.raises(WeightsUnavailable):
            extract_features(sources, tmp_path / "b.h5", small_config(),
                             extractor_factory=failing_build)  # fmt: skip
    finally:
        producer_module.open_source = original
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        if not any(t.name.startswith("vidcache-decode") for t in threading.enumerate()):
            break
        time.sleep(0.05)
    assert not any(t.name.startswith("vidcache-decode") for t in threading.enumerate())
    assert not (tmp_path / "b.h5").exists()
