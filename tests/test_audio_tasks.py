"""Stage two on sound: a task only the sound can solve (log-mel, frames + sound fused,
Whisper's encoder at random init), predictions from the videos alone, and Whisper's
weights from a keras-hub preset folder."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner

from vidcache.features.audio.logmel import band_centre_hz
from vidcache.features.audio.synthetic import tone_sequence, write_av
from vidcache.features.cache import CacheReader
from vidcache.pipeline.cli import cli

needs_hub = pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None, reason="needs the hub extra (keras-hub)"
)
#: The pitches of the task, at mel band peaks: every clip plays three of them.
BANDS = (6, 14, 22, 30, 38)
TRAIN = ["--units", 16, "--epochs", 40, "--seed", 1, "--batch-size", 8]


def invoke(*args, code=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def order_task(root, train: int, test: int, seed: int = 0):
    """``root/{train,test}/{rising,falling}/*.mp4``: the same grey picture in every clip,
    three tones of a second each, rising or falling; which three is random, so only the
    order of the sound tells the classes apart."""
    rng = np.random.default_rng(seed)
    picture = [np.full((32, 32, 3), 100, np.uint8)] * 30
    for split, count in (("train", train), ("test", test)):
        for k in range(count):
            label = ("rising", "falling")[k % 2]
            bands = sorted(rng.choice(BANDS, 3, replace=False))
            if label == "falling":
                bands = bands[::-1]
            sound = tone_sequence([band_centre_hz(b) for b in bands], 1.0, 16000)
            write_av(root / split / label / f"{split}{k}.mp4", picture, 10, sound, 16000)
    return root


def top1(run) -> float:
    return json.loads((run / "eval-test" / "metrics.json").read_text())["top1"]


def test_only_the_sound_tells_the_classes(tmp_path):
    """The quality bar: sound alone and frames + sound fused reach >= 0.95 top-1 on held-out
    clips (evaluated from the videos, each part extracted again); frames alone stay at
    chance. Then a fused run predicts from a video alone."""
    order_task(tmp_path / "d", train=16, test=8)
    sound, frames = tmp_path / "sound.h5", tmp_path / "frames.h5"
    invoke("extract", tmp_path / "d" / "train", "-o", sound, "--backbone", "logmel", "--fps", 2)
    invoke("extract", tmp_path / "d" / "train", "-o", frames, "--backbone", "mobilenetv3-large",
           "--image-size", 32, "--weights", "random", "--fps", 2, "-q")  # fmt: skip
    runs = {
        "sound": [sound],
        "frames": [frames],
        "fused": [frames, sound, "--fuse"],
    }
    scores = {}
    for name, caches in runs.items():
        invoke("train-rnn", *caches, "-o", tmp_path / name, *TRAIN)
        invoke("evaluate", tmp_path / name, tmp_path / "d" / "test")
        scores[name] = top1(tmp_path / name)
    assert scores["sound"] >= 0.95 and scores["fused"] >= 0.95, scores
    assert scores["frames"] <= 0.6, scores  # identical pictures: one answer for every clip
    clip = tmp_path / "d" / "test" / "falling" / "test1.mp4"
    result = invoke("predict", tmp_path / "fused", clip, "--json")
    assert json.loads(result.output)[0]["top"][0]["label"] == "falling"


@needs_hub
def test_whisper_tiny_hears_the_order_too(tmp_path):
    """The same task, smaller, through Whisper-tiny's encoder at random init: 384-d rows
    pooled from 20-ms positions, >= 0.95 top-1 on held-out clips."""
    order_task(tmp_path / "d", train=10, test=6, seed=1)
    out = tmp_path / "whisper.h5"
    invoke("extract", tmp_path / "d" / "train", "-o", out, "--backbone", "whisper-tiny",
           "--weights", "random", "--fps", 2, "-q")  # fmt: skip
    with CacheReader(out) as reader:
        assert reader.features("rising/train0.mp4").shape == (6, 384)
    invoke("train-rnn", out, "-o", tmp_path / "run", *TRAIN)
    invoke("evaluate", tmp_path / "run", tmp_path / "d" / "test")
    assert top1(tmp_path / "run") >= 0.95


@needs_hub
def test_whisper_weights_from_a_preset_folder_are_keras_hubs_encoder(tmp_path):
    """A keras-hub Whisper preset (tiny's shape, random weights, saved here) through
    ``--weights FOLDER``: every row is the mean of keras-hub's own encoder positions in the
    row's span, on 40 s of sound (two 30-s chunks, stitched). A preset of another shape
    is one line."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(7)
    whisper = keras_hub.models.WhisperBackbone(
        vocabulary_size=8, num_layers=4, num_heads=6, hidden_dim=384, intermediate_dim=1536,
        max_encoder_sequence_length=3000, max_decoder_sequence_length=8,
    )  # fmt: skip
    preset = tmp_path / "whisper_tiny_test"
    whisper.save_to_preset(str(preset))
    rng = np.random.default_rng(0)
    sound = (0.1 * rng.standard_normal(40 * 16000)).astype(np.float32)
    write_av(tmp_path / "v" / "a.wav", None, 10, sound, 16000, "pcm")
    out = tmp_path / "w.h5"
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", "whisper-tiny", "--weights",
           preset, "--fps", 1, "--audio-span", 2, "-q")  # fmt: skip
    with CacheReader(out) as reader:
        rows, times = reader.features("a.wav"), reader.timestamps("a.wav")
    decoded = np.frombuffer((sound * 32767).astype(np.int16).tobytes(), np.int16) / 32768.0
    converter = keras_hub.layers.WhisperAudioConverter()
    positions = []
    for start in (0, 30 * 16000):
        chunk = np.zeros((1, 30 * 16000), np.float32)
        piece = decoded[start : start + 30 * 16000]
        chunk[0, : len(piece)] = piece
        inputs = {
            "encoder_features": np.asarray(converter(chunk)),
            "decoder_token_ids": np.zeros((1, 1), "int32"),
            "decoder_padding_mask": np.ones((1, 1), "int32"),
        }
        encoded = np.asarray(whisper(inputs)["encoder_sequence_output"])[0]
        positions.append(encoded[: int(np.ceil(len(piece) / 320))])
    positions = np.concatenate(positions)
    centres = 0.02 * np.arange(len(positions))
    assert len(times) == 40
    for k, t in enumerate(times):  # a cell of 1 s: centred on t + 0.5, 2 s long
        inside = (centres >= max(0.0, t - 0.5)) & (centres < min(40.0, t + 1.5))
        np.testing.assert_allclose(rows[k], positions[inside].mean(axis=0), rtol=1e-4, atol=1e-5)
    other = keras_hub.models.WhisperBackbone(
        vocabulary_size=8, num_layers=2, num_heads=6, hidden_dim=384, intermediate_dim=1536,
        max_encoder_sequence_length=3000, max_decoder_sequence_length=8,
    )  # fmt: skip
    other.save_to_preset(str(tmp_path / "other"))
    result = invoke("extract", tmp_path / "v", "-o", tmp_path / "x.h5", "--backbone",
                    "whisper-tiny", "--weights", tmp_path / "other", code=1)  # fmt: skip
    assert (
        result.output.strip()
        .splitlines()[-1]
        .endswith(
            "holds another Whisper (2 layers, width 384, 80 mel bands) than whisper-tiny "
            "(4 layers, width 384, 80 mel bands)"
        )
    ), result.output


def _streamed_rows(settings, location, extractor, fps):
    """The rows ``predict --stream`` makes of ``location`` for an audio part."""
    from vidcache.features.video.decode import VideoReader
    from vidcache.features.video.sampling import sample
    from vidcache.pipeline.inference.heard import heard_rows

    with VideoReader(str(location)) as reader:
        frames = sample(reader.frames(), settings.sampling)
        rows = list(heard_rows(frames, [(settings, extractor)], str(location), 1.0 / fps))
    return np.array([r[0] for r in rows]), np.stack([r[1] for r in rows])


@pytest.mark.parametrize("backbone", ["logmel", pytest.param("whisper-tiny", marks=needs_hub)])
def test_the_stream_hears_what_extraction_stored(tmp_path, backbone):
    """Rows heard as the file plays equal the stored rows: every frame of a 12-s clip at 25
    fps whose sound starts 0.3 s late (an audio stream offset) and ends 2 s before the
    pictures (the last rows wait for the end of the file), and a 70-s clip at 2 fps through
    Whisper's 30-s chunks."""
    from vidcache.features.audio.extractor import AudioExtractor
    from vidcache.features.backbones import WeightsSpec
    from vidcache.features.cache import read_settings

    rng = np.random.default_rng(3)
    seconds, fps, grid = (12, 25, 0) if backbone == "logmel" else (70, 2, 2)
    sound = (0.2 * rng.standard_normal(int((seconds - 2.3) * 48000))).astype(np.float32)
    clip = write_av(tmp_path / "v" / "a.mkv", [np.zeros((16, 16, 3), np.uint8)] * (seconds * fps),
                    fps, sound, 48000, "opus", audio_start=0.3)  # fmt: skip
    out = tmp_path / "a.h5"
    weights = [] if backbone == "logmel" else ["--weights", "random"]
    invoke("extract", tmp_path / "v", "-o", out, "--backbone", backbone, "--fps", grid,
           *weights, "-q")  # fmt: skip
    settings = read_settings(out)
    with CacheReader(out) as reader:
        stored, times = reader.features("a.mkv"), reader.timestamps("a.mkv")
    spec = WeightsSpec("none") if backbone == "logmel" else WeightsSpec("random", seed=0)
    extractor = AudioExtractor(spec, "float32", backbone)
    streamed_times, streamed = _streamed_rows(settings, clip, extractor, fps)
    np.testing.assert_array_equal(streamed_times, times)
    np.testing.assert_allclose(streamed, stored, rtol=1e-5, atol=1e-5)
