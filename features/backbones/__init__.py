"""Backbones: the CNNs vidcache extracts per-frame features with, as a small registry.

- ``registry``: :class:`Backbone` (name, input sizes, preprocessing, feature dimension,
  pretrained file and checksum) and the table (:func:`register`, :func:`get_backbone`).
- ``weights``: :class:`WeightsSpec` (``--weights`` and the identity a cache records, both
  ways) and the pretrained files in the Keras cache.
- one module per network (``inception_v3``), each registering its entry.

Adding a backbone is one module calling :func:`register` (or a ``vidcache.backbones`` entry
point in another package); see ``docs/architecture.md``.
"""

from vidcache.features.backbones.registry import (
    DEFAULT_BACKBONE,
    Backbone,
    PretrainedFile,
    backbone_names,
    get_backbone,
    register,
    unregister,
)
from vidcache.features.backbones.weights import WeightsSpec, keras_cache_dir, pretrained_weights

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "PretrainedFile",
    "WeightsSpec",
    "backbone_names",
    "get_backbone",
    "keras_cache_dir",
    "pretrained_weights",
    "register",
    "unregister",
]
