"""Captions and regression targets from CSV files, matched to the videos of feature caches.

A CSV row names its video by any of: the cache's video id (``class/clip.mp4``), a path
(absolute, or relative to the CSV's folder), a file name, or a name without extension (as
MSR-VTT's ``video123``); names are used only where they pick out a single video.
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from vidcache.features.errors import VidcacheError
from vidcache.features.untrusted import plain_text

TIME_COLUMNS = ("time", "timestamp", "t", "seconds")


class AnnotationError(VidcacheError):
    """A captions or targets file cannot be read or used."""


def _rows(path: Path, what: str) -> list[tuple[int, list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return [
                (line, row)
                for line, row in enumerate(csv.reader(handle), start=1)
                if row and any(cell.strip() for cell in row) and not row[0].startswith("#")
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AnnotationError(f"{path}: cannot read {what} file ({exc})") from None


def read_captions(path: Path) -> dict[str, list[str]]:
    """``path,caption`` rows (a ``path,caption`` header is optional; a video may have many
    rows) into ``{path: [captions]}``. Unquoted commas in a caption are kept.

    Raises:
        AnnotationError: unreadable, a row without caption, or no rows.
    """
    path = Path(path)
    captions: dict[str, list[str]] = defaultdict(list)
    for line, row in _rows(path, "captions"):
        if [c.strip().lower() for c in row[:2]] == ["path", "caption"]:
            continue
        key, text = row[0].strip(), plain_text(",".join(row[1:])).strip()
        if not key or not text:
            raise AnnotationError(f"{path}:{line}: each row needs 'path,caption' (got {row})")
        captions[key].append(text)
    if not captions:
        raise AnnotationError(f"{path}: no captions")
    return dict(captions)


@dataclass
class TargetTable:
    """Regression targets read from a CSV.

    Attributes:
        per_frame: rows are ``path,time,values`` (matched to frames by timestamp) rather than
            one ``path,values`` row per video.
        names: the value columns.
        values: ``{path: (K,)}`` per video, or ``{path: (times (M,), values (M, K))}`` sorted
            by time per frame.
    """

    per_frame: bool
    names: list[str]
    values: dict = field(default_factory=dict)


def _number(text: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{path}:{line}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{path}:{line}: {text!r} is not a finite number")
    return value


def read_targets(path: Path) -> TargetTable:
    """Read per-video ``path,value[,value...]`` or per-frame ``path,time,value[,value...]``
    targets. Per-frame files need a header whose second column is ``time`` (or
    ``timestamp``, ``t``, ``seconds``); a header is optional for per-video files.

    Raises:
        AnnotationError: unreadable, non-numeric or missing values, rows of other widths,
            or a path repeated in a per-video file.
    """
    path = Path(path)
    rows = _rows(path, "targets")
    if not rows:
        raise AnnotationError(f"{path}: no targets")
    first_line, first = rows[0]
    try:
        [float(cell) for cell in first[1:]]
        header = None
    except ValueError:
        header = [cell.strip() for cell in first]
        rows = rows[1:]
    per_frame = bool(header) and len(header) > 1 and header[1].lower() in TIME_COLUMNS
    skip = 2 if per_frame else 1
    width = len(header) if header else len(first)
    if width <= skip:
        raise AnnotationError(
            f"{path}:{first_line}: no value columns (expected path,value or path,time,value)"
        )
    names = header[skip:] if header else [f"value_{i}" for i in range(1, width)]
    grouped: dict[str, list] = defaultdict(list)
    for line, row in rows:
        if len(row) != width:
            raise AnnotationError(f"{path}:{line}: {len(row)} columns, expected {width}")
        key = row[0].strip()
        if not key:
            raise AnnotationError(f"{path}:{line}: empty path")
        numbers = [_number(cell.strip(), path, line) for cell in row[1:]]
        if not per_frame and key in grouped:
            raise AnnotationError(
                f"{path}:{line}: {key!r} has two rows; per-frame targets need a header "
                "'path,time,value'"
            )
        grouped[key].append(numbers)
    if not grouped:
        raise AnnotationError(f"{path}: no targets")
    table = TargetTable(per_frame, names)
    for key, items in grouped.items():
        array = np.asarray(items, np.float64)
        if per_frame:
            order = np.argsort(array[:, 0], kind="stable")
            table.values[key] = (array[order, 0], array[order, 1:].astype(np.float32))
        else:
            table.values[key] = array[0].astype(np.float32)
    return table


class VideoMatcher:
    """Find the video a CSV row names among cache entries.

    Args:
        videos: ``{video_id: absolute source path}`` of every cached video.
    """

    def __init__(self, videos: dict[str, str]) -> None:
        self.ids = set(videos)
        self.by_path = {str(Path(p)): vid for vid, p in videos.items()}
        names = Counter(PurePosixPath(v).name for v in videos)
        stems = Counter(PurePosixPath(v).stem for v in videos)
        self.by_name = {
            PurePosixPath(v).name: v for v in videos if names[PurePosixPath(v).name] == 1
        }
        self.by_stem = {
            PurePosixPath(v).stem: v for v in videos if stems[PurePosixPath(v).stem] == 1
        }

    def match(self, key: str, base: Path) -> str | None:
        """The video id ``key`` names (relative paths are taken from ``base``), or None."""
        key = key.strip().replace("\\", "/")
        if key in self.ids:
            return key
        candidate = Path(key) if Path(key).is_absolute() else Path(base) / key
        hit = self.by_path.get(str(candidate.resolve()))
        if hit is not None:
            return hit
        name = PurePosixPath(key).name
        return (
            self.by_name.get(name)
            or self.by_stem.get(name)
            or self.by_stem.get(PurePosixPath(key).stem)
        )


def cached_paths(readers) -> dict[str, str]:
    """``{video_id: source path}`` of every video of the caches."""
    return {vid: entry.path for r in readers for vid, entry in r.entries().items()}


def unmatched_note(unmatched: list[str], csv_path, what: str) -> list[str]:
    """A one-line note on CSV rows that name no cached video, or nothing."""
    if not unmatched:
        return []
    shown = ", ".join(repr(k) for k in unmatched[:3])
    more = f" and {len(unmatched) - 3} more" if len(unmatched) > 3 else ""
    return [f"{len(unmatched)} {what} in {csv_path} name no cached video: {shown}{more}"]


def match_rows(
    rows: dict[str, object], matcher: VideoMatcher, csv_path: Path
) -> tuple[dict[str, object], list[str]]:
    """``{video_id: value}`` for the rows that name a cached video, and the keys that match
    none (to report). Two keys naming one video merge when values are lists.

    Raises:
        AnnotationError: two rows name the same video with values that cannot merge.
    """
    base = Path(csv_path).resolve().parent
    matched: dict[str, object] = {}
    unmatched = []
    for key, value in rows.items():
        video_id = matcher.match(key, base)
        if video_id is None:
            unmatched.append(key)
        elif video_id in matched:
            if not isinstance(value, list):
                raise AnnotationError(f"{csv_path}: two rows name the video {video_id!r}")
            matched[video_id] = [*matched[video_id], *value]
        else:
            matched[video_id] = value
    return matched, unmatched


def align_targets(
    timestamps: np.ndarray, times: np.ndarray, values: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame targets for frames at ``timestamps``: the value of the nearest target row
    within ``tolerance`` seconds.

    Returns:
        ``targets (T, K)`` and ``weights (T,)``: 1 where a row matched, 0 where none did (the
        frame then counts for nothing in the loss and the metrics).
    """
    timestamps = np.asarray(timestamps, np.float64)
    right = np.clip(np.searchsorted(times, timestamps), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    nearer_left = np.abs(times[left] - timestamps) <= np.abs(times[right] - timestamps)
    nearest = np.where(nearer_left, left, right)
    ok = np.abs(times[nearest] - timestamps) <= tolerance
    targets = np.where(ok[:, None], values[nearest], 0.0).astype(np.float32)
    return targets, ok.astype(np.float32)
