"""Sampled, fitted frames of an open video: the one place stage one's frame recipe lives.

Extraction and end-to-end training take frames through :func:`sampled_frames`, so they
see exactly the same pixels for the same settings. (Streaming prediction samples and fits
each frame itself, because it times the fit and the CNN per frame.)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vidcache.features.settings import FeatureSettings, SamplingSpec
from vidcache.features.video.transform import fit_frame


def sampled_frames(
    reader, sampling: SamplingSpec, image_size: int, resize: str
) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(source_index, seconds, uint8 (S, S, 3) RGB)`` for each kept frame of ``reader``.

    Args:
        reader: an open :class:`features.video.decode.VideoReader` or ``FrameFolderReader``.
        sampling: which frames to keep; only the packets they need are decoded (see
            :meth:`features.video.decode.VideoReader.sampled`).
        image_size: side of the square output.
        resize: ``"center-crop"`` or ``"stretch"``.
    """
    for index, seconds, frame in reader.sampled(sampling):
        yield index, seconds, fit_frame(frame, image_size, resize)


def frames_as_settings(
    reader, settings: FeatureSettings
) -> Iterator[tuple[int, float, np.ndarray]]:
    """:func:`sampled_frames` with the sampling, size and resize policy of ``settings``."""
    return sampled_frames(reader, settings.sampling, settings.image_size, settings.resize)
