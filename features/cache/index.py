"""The index of a schema-2/3 cache read back: every record's columns in a handful of
whole-column reads, checked (schema 3), and the live videos."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from vidcache.features.cache import integrity
from vidcache.features.cache.entry import CacheEntry, encode_key
from vidcache.features.cache.store import (
    CHECK,
    HDF5_ERRORS,
    NUMERIC,
    TEXT,
    first_line,
    lookup,
    read,
    rows_group,
)
from vidcache.features.errors import CacheDamaged


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
        stored = rows_group(handle, path)["features"].shape[0]  # all three open, or damage
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
