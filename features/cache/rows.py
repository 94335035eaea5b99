"""Reading a video's rows back, one video or many in large sequential blocks, each
checked against its CRC-32."""

from __future__ import annotations

from pathlib import Path

import h5py

from vidcache.features.cache.index import Index
from vidcache.features.cache.store import (
    CHUNK_ROWS,
    HDF5_ERRORS,
    Rows,
    first_line,
    rows_group,
)
from vidcache.features.errors import CacheDamaged


def read_rows(handle: h5py.File, index: Index, position: int, path: Path, verify=True) -> Rows:
    """The rows of record ``position``, checked against its CRC-32.

    Raises:
        CacheDamaged: the rows are outside the datasets or fail their checksum.
    """
    start = int(index.numbers["row_start"][position])
    count = int(index.numbers["num_frames"][position])
    video_id = index.text["video_id"][position]
    rows = rows_group(handle, path)
    try:
        if start < 0 or start + count > rows["features"].shape[0]:
            raise CacheDamaged(f"{path}: video {video_id!r} points past the stored rows")
        out = Rows(*(dataset[start : start + count] for dataset in rows.values()))
    except HDF5_ERRORS as exc:
        raise CacheDamaged(
            f"{path}: video {video_id!r} cannot be read ({first_line(exc)})"
        ) from None
    if verify and out.crc() != int(index.numbers["crc32"][position]):
        raise CacheDamaged(
            f"{path}: video {video_id!r} is damaged (checksum mismatch in its stored rows); "
            "run 'vidcache verify --repair' and extract it again"
        )
    return out


BLOCK_ROWS = 16384


def read_many(handle: h5py.File, index: Index, positions: list[int], path: Path):
    """Yield ``(position, Rows)`` for many records, reading the rows in large
    sequential blocks in file order (an epoch read at the disk's speed, not a seek per
    video); every video is checked against its CRC-32.

    Raises:
        CacheDamaged: a video's rows fail their checksum or cannot be read.
    """
    rows = rows_group(handle, path)
    starts, lengths = index.numbers["row_start"], index.numbers["num_frames"]
    order = sorted(positions, key=lambda p: int(starts[p]))
    i = 0
    while i < len(order):
        first = int(starts[order[i]])
        j, end = i, first
        while j < len(order):  # extend the block while the next video is close and it fits
            start, stop = int(starts[order[j]]), int(starts[order[j]] + lengths[order[j]])
            if j > i and (start > end + CHUNK_ROWS or stop - first > BLOCK_ROWS):
                break
            end = max(end, stop)
            j += 1
        try:
            columns = [dataset[first:end] for dataset in rows.values()]
        except HDF5_ERRORS as exc:
            raise CacheDamaged(
                f"{path}: rows {first}..{end} cannot be read ({first_line(exc)})"
            ) from None
        for position in order[i:j]:
            a = int(starts[position]) - first
            b = a + int(lengths[position])
            out = Rows(*(column[a:b].copy() for column in columns))
            if out.crc() != int(index.numbers["crc32"][position]):
                raise CacheDamaged(
                    f"{path}: video {index.text['video_id'][position]!r} is damaged (checksum "
                    "mismatch in its stored rows); run 'vidcache verify --repair' and extract "
                    "it again"
                )
            yield position, out
        i = j
