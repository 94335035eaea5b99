"""Schema 2 of the feature cache: a columnar video index over ragged, append-only rows.

Layout (``docs/cache-format.md`` has the full table)::

    /                      attrs: format, schema_version=3, settings, settings_sha256,
                                  versions, created, feature_dim, dtype, attrs_sha256
                                  (checked at every open: ``rootattrs``)
    /rows/features         (R, D) float32|float16, chunked (CHUNK_ROWS, D), unlimited R
    /rows/timestamps       (R,) float64
    /rows/frame_indices    (R,) int64
    /index/<number>        (N,) one dataset per numeric column (``NUMERIC``)
    /index/<text>/bytes    (B,) uint8: the UTF-8 strings of a text column, end to end
    /index/<text>/offsets  (N+1,) int64: record i is bytes[offsets[i]:offsets[i+1]]
    /index/record_check    (N,) uint64: a check over every field of record i (schema 3)
    /commit                (2,) int64: N, the number of committed records, and its check
                           (schema 2: (1,), N alone)

Records are a log: a video's latest record wins; a replaced video gets a new record and
new rows, a moved one a new record over the same rows, a deleted one a tombstone
(``deleted=1``). Only ``compact`` ever rewrites, into a new file.

Crash consistency. The writer holds the file in HDF5's SWMR mode (``libver="latest"``),
in which HDF5 orders its metadata writes so that the file on disk is valid at every
instant, and only ever appends. A commit is two flushes:

1. the video's rows and its index record are written past the committed end and flushed;
2. ``/commit`` is set to N+1 and flushed.

Readers use only the first ``/commit`` records, and a record references only rows written
before it, so a process killed at any instant, inside a flush included, leaves a file
holding exactly the records of the last completed step 2. What a killed SWMR writer leaves
behind is the superblock's "open for write" flag; :func:`open_writer` and the readers clear
it (``features.h5recover``) once no writer holds the cache's lock. Each record carries a
CRC-32 of its rows, checked on every read, and (schema 3) a check over all its fields,
checked at every open (``features.integrity``); the commit count carries its own check,
bound to the last record. Schema-2 files (no record checks) are read and extended as they
are, their records reported as unverified; a rewrite (``compact``, ``migrate``) makes them
schema 3. Before each commit the free space is checked, so a full disk stops the run before
HDF5 is asked to write what cannot fit.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from vidcache.features.cache import integrity, rootattrs
from vidcache.features.errors import CacheDamaged, CacheFormatError, DiskFull, unwritable
from vidcache.features.settings import FeatureSettings

FORMAT = "vidcache-features"
#: The schema new files are written in: 2 plus record checks and a checked commit count.
SCHEMA_VERSION = 3
#: The schema of caches whose rows cover windows of frames: 3 plus each row's span
#: (``rows/span_frames``, ``rows/span_times``). Frame caches stay schema 3: their spans are
#: their rows' instants, which schema 3 already holds, and older readers keep reading them.
WINDOW_SCHEMA = 4
#: Schemas this vidcache reads (1: ``features.legacy``; 2: like 3 without index checks).
READABLE = (1, 2, 3, 4)
#: The span of each row of a schema-4 file: first and last frame index, start and end time.
SPANS = {"span_frames": "i8", "span_times": "f8"}
# 32 rows of 2048 float32 = 256 KiB (128 KiB at float16): a 40-frame video spans 2-3
# chunks, and a partly filled chunk rewritten at each commit stays small.
CHUNK_ROWS = 32
INDEX_CHUNK = 4096
TEXT_CHUNK = 1 << 16
READ_CACHE_BYTES = 16 << 20  # HDF5 chunk cache of a reader
# Room kept free beyond twice a commit's own rows: new index and text chunks (about 1 MiB
# when all columns start a chunk at once), metadata, partly filled row chunks.
HEADROOM_BYTES = 2 << 20

NUMERIC = {
    "row_start": "i8",
    "num_frames": "i8",
    "size": "i8",
    "mtime": "f8",
    "fps": "f8",
    "duration": "f8",
    "source_frames": "i8",
    "width": "i4",
    "height": "i4",
    "crc32": "u4",
    "deleted": "u1",
}
TEXT = ("video_id", "path", "label", "kind", "fingerprint", "codec", "meta", "extracted_at")
CHECK = "record_check"  # index/record_check: integrity.record_checks over NUMERIC, then TEXT
# What h5py raises when an object of a damaged file cannot be found or read.
HDF5_ERRORS = (OSError, KeyError, ValueError, RuntimeError)


def lookup(group: h5py.Group, name: str, path: Path):
    """``group[name]``, a damaged or missing object raised as :class:`CacheDamaged`."""
    try:
        return group[name]
    except HDF5_ERRORS as exc:
        where = f"{group.name.rstrip('/')}/{name}"
        raise CacheDamaged(
            f"{path}: damaged cache ({where} cannot be read: {first_line(exc)})"
        ) from None


def read(dataset: h5py.Dataset, selection, path: Path) -> np.ndarray:
    """``dataset[selection]``, a read error raised as :class:`CacheDamaged`."""
    try:
        return dataset[selection]
    except HDF5_ERRORS as exc:
        raise CacheDamaged(
            f"{path}: damaged cache ({dataset.name} cannot be read: {first_line(exc)})"
        ) from None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (HDF5's errors run to many lines)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def rows_crc(
    features: np.ndarray,
    timestamps: np.ndarray,
    frame_indices: np.ndarray,
    span_frames: np.ndarray | None = None,
    span_times: np.ndarray | None = None,
) -> int:
    """CRC-32 of a video's stored rows (features in their stored dtype, then timestamps as
    float64 and frame indices as int64, little-endian bytes; in schema 4 then the spans'
    frame indices as int64 and times as float64, row by row)."""
    crc = zlib.crc32(np.ascontiguousarray(features))
    crc = zlib.crc32(np.ascontiguousarray(timestamps, "<f8"), crc)
    crc = zlib.crc32(np.ascontiguousarray(frame_indices, "<i8"), crc)
    if span_frames is not None:
        crc = zlib.crc32(np.ascontiguousarray(span_frames, "<i8"), crc)
        crc = zlib.crc32(np.ascontiguousarray(span_times, "<f8"), crc)
    return crc


def schema_for(settings: FeatureSettings) -> int:
    """The schema a new cache of ``settings`` is written in (4 for windows and sound, whose
    rows have spans; else 3)."""
    return WINDOW_SCHEMA if settings.has_spans else SCHEMA_VERSION


def create(path: Path, settings: FeatureSettings, versions: dict) -> None:
    """Write an empty cache at ``path`` (through a temporary file linked into place, so
    ``path`` exists only once it is complete). A file another process made at ``path``
    meanwhile is kept, never replaced (its writer may already hold it)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.creating-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _create(temporary, settings, versions)
        fsync_path(temporary)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return
        except OSError as exc:  # a file system without hard links: rename, if still free
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV) or path.exists():
                raise
            os.replace(temporary, path)
        fsync_path(path.parent)
    except OSError as exc:
        code = exc.errno or (errno.ENOSPC if "no space left" in str(exc).lower() else None)
        if code in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM):
            raise unwritable(OSError(code, os.strerror(code)), path, "creating it") from None
        raise
    finally:
        if temporary.exists():
            temporary.unlink()


def _create(temporary: Path, settings: FeatureSettings, versions: dict) -> None:
    """Write the empty file (``create`` renames it into place)."""
    dim = settings.feature_dim
    schema = schema_for(settings)
    with h5py.File(temporary, "w", libver="latest") as f:
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = schema
        f.attrs["settings"] = settings.to_json()
        f.attrs["settings_sha256"] = settings.digest()
        f.attrs["versions"] = json.dumps(versions, sort_keys=True)
        f.attrs["created"] = now()
        f.attrs["feature_dim"] = dim
        f.attrs["dtype"] = settings.dtype
        rootattrs.stamp(f)
        rows = f.create_group("rows")
        rows.create_dataset(
            "features",
            shape=(0, dim),
            maxshape=(None, dim),
            chunks=(CHUNK_ROWS, dim),
            dtype=settings.dtype,
        )
        for name, dtype in (("timestamps", "f8"), ("frame_indices", "i8")):
            rows.create_dataset(name, (0,), dtype, maxshape=(None,), chunks=(INDEX_CHUNK,))
        if schema == WINDOW_SCHEMA:
            for name, dtype in SPANS.items():
                rows.create_dataset(
                    name, (0, 2), dtype, maxshape=(None, 2), chunks=(INDEX_CHUNK, 2)
                )
        index = f.create_group("index")
        index.attrs["encoding-type"] = "vidcache-video-index"
        index.attrs["encoding-version"] = str(schema)
        for name, dtype in (*NUMERIC.items(), (CHECK, "u8")):
            index.create_dataset(name, (0,), dtype, maxshape=(None,), chunks=(INDEX_CHUNK,))
        for name in TEXT:
            column = index.create_group(name)
            column.attrs["encoding-type"] = "string-array"
            column.create_dataset("bytes", (0,), "u1", maxshape=(None,), chunks=(TEXT_CHUNK,))
            column.create_dataset(
                "offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(INDEX_CHUNK,)
            )
        f.create_dataset("commit", data=np.array([0, integrity.commit_check(0)]))


def check_free_space(path: Path, need: int = 0, name: Path | None = None) -> None:
    """Refuse to write when the file system that ``path`` (its real target, or the folder
    it will be made in) is on has less than ``need`` + :data:`HEADROOM_BYTES` free.

    Raises:
        DiskFull: not enough room.
    """
    place = Path(os.path.realpath(path))
    while not place.exists() and place != place.parent:
        place = place.parent
    stat = os.statvfs(place)
    free = stat.f_bavail * stat.f_frsize
    need += HEADROOM_BYTES
    if free < need:
        raise DiskFull(
            f"{name or path}: disk full ({free / 1e6:.1f} MB free, the next commit needs "
            f"about {need / 1e6:.1f} MB); every video committed before is kept: free some "
            "space and run the same command again"
        )


def fsync_path(path: Path) -> None:
    """``fsync`` a file or a folder (after a rename, so the new name is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_attrs(handle: h5py.File, path: Path) -> dict:
    """The root attributes of an open file, as a dict.

    Raises:
        CacheDamaged: they cannot be read.
    """
    try:
        return dict(handle.attrs)
    except HDF5_ERRORS as exc:
        raise CacheDamaged(
            f"{path}: damaged cache (its attributes cannot be read: {first_line(exc)})"
        ) from None


def check_header(handle: h5py.File, path: Path) -> int:
    """The schema version of an open vidcache file (one of :data:`READABLE`).

    Raises:
        CacheFormatError: not a vidcache cache, or a schema this vidcache cannot read.
        CacheDamaged: its attributes cannot be read.
    """
    attrs = read_attrs(handle, path)
    found = attrs.get("format")
    if isinstance(found, bytes):
        found = found.decode()
    if found != FORMAT:
        raise CacheFormatError(
            f"{path} is an HDF5 file but not a vidcache feature cache (format={found!r})"
        )
    try:
        version = int(attrs.get("schema_version", -1))
    except (TypeError, ValueError):
        version = -1
    if version not in READABLE:
        raise CacheFormatError(
            f"{path} has cache schema version {version}; this vidcache reads versions "
            f"{', '.join(map(str, READABLE))} (re-extract with --overwrite, or use a "
            "matching vidcache)"
        )
    return version


@dataclass
class Rows:
    """A video's stored rows.

    ``span_frames`` ``(n, 2)`` and ``span_times`` ``(n, 2)`` are the first and last frame
    index and the start and end time each row covers: stored in schema 4 (windows),
    ``None`` in older schemas, whose rows each cover one instant (:meth:`spans`).
    """

    features: np.ndarray
    timestamps: np.ndarray
    frame_indices: np.ndarray
    span_frames: np.ndarray | None = None
    span_times: np.ndarray | None = None

    def spans(self) -> tuple[np.ndarray, np.ndarray]:
        """``(span_frames, span_times)``, each ``(n, 2)``: stored, or a frame row's instant
        twice."""
        if self.span_frames is not None:
            return self.span_frames, self.span_times
        frames = np.asarray(self.frame_indices, np.int64)
        times = np.asarray(self.timestamps, np.float64)
        return np.stack([frames, frames], axis=1), np.stack([times, times], axis=1)

    def crc(self) -> int:
        """The CRC-32 of these rows as stored (:func:`rows_crc`)."""
        return rows_crc(
            self.features, self.timestamps, self.frame_indices, self.span_frames, self.span_times
        )


def grow(dataset: h5py.Dataset, length: int, step: int) -> None:
    """Extend ``dataset``'s first axis to hold ``length`` items, ``step`` at a time (fewer
    metadata changes; what lies past the committed end is unused)."""
    current = dataset.id.shape
    if current[0] < length:
        dataset.id.set_extent((-(-length // step) * step, *current[1:]))


def write(dataset: h5py.Dataset, start: int, data: np.ndarray) -> None:
    """Write ``data`` at ``start`` along the first axis (h5py's low-level call: a tenth of
    the cost of ``dataset[a:b] = data``, which matters at 30 writes per commit)."""
    space = dataset.id.get_space()
    shape = space.shape
    space.select_hyperslab((start, *([0] * (len(shape) - 1))), data.shape)
    dataset.id.write(h5py.h5s.create_simple(data.shape), space, data)


def rows_group(handle: h5py.File, path: Path) -> dict:
    """The row datasets by name (three, five with spans), a damaged one raised as
    :class:`CacheDamaged`; a schema-4 file without its spans is damaged."""
    rows = lookup(handle, "rows", path)
    names = ["features", "timestamps", "frame_indices"]
    if int(handle.attrs.get("schema_version", SCHEMA_VERSION)) >= WINDOW_SCHEMA:
        names += list(SPANS)
    return {name: lookup(rows, name, path) for name in names}


# Rows read at once by :func:`read_many` (64 MiB of float16 2048-d rows).
