"""What end-to-end training reads each epoch: a video's frames decoded and fitted exactly
as stage one did (each time, or once into a frames cache), or the activations at the cut
computed once into a cut cache; and :class:`Epochs`, batches of equal-length videos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from vidcache.features.settings import FeatureSettings
from vidcache.features.video.decode import open_source
from vidcache.features.video.discover import VideoSource
from vidcache.features.video.frames import frames_as_settings
from vidcache.models.e2e import length_batches

__all__ = ["Epochs", "cut_cache", "cut_shape", "decode_frames", "decoding", "frames_cache"]


def decode_frames(source: VideoSource, settings: FeatureSettings) -> np.ndarray:
    """Frames of one video, sampled and fitted exactly as stage one did."""
    with open_source(source, settings.folder_fps) as reader:
        return np.stack([image for _, _, image in frames_as_settings(reader, settings)])


class Epochs:
    """Batches of equal-length videos: frames decoded per batch, or cut activations read
    from the cut cache."""

    def __init__(self, items, targets, lengths, batch_size, seed, load) -> None:
        self.items, self.targets, self.batch_size = items, np.asarray(targets), batch_size
        self.seed, self.load, self.lengths = seed, load, list(lengths)
        self.epoch = 0

    def batches_of(self, batch_size: int) -> int:
        """Full batches of one epoch at ``batch_size`` (what a distributed epoch takes)."""
        return sum(len(b) == batch_size for b in length_batches(self.lengths, batch_size, None))

    def dataset(self, shuffle: bool, batch_size=None, shard=None, repeat: bool = False):
        """Batches of equal-length videos; ``shard`` and ``repeat`` serve a distributed run
        (which takes full batches only: its replicas must get equal batches)."""
        from vidcache.features.backbone import import_tensorflow

        tf = import_tensorflow()
        batch_size = batch_size or self.batch_size
        index, pipelines = shard or (0, 1)
        first = self.load(0)  # once: in frames mode a load is a decode
        sample_shape = first.shape[1:]
        dtype = tf.uint8 if first.dtype == np.uint8 else tf.float32

        def generate():
            while True:
                seed = self.seed + self.epoch if shuffle else None
                self.epoch += int(shuffle)
                batches = length_batches(self.lengths, batch_size, seed)
                if repeat:
                    batches = [b for b in batches if len(b) == batch_size]
                for batch in batches[index::pipelines]:
                    yield np.stack([self.load(i) for i in batch]), self.targets[batch]
                if not repeat:
                    return

        steps = len(length_batches(self.lengths, batch_size, None)[index::pipelines])
        dataset = tf.data.Dataset.from_generator(
            generate,
            output_signature=(
                tf.TensorSpec((None, None, *sample_shape), dtype),
                tf.TensorSpec((None,), tf.int32),
            ),
        )
        if repeat:
            return dataset.prefetch(2)
        return dataset.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)


def _key(video_id: str) -> str:
    """A video id as an HDF5 dataset name (no ``/``)."""
    return video_id.replace("/", "%2F")


def cut_cache(
    path: Path,
    parts: dict[str, list[str]],
    by_id: dict[str, VideoSource],
    settings: FeatureSettings,
    bottom,
    preprocess: Callable,
) -> tuple[h5py.File, Callable]:
    """The activation at the cut of every video of ``parts``, computed once by ``bottom``
    (the frozen blocks) into ``path``; returns the open file and a loader factory
    (``loader(ids)(i)``: the activations of ``ids[i]``)."""
    with h5py.File(path, "w") as handle:
        for ids in parts.values():
            for video_id in ids:
                frames = decode_frames(by_id[video_id], settings)
                handle[_key(video_id)] = bottom.predict(
                    np.asarray(preprocess(frames.astype(np.float32))), verbose=0
                )
    store = h5py.File(path, "r")

    def loader(ids):
        return lambda i: store[_key(ids[i])][()]

    return store, loader


def cut_shape(store: h5py.File, video_id: str) -> tuple[int, ...]:
    """The shape of one frame's activation at the cut, read from the cut cache."""
    return store[_key(video_id)].shape[1:]


def frames_cache(
    path: Path, by_id: dict[str, VideoSource], settings: FeatureSettings
) -> tuple[h5py.File, Callable]:
    """Decoded, fitted uint8 frames kept in ``path``: epochs after the first (and later runs
    into the same folder) skip decoding. Returns the open file and a loader factory."""
    store = h5py.File(path, "a")

    def loader(ids):
        def load(i):
            key = _key(ids[i])
            if key not in store:
                store[key] = decode_frames(by_id[ids[i]], settings)
            return store[key][()]

        return load

    return store, loader


def decoding(by_id: dict[str, VideoSource], settings: FeatureSettings) -> Callable:
    """A loader factory that decodes a video's frames each time it is asked."""

    def loader(ids):
        return lambda i: decode_frames(by_id[ids[i]], settings)

    return loader
