"""Schema 2 of the feature cache: a columnar video index over ragged, append-only rows.

Layout (``docs/cache-format.md`` has the full table)::

    /                      attrs: format, schema_version=3, settings, settings_sha256,
                                  versions, created, feature_dim, dtype
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

import contextlib
import datetime as _dt
import errno
import json
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from vidcache.features import integrity
from vidcache.features.entry import CacheEntry, encode_key
from vidcache.features.errors import CacheDamaged, CacheFormatError, DiskFull, unwritable
from vidcache.features.settings import FeatureSettings

FORMAT = "vidcache-features"
#: The schema new files are written in: 2 plus record checks and a checked commit count.
SCHEMA_VERSION = 3
#: Schemas this vidcache reads (1: ``features.legacy``; 2: like 3 without index checks).
READABLE = (1, 2, 3)
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


def rows_crc(features: np.ndarray, timestamps: np.ndarray, frame_indices: np.ndarray) -> int:
    """CRC-32 of a video's stored rows (features in their stored dtype, then timestamps as
    float64 and frame indices as int64, little-endian bytes)."""
    crc = zlib.crc32(np.ascontiguousarray(features))
    crc = zlib.crc32(np.ascontiguousarray(timestamps, "<f8"), crc)
    return zlib.crc32(np.ascontiguousarray(frame_indices, "<i8"), crc)


def _decode_text(data: np.ndarray, offsets: np.ndarray, errors: str = "strict") -> list[str]:
    raw = data.tobytes()
    bounds = offsets.tolist()
    if raw.isascii():  # byte offsets are character offsets: decode once
        text = raw.decode("ascii")
        return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return [raw[a:b].decode("utf-8", errors) for a, b in zip(bounds[:-1], bounds[1:])]


class _TextColumns(dict):
    """The text columns by name, each decoded to a list of strings when first used (a
    listing reads a few of the eight: ``inspect`` of 100,000 videos saves a tenth of a
    second)."""

    def __init__(self, raw: dict, path: Path, checked: bool) -> None:
        super().__init__()
        self._raw, self._path, self._checked = raw, path, checked

    def __missing__(self, name: str) -> list[str]:
        data, offsets = self._raw.pop(name)
        try:  # checked records that fail are reported by their check, not by their bytes
            value = _decode_text(data, offsets, "replace" if self._checked else "strict")
        except UnicodeDecodeError:
            raise CacheDamaged(
                f"{self._path}: damaged cache (index column {name!r} is not valid UTF-8)"
            ) from None
        self[name] = value
        return value


class Index:
    """The committed records of a schema-2/3 file, read in a handful of whole-column reads.

    Schema 3: every record and the commit count are checked against their stored checks
    (``features.integrity``); damage raises, or with ``tolerant`` is noted in
    :attr:`damaged` and left out of :attr:`live` (``verify`` reads files so).

    Args:
        handle: the open file.
        path: its name, for messages.
        tolerant: note damaged records instead of raising. Defaults to False.

    Attributes:
        count: committed records.
        numbers: numeric columns, ``(count,)`` arrays.
        text: text columns, lists of ``count`` strings.
        live: video id -> position of its latest record (tombstoned ids absent), in the
            order of :func:`encode_key`.
        checked: whether the file holds record checks (schema 3).
        checks: the records' checks (``uint64``; empty when not checked).
        damaged: positions of records that fail their check (tolerant reads only).
        count_damaged: the commit count failed its check (tolerant reads only); ``count``
            is then the records before the first that fails its check.

    Raises:
        CacheDamaged: a record or the commit count fails its check, or the index's
            structure is broken.
    """

    def __init__(self, handle: h5py.File, path: Path | str = "", tolerant: bool = False):
        path = Path(path or handle.filename)
        index = lookup(handle, "index", path)
        commit = read(lookup(handle, "commit", path), (), path)
        try:
            self.checked = int(handle.attrs.get("schema_version", 2)) >= 3
        except HDF5_ERRORS as exc:
            raise CacheDamaged(
                f"{path}: damaged cache (its attributes cannot be read: {first_line(exc)})"
            ) from None
        self.count_damaged = False
        self.damaged: list[int] = []
        count = int(commit[0]) if len(commit) else -1
        if count < 0:
            raise CacheDamaged(f"{path}: damaged cache (the commit count reads {count})")
        self.path = path
        names = (*NUMERIC, CHECK) if self.checked else tuple(NUMERIC)
        columns = {name: lookup(index, name, path) for name in names}
        texts = {}
        for name in TEXT:
            group = lookup(index, name, path)
            texts[name] = (lookup(group, "bytes", path), lookup(group, "offsets", path))
        if self.checked and not self._count_ok(commit, count, columns[CHECK]):
            if not tolerant:
                raise CacheDamaged(
                    f"{path}: damaged cache (the index's commit count, {count}, fails its "
                    "checksum); run 'vidcache verify --repair'"
                )
            self.count_damaged = True  # the records that check out, up to the first that fails
            count = min(column.shape[0] for column in columns.values())
            count = min([count] + [offsets.shape[0] - 1 for _, offsets in texts.values()])
        self.count = count
        self.numbers = {name: read(columns[name], slice(0, count), path) for name in NUMERIC}
        for name, column in self.numbers.items():
            if len(column) != count:
                raise CacheDamaged(
                    f"{path}: damaged cache (index column {name!r} is shorter than the "
                    "commit count)"
                )
        raw = {}
        for name, (data, offsets) in texts.items():
            offsets = read(offsets, slice(0, count + 1), path)
            if len(offsets) != count + 1:
                raise CacheDamaged(
                    f"{path}: damaged cache (index column {name!r} is shorter than the "
                    "commit count)"
                )
            if not self.checked and (
                offsets[0] != 0 or offsets[-1] > data.shape[0] or (np.diff(offsets) < 0).any()
            ):
                raise CacheDamaged(
                    f"{path}: damaged cache (index column {name!r} is damaged: its offsets "
                    "are not valid)"
                )
            end = int(np.clip(offsets.max(initial=0), 0, data.shape[0]))
            raw[name] = (read(data, slice(0, end), path), offsets)
        self.checks = np.zeros(0, np.uint64)
        if self.checked:
            self.checks = read(columns[CHECK], slice(0, count), path).astype(np.uint64)
            computed = integrity.record_checks(
                [self.numbers[name] for name in NUMERIC], [raw[name] for name in TEXT]
            )
            if len(self.checks) != count:
                raise CacheDamaged(
                    f"{path}: damaged cache (the record checks are shorter than the commit count)"
                )
            bad = integrity.failing(self.checks, computed)
            if self.count_damaged:  # the records up to the first that fails are the index
                count = int(bad[0]) if len(bad) else count
                self.count, bad = count, bad[:0]
                self.numbers = {name: column[:count] for name, column in self.numbers.items()}
                self.checks = self.checks[:count]
                raw = {name: (data, offsets[: count + 1]) for name, (data, offsets) in raw.items()}
            self.damaged = bad.tolist()
        self.text = _TextColumns(raw, path, self.checked)
        self.text["video_id"]  # noqa: B018 - decoded now: every reader needs it
        good = np.ones(count, bool)
        good[self.damaged] = False
        starts, lengths = self.numbers["row_start"], self.numbers["num_frames"]
        stored = _rows_group(handle, path)["features"].shape[0]  # all three open, or damage
        outside = good & ((starts < 0) | (lengths < 0) | (starts + lengths > stored))
        if outside.any():
            raise CacheDamaged(
                f"{path}: damaged cache (index records point outside the stored rows)"
            )
        if self.damaged and not tolerant:
            ids = [self.text["video_id"][p] for p in self.damaged]
            more = f" (and {len(ids) - 1} more)" if len(ids) > 1 else ""
            raise CacheDamaged(
                f"{path}: damaged cache (the index record of video {ids[0]!r}{more} fails its "
                "checksum); run 'vidcache verify --repair', then extract again"
            )
        latest: dict[str, int] = {}
        video_ids = self.text["video_id"]
        for position in np.flatnonzero(good).tolist():
            latest[video_ids[position]] = position
        for position in np.flatnonzero(self.numbers["deleted"] & good).tolist():
            video_id = video_ids[position]
            if latest.get(video_id) == position:
                del latest[video_id]
        if self.damaged:  # what a damaged record replaced must not come back in its place
            self._forget_replaced(latest)
        self.live = {key: latest[key] for key in sorted(latest, key=encode_key)}

    def _forget_replaced(self, latest: dict[str, int]) -> None:
        """Drop from ``latest`` the videos a damaged record may stand for: its id as read,
        and any video of the same source path (damage in the id leaves the path intact,
        and the other way round), so an older version never silently takes its place."""
        ids, paths = self.text["video_id"], self.text["path"]
        suspects = {ids[p] for p in self.damaged}
        suspect_paths = {paths[p] for p in self.damaged}
        for video_id, position in list(latest.items()):
            if video_id in suspects or paths[position] in suspect_paths:
                del latest[video_id]

    @staticmethod
    def _count_ok(commit: np.ndarray, count: int, checks: h5py.Dataset) -> bool:
        """Whether the commit count matches its check and the records it counts exist."""
        return (
            len(commit) >= 2
            and count <= checks.shape[0]
            and int(commit[1]) == integrity.commit_check(count)
        )

    def _meta(self, text: str, video_id: str) -> dict:
        """A record's ``meta`` JSON (unchecked schema-2 records can hold damaged text)."""
        try:
            value = json.loads(text or "{}")
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise CacheDamaged(
                f"{self.path}: damaged cache (the metadata of video {video_id!r} is not valid)"
            )
        return value

    def entry(self, position: int) -> CacheEntry:
        """The :class:`CacheEntry` of one record."""
        values = {name: self.text[name][position] for name in TEXT}
        values["meta"] = self._meta(values["meta"], values["video_id"])
        for name in CacheEntry.__dataclass_fields__:
            if name in self.numbers:
                values[name] = self.numbers[name][position].item()
        return CacheEntry(**values)

    def entries(self) -> dict[str, CacheEntry]:
        """A :class:`CacheEntry` per live video, in :attr:`live` order (columns turned into
        Python lists once, so 100,000 entries cost well under a second)."""
        n, t = {name: self.numbers[name].tolist() for name in NUMERIC}, self.text
        size, mtime, frames, fps = n["size"], n["mtime"], n["num_frames"], n["fps"]
        duration, source, width, height = (
            n["duration"], n["source_frames"], n["width"], n["height"]
        )  # fmt: skip
        path, label, kind, fingerprint = t["path"], t["label"], t["kind"], t["fingerprint"]
        codec, meta, extracted = t["codec"], t["meta"], t["extracted_at"]
        return {
            video_id: CacheEntry(
                video_id,
                path[i],
                label[i],
                kind[i],
                size[i],
                mtime[i],
                fingerprint[i],
                frames[i],
                fps[i],
                duration[i],
                source[i],
                width[i],
                height[i],
                codec[i],
                self._meta(meta[i], video_id) if meta[i] not in ("", "{}") else {},
                extracted[i],
            )  # fmt: skip
            for video_id, i in self.live.items()
        }

    def rows_end(self) -> int:
        """One past the last row any committed record uses."""
        if not self.count:
            return 0
        return int((self.numbers["row_start"] + self.numbers["num_frames"]).max())

    def live_rows(self) -> int:
        """Rows referenced by live records (the rest is waste until ``compact``)."""
        if not self.live:
            return 0
        positions = np.fromiter(self.live.values(), np.int64, len(self.live))
        return int(self.numbers["num_frames"][positions].sum())


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
    with h5py.File(temporary, "w", libver="latest") as f:
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["settings"] = settings.to_json()
        f.attrs["settings_sha256"] = settings.digest()
        f.attrs["versions"] = json.dumps(versions, sort_keys=True)
        f.attrs["created"] = now()
        f.attrs["feature_dim"] = dim
        f.attrs["dtype"] = settings.dtype
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
        index = f.create_group("index")
        index.attrs["encoding-type"] = "vidcache-video-index"
        index.attrs["encoding-version"] = str(SCHEMA_VERSION)
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
    """A video's stored rows."""

    features: np.ndarray
    timestamps: np.ndarray
    frame_indices: np.ndarray


def read_rows(handle: h5py.File, index: Index, position: int, path: Path, verify=True) -> Rows:
    """The rows of record ``position``, checked against its CRC-32.

    Raises:
        CacheDamaged: the rows are outside the datasets or fail their checksum.
    """
    start = int(index.numbers["row_start"][position])
    count = int(index.numbers["num_frames"][position])
    video_id = index.text["video_id"][position]
    rows = _rows_group(handle, path)
    try:
        if start < 0 or start + count > rows["features"].shape[0]:
            raise CacheDamaged(f"{path}: video {video_id!r} points past the stored rows")
        out = Rows(
            rows["features"][start : start + count],
            rows["timestamps"][start : start + count],
            rows["frame_indices"][start : start + count],
        )
    except HDF5_ERRORS as exc:
        raise CacheDamaged(
            f"{path}: video {video_id!r} cannot be read ({first_line(exc)})"
        ) from None
    if verify and rows_crc(out.features, out.timestamps, out.frame_indices) != int(
        index.numbers["crc32"][position]
    ):
        raise CacheDamaged(
            f"{path}: video {video_id!r} is damaged (checksum mismatch in its stored rows); "
            "run 'vidcache verify --repair' and extract it again"
        )
    return out


def _grow(dataset: h5py.Dataset, length: int, step: int) -> None:
    """Extend ``dataset``'s first axis to hold ``length`` items, ``step`` at a time (fewer
    metadata changes; what lies past the committed end is unused)."""
    current = dataset.id.shape
    if current[0] < length:
        dataset.id.set_extent((-(-length // step) * step, *current[1:]))


def _write(dataset: h5py.Dataset, start: int, data: np.ndarray) -> None:
    """Write ``data`` at ``start`` along the first axis (h5py's low-level call: a tenth of
    the cost of ``dataset[a:b] = data``, which matters at 30 writes per commit)."""
    space = dataset.id.get_space()
    shape = space.shape
    space.select_hyperslab((start, *([0] * (len(shape) - 1))), data.shape)
    dataset.id.write(h5py.h5s.create_simple(data.shape), space, data)


def _rows_group(handle: h5py.File, path: Path) -> dict:
    """The three row datasets by name, a damaged one raised as :class:`CacheDamaged`."""
    rows = lookup(handle, "rows", path)
    return {name: lookup(rows, name, path) for name in ("features", "timestamps", "frame_indices")}


# Rows read at once by :func:`read_many` (64 MiB of float16 2048-d rows).
BLOCK_ROWS = 16384


def read_many(handle: h5py.File, index: Index, positions: list[int], path: Path):
    """Yield ``(position, Rows)`` for many records, reading the rows in large
    sequential blocks in file order (an epoch read at the disk's speed, not a seek per
    video); every video is checked against its CRC-32.

    Raises:
        CacheDamaged: a video's rows fail their checksum or cannot be read.
    """
    rows = _rows_group(handle, path)
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
            block = rows["features"][first:end]
            stamps = rows["timestamps"][first:end]
            indices = rows["frame_indices"][first:end]
        except HDF5_ERRORS as exc:
            raise CacheDamaged(
                f"{path}: rows {first}..{end} cannot be read ({first_line(exc)})"
            ) from None
        for position in order[i:j]:
            a = int(starts[position]) - first
            b = a + int(lengths[position])
            features = block[a:b]
            if rows_crc(features, stamps[a:b], indices[a:b]) != int(
                index.numbers["crc32"][position]
            ):
                raise CacheDamaged(
                    f"{path}: video {index.text['video_id'][position]!r} is damaged (checksum "
                    "mismatch in its stored rows); run 'vidcache verify --repair' and extract "
                    "it again"
                )
            yield position, Rows(features.copy(), stamps[a:b].copy(), indices[a:b].copy())
        i = j


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
        rows = _rows_group(handle, self.path)
        self._rows = (rows["features"], rows["timestamps"], rows["frame_indices"])
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
    ) -> None:
        """Commit one record: new rows from ``blocks`` (with their timestamps and frame
        indices), the rows of record ``reuse_from`` (a moved video), or none (a tombstone).

        Raises:
            DiskFull: not enough space; nothing of this record is committed.
        """
        with self._disk_full(repr(entry.video_id)):
            self._append(entry, blocks, timestamps, frame_indices, deleted, reuse_from)

    def _append(self, entry, blocks, timestamps, frame_indices, deleted, reuse_from) -> None:
        numbers = {"deleted": int(deleted)}
        if reuse_from is not None:
            for name in ("row_start", "num_frames", "crc32"):
                numbers[name] = int(self.index.numbers[name][reuse_from])
        elif blocks is None:
            numbers.update(row_start=0, num_frames=0, crc32=rows_crc(np.empty(0), (), ()))
        else:
            numbers.update(self._write_rows(blocks, timestamps, frame_indices))
        entry.num_frames = numbers["num_frames"]
        values = entry.to_attrs()
        for name in NUMERIC:
            if name not in numbers:
                numbers[name] = values[name]
        self._write_records([numbers], [values])

    def _write_rows(self, blocks, timestamps, frame_indices) -> dict:
        timestamps = np.ascontiguousarray(timestamps, np.float64)
        frame_indices = np.ascontiguousarray(frame_indices, np.int64)
        count = len(timestamps)
        self._check_space(count)
        features, stamps, indices = self._rows
        start = self._rows_end
        for dataset in self._rows:
            _grow(dataset, start + count, CHUNK_ROWS)
        crc = 0
        row = start
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=features.dtype)
            if block.ndim != 2 or block.shape[1] != features.shape[1]:
                raise ValueError(
                    f"feature rows of shape {block.shape} for a cache of "
                    f"{features.shape[1]}-d features"
                )
            _write(features, row, block)
            crc = zlib.crc32(block, crc)
            row += len(block)
        if row != start + count:
            raise ValueError(f"{row - start} feature rows for {count} timestamps")
        _write(stamps, start, timestamps)
        _write(indices, start, frame_indices)
        crc = zlib.crc32(timestamps.astype("<f8", copy=False), crc)
        crc = zlib.crc32(frame_indices.astype("<i8", copy=False), crc)
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
        if total:
            for dataset in self._rows:
                _grow(dataset, start + total, CHUNK_ROWS)
            _write(features_ds, start, np.concatenate(parts))
            _write(stamps_ds, start, np.concatenate(stamps))
            _write(indices_ds, start, np.concatenate(indices))
        row_starts = start + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        values, numbers = [], []
        for i, entry in enumerate(entries):
            entry.num_frames = int(lengths[i])
            attrs = entry.to_attrs()
            record = {name: attrs[name] for name in NUMERIC if name in attrs}
            record.update(
                row_start=int(row_starts[i]),
                num_frames=int(lengths[i]),
                crc32=rows_crc(parts[i], stamps[i], indices[i]),
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
            _grow(self._columns[name], position + count, INDEX_CHUNK)
            _write(self._columns[name], position, columns[name])
        texts = []
        for name in TEXT:
            data = [str(v[name]).encode("utf-8") for v in values]
            column, offsets = self._text[name]
            begin = self._text_end[name]
            ends = np.cumsum([0] + [len(d) for d in data], dtype=np.int64)
            blob = np.frombuffer(b"".join(data), np.uint8)
            texts.append((blob, ends))
            _grow(column, begin + len(blob), TEXT_CHUNK)
            if len(blob):
                _write(column, begin, blob)
            _grow(offsets, position + count + 1, INDEX_CHUNK)
            _write(offsets, position + 1, begin + ends[1:])
            self._text_end[name] = begin + int(ends[-1])
        commit = np.array([position + count], np.int64)
        checks = None
        if CHECK in self._columns:
            checks = integrity.record_checks([columns[name] for name in NUMERIC], texts)
            _grow(self._columns[CHECK], position + count, INDEX_CHUNK)
            _write(self._columns[CHECK], position, checks)
            commit = np.array([position + count, integrity.commit_check(position + count)])
        self._sync()  # step 1: everything the records need is on disk
        _write(self._commit, 0, commit)  # one write: the count and its check together
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
