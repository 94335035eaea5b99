"""What the backbones taken from ``keras.applications`` share: how a model is built (no top,
no weights, average-pooled) and where Keras publishes their files."""

from __future__ import annotations

import re
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


def blocks_by_prefix(pattern: str) -> Callable[[Any], list[tuple[str, str]]]:
    """``blocks(model)`` for networks whose layers are named after their block: the block
    is ``pattern``'s first group (``conv5_block3`` of ``conv5_block3_2_conv``), its last
    layer the last one carrying that name (the residual add or the projection)."""
    compiled = re.compile(pattern)

    def blocks(model) -> list[tuple[str, str]]:
        last: dict[str, str] = {}
        for layer in model.layers:
            match = compiled.match(layer.name)
            if match:
                last[match.group(1)] = layer.name  # dicts keep the first-seen order
        return list(last.items())

    return blocks
