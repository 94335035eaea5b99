"""What the backbones taken from ``keras.applications`` share: how a model is built (no top,
no weights, average-pooled) and where Keras publishes their files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Keras' bucket of application weights; each family has its folder under it.
KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


def application(name: str, **options: Any) -> Callable[[tuple[int, int, int]], Any]:
    """``build(input_shape)`` for ``keras.applications.<name>``: no classifier, no weights
    (they are loaded or seeded afterwards), global average pooling, ``options`` passed on."""

    def build(input_shape: tuple[int, int, int]):
        import keras

        return getattr(keras.applications, name)(
            include_top=False, weights=None, input_shape=input_shape, pooling="avg", **options
        )

    return build


def unchanged(frames):
    """The preprocessing of networks that rescale their own 0..255 input."""
    return frames
