"""The CNN: Keras InceptionV3 without its top, global-average-pooled to 2048-d per frame.

Weights come from one of three places (``--weights``):

- ``imagenet``: Keras' own file in the Keras cache (``$KERAS_HOME/models`` or
  ``~/.keras/models``), downloaded there on first use when a network is reachable. With no
  network and no file, :class:`WeightsUnavailable` says where to put the file.
- a path to a weights file Keras can load into the notop model (``.h5``/``.weights.h5``).
- ``random``: seeded random initialisation, for tests and offline demos only; the features
  mean nothing and the cache records ``random:seed=S`` so nobody mistakes them.

TensorFlow is imported lazily, inside these functions, so the CLI's help stays instant.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidcache.features.errors import WeightsUnavailable

IMAGENET_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + IMAGENET_FILE
)
IMAGENET_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"  # keras.applications.inception_v3
FEATURE_DIM = 2048
DOWNLOAD_TIMEOUT_S = 20


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
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf


@dataclass(frozen=True)
class WeightsSpec:
    """Where the backbone weights come from.

    Attributes:
        kind: ``"imagenet"``, ``"file"`` or ``"random"``.
        path: the file, for ``"file"``.
        seed: the initialisation seed, for ``"random"``.
    """

    kind: str
    path: Path | None = None
    seed: int = 0

    @classmethod
    def parse(cls, value: str, seed: int = 0) -> WeightsSpec:
        """Parse ``--weights``: ``imagenet``, ``random`` or a file path.

        Raises:
            WeightsUnavailable: a path that does not exist.
        """
        if value in ("imagenet", "random"):
            return cls(value, seed=seed)
        path = Path(value)
        if not path.is_file():
            raise WeightsUnavailable(
                f"weights file {value} does not exist (use --weights imagenet, random or a PATH)"
            )
        return cls("file", path=path.resolve())

    @property
    def identity(self) -> str:
        """What the cache records as ``weights``."""
        if self.kind == "random":
            return f"random:seed={self.seed}"
        if self.kind == "file":
            return f"file:{self.path.name}"
        return "imagenet"


def keras_cache_dir() -> Path:
    """The folder where Keras keeps downloaded weights (``$KERAS_HOME/models``)."""
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(home) / "models"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def imagenet_weights(download: bool = True) -> Path:
    """The ImageNet notop weights file, downloading it into the Keras cache if missing.

    Args:
        download: try to download when the file is missing. Defaults to ``True``.

    Raises:
        WeightsUnavailable: the file is missing and cannot be downloaded, or is damaged.
    """
    path = keras_cache_dir() / IMAGENET_FILE
    hint = (
        f"fetch {IMAGENET_URL} on a machine with network access and copy it to {path}, "
        "or pass --weights PATH"
    )
    if path.is_file():
        if _md5(path) != IMAGENET_MD5:
            raise WeightsUnavailable(
                f"{path} is damaged (MD5 differs from Keras'); delete it and {hint}"
            )
        return path
    if not download:
        raise WeightsUnavailable(f"ImageNet weights for InceptionV3 are not in {path}; {hint}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        import keras

        fetched = keras.utils.get_file(
            IMAGENET_FILE,
            IMAGENET_URL,
            cache_subdir="models",
            file_hash=IMAGENET_MD5,
            cache_dir=str(path.parent.parent),
        )
    except Exception as exc:  # any network or file-system failure of the download
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise WeightsUnavailable(
            f"ImageNet weights for InceptionV3 are not in the Keras cache and could not be "
            f"downloaded ({reason}); {hint}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return Path(fetched)


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


def build_backbone(image_size: int, weights: WeightsSpec, precision: str = "float32"):
    """Build ``InceptionV3(include_top=False, pooling="avg")`` with the requested weights.

    Args:
        image_size: side of the square input, 75 or more.
        weights: where the weights come from.
        precision: ``"float32"`` or ``"bfloat16"`` (weights are loaded in float32, then
            cast into a bfloat16 copy of the network). Defaults to ``"float32"``.

    Returns:
        ``(model, digest)``: the Keras model and the SHA-256 of its float32 weights.

    Raises:
        WeightsUnavailable: the weights cannot be found or do not fit the network.
    """
    import_tensorflow()
    import keras

    shape = (image_size, image_size, 3)
    source = imagenet_weights() if weights.kind == "imagenet" else weights.path
    if weights.kind == "random":
        keras.utils.set_random_seed(weights.seed)
    model = keras.applications.InceptionV3(
        include_top=False, weights=None, input_shape=shape, pooling="avg"
    )
    if source is not None:
        try:
            model.load_weights(str(source))
        except Exception as exc:  # Keras raises ValueError, OSError, KeyError... for bad files
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise WeightsUnavailable(
                f"cannot load InceptionV3 notop weights from {source}: {reason[:300]}"
            ) from None
    digest = weights_digest(model)
    if precision == "bfloat16":
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("bfloat16")
        try:
            low = keras.applications.InceptionV3(
                include_top=False, weights=None, input_shape=shape, pooling="avg"
            )
        finally:
            keras.config.set_dtype_policy(previous)
        low.set_weights(model.get_weights())
        model = low
    elif precision != "float32":
        raise ValueError(f"precision must be float32 or bfloat16. Received: precision={precision}")
    return model, digest


class FeatureExtractor:
    """Frames in (``uint8`` RGB), 2048-d features out, through one compiled call per batch.

    The call is a ``tf.function`` with a fixed input shape ``(batch_size, s, s, 3)``: it
    casts, applies ``keras.applications.inception_v3.preprocess_input`` and runs the
    network, so it is traced once; a short last batch is padded with zeros.

    Args:
        image_size: side of the square input, 75 or more. Defaults to 299.
        weights: where the weights come from. Defaults to ImageNet.
        precision: ``"float32"`` or ``"bfloat16"``. Defaults to ``"float32"``.
        batch_size: frames per call. Defaults to 32.
    """

    def __init__(
        self,
        image_size: int = 299,
        weights: WeightsSpec = WeightsSpec("imagenet"),
        precision: str = "float32",
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1. Received: batch_size={batch_size}")
        self.image_size = image_size
        self.weights = weights
        self.precision = precision
        self.batch_size = batch_size
        self.model, self.weights_sha256 = build_backbone(image_size, weights, precision)
        tf = import_tensorflow()
        import keras

        model = self.model
        compute = model.compute_dtype

        def run(frames):
            x = keras.applications.inception_v3.preprocess_input(tf.cast(frames, tf.float32))
            return tf.cast(model(tf.cast(x, compute), training=False), tf.float32)

        spec = tf.TensorSpec((batch_size, image_size, image_size, 3), tf.uint8)
        self._call = tf.function(run, input_signature=[spec], reduce_retracing=True)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Features of up to ``batch_size`` frames.

        Args:
            frames: ``uint8`` array ``(n, image_size, image_size, 3)``, RGB, ``n <= batch_size``.

        Returns:
            ``float32`` array ``(n, 2048)``.
        """
        n = len(frames)
        if n > self.batch_size:
            raise ValueError(f"at most {self.batch_size} frames per call. Received: {n}")
        if n < self.batch_size:
            padded = np.zeros((self.batch_size,) + frames.shape[1:], np.uint8)
            padded[:n] = frames
            frames = padded
        return self._call(frames).numpy()[:n]
