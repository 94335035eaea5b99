"""The audio backbones: ``logmel`` (no weights) and Whisper's encoder (``whisper-tiny``,
``whisper-base``). Their computations live in :mod:`features.audio`; this module only
registers them, as every other backbone module does."""

from __future__ import annotations

from vidcache.features.audio.whisper import (
    MEL_FRAMES,
    RATE,
    WhisperHearing,
    WhisperTower,
    whisper_builder,
    whisper_loader,
)
from vidcache.features.backbones.registry import AUDIO_POOLING, Backbone, register


def _no_network(input_shape):
    return None


def _logmel(model, preset):
    from vidcache.features.audio.logmel import LogMel  # NumPy: not for --help

    return LogMel()


def _identity(x):
    return x


LOGMEL = register(
    Backbone(
        name="logmel",
        feature_dim=64,  # LogMel.feature_dim (a test holds them equal)
        min_image_size=0,
        default_image_size=0,
        build=_no_network,
        preprocess=_identity,
        preprocess_name=(
            "logmel: 16 kHz mono, 25 ms frames every 10 ms, periodic Hann, |FFT 512|, "
            "64 HTK mel bands 125-7500 Hz, log(mean band energy over the span + 0.001)"
        ),
        pooling=AUDIO_POOLING,
        real_weights="none: log-mel energies are computed, not learned",
        sample_rate=16000,  # LogMel.rate
        hear=_logmel,
        weightless=True,
    )
)


def whisper_backbone(name: str, tower: WhisperTower, presets: str) -> Backbone:
    """A :class:`Backbone` entry for the encoder of a Whisper of ``tower``'s shape."""
    return Backbone(
        name=name,
        feature_dim=tower.hidden_dim,
        min_image_size=0,
        default_image_size=0,
        build=whisper_builder(name, tower),
        preprocess=_identity,
        preprocess_name=(
            "whisper: keras-hub WhisperAudioConverter (16 kHz mono, 80 log-mel bands every "
            "10 ms over 30-s chunks), encoder positions every 20 ms"
        ),
        pooling=AUDIO_POOLING,
        load_folder=whisper_loader(name, tower),
        real_weights=(
            f"a keras-hub preset folder ({presets}; Kaggle keras/whisper/keras/...), given as "
            "--weights FOLDER"
        ),
        extra="hub",
        sample_rate=RATE,
        hear=WhisperHearing,
        audio_input=(MEL_FRAMES, tower.num_mels),
    )


WHISPER_TINY = register(
    whisper_backbone("whisper-tiny", WhisperTower(4, 6, 384, 1536), "whisper_tiny_en or _multi")
)
WHISPER_BASE = register(
    whisper_backbone("whisper-base", WhisperTower(6, 8, 512, 2048), "whisper_base_en or _multi")
)
