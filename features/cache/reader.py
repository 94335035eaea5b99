"""Reading a cache: :class:`CacheReader`, the way stage two reads features, over every
layout :mod:`.layouts` knows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vidcache.features.cache import rootattrs, store
from vidcache.features.cache.entry import CacheEntry
from vidcache.features.cache.files import open_read
from vidcache.features.cache.index import Index
from vidcache.features.cache.layouts import open_layout
from vidcache.features.errors import CacheDamaged
from vidcache.features.remote.caches import open_remote
from vidcache.features.remote.urls import is_url
from vidcache.features.settings import FeatureSettings

__all__ = ["CacheReader", "cache_schema", "common_settings", "read_settings"]


class CacheReader:
    """Read-only access to a cache of any schema; the way stage two reads features.

    Opening reads the whole video index (a handful of reads at any size). Features are
    checked against their CRC-32 on every read of a schema-2/3 file.

    Args:
        path: the HDF5 file, or its URL in a store (read in place by ranged reads).
        tolerant: leave records that fail their check out instead of raising (``verify``
            reads files so). Defaults to False.

    Raises:
        CacheFormatError: the file is missing, not HDF5, not a vidcache cache, of another
            schema version, or damaged (:class:`CacheDamaged`).
    """

    def __init__(self, path: Path | str, tolerant: bool = False) -> None:
        self._remote = None
        if is_url(str(path)):  # read in place by ranged reads (features/remote/caches.py)
            self.path = str(path)
            self._file, self._remote = open_remote(self.path)
        else:
            self.path = Path(path)
            self._file = open_read(self.path)
        try:
            self.schema_version = store.check_header(self._file, self.path)
            attrs = store.read_attrs(self._file, self.path)
            rootattrs.check_record(attrs, self.path)
            try:
                self.settings = FeatureSettings.from_json(attrs["settings"])
                self.versions = json.loads(attrs.get("versions", "{}"))
                if not isinstance(self.versions, dict):
                    raise ValueError(f"versions is a JSON {type(self.versions).__name__}")
            except (KeyError, TypeError, ValueError, RecursionError) as exc:
                raise CacheDamaged(
                    f"{self.path}: damaged cache (its settings cannot be read: "
                    f"{store.first_line(exc)})"
                ) from None
            self.created = str(attrs.get("created", ""))
            self._layout = open_layout(self._file, self.path, self.schema_version, tolerant)
            # After the index: a SWMR reader sees the rows' extent as of its first look at
            # them, which must not come before the commit count it reads (a writer appends
            # rows before the records that point to them).
            rootattrs.check_rows(attrs, self._file, self.path, self.settings)
            self.updated = self._layout.updated(attrs, self.created)
        except BaseException:
            self.close()
            raise

    @property
    def checked(self) -> bool:
        """Whether the index carries record checks (schema 3)."""
        return self._layout.checked

    @property
    def index(self) -> Index | None:
        """The schema-2/3 index (``None`` for schema 1)."""
        return self._layout.index

    def entries(self) -> dict[str, CacheEntry]:
        """Videos by id, in the order of :func:`encode_key`."""
        return self._layout.entries()

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._layout

    def rows(self, video_id: str, verify: bool = True) -> store.Rows:
        """Features, timestamps and frame indices of one video.

        Raises:
            KeyError: not in the cache.
            CacheDamaged: its rows fail their checksum or cannot be read.
        """
        return self._layout.rows(video_id, verify)

    def feature_slice(self, video_id: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of one video's features (stored dtype), not checked: the
        caller checks the video's CRC-32 once it holds every row (Ray's transfer does).

        Raises:
            KeyError: not in the cache (or a schema-1 cache).
        """
        index = self.index
        if index is None:
            raise KeyError(video_id)
        position = index.live[video_id]
        first = int(index.numbers["row_start"][position])
        count = int(index.numbers["num_frames"][position])
        start, stop = max(0, start), min(stop, count)
        return store.rows_group(self._file, self.path)["features"][first + start : first + stop]

    def features_many(self, video_ids: list[str]) -> dict[str, np.ndarray]:
        """Features of many videos (stored dtype), read in large sequential blocks in file
        order; each checked against its checksum. The fast way to load a training set.

        Raises:
            KeyError: a video is not in the cache.
            CacheDamaged: a video fails its checksum.
        """
        return {video_id: rows.features for video_id, rows in self.rows_many(video_ids)}

    def rows_many(self, video_ids: list[str]):
        """Yield ``(video_id, Rows)`` for many videos, in file order, read in large
        sequential blocks (schema 2/3) and checked against their checksums.

        Raises:
            KeyError: a video is not in the cache.
            CacheDamaged: a video fails its checksum.
        """
        yield from self._layout.rows_many(video_ids)

    def features(self, video_id: str) -> np.ndarray:
        """``(T, D)`` features of one video, in the stored dtype."""
        return self.rows(video_id).features

    def timestamps(self, video_id: str) -> np.ndarray:
        """``(T,)`` seconds of each stored frame."""
        return self.rows(video_id).timestamps

    def frame_indices(self, video_id: str) -> np.ndarray:
        """``(T,)`` index in the source video (decode order, from 0) of each stored frame."""
        return self.rows(video_id).frame_indices

    def spans(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(span_frames, span_times)``, each ``(T, 2)``: the first and last frame index and
        the start and end time each row covers (a window; a frame row's instant twice)."""
        return self.rows(video_id).spans()

    def holds_folders(self) -> bool:
        """Whether any video of the cache is a folder of numbered frames."""
        return self._layout.holds_folders()

    def stats(self) -> dict:
        """Records, live videos, rows stored and rows in use (waste = 1 - used / stored)."""
        return self._layout.stats()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()
        if self._remote is not None:
            self._remote.close()

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_settings(path: Path) -> FeatureSettings:
    """The settings stamped on an existing cache.

    Raises:
        CacheFormatError: not a readable vidcache cache.
    """
    with CacheReader(path) as reader:
        return reader.settings


def common_settings(readers: list[CacheReader]):
    """The settings that describe all of ``readers`` (the shards of one dataset, the caches
    of one training run), and the first cache that disagrees with them.

    Settings only folders of frames use are compared between caches that both hold such
    folders; the settings returned are those of a cache holding folders when one does.

    Returns:
        ``(base reader, disagreeing reader or None, differences)``.
    """
    base = next((r for r in readers if r.holds_folders()), readers[0])
    base_folders = base.holds_folders()
    for reader in readers:
        if reader is not base:
            folders = base_folders and reader.holds_folders()
            diffs = base.settings.differences(reader.settings, folders=folders)
            if diffs:
                return base, reader, diffs
    return base, None, []


def cache_schema(path: Path) -> int:
    """The schema version of an existing cache (1 or 2).

    Raises:
        CacheFormatError: not a readable vidcache cache.
    """
    with CacheReader(path) as reader:
        return reader.schema_version
