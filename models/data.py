"""Labelled sequences from feature caches (the ``tf.data`` batches over them are
:mod:`vidcache.models.batches`').

Caches are read only through :class:`features.cache.CacheReader`. Sequences are loaded
into memory once, or (``stream=True``) read from HDF5 per batch for data larger than memory.
Batches are padded to their longest sequence with zeros; the model masks the padding.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidcache.features.cache import CacheReader, common_settings
from vidcache.features.errors import SettingsMismatch, VidcacheError
from vidcache.features.video.sampling import count_indices

# The tf.data side (padded batches) is models.batches'; its names stay importable here.
from vidcache.models.batches import batched_dataset, make_dataset, pad_sequences, per_frame_dataset


class DataError(VidcacheError):
    """The caches cannot give a training set (no labels, one class...)."""


@dataclass(frozen=True)
class Example:
    """One labelled video of a cache."""

    cache: int  # index into the list of caches
    video_id: str
    label: str
    length: int


def open_caches(paths: list[Path], fuse: bool = False):
    """Open caches and check they share one set of feature settings.

    Args:
        paths: the caches.
        fuse: the caches are feature sets of the same videos (one backbone each), read as
            one whose rows are their per-frame concatenation
            (:class:`~vidcache.features.fusion.FusedReader`). Defaults to False.

    Returns:
        ``(readers, settings)``: the open readers (one fused reader when ``fuse``) and their
        settings (:class:`~vidcache.features.fusion.FusedSettings` when ``fuse``).

    Raises:
        SettingsMismatch: two caches were made with other settings (fused: with other
            frame sampling).
        CacheFormatError: a file is not a readable cache.
        DataError: ``fuse`` with fewer than two caches.
    """
    if fuse:
        return _open_fused(paths, None)
    readers = []
    try:
        for path in paths:
            readers.append(CacheReader(path))
    except Exception:
        for reader in readers:
            reader.close()
        raise
    base, other, diffs = common_settings(readers) if len(readers) > 1 else (readers[0], None, [])
    if other is not None:
        for r in readers:
            r.close()
        fuse = (
            " (or, for feature sets of the same videos made by different backbones, train on "
            "their concatenation with --fuse)"
            if other.settings.backbone != base.settings.backbone
            else ""
        )
        raise SettingsMismatch(
            f"{other.path} and {base.path} hold features made with other settings "
            f"({'; '.join(diffs)}); train on caches of one kind{fuse}"
        )
    return readers, base.settings


def open_fused(paths: list[Path], settings) -> tuple[list, object]:
    """Open the caches of a run trained on fused feature sets: each cache is matched to the
    part whose settings it has (in any order), and they are read fused in the run's order.

    Raises:
        SettingsMismatch: a part of ``settings`` has no cache, or a cache matches no part.
    """
    return _open_fused(paths, settings)


def _open_fused(paths: list[Path], wanted):
    from vidcache.features.fusion import FusedReader

    if wanted is None and len(paths) < 2:
        raise DataError("--fuse reads two caches or more, one per feature set")
    readers = []
    try:
        for path in paths:
            readers.append(CacheReader(path))
        if wanted is not None:
            readers = _in_part_order(readers, wanted)
        fused = FusedReader(readers)
    except Exception:
        for reader in readers:
            reader.close()
        raise
    return [fused], fused.settings


def _in_part_order(readers: list[CacheReader], wanted) -> list[CacheReader]:
    """``readers`` reordered to match ``wanted.parts`` one to one, by settings."""
    ordered, spare = [], list(readers)
    for number, part in enumerate(wanted.parts, start=1):
        folders = any(r.holds_folders() for r in spare)
        match = next((r for r in spare if not part.differences(r.settings, folders=folders)), None)
        if match is None:
            given = ", ".join(f"{r.path} ({r.settings.backbone})" for r in spare) or "none"
            raise SettingsMismatch(
                f"the run fuses {wanted.backbone} features; no cache given holds its part "
                f"{number} ({part.backbone}, {part.image_size} px, weights {part.weights}): "
                f"give one cache per part (left: {given})"
            )
        ordered.append(match)
        spare.remove(match)
    if spare:
        raise SettingsMismatch(
            f"{spare[0].path} ({spare[0].settings.backbone}) is not one of the run's fused "
            f"feature sets ({wanted.backbone})"
        )
    return ordered


def collect_examples(
    readers: list[CacheReader],
    label_map: dict[str, str] | None = None,
    labelled_only: bool = True,
) -> list[Example]:
    """Every labelled video of the caches (every video, when not ``labelled_only``);
    ``label_map`` renames or merges labels (a label mapped to ``""`` is dropped).

    Raises:
        DataError: no (labelled) video, or a video id occurs in two caches.
    """
    examples, seen = [], {}
    for index, reader in enumerate(readers):
        for video_id, entry in reader.entries().items():
            label = entry.label
            if label_map is not None:
                label = label_map.get(label, label)
            if not label and labelled_only:
                continue
            if video_id in seen:
                raise DataError(f"video {video_id!r} is in both {seen[video_id]} and {reader.path}")
            seen[video_id] = reader.path
            examples.append(Example(index, video_id, label, entry.num_frames))
    if not examples:
        names = ", ".join(str(r.path) for r in readers)
        if not labelled_only:
            raise DataError(f"no videos in {names}")
        raise DataError(
            f"no labelled videos in {names} (labels come from the videos' folder names, or "
            "from a labels CSV given to extract-features --labels)"
        )
    return examples


def check_classes(examples: list[Example]) -> list[str]:
    """The sorted class names; at least two classes of at least two clips each.

    Raises:
        DataError: a single class, or a class with a single clip.
    """
    counts = Counter(e.label for e in examples)
    if len(counts) < 2:
        raise DataError(f"only one class ({next(iter(counts))!r}); a classifier needs two or more")
    lonely = sorted(label for label, n in counts.items() if n < 2)
    if lonely:
        raise DataError(
            f"class(es) with a single clip: {', '.join(lonely)}; each class needs at least two "
            "(one to train, one to validate), or drop it with --label-map"
        )
    return sorted(counts)


def shape_sequence(x: np.ndarray, seq_len: int | None, max_len: int | None) -> np.ndarray:
    """Resample to exactly ``seq_len`` steps (uniform), or crop to the first ``max_len``."""
    if seq_len is not None:
        return x[count_indices(len(x), seq_len)]
    if max_len is not None:
        return x[:max_len]
    return x


class SequenceSource:
    """Features of examples, from memory or read from the caches on demand.

    Args:
        readers: the open caches.
        examples: what to serve.
        stream: read from HDF5 per request instead of loading everything now.
        seq_len: resample every sequence to this many steps.
        max_len: crop sequences to this many steps.
    """

    def __init__(self, readers, examples, stream=False, seq_len=None, max_len=None) -> None:
        self.readers, self.examples = readers, examples
        self.stream, self.seq_len, self.max_len = stream, seq_len, max_len
        self._memory = None if stream else self._load_all()

    def _load_all(self) -> list[np.ndarray]:
        """Every sequence, each cache read in large sequential blocks (file order)."""
        wanted: dict[int, list[str]] = {}
        for example in self.examples:
            wanted.setdefault(example.cache, []).append(example.video_id)
        loaded = {c: self.readers[c].features_many(ids) for c, ids in wanted.items()}
        return [self._shape(loaded[e.cache][e.video_id], e.video_id) for e in self.examples]

    def _read(self, i: int) -> np.ndarray:
        example = self.examples[i]
        # One contiguous slice of the cache's row dataset, checked against its checksum, kept
        # in its stored dtype (float16 caches take half the memory) until it is served.
        return self._shape(self.readers[example.cache].features(example.video_id), example.video_id)

    def _shape(self, x: np.ndarray, video_id: str) -> np.ndarray:
        if len(x) == 0:
            raise DataError(f"video {video_id!r} has an empty sequence")
        return shape_sequence(x, self.seq_len, self.max_len)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> np.ndarray:
        x = self._memory[i] if self._memory is not None else self._read(i)
        return x.astype(np.float32, copy=False)


def standardization(source: SequenceSource) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and variance over every frame of ``source`` (the training split).

    Dimensions that are (nearly) constant in training, such as dead ReLU channels, get the
    mean variance instead of their own: dividing by ~0 would turn any later change in them
    (new data, or fine-tuning in stage three) into values of 1e5 and wreck the model.
    """
    total, total_sq, count = 0.0, 0.0, 0
    for i in range(len(source)):
        x = source[i].astype(np.float64)
        total = total + x.sum(0)
        total_sq = total_sq + (x**2).sum(0)
        count += len(x)
    mean = total / count
    variance = np.maximum(total_sq / count - mean**2, 0.0)
    typical = variance.mean()
    if typical > 0:
        variance = np.where(variance < 1e-6 * typical, typical, variance)
    else:
        variance = np.ones_like(variance)
    return mean.astype(np.float32), variance.astype(np.float32)


__all__ = [
    "DataError",
    "Example",
    "SequenceSource",
    "batched_dataset",
    "check_classes",
    "collect_examples",
    "make_dataset",
    "open_caches",
    "open_fused",
    "pad_sequences",
    "per_frame_dataset",
    "shape_sequence",
    "standardization",
]
