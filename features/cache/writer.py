"""Writing a cache: :class:`FeatureCache`, what a run holds under its lock."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vidcache.features.cache import store
from vidcache.features.cache.appender import StoreWriter
from vidcache.features.cache.buffer import FeatureBuffer
from vidcache.features.cache.entry import CacheEntry, encode_key
from vidcache.features.cache.files import hdf5_write_error, open_for_write
from vidcache.features.cache.h5recover import clear_write_flags
from vidcache.features.cache.lock import hold_file, release_file
from vidcache.features.cache.store import HDF5_ERRORS
from vidcache.features.errors import (
    CacheFormatError,
)
from vidcache.features.settings import FeatureSettings

__all__ = ["FeatureCache"]


class FeatureCache:
    """A schema-2/3 cache opened for writing. Use :meth:`open` under a :class:`CacheLock`.

    Args:
        writer: the open :class:`~vidcache.features.cache.appender.StoreWriter`.
        file_key: the :func:`hold_file` key released on close.
    """

    def __init__(self, writer: StoreWriter, file_key=None) -> None:
        self._writer = writer
        self._file_key = file_key
        self.path = writer.path

    @classmethod
    def open(
        cls,
        path: Path,
        settings: FeatureSettings,
        versions: dict,
        fsync: bool = False,
        bulk: bool = False,
    ) -> FeatureCache:
        """Open ``path`` for writing, creating it with ``settings`` if it does not exist.

        The caller holds the lock and compares ``settings`` with :func:`read_settings`
        first; a file a killed run left is healed here. A schema-2 file is extended as it
        is (its new records unchecked, like its old ones); new files are schema 3.

        Args:
            path: the cache.
            settings: the settings of a new file.
            versions: library versions stamped on a new file.
            fsync: make every commit durable against power loss. Defaults to False.
            bulk: flush only when closed, not at every commit (whole-file rewrites into
                a temporary file, which is made durable before it replaces the cache).
                Defaults to False.

        Raises:
            CacheFormatError: the file is not a vidcache cache of schema 2 or 3 (schema 1
                files are upgraded with ``vidcache migrate``), or is damaged.
            CacheUnwritable, DiskFull: it cannot be written.
        """
        path = Path(os.path.realpath(path))  # a symlink is written through, never replaced
        if not path.exists():
            store.create(path, settings, versions)
        key = hold_file(path)
        try:
            clear_write_flags(path)
            handle = open_for_write(path)
            try:
                version = store.check_header(handle, path)
                if version == 1:
                    raise CacheFormatError(
                        f"{path} is a schema {version} cache; upgrade it with "
                        f"'vidcache migrate {path}' first"
                    )
                # Every object is opened and the index read and checked before SWMR mode:
                # in SWMR mode HDF5 retries a damaged object's checksum for minutes.
                writer = StoreWriter(path, handle, fsync)
                writer.bulk = bulk
                try:
                    handle.swmr_mode = True
                except HDF5_ERRORS as exc:
                    raise hdf5_write_error(exc, path) from None
            except BaseException:
                handle.close()
                raise
        except BaseException:
            release_file(key)
            raise
        return cls(writer, key)

    def entries(self) -> dict[str, CacheEntry]:
        """The videos in the cache by id (their latest records)."""
        entries = self._writer.index.entries()
        return {video_id: entries[video_id] for video_id in sorted(entries, key=encode_key)}

    def write_video(self, entry: CacheEntry, buffer: FeatureBuffer, dtype: str | None = None):
        """Commit one finished video (replacing an older version of it).

        Raises:
            DiskFull: no room for it; the videos committed before are kept.
        """
        entry.extracted_at = entry.extracted_at or store.now()
        self._writer.append(
            entry, buffer.blocks(), buffer.timestamps, buffer.frame_indices, spans=buffer.spans()
        )

    def write_rows(
        self, entry: CacheEntry, features, timestamps, frame_indices, spans=None
    ) -> None:
        """Commit one video from arrays (migration, compaction, benchmarks); ``spans``
        ``(span_frames, span_times)`` for a window cache."""
        entry.extracted_at = entry.extracted_at or store.now()
        self._writer.append(entry, [features], timestamps, frame_indices, spans=spans)

    def write_blocks(
        self, entry: CacheEntry, blocks: Iterable[np.ndarray], timestamps, frame_indices, spans=None
    ) -> None:
        """Commit one video whose feature rows come in ``blocks``, written as they come
        (an iterator that raises leaves nothing of the video committed)."""
        entry.extracted_at = entry.extracted_at or store.now()
        self._writer.append(entry, blocks, timestamps, frame_indices, spans=spans)

    def write_batch(self, entries: list[CacheEntry], batch: list[store.Rows]) -> None:
        """Commit many videos in one step (whole-file rewrites)."""
        for entry in entries:
            entry.extracted_at = entry.extracted_at or store.now()
        self._writer.append_batch(entries, batch)

    def touch_video(self, entry: CacheEntry) -> None:
        """Record a new path/mtime for an unchanged video (same fingerprint, same rows)."""
        position = self._writer.index.live[entry.video_id]
        self._writer.append(entry, None, reuse_from=position)

    def delete_videos(self, video_ids: Iterable[str]) -> int:
        """Tombstone videos by id; returns how many were removed."""
        index = self._writer.index
        removed = 0
        for video_id in video_ids:
            position = index.live.get(video_id)
            if position is not None:
                self._writer.append(index.entry(position), None, deleted=True)
                removed += 1
        return removed

    def close(self) -> None:
        self._writer.close()
        if self._file_key is not None:
            release_file(self._file_key)
            self._file_key = None

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
