"""The CNN at run time: a registered backbone without its top, pooled to one vector per frame.

Which networks exist, their input sizes, preprocessing and pretrained files live in the
registry (:mod:`vidcache.features.backbones`); this module builds one with the requested
weights (:func:`build_backbone`) and runs it as one compiled call per batch
(:class:`FeatureExtractor`). InceptionV3 is the default.

Weights come from one of three places (``--weights``, :class:`WeightsSpec`):

- ``imagenet``: Keras' own file in the Keras cache (``$KERAS_HOME/models`` or
  ``~/.keras/models``), downloaded there on first use when a network is reachable. With no
  network and no file, :class:`WeightsUnavailable` says where to put the file.
- a path to a weights file Keras can load into the notop model (``.h5``/``.weights.h5``),
  or, for backbones that load them (CLIP), a keras-hub preset folder.
- ``random``: seeded random initialisation, for tests and offline demos only; the features
  mean nothing and the cache records ``random:seed=S`` so nobody mistakes them.

TensorFlow is imported lazily, inside these functions, so the CLI's help stays instant.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from vidcache.features.backbones import (
    DEFAULT_BACKBONE,
    WeightsSpec,
    get_backbone,
    keras_cache_dir,
    pretrained_weights,
)
from vidcache.features.backbones.inception_v3 import INCEPTION_V3
from vidcache.features.errors import WeightsUnavailable

# InceptionV3's figures under their old names (the default backbone's; see the registry).
IMAGENET_FILE = INCEPTION_V3.pretrained.name
IMAGENET_URL = INCEPTION_V3.pretrained.url
IMAGENET_MD5 = INCEPTION_V3.pretrained.md5
FEATURE_DIM = INCEPTION_V3.feature_dim

__all__ = [
    "FEATURE_DIM",
    "FeatureExtractor",
    "WeightsSpec",
    "build_backbone",
    "imagenet_weights",
    "import_tensorflow",
    "keras_cache_dir",
    "weights_digest",
]


def import_tensorflow():
    """Import TensorFlow without its start-up chatter on stderr (CUDA probing, oneDNN notes).

    Set ``VIDCACHE_TF_LOGS=1`` to see it. Errors during import are re-raised, with the
    silenced output printed first.
    """
    if "tensorflow" in sys.modules or os.environ.get("VIDCACHE_TF_LOGS"):
        import tensorflow as tf

        return tf
    # 3: TensorFlow's C++ notices (oneDNN fallbacks...) are not for our users; errors that
    # matter reach Python as exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device probing (cuInit...) logs here too
        except Exception:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf


def imagenet_weights(download: bool = True, backbone: str = DEFAULT_BACKBONE) -> Path:
    """The ImageNet notop weights file of ``backbone`` (InceptionV3 by default),
    downloading it into the Keras cache if missing (:func:`pretrained_weights`).

    Raises:
        WeightsUnavailable: the file is missing and cannot be downloaded, or is damaged.
    """
    return pretrained_weights(backbone, download=download)


def weights_digest(model) -> str:
    """SHA-256 over the model's weight tensors (shapes and float32 bytes, in order).

    Variable names are left out: Keras numbers them per process, the values are what count.
    """
    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.ascontiguousarray(np.asarray(variable.numpy(), np.float32))
        digest.update(repr(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def build_backbone(
    image_size: int,
    weights: WeightsSpec,
    precision: str = "float32",
    backbone: str = DEFAULT_BACKBONE,
):
    """Build a registered backbone (no top, pooled) with the requested weights.

    Args:
        image_size: side of the square input, at least the backbone's minimum.
        weights: where the weights come from.
        precision: ``"float32"`` or ``"bfloat16"`` (weights are loaded in float32, then
            cast into a bfloat16 copy of the network). Defaults to ``"float32"``.
        backbone: the registered backbone's name. Defaults to InceptionV3.

    Returns:
        ``(model, digest)``: the Keras model and the SHA-256 of its float32 weights.

    Raises:
        WeightsUnavailable: the weights cannot be found or do not fit the network.
    """
    entry = get_backbone(backbone)
    entry.check_image_size(image_size)
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be float32 or bfloat16. Received: precision={precision}")
    import_tensorflow()
    import keras

    shape = entry.input_shape(image_size)
    source = pretrained_weights(entry.name) if weights.kind == "imagenet" else weights.path
    if weights.kind == "random":
        keras.utils.set_random_seed(weights.seed)
    model = entry.build(shape)
    if source is not None and Path(source).is_dir():
        if entry.load_folder is None:
            raise WeightsUnavailable(
                f"{source} is a folder; {entry.name} loads a Keras weights file "
                "(.h5 or .weights.h5)"
            )
        entry.load_folder(model, Path(source))
    elif source is not None:
        try:
            model.load_weights(str(source))
        except Exception as exc:  # Keras raises ValueError, OSError, KeyError... for bad files
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise WeightsUnavailable(
                f"cannot load {entry.name} notop weights from {source}: {reason[:300]}"
            ) from None
    digest = weights_digest(model)
    if precision == "bfloat16":
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("bfloat16")
        try:
            low = entry.build(shape)
        finally:
            keras.config.set_dtype_policy(previous)
        low.set_weights(model.get_weights())
        model = low
    return model, digest


class FeatureExtractor:
    """Frames in (``uint8`` RGB), pooled features out, through one compiled call per batch.

    The call is a ``tf.function`` with a fixed input shape ``(batch_size, s, s, 3)``: it
    casts, applies the backbone's preprocessing (for InceptionV3
    ``keras.applications.inception_v3.preprocess_input``) and runs the network, so it is
    traced once; a short last batch is padded with zeros.

    Args:
        image_size: side of the square input, at least the backbone's minimum. Defaults to
            299.
        weights: where the weights come from. Defaults to ImageNet.
        precision: ``"float32"`` or ``"bfloat16"``. Defaults to ``"float32"``.
        batch_size: frames per call. Defaults to 32.
        backbone: the registered backbone's name. Defaults to InceptionV3.
    """

    def __init__(
        self,
        image_size: int = 299,
        weights: WeightsSpec = WeightsSpec("imagenet"),
        precision: str = "float32",
        batch_size: int = 32,
        backbone: str = DEFAULT_BACKBONE,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1. Received: batch_size={batch_size}")
        entry = get_backbone(backbone)
        self.backbone = entry
        self.feature_dim = entry.feature_dim
        self.image_size = image_size
        self.weights = weights
        self.precision = precision
        self.batch_size = batch_size
        self.model, self.weights_sha256 = build_backbone(image_size, weights, precision, entry.name)
        tf = import_tensorflow()

        model = self.model
        compute = model.compute_dtype
        preprocess = entry.preprocess

        def run(frames):
            x = preprocess(tf.cast(frames, tf.float32))
            return tf.cast(model(tf.cast(x, compute), training=False), tf.float32)

        #: what one call takes: frames ``(s, s, 3)``, or windows ``(W, s, s, 3)`` of a clip
        #: backbone, which give ``(W, feature_dim)`` each (a vector per frame of the window)
        self.input_shape = entry.input_shape(image_size)
        spec = tf.TensorSpec((batch_size, *self.input_shape), tf.uint8)
        self._call = tf.function(run, input_signature=[spec], reduce_retracing=True)
        # Traced now, as part of building: the first batch then runs at (almost) the speed
        # of the others, and a run's frames/s measures extraction, not tracing.
        self._call.get_concrete_function()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Features of up to ``batch_size`` frames (windows, for a clip backbone).

        Args:
            frames: ``uint8`` array ``(n, image_size, image_size, 3)``, RGB, ``n <= batch_size``
                (a clip backbone: ``(n, window, image_size, image_size, 3)``).

        Returns:
            ``float32`` array ``(n, feature_dim)`` (a clip backbone: ``(n, window,
            feature_dim)``).
        """
        n = len(frames)
        if n > self.batch_size:
            raise ValueError(f"at most {self.batch_size} frames per call. Received: {n}")
        if n < self.batch_size:
            padded = np.zeros((self.batch_size,) + frames.shape[1:], np.uint8)
            padded[:n] = frames
            frames = padded
        return self._call(frames).numpy()[:n]
