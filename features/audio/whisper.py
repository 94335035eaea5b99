"""Whisper's audio encoder (Radford et al., 2022) through keras-hub: an audio backbone.

keras-hub's ``WhisperBackbone`` holds the encoder and the text decoder; vidcache keeps the
encoder (``encoder_features -> encoder_sequence_output``) and feeds it what keras-hub's own
``WhisperAudioConverter`` makes: 80 log-mel bands every 10 ms of 16 kHz sound, computed
over chunks of exactly 30 s (a shorter chunk is padded with silence, as Whisper does), and
normalised per chunk (``max - 8`` floor, ``(x + 4) / 4``). The encoder halves the rate:
1500 positions of 20 ms per chunk, position ``j`` centred on ``30 k + 0.02 j`` s in chunk
``k`` (the second convolution's stride 2 over mel frames centred every 10 ms).

**Long files** are cut into back-to-back 30-s chunks from the waveform's start; each goes
through the encoder alone (Whisper never sees across chunks either), and the positions of
all chunks are laid end to end on the clock. The positions of the last chunk's padding
(after the sound ends) are dropped. A row whose span crosses a chunk boundary pools
positions of both chunks.

Real weights: a keras-hub preset folder (``whisper_tiny_en``/``whisper_tiny_multi``, or
``whisper_base_en``/``_multi``; downloaded once where Kaggle is reachable with
``keras_hub.models.WhisperBackbone.from_preset("whisper_tiny_en")``, or Kaggle
``keras/whisper/keras/whisper_tiny_en``), given as ``--weights FOLDER``; its shape must
match the entry (checked, one line). Its ``audio_converter.json`` is used when present.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from vidcache.features.backbones.hub import keras_hub
from vidcache.features.errors import WeightsUnavailable

__all__ = ["CHUNK_SECONDS", "WhisperHearing", "WhisperTower"]

RATE = 16000
CHUNK_SECONDS = 30
POSITION_SECONDS = 0.02
MEL_FRAMES = CHUNK_SECONDS * 100


@dataclass(frozen=True)
class WhisperTower:
    """The shape of a Whisper encoder (``WhisperBackbone`` arguments)."""

    num_layers: int
    num_heads: int
    hidden_dim: int
    intermediate_dim: int
    num_mels: int = 80

    @classmethod
    def of(cls, backbone) -> WhisperTower:
        return cls(**{name: getattr(backbone, name) for name in cls.__dataclass_fields__})

    def describe(self) -> str:
        return f"{self.num_layers} layers, width {self.hidden_dim}, {self.num_mels} mel bands"


def whisper_builder(name: str, tower: WhisperTower):
    """``build(input_shape)``: the encoder of a randomly initialised ``WhisperBackbone``
    (the decoder it drops is built as small as keras-hub allows)."""

    def build(input_shape: tuple[int, ...]):
        import keras

        hub = keras_hub(name)
        whole = hub.models.WhisperBackbone(
            vocabulary_size=8,
            max_encoder_sequence_length=MEL_FRAMES,
            max_decoder_sequence_length=8,
            **asdict(tower),
            name="whisper",
        )
        return keras.Model(
            whole.input["encoder_features"], whole.output["encoder_sequence_output"], name=name
        )

    return build


def whisper_loader(name: str, tower: WhisperTower):
    """``load_folder(model, path)``: the encoder weights of a keras-hub Whisper preset."""

    def load_folder(model, path: Path) -> None:
        hub = keras_hub(name)
        try:
            preset = hub.models.WhisperBackbone.from_preset(str(path), load_weights=True)
        except Exception as exc:  # keras-hub raises ValueError, FileNotFoundError, OSError...
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise WeightsUnavailable(
                f"{path} is not a keras-hub Whisper preset folder: {reason[:300]}"
            ) from None
        found = WhisperTower.of(preset)
        if found != tower:
            raise WeightsUnavailable(
                f"{path} holds another Whisper ({found.describe()}) than {name} "
                f"({tower.describe()})"
            )
        encoder = preset.get_layer  # the encoder's layers carry the same names in both
        for layer in model.layers:
            if layer.weights:
                layer.set_weights(encoder(layer.name).get_weights())

    return load_folder


class WhisperHearing:
    """Units of a Whisper encoder: one vector every 20 ms, computed per 30-s chunk."""

    rate = RATE
    #: one block of units is one chunk, which needs nothing past it
    block = RATE * CHUNK_SECONDS
    overhang = 0

    def __init__(self, model, preset: Path | None = None) -> None:
        import tensorflow as tf

        hub = keras_hub(model.name)
        converter = hub.layers.WhisperAudioConverter
        has_own = preset is not None and (Path(preset) / "audio_converter.json").is_file()
        self.converter = converter.from_preset(str(preset)) if has_own else converter()
        self.feature_dim = int(model.output_shape[-1])
        mels = self.converter.num_mels
        spec = tf.TensorSpec((1, MEL_FRAMES, mels), tf.float32)
        compute = model.compute_dtype
        self._call = tf.function(
            lambda x: tf.cast(model(tf.cast(x, compute), training=False), tf.float32),
            input_signature=[spec],
        )
        self._call.get_concrete_function()

    def units(self, samples, pad: bool = True):
        """``(times, vectors)``: each encoder position's centre (seconds from the first
        sample) and its vector, chunk after chunk (the module says how)."""
        import numpy as np

        chunk = RATE * CHUNK_SECONDS
        times, vectors = [], []
        for start in range(0, max(1, len(samples)), chunk):
            piece = np.zeros((1, chunk), np.float32)
            real = samples[start : start + chunk]
            piece[0, : len(real)] = real
            mel = np.asarray(self.converter(piece), np.float32)
            encoded = self._call(mel).numpy()[0]
            keep = max(1, int(np.ceil(len(real) / RATE / POSITION_SECONDS)))
            times.append(start / RATE + POSITION_SECONDS * np.arange(keep))
            vectors.append(encoded[:keep])
        return np.concatenate(times), np.concatenate(vectors)
