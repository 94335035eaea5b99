"""Sound on the frames' clock: decoding any track, the log-mel backbone, the alignment rule,
files without sound or with too little, and the one-line refusals."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner

from vidcache.features.audio.decode import decode_audio
from vidcache.features.audio.logmel import LogMel, band_centre_hz
from vidcache.features.audio.rows import audio_spans, pool_units
from vidcache.features.audio.synthetic import AUDIO_CODECS, tone_sequence, write_av
from vidcache.features.backbones import get_backbone
from vidcache.features.cache import CacheReader, read_settings
from vidcache.features.settings import FeatureSettings, SamplingSpec
from vidcache.pipeline.cli import cli

#: Mel bands the tones of these tests sit at the peak of, one tone per second.
BANDS = (8, 22, 36, 50)


def invoke(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def tones(bands=BANDS) -> list[float]:
    return [band_centre_hz(b) for b in bands]


def matched(bands=BANDS, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    """One tone per ``seconds`` at each band's peak, each as loud *in its band* as the
    others (a tone's band energy grows with the band's width): a row that hears more of
    one tone than of another then has that tone's band as its largest."""
    hearing = LogMel()
    level = []
    for band in bands:
        units = hearing.units(tone_sequence([band_centre_hz(band)], 0.5, 16000))[1]
        level.append(units[:, band].mean())
    amplitudes = [0.5 * min(level) / value for value in level]
    return tone_sequence(tones(bands), seconds, rate, amplitudes)


def picture(count: int, value: int = 90) -> list[np.ndarray]:
    return [np.full((32, 32, 3), value, np.uint8)] * count


def test_a_tone_at_a_band_peak_lights_that_band_and_units_are_timed_at_their_centres():
    hearing = LogMel()
    for band in (3, 17, 40, 60):
        times, units = hearing.units(tone_sequence([band_centre_hz(band)], 0.5, 16000))
        assert (hearing.finish(units).argmax(axis=1) == band).all()
    assert times[0] == pytest.approx(0.0125) and np.diff(times) == pytest.approx(0.01)
    assert len(times) == 1 + (8000 - 400) // 160
    entry = get_backbone("logmel")
    assert (entry.feature_dim, entry.sample_rate) == (hearing.feature_dim, hearing.rate)
    silence = hearing.finish(hearing.units(np.zeros(1600, np.float32))[1])
    assert silence == pytest.approx(np.log(0.001))  # log(0 + offset): silence, not damage


def test_pooling_takes_the_units_in_each_span_or_the_nearest():
    times = np.array([0.0, 1.0, 2.0, 3.0])
    vectors = np.arange(8, dtype=np.float32).reshape(4, 2)
    spans = np.array([[0.0, 2.0], [0.9, 3.5], [1.4, 1.45], [2.6, 2.7]])
    pooled = pool_units(times, vectors, spans)
    assert pooled.tolist() == [[1, 2], [4, 5], [2, 3], [6, 7]]


def test_the_alignment_rule_by_hand():
    frame_rows = [(1.0, 25, (25, 25, 1.0, 1.0)), (0.0, 0, (0, 0, 0.0, 0.0))]
    spans = audio_spans(frame_rows, 0.04, 0.96, end=4.0)
    assert spans[0] == pytest.approx([0.54, 1.5])  # centred on 1.02, the frame's middle
    assert spans[1] == pytest.approx([0.0, 0.5])  # cut to the file
    window_rows = [(0.16, 4, (0, 7, 0.0, 0.28))]
    assert audio_spans(window_rows, 0.04, None, end=4.0)[0] == pytest.approx([0.0, 0.32])


def _matrix():
    for codec, (ext, _, _) in AUDIO_CODECS.items():
        for layout in ("mono", "stereo", "5.1"):
            for rate in (8000, 22050, 44100, 48000):
                if codec == "opus" and rate in (22050, 44100):
                    continue  # libopus encodes 8/12/16/24/48 kHz only
                if codec == "vorbis" and layout != "stereo":
                    continue  # FFmpeg's own Vorbis encoder writes stereo only
                if codec == "mp3" and layout == "5.1":
                    continue  # MP3 holds two channels at most
                yield codec, ext, layout, rate


@pytest.mark.parametrize(("codec", "ext", "layout", "rate"), list(_matrix()))
def test_any_codec_layout_and_rate_decodes_to_16_khz_mono_on_time(
    tmp_path, codec, ext, layout, rate
):
    """AAC/Opus/Vorbis/MP3/PCM, mono to 5.1, 8-48 kHz: the change of tone at 1 s lands at
    sample 16000 (within one 10 ms step), the length is the file's."""
    path = write_av(tmp_path / f"a{ext}", picture(20), 10, tone_sequence([440, 1800], 1.0, rate),
                    rate, codec, layout)  # fmt: skip
    track = decode_audio(path, 16000)
    assert track.rate == 16000 and track.channels == {"mono": 1, "stereo": 2, "5.1": 6}[layout]
    assert track.offset == pytest.approx(0.0, abs=1e-3)
    assert abs(len(track.samples) - 32000) <= 1200  # codecs pad their last frame
    step = np.arange(160) / 16000
    energy = [
        [
            abs(np.dot(track.samples[i : i + 160], np.exp(-2j * np.pi * f * step)))
            for f in (440, 1800)
        ]
        for i in range(8000, 32000 - 160, 160)
    ]  # from 0.5 s: a codec's first few ms may hold noise of any pitch
    switch = 8000 + next(i for i, (low, high) in enumerate(energy) if high > low) * 160
    assert abs(switch - 16000) <= 160


@pytest.mark.parametrize(
    ("fps", "rate"), [(25, 44100), (Fraction(30000, 1001), 48000), (25, 48000)]
)
def test_every_row_carries_the_tone_playing_at_its_time(tmp_path, fps, rate):
    """The quality bar's alignment: one tone per second, every frame kept; the row at time t
    has its largest band at the tone that plays at t (25 and 29.97 fps, 44.1 and 48 kHz)."""
    frames = int(4 * fps)
    write_av(tmp_path / "v" / "a.mp4", picture(frames), fps, matched(rate=rate), rate, "aac",
             "stereo")  # fmt: skip
    out = tmp_path / "a.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", "logmel", "--fps", 0, "-q")
    with CacheReader(out) as reader:
        features, times = reader.features("a.mp4"), reader.timestamps("a.mp4")
    assert len(times) == frames
    playing = [BANDS[int(t)] for t in times]
    assert features.argmax(axis=1).tolist() == playing
    # windows of 5 frames (0.2 s at 25 fps, never across a second) hear their window only
    invoke("extract", tmp_path / "v", "-o", tmp_path / "w.h5", "--backbone", "logmel", "--fps",
           0, "--window", 5, "-q")  # fmt: skip
    with CacheReader(tmp_path / "w.h5") as reader:
        rows = reader.features("a.mp4")
        span_frames, span_times = reader.spans("a.mp4")
    starts, ends = span_times.T
    assert (span_frames[:-1, 1] - span_frames[:-1, 0] == 4).all()  # frames k .. k + 4
    assert ends[:-1] - starts[:-1] == pytest.approx(5 / float(fps))  # heard: 5 frames' time
    if fps == 25:  # 0.2-s windows never cross a second: one tone each
        assert rows.argmax(axis=1).tolist() == [BANDS[int(s + 1e-9)] for s in starts]


def test_files_without_sound_with_too_little_and_with_sound_only(tmp_path):
    """No audio stream: one line, skipped; a track that ends early: one note, silence after;
    a .wav, an .mp3 and an .m4a: rows on the grid --fps makes of their length."""
    root = tmp_path / "v"
    write_av(root / "silent.mp4", picture(20), 10)  # pictures only
    write_av(root / "short.mp4", picture(40), 10, tone_sequence(tones()[:2], 1.0, 16000))
    write_av(root / "tone.wav", None, 10, tone_sequence(tones()[:3], 1.0, 22050), 22050, "pcm")
    write_av(root / "tone.mp3", None, 10, tone_sequence(tones()[:3], 1.0, 44100), 44100, "mp3")
    write_av(root / "tone.m4a", None, 10, tone_sequence(tones()[:3], 1.0, 48000), 48000, "aac")
    out = tmp_path / "a.h5"
    result = invoke("extract", root, "-o", out, "--backbone", "logmel", "--fps", 2, code=1)
    lines = result.output.strip().splitlines()
    assert any("silent.mp4" in line and "has no audio stream" in line for line in lines)
    assert any(
        "short.mp4: its sound ends at 2.00 s, before its last kept frame (3.50 s)" in line
        for line in lines
    )
    assert "Traceback" not in result.output
    with CacheReader(out) as reader:
        assert "silent.mp4" not in reader
        short = reader.features("short.mp4")
        assert short.argmax(axis=1)[:4].tolist() == [8, 8, 22, 22]
        assert short[-2:] == pytest.approx(np.log(0.001))  # after the track: silence
        for name in ("tone.wav", "tone.mp3", "tone.m4a"):
            assert reader.timestamps(name).tolist() == [0, 0.5, 1, 1.5, 2, 2.5], name
            assert reader.features(name).argmax(axis=1).tolist() == [8, 8, 22, 22, 36, 36]
            entry = reader.entries()[name]
            assert entry.width == 0 and entry.fps == 2.0
    # a picture backbone does not list the sound-only files at all
    result = invoke("extract", root, "-o", tmp_path / "f.h5", "--weights", "random",
                    "--image-size", 75, "--fps", 2, "-q")  # fmt: skip
    with CacheReader(tmp_path / "f.h5") as reader:
        assert sorted(reader.entries()) == ["short.mp4", "silent.mp4"]


def test_audio_options_that_do_not_fit_are_one_line(tmp_path):
    write_av(tmp_path / "v" / "a.mp4", picture(10), 10, tone_sequence([440], 1.0, 16000))
    (tmp_path / "frames").mkdir()
    out = tmp_path / "a.h5"
    cases = [
        (["--backbone", "logmel", "--image-size", 75], "logmel hears sound and takes no images"),
        (["--backbone", "logmel", "--weights", "random"], "logmel is computed, not learned"),
        (["--audio-span", 1], "--audio-span sets what an audio backbone's rows hear"),
        (
            ["--backbone", "logmel", "--window", 4, "--audio-span", 1],
            "a window row hears its window",
        ),
        (
            ["--backbone", "logmel", "--pooling", "frame"],
            "--pooling chooses a clip backbone's rows",
        ),
    ]
    for options, message in cases:
        result = invoke("extract", tmp_path / "v", "-o", out, *options, code=2)
        assert message in result.output.strip().splitlines()[-1], result.output
    assert not out.exists()


def test_audio_settings_are_recorded_and_checked_when_read(tmp_path):
    write_av(tmp_path / "v" / "a.mp4", picture(10), 10, tone_sequence([440], 1.0, 16000))
    out = tmp_path / "a.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", "logmel", "--audio-span", 0.5, "-q")
    settings = read_settings(out)
    assert (settings.backbone, settings.sample_rate, settings.audio_span) == ("logmel", 16000, 0.5)
    assert (settings.weights, settings.image_size, settings.pooling) == ("none", 0, "mean")
    assert FeatureSettings.from_json(settings.to_json()) == settings
    data = settings.to_dict()
    for field, value, message in (
        ("sample_rate", "16k", "sample_rate is '16k', not a whole number"),
        ("audio_span", -1, "audio_span is -1, not seconds"),
        ("audio_span", float("nan"), "audio_span is nan"),
    ):
        import json

        broken = {**data, field: value}
        with pytest.raises(ValueError, match=message):
            FeatureSettings.from_json(json.dumps(broken))
    # a picture cache's settings do not carry the audio fields (their hash is unchanged)
    assert (
        "sample_rate"
        not in FeatureSettings.for_backbone(
            "InceptionV3", weights="imagenet", weights_sha256=""
        ).to_dict()
    )
    result = invoke("inspect", out)
    assert "sound: 16000 Hz mono, rows up to 5 fps, each row hears 0.5 s" in result.output


def test_a_folder_of_frames_has_no_sound(tmp_path):
    from PIL import Image

    folder = tmp_path / "v" / "clip"
    folder.mkdir(parents=True)
    for k in range(3):
        Image.fromarray(picture(1)[0]).save(folder / f"{k:03d}.png")
    write_av(tmp_path / "v" / "b.mp4", picture(10), 10, tone_sequence([440], 1.0, 16000))
    result = invoke("extract", tmp_path / "v", "-o", tmp_path / "a.h5", "--backbone", "logmel",
                    code=1)  # fmt: skip
    assert "clip: is a folder of frames: it has no sound" in result.output
    with CacheReader(tmp_path / "a.h5") as reader:
        assert "b.mp4" in reader


def test_spans_say_what_each_row_heard_and_survive_export_import_and_merge(tmp_path):
    """A frame row's span is the sound it heard (0.96 s centred on its frame's middle, cut
    to the file); export writes it beside the features, import brings it back; --like,
    shards and merge make the same cache."""
    for k in range(3):
        write_av(tmp_path / "v" / f"c{k}.mp4", picture(20 + 5 * k), 10,
                 tone_sequence(tones()[: 2 + k], 1.0, 16000))  # fmt: skip
    whole = tmp_path / "whole.h5"
    options = ["--backbone", "logmel", "--fps", 2, "-q"]
    invoke("extract", tmp_path / "v", "-o", whole, *options)
    with CacheReader(whole) as reader:
        frames, heard = reader.spans("c0.mp4")
        times = reader.timestamps("c0.mp4")
    assert (frames[:, 0] == frames[:, 1]).all() and (frames[:, 0] == np.round(times * 10)).all()
    expected = np.clip(np.stack([times + 0.05 - 0.48, times + 0.05 + 0.48], axis=1), 0, 2.0)
    np.testing.assert_allclose(heard, expected, atol=1e-9)
    invoke("export", whole, tmp_path / "npy")
    assert np.load(tmp_path / "npy" / "c0_spans.npy")[:, 2:] == pytest.approx(heard * 1000)
    invoke("import", tmp_path / "npy", "-o", tmp_path / "back.h5")
    for k in range(2):
        invoke(
            "extract", tmp_path / "v", "-o", tmp_path / f"s{k}.h5", *options, "--shard", f"{k}/2"
        )
    invoke("merge", tmp_path / "s0.h5", tmp_path / "s1.h5", "-o", tmp_path / "merged.h5")
    invoke("extract", tmp_path / "v", "-o", tmp_path / "like.h5", "--like", whole, "-q")
    refused = invoke("extract", tmp_path / "v", "-o", tmp_path / "x.h5", "--like", whole,
                     "--audio-span", 2, code=2)  # fmt: skip
    assert "drop --audio-span" in refused.output
    with CacheReader(whole) as a:
        for other in ("merged.h5", "like.h5", "back.h5"):
            with CacheReader(tmp_path / other) as b:
                assert sorted(b.entries()) == sorted(a.entries()), other
                if other != "back.h5":
                    assert b.settings == a.settings
                for video_id in a.entries():
                    x, y = a.rows(video_id), b.rows(video_id)
                    np.testing.assert_allclose(x.span_times, y.span_times, atol=1e-9)
                    np.testing.assert_allclose(x.features, y.features, rtol=1e-6)


def test_a_sound_stream_that_starts_late_is_placed_on_the_clock(tmp_path):
    """MP3 in Matroska stamped to start 0.5 s after the pictures: the waveform's offset is
    0.5 s, and from then on every row carries the tone that plays at its time."""
    clip = write_av(tmp_path / "v" / "a.mkv", picture(100), 25, matched(rate=44100), 44100,
                    "mp3", audio_start=0.5)  # fmt: skip
    assert decode_audio(clip, 16000).offset == pytest.approx(0.5, abs=1e-3)
    out = tmp_path / "a.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", "logmel", "--fps", 0, "-q")
    with CacheReader(out) as reader:
        features, times = reader.features("a.mkv"), reader.timestamps("a.mkv")
    heard = times >= 0.5
    assert features[heard].argmax(axis=1).tolist() == [BANDS[int(t - 0.5)] for t in times[heard]]


@pytest.mark.slow
def test_kill_9_while_hearing_keeps_every_committed_file_and_a_rerun_finishes(tmp_path):
    """``extract --backbone logmel`` killed with SIGKILL after some files were committed:
    the cache opens, every committed file's rows are the rows of a clean run, and a rerun
    adds the rest (nothing twice)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import h5py

    for k in range(40):
        sound = tone_sequence([band_centre_hz(8 + k)] * 6, 1.0, 48000)
        write_av(tmp_path / "v" / f"c{k:02d}.mkv", picture(60), 10, sound, 48000, "opus")
    clean = tmp_path / "clean.h5"
    invoke("extract", tmp_path / "v", "-o", clean, "--backbone", "logmel", "--fps", 10, "-q")
    out = tmp_path / "killed.h5"
    command = [sys.executable, "-m", "vidcache", "extract", str(tmp_path / "v"), "-o", str(out),
               "--backbone", "logmel", "--fps", "10", "-q"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = 0
    deadline = time.monotonic() + 120
    while process.poll() is None and done < 3 and time.monotonic() < deadline:
        try:
            with h5py.File(out, "r", swmr=True) as f:
                done = int(f["commit"][0])
        except (OSError, KeyError):
            pass
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    with CacheReader(out) as killed, CacheReader(clean) as whole:
        kept = sorted(killed.entries())
        assert 3 <= len(kept) < 40
        for video_id in kept:
            np.testing.assert_array_equal(killed.rows(video_id).features, whole.features(video_id))
    result = invoke("extract", tmp_path / "v", "-o", out, "--backbone", "logmel", "--fps", 10)
    assert f"{40 - len(kept)} extracted, {len(kept)} already cached, 0 failed" in result.output
    with CacheReader(out) as again, CacheReader(clean) as whole:
        assert sorted(again.entries()) == sorted(whole.entries())
        for video_id in whole.entries():
            np.testing.assert_array_equal(again.features(video_id), whole.features(video_id))


def test_hostile_sound_is_one_line_or_a_correct_cache_and_costs_what_the_file_holds(tmp_path):
    """A soundtrack stamped to start 10^6 s after the pictures (silence, one note, no 10^6 s
    of samples laid out), a file with sound only stamped the same way (its grid from what
    it holds), a truncated and a scribbled file: each is one line or a cache, never a
    traceback, and the run ends promptly."""
    import time

    root = tmp_path / "v"
    tone = tone_sequence(tones()[:2], 1.0, 48000)
    write_av(root / "late.mkv", picture(20), 10, tone, 48000, "opus", audio_start=1e6)
    write_av(root / "alone.mka", None, 10, tone, 48000, "opus", audio_start=1e6)
    whole = write_av(root / "cut.mp4", picture(40), 10, tone_sequence(tones(), 1.0, 16000))
    data = whole.read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])
    scribbled = bytearray(write_av(root / "scribbled.mkv", picture(40), 10, tone, 48000, "opus")
                          .read_bytes())  # fmt: skip
    for k in range(len(scribbled) // 3, len(scribbled), 97):
        scribbled[k] ^= 0x5A
    (root / "scribbled.mkv").write_bytes(bytes(scribbled))
    out = tmp_path / "a.h5"
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["extract", str(root), "-o", str(out), "--backbone",
                                      "logmel", "--fps", "5"])  # fmt: skip
    assert time.monotonic() - started < 60 and result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output
    assert "late.mkv: its sound starts at 1000000.00 s, after its last kept frame" in result.output
    with CacheReader(out) as reader:
        late = reader.features("late.mkv")
        assert late.shape == (10, 64) and late == pytest.approx(np.log(0.001))
        assert reader.timestamps("alone.mka").tolist() == [k / 5 for k in range(10)]
        for name in ("cut.mp4", "scribbled.mkv"):
            if name in reader:  # what decoded was kept; the rest is silence
                assert np.isfinite(reader.features(name)).all()
            else:
                assert f"{name}:" in result.output


def test_a_grid_cache_gives_the_same_rows_without_decoding_pictures(tmp_path, monkeypatch):
    """--grid FRAMES.h5: the files the frame cache holds with the same content take their
    kept frames from it (no picture decoded: the sampler is made to fail), a file it lacks
    is decoded; the cache equals one made without --grid. Another sampling, a picture
    backbone: one line each."""
    for k in range(3):
        write_av(tmp_path / "v" / f"c{k}.mp4", picture(30 + 5 * k), 25,
                 tone_sequence(tones()[: 1 + k % 3], 1.0, 16000))  # fmt: skip
    frames = tmp_path / "frames.h5"
    invoke("extract", tmp_path / "v", "-o", frames, "--backbone", "mobilenetv3-large",
           "--weights", "random", "--image-size", 32, "--fps", 10, "-q")  # fmt: skip
    plain = tmp_path / "plain.h5"
    invoke("extract", tmp_path / "v", "-o", plain, "--backbone", "logmel", "--fps", 10, "-q")
    write_av(tmp_path / "v" / "new.mp4", picture(20), 25, tone_sequence(tones()[:1], 1.0, 16000))
    invoke("extract", tmp_path / "v" / "new.mp4", "-o", plain, "--backbone", "logmel", "--fps",
           10, "-q")  # fmt: skip
    from vidcache.features.video import decode

    decoded = []
    original = decode.VideoReader.sampled

    def counted(self, sampling):
        decoded.append(self.path.name)
        return original(self, sampling)

    monkeypatch.setattr(decode.VideoReader, "sampled", counted)
    out = tmp_path / "grid.h5"
    result = invoke("extract", tmp_path / "v", "-o", out, "--backbone", "logmel", "--fps", 10,
                    "--grid", frames)  # fmt: skip
    assert "3 of 4 file(s) took their kept frames from" in result.output
    assert decoded == ["new.mp4"]
    with CacheReader(out) as a, CacheReader(plain) as b:
        assert a.settings == b.settings and sorted(a.entries()) == sorted(b.entries())
        for video_id in b.entries():
            x, y = a.rows(video_id), b.rows(video_id)
            np.testing.assert_array_equal(x.timestamps, y.timestamps)
            np.testing.assert_array_equal(x.frame_indices, y.frame_indices)
            np.testing.assert_array_equal(x.span_times, y.span_times)
            np.testing.assert_array_equal(x.features, y.features)
            assert a.entries()[video_id].fps == b.entries()[video_id].fps
    other = invoke("extract", tmp_path / "v", "-o", tmp_path / "x.h5", "--backbone", "logmel",
                   "--fps", 5, "--grid", frames, code=1)  # fmt: skip
    assert "keeps other frames (up to 10 fps) than this run (up to 5 fps)" in other.output
    refused = invoke("extract", tmp_path / "v", "-o", tmp_path / "y.h5", "--grid", frames, code=2)
    assert "--grid gives an audio backbone its rows" in refused.output


def test_a_disk_that_fills_while_rows_of_sound_spill_is_one_line(tmp_path, small_disk, monkeypatch):
    """Rows of a long file spill to a temporary file; when its disk is full, the run stops
    with the one line the frame loop gives, and what was committed before is kept."""
    import tempfile

    from conftest import fill

    from vidcache.features.errors import DiskFull
    from vidcache.features.video.discover import discover
    from vidcache.pipeline.extraction.config import ExtractConfig
    from vidcache.pipeline.extraction.local import extract_features

    first = write_av(
        tmp_path / "a" / "first.mp4", picture(20), 10, tone_sequence([440], 2.0, 16000)
    )
    write_av(tmp_path / "b" / "second.mp4", picture(20), 10, tone_sequence([880], 2.0, 16000))
    out = tmp_path / "a.h5"
    config = ExtractConfig(backbone="logmel", sampling=SamplingSpec(fps=10), spill_rows=2)
    extract_features(discover([first]), out, config)
    fill(small_disk)
    monkeypatch.setattr(tempfile, "tempdir", str(small_disk))
    with pytest.raises(DiskFull, match="no space left for the temporary rows of long videos"):
        extract_features(discover([tmp_path / "b"]), out, config)
    with CacheReader(out) as reader:
        assert sorted(reader.entries()) == ["first.mp4"]


def test_a_disk_that_fills_while_rows_of_frames_spill_is_one_line_too(
    tmp_path, small_disk, monkeypatch, run_extract, small_config
):
    import tempfile

    from conftest import fill

    from vidcache.features.errors import DiskFull

    write_av(tmp_path / "a" / "first.mp4", picture(6), 10)
    write_av(tmp_path / "b" / "second.mp4", picture(12), 10)
    out = tmp_path / "f.h5"
    config = small_config(sampling=SamplingSpec(fps=None), spill_rows=2)
    run_extract([tmp_path / "a"], out, config)
    fill(small_disk)
    monkeypatch.setattr(tempfile, "tempdir", str(small_disk))
    with pytest.raises(DiskFull, match="no space left for the temporary rows of long videos"):
        run_extract([tmp_path / "b"], out, config)
    with CacheReader(out) as reader:
        assert sorted(reader.entries()) == ["first.mp4"]


def test_a_file_with_sound_only_in_windows(tmp_path):
    """--window on a .wav: windows of cells, each hearing its cells' whole time."""
    write_av(tmp_path / "v" / "a.wav", None, 10, tone_sequence(tones()[:3], 1.0, 16000), 16000)
    out = tmp_path / "w.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", "logmel", "--fps", 2, "--window",
           2, "-q")  # fmt: skip
    with CacheReader(out) as reader:
        frames, heard = reader.spans("a.wav")
        rows = reader.features("a.wav")
    assert frames.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert heard.tolist() == [[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]]
    assert rows.argmax(axis=1).tolist() == [8, 22, 36]
