"""vidcache: extract CNN features from video once, train sequence models on them many times.

The installed package is one namespace; the repository keeps its three folders, installed
as subpackages (see ``setup.cfg``'s ``package_dir``):

- ``vidcache.features``: stage one's library (decoding, sampling, the CNN, the HDF5 cache).
- ``vidcache.models``: sequence models trained on the cache (stage two and three).
- ``vidcache.pipeline``: orchestration and the command line.

The stable public API is what this module exports; everything else may move between
releases. Names are imported lazily, so ``import vidcache`` does not load TensorFlow::

    from vidcache import CacheReader, extract_features, discover, load_run

    with CacheReader("features.h5") as cache:
        for video_id, entry in cache.entries().items():
            x = cache.features(video_id)  # (T, 2048)
"""

from __future__ import annotations

import importlib

from vidcache._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "CacheReader": "vidcache.features.cache",
    "CacheEntry": "vidcache.features.cache",
    "FeatureSettings": "vidcache.features.settings",
    "VidcacheError": "vidcache.features.errors",
    "CacheFormatError": "vidcache.features.errors",
    "WeightsUnavailable": "vidcache.features.errors",
    "WeightsSpec": "vidcache.features.backbones",
    "discover": "vidcache.features.video.discover",
    "ExtractConfig": "vidcache.pipeline.extraction.config",
    "extract_features": "vidcache.pipeline.extraction.local",
    "TrainConfig": "vidcache.pipeline.training",
    "train_rnn": "vidcache.pipeline.training",
    "load_run": "vidcache.pipeline.training",
    "evaluate_run": "vidcache.pipeline.training",
    "predict_videos": "vidcache.pipeline.inference.predict",
    "dataset": "vidcache.pipeline.dataset",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vidcache' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
