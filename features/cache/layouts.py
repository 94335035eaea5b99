"""How the videos of a cache are laid out on disk, one reader class per encoding, looked
up by the ``encoding-type``/``encoding-version`` attributes of the file's index (the
anndata pattern: a file says what it is, a table says who reads it).

=========================  ========  ============================================
encoding                   schema    reader
=========================  ========  ============================================
``vidcache-video-index``   2, 3, 4   :class:`IndexedLayout`: rows + index columns
``vidcache-video-groups``  1         :class:`GroupLayout`: one group per video
=========================  ========  ============================================

Schema-1 files predate the attributes: their encoding is taken from the header's
``schema_version``. A new layout is one class with the methods below and one
:func:`register_layout` line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import h5py

from vidcache.features.cache import store
from vidcache.features.cache.entry import CacheEntry
from vidcache.features.cache.index import Index
from vidcache.features.cache.legacy import LegacyReader
from vidcache.features.cache.rows import read_many, read_rows
from vidcache.features.errors import CacheDamaged, CacheFormatError

INDEX_ENCODING = "vidcache-video-index"
GROUPS_ENCODING = "vidcache-video-groups"


class IndexedLayout:
    """Schema 2/3: rows in a few large datasets, the videos in index columns, records
    checked against their CRCs (schema 3)."""

    def __init__(self, handle: h5py.File, path: Path, tolerant: bool = False) -> None:
        self._file = handle
        self.path = path
        self.index: Index | None = Index(handle, path, tolerant)

    @property
    def checked(self) -> bool:
        return self.index.checked

    def updated(self, attrs: dict, created: str) -> str:
        times = self.index.text["extracted_at"]
        return max(times) if times else created

    def entries(self) -> dict[str, CacheEntry]:
        return self.index.entries()

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.index.live

    def rows(self, video_id: str, verify: bool = True) -> store.Rows:
        position = self.index.live.get(video_id)
        if position is None:
            raise KeyError(f"{video_id!r} is not in {self.path}")
        return read_rows(self._file, self.index, position, self.path, verify)

    def rows_many(self, video_ids: list[str]) -> Iterator[tuple[str, store.Rows]]:
        live, ids = self.index.live, self.index.text["video_id"]
        missing = [v for v in video_ids if v not in live]
        if missing:
            raise KeyError(f"{missing[0]!r} is not in {self.path}")
        positions = [live[v] for v in video_ids]
        for position, rows in read_many(self._file, self.index, positions, self.path):
            yield ids[position], rows

    def holds_folders(self) -> bool:
        kinds = self.index.text["kind"]  # one column of the index: no entries are built
        return any(kinds[position] == "frames" for position in self.index.live.values())

    def stats(self) -> dict:
        index = self.index
        return {
            "records": index.count,
            "videos": len(index.live),
            "rows": index.rows_end(),
            "live_rows": index.live_rows(),
        }


class GroupLayout:
    """Schema 1: one HDF5 group per video (read as it is; ``vidcache migrate`` upgrades)."""

    checked = False
    index = None

    def __init__(self, handle: h5py.File, path: Path, tolerant: bool = False) -> None:
        self._legacy = LegacyReader(handle, path)
        self.path = path

    def updated(self, attrs: dict, created: str) -> str:
        return str(attrs.get("updated", ""))

    def entries(self) -> dict[str, CacheEntry]:
        return self._legacy.entries()

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._legacy.entries()

    def rows(self, video_id: str, verify: bool = True) -> store.Rows:
        return store.Rows(*self._legacy.rows(video_id))

    def rows_many(self, video_ids: list[str]) -> Iterator[tuple[str, store.Rows]]:
        for video_id in video_ids:
            yield video_id, store.Rows(*self._legacy.rows(video_id))

    def holds_folders(self) -> bool:
        return any(entry.kind == "frames" for entry in self.entries().values())

    def stats(self) -> dict:
        entries = self.entries()
        rows = sum(e.num_frames for e in entries.values())
        return {"records": len(entries), "videos": len(entries), "rows": rows, "live_rows": rows}


#: (encoding-type, encoding-version) -> the layout that reads it.
_LAYOUTS: dict[tuple[str, str], Callable[..., IndexedLayout | GroupLayout]] = {}


def register_layout(encoding: str, version: str, reader: Callable) -> None:
    """Read files whose index says ``encoding``/``version`` with ``reader(handle, path,
    tolerant)``."""
    _LAYOUTS[(encoding, version)] = reader


def unregister_layout(encoding: str, version: str) -> None:
    """Forget a layout (tests that register one clean up with this)."""
    _LAYOUTS.pop((encoding, version), None)


register_layout(INDEX_ENCODING, "2", IndexedLayout)
register_layout(INDEX_ENCODING, "3", IndexedLayout)
register_layout(INDEX_ENCODING, "4", IndexedLayout)  # schema 3 plus row spans (windows)
register_layout(GROUPS_ENCODING, "1", GroupLayout)


def encoding_of(handle: h5py.File, path: Path, schema_version: int) -> tuple[str, str]:
    """The ``(encoding-type, encoding-version)`` of an open cache.

    Raises:
        CacheDamaged: the index's attributes cannot be read.
        CacheFormatError: the index's encoding disagrees with the file's schema version.
    """
    if schema_version == 1:
        return GROUPS_ENCODING, "1"
    index = store.lookup(handle, "index", path)
    try:
        attrs = dict(index.attrs)
    except store.HDF5_ERRORS as exc:
        raise CacheDamaged(
            f"{path}: damaged cache (its index attributes cannot be read: {store.first_line(exc)})"
        ) from None
    found = tuple(
        value.decode() if isinstance(value, bytes) else str(value)
        for value in (
            attrs.get("encoding-type", INDEX_ENCODING),
            attrs.get("encoding-version", schema_version),
        )
    )
    if found[1] != str(schema_version):
        raise CacheFormatError(
            f"{path}: its index is encoded as {found[0]} version {found[1]}, but the file "
            f"says schema {schema_version}"
        )
    return found


def open_layout(handle: h5py.File, path: Path, schema_version: int, tolerant: bool = False):
    """The layout reader of an open cache, chosen by its index's encoding.

    Raises:
        CacheFormatError: an encoding no registered layout reads.
        CacheDamaged: the index is damaged (``tolerant``: damaged records are left out).
    """
    encoding = encoding_of(handle, path, schema_version)
    reader = _LAYOUTS.get(encoding)
    if reader is None:
        raise CacheFormatError(
            f"{path}: its videos are encoded as {encoding[0]} version {encoding[1]}, which "
            "this vidcache cannot read"
        )
    return reader(handle, path, tolerant)
