"""Appending to a schema-2/3 cache: rows, then index records, then the commit count,
in the order that makes a killed writer lose nothing committed."""

from __future__ import annotations

import contextlib
import errno
import os
import zlib
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from vidcache.features.cache import integrity
from vidcache.features.cache.entry import CacheEntry
from vidcache.features.cache.index import Index
from vidcache.features.cache.store import (
    CHECK,
    CHUNK_ROWS,
    INDEX_CHUNK,
    NUMERIC,
    TEXT,
    TEXT_CHUNK,
    Rows,
    check_free_space,
    grow,
    lookup,
    rows_crc,
    rows_group,
    write,
)
from vidcache.features.errors import DiskFull


class StoreWriter:
    """Appends records to an open schema-2 file (held in SWMR mode).

    Use :func:`open_writer`; the caller holds the cache's lock.

    Args:
        path: the file.
        handle: the h5py file, already in SWMR mode.
        fsync: ``fsync`` at both steps of every commit (survives power loss, not only a
            killed process).
    """

    def __init__(self, path: Path, handle: h5py.File, fsync: bool = False) -> None:
        self.path = Path(path)
        self.name = self.path  # the name messages give (a rewrite names its target)
        self.file = handle
        self.fsync = fsync
        self.index = Index(handle, self.path)
        self._rows_end = self.index.rows_end()
        # Numeric columns grow in place (capacity doubling): a commit costs the same at
        # the millionth video as at the first.
        self._buffers = {}
        for name, column in self.index.numbers.items():
            buffer = np.zeros(max(1024, 2 * len(column)), NUMERIC[name])
            buffer[: len(column)] = column
            self._buffers[name] = buffer
        self._checks = np.zeros(max(1024, 2 * len(self.index.checks)), np.uint64)
        self._checks[: len(self.index.checks)] = self.index.checks
        self._fd = handle.id.get_vfd_handle() if fsync else None
        # open every dataset once: lookups cost more than writes
        index = lookup(handle, "index", self.path)
        names = (*NUMERIC, CHECK) if self.index.checked else tuple(NUMERIC)
        self._columns = {name: lookup(index, name, self.path) for name in names}
        self._text = {}
        for name in TEXT:
            group = lookup(index, name, self.path)
            self._text[name] = (lookup(group, "bytes", path), lookup(group, "offsets", path))
        count = self.index.count
        self._text_end = {name: int(self._text[name][1][count]) for name in TEXT}
        rows = rows_group(handle, self.path)
        self._rows = (rows["features"], rows["timestamps"], rows["frame_indices"])
        #: ``rows/span_frames`` and ``rows/span_times`` of a schema-4 file, else ``None``.
        self._spans = (rows["span_frames"], rows["span_times"]) if "span_frames" in rows else None
        self._commit = lookup(handle, "commit", self.path)

    bulk = False  # set by whole-file rewrites: no flush per commit, the file is renamed in

    def _sync(self) -> None:
        if self.bulk:
            return
        self.file.flush()
        if self._fd is not None:
            os.fsync(self._fd)

    def _check_space(self, rows: int) -> None:
        features = self._rows[0]
        row_bytes = features.shape[1] * features.dtype.itemsize + 16
        check_free_space(self.path, (2 * rows + 2 * CHUNK_ROWS) * row_bytes, self.name)

    @contextlib.contextmanager
    def _disk_full(self, what: str):
        """Turn HDF5's ENOSPC (a disk filled past :meth:`_check_space`) into DiskFull."""
        try:
            yield
        except (OSError, RuntimeError) as exc:  # HDF5 raises either, by where it fails
            if getattr(exc, "errno", None) == errno.ENOSPC or "no space left" in str(exc).lower():
                raise DiskFull(
                    f"{self.name}: disk full while committing {what}; every video committed "
                    "before is kept: free some space and run again"
                ) from None
            raise

    def append(
        self,
        entry: CacheEntry,
        blocks: Iterable[np.ndarray] | None,
        timestamps=(),
        frame_indices=(),
        deleted: bool = False,
        reuse_from: int | None = None,
        spans: tuple | None = None,
    ) -> None:
        """Commit one record: new rows from ``blocks`` (with their timestamps and frame
        indices, and in a schema-4 file their ``spans``: ``(span_frames, span_times)``,
        each ``(n, 2)``), the rows of record ``reuse_from`` (a moved video), or none (a
        tombstone).

        Raises:
            DiskFull: not enough space; nothing of this record is committed.
            ValueError: spans for a file without them, or none for a file with them.
        """
        with self._disk_full(repr(entry.video_id)):
            self._append(entry, blocks, timestamps, frame_indices, deleted, reuse_from, spans)

    def _check_spans(self, spans, count: int) -> tuple | None:
        """``spans`` as two ``(count, 2)`` arrays, checked against what the file holds."""
        if (spans is None) != (self._spans is None):
            held, came = ("holds", "without") if spans is None else ("holds no", "with")
            raise ValueError(f"{self.name} {held} row spans; rows came {came} them")
        if spans is None:
            return None
        frames = np.ascontiguousarray(spans[0], np.int64).reshape(-1, 2)
        times = np.ascontiguousarray(spans[1], np.float64).reshape(-1, 2)
        if len(frames) != count or len(times) != count:
            raise ValueError(f"{len(frames)} row spans for {count} rows")
        return frames, times

    def _append(
        self, entry, blocks, timestamps, frame_indices, deleted, reuse_from, spans=None
    ) -> None:
        numbers = {"deleted": int(deleted)}
        if reuse_from is not None:
            for name in ("row_start", "num_frames", "crc32"):
                numbers[name] = int(self.index.numbers[name][reuse_from])
        elif blocks is None:
            empty = (np.empty((0, 2)), np.empty((0, 2))) if self._spans is not None else (None,) * 2
            numbers.update(row_start=0, num_frames=0, crc32=rows_crc(np.empty(0), (), (), *empty))
        else:
            numbers.update(self._write_rows(blocks, timestamps, frame_indices, spans))
        entry.num_frames = numbers["num_frames"]
        values = entry.to_attrs()
        for name in NUMERIC:
            if name not in numbers:
                numbers[name] = values[name]
        self._write_records([numbers], [values])

    def _write_rows(self, blocks, timestamps, frame_indices, spans=None) -> dict:
        timestamps = np.ascontiguousarray(timestamps, np.float64)
        frame_indices = np.ascontiguousarray(frame_indices, np.int64)
        count = len(timestamps)
        spans = self._check_spans(spans, count)
        self._check_space(count)
        features, stamps, indices = self._rows
        start = self._rows_end
        for dataset in (*self._rows, *(self._spans or ())):
            grow(dataset, start + count, CHUNK_ROWS)
        crc = 0
        row = start
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=features.dtype)
            if block.ndim != 2 or block.shape[1] != features.shape[1]:
                raise ValueError(
                    f"feature rows of shape {block.shape} for a cache of "
                    f"{features.shape[1]}-d features"
                )
            write(features, row, block)
            crc = zlib.crc32(block, crc)
            row += len(block)
        if row != start + count:
            raise ValueError(f"{row - start} feature rows for {count} timestamps")
        write(stamps, start, timestamps)
        write(indices, start, frame_indices)
        crc = zlib.crc32(timestamps.astype("<f8", copy=False), crc)
        crc = zlib.crc32(frame_indices.astype("<i8", copy=False), crc)
        if spans is not None:
            for dataset, values in zip(self._spans, spans):
                write(dataset, start, values)
            crc = zlib.crc32(spans[0].astype("<i8", copy=False), crc)
            crc = zlib.crc32(spans[1].astype("<f8", copy=False), crc)
        return {"row_start": start, "num_frames": count, "crc32": crc}

    def append_batch(self, entries: list[CacheEntry], batch: list[Rows]) -> None:
        """Commit many videos at once (whole-file rewrites: merge, compact, migrate): their
        rows in one write per dataset, each index column in one write, one commit.

        Raises:
            DiskFull: not enough space; nothing of the batch is committed.
        """
        with self._disk_full(f"{len(entries)} videos"):
            self._append_batch(entries, batch)

    def _append_batch(self, entries: list[CacheEntry], batch: list[Rows]) -> None:
        if not entries:
            return
        features_ds, stamps_ds, indices_ds = self._rows
        parts = [np.ascontiguousarray(rows.features, dtype=features_ds.dtype) for rows in batch]
        for part in parts:
            if part.ndim != 2 or part.shape[1] != features_ds.shape[1]:
                raise ValueError(
                    f"feature rows of shape {part.shape} for a cache of "
                    f"{features_ds.shape[1]}-d features"
                )
        lengths = np.array([len(part) for part in parts], np.int64)
        total = int(lengths.sum())
        self._check_space(total)
        start = self._rows_end
        stamps = [np.ascontiguousarray(rows.timestamps, np.float64) for rows in batch]
        indices = [np.ascontiguousarray(rows.frame_indices, np.int64) for rows in batch]
        spans = [
            self._check_spans(
                None if rows.span_frames is None else (rows.span_frames, rows.span_times),
                len(part),
            )
            for rows, part in zip(batch, parts)
        ]
        if total:
            for dataset in (*self._rows, *(self._spans or ())):
                grow(dataset, start + total, CHUNK_ROWS)
            write(features_ds, start, np.concatenate(parts))
            write(stamps_ds, start, np.concatenate(stamps))
            write(indices_ds, start, np.concatenate(indices))
            if self._spans is not None:
                for k, dataset in enumerate(self._spans):
                    write(dataset, start, np.concatenate([pair[k] for pair in spans]))
        row_starts = start + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        values, numbers = [], []
        for i, entry in enumerate(entries):
            entry.num_frames = int(lengths[i])
            attrs = entry.to_attrs()
            record = {name: attrs[name] for name in NUMERIC if name in attrs}
            record.update(
                row_start=int(row_starts[i]),
                num_frames=int(lengths[i]),
                crc32=rows_crc(parts[i], stamps[i], indices[i], *(spans[i] or (None, None))),
                deleted=0,
            )
            values.append(attrs)
            numbers.append(record)
        self._write_records(numbers, values)

    def _write_records(self, numbers: list[dict], values: list[dict]) -> None:
        """Write index records (their rows are written) and commit them: each column in one
        write, then step 1's flush, the commit count and its check, step 2's flush."""
        position, count = self.index.count, len(numbers)
        columns = {}
        for name, dtype in NUMERIC.items():
            columns[name] = np.array([n[name] for n in numbers], dtype)
            grow(self._columns[name], position + count, INDEX_CHUNK)
            write(self._columns[name], position, columns[name])
        texts = []
        for name in TEXT:
            data = [str(v[name]).encode("utf-8") for v in values]
            column, offsets = self._text[name]
            begin = self._text_end[name]
            ends = np.cumsum([0] + [len(d) for d in data], dtype=np.int64)
            blob = np.frombuffer(b"".join(data), np.uint8)
            texts.append((blob, ends))
            grow(column, begin + len(blob), TEXT_CHUNK)
            if len(blob):
                write(column, begin, blob)
            grow(offsets, position + count + 1, INDEX_CHUNK)
            write(offsets, position + 1, begin + ends[1:])
            self._text_end[name] = begin + int(ends[-1])
        commit = np.array([position + count], np.int64)
        checks = None
        if CHECK in self._columns:
            checks = integrity.record_checks([columns[name] for name in NUMERIC], texts)
            grow(self._columns[CHECK], position + count, INDEX_CHUNK)
            write(self._columns[CHECK], position, checks)
            commit = np.array([position + count, integrity.commit_check(position + count)])
        self._sync()  # step 1: everything the records need is on disk
        write(self._commit, 0, commit)  # one write: the count and its check together
        self._sync()  # step 2: the records are committed
        for i in range(count):
            self._remember(
                position + i, numbers[i], values[i], None if checks is None else checks[i]
            )

    def _remember(self, position: int, numbers: dict, values: dict, check=None) -> None:
        """Keep the in-memory index equal to the file's, without re-reading it."""
        index = self.index
        if check is not None:
            if position >= len(self._checks):
                self._checks = np.concatenate([self._checks, np.zeros_like(self._checks)])
            self._checks[position] = check
            index.checks = self._checks[: position + 1]
        for name in NUMERIC:
            buffer = self._buffers[name]
            if position >= len(buffer):
                buffer = self._buffers[name] = np.concatenate([buffer, np.zeros_like(buffer)])
            buffer[position] = numbers[name]
            index.numbers[name] = buffer[: position + 1]
        for name in TEXT:
            index.text[name].append(str(values[name]))
        index.count = position + 1
        video_id = values["video_id"]
        index.live.pop(video_id, None)
        if not numbers["deleted"]:
            index.live[video_id] = position
        self._rows_end = max(self._rows_end, numbers["row_start"] + numbers["num_frames"])

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()
