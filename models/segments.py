"""Per-frame labels from a segments CSV, or from per-video frame label files
(``--task segment``).

The file has one row per segment, ``video,start,end,label`` (seconds; a header row naming
those columns, or ``path`` for ``video``, is optional; ``#`` starts a comment line). A
video is named as ``--labels`` names one (its id, its path, or its file name). A frame at
time ``t`` takes the label of the segment with ``start <= t < end``; a frame that no segment
covers takes the background label (``background``, as in MS-TCN's datasets). Two segments
of one video that overlap are refused, naming both lines: which of them a frame in both
belongs to would be a guess.

``--segments FOLDER`` takes the MS-TCN datasets' ground truth instead: one ``<video>.txt``
per video (named by the video's file name without its extension), one label per line, line
``k`` labelling the video's frame ``k`` (0-based, in decode order). A sampled row takes the
line of its own frame index (the cache records it), so any sampling (``--fps``,
``--num-frames``) reads the labels of the frames it kept; rows past the file's last line
are background (and counted in a note).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidcache.features.errors import VidcacheError
from vidcache.features.untrusted import inside, plain_text
from vidcache.models.annotations import AnnotationError, _rows

BACKGROUND = "background"
_HEADER = {"video", "path"}


def read_segments(path: Path) -> dict[str, list[tuple[float, float, str]]]:
    """``{video: [(start, end, label), ...]}`` sorted by start.

    Raises:
        AnnotationError: unreadable; a row without four fields, with a time that is not a
            finite number >= 0, with ``end <= start`` or no label; overlapping segments;
            no rows.
    """
    path = Path(path)
    found: dict[str, list[tuple[float, float, str, int]]] = defaultdict(list)
    for index, (line, row) in enumerate(_rows(path, "segments")):
        cells = [c.strip() for c in row]
        if index == 0 and cells and cells[0].lower() in _HEADER:
            continue
        if len(cells) != 4 or not cells[0] or not plain_text(cells[3]).strip():
            raise AnnotationError(
                f"{path}:{line}: each row needs 'video,start,end,label' (got {len(cells)} field(s))"
            )
        try:
            start, end = float(cells[1]), float(cells[2])
        except ValueError:
            raise AnnotationError(
                f"{path}:{line}: start and end are seconds (got {cells[1]!r}, {cells[2]!r})"
            ) from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise AnnotationError(
                f"{path}:{line}: a segment needs 0 <= start < end (got {start:g}, {end:g})"
            )
        found[cells[0]].append((start, end, plain_text(cells[3]).strip(), line))
    if not found:
        raise AnnotationError(f"{path}: no segments")
    out = {}
    for video, rows in found.items():
        rows.sort()
        for (s0, e0, _, l0), (s1, _, _, l1) in zip(rows, rows[1:]):
            if s1 < e0:
                raise AnnotationError(
                    f"{path}: lines {l0} and {l1} overlap ({video}: {s0:g}-{e0:g} s and "
                    f"from {s1:g} s); each frame needs one label"
                )
        out[video] = [(s, e, label) for s, e, label, _ in rows]
    return out


def frame_labels(
    timestamps: np.ndarray, segments: Sequence[tuple[float, float, str]], background: str
) -> list[str]:
    """The label of each frame at ``timestamps``: its segment's, else ``background``."""
    starts = np.array([s for s, _, _ in segments], np.float64)
    labels = []
    for t in np.asarray(timestamps, np.float64):
        k = int(np.searchsorted(starts, t, side="right")) - 1
        inside = k >= 0 and t < segments[k][1]
        labels.append(segments[k][2] if inside else background)
    return labels


def runs_in_seconds(
    labels: Sequence[str], timestamps: np.ndarray, background: str
) -> list[tuple[float, float, str]]:
    """``(start, end, label)`` in seconds of each run of one label (background left out):
    a run starts at its first frame's time and ends where the next run starts (the last
    one a frame's duration, the median frame step, after its last frame)."""
    from vidcache.models.segmetrics import segments

    stamps = np.asarray(timestamps, np.float64)
    step = float(np.median(np.diff(stamps))) if len(stamps) > 1 else 0.0
    ends = np.append(stamps[1:], stamps[-1] + step) if len(stamps) else stamps
    return [
        (float(stamps[a]), float(ends[b - 1]), label)
        for label, a, b in segments(list(labels), {background})
    ]


#: A label file larger than this is refused (a million frames of long labels).
MAX_LABEL_FILE = 64 << 20


def read_frame_label_files(folder: Path) -> dict[str, list[str]]:
    """``{video name: [label of frame 0, 1, ...]}`` of the ``*.txt`` files in ``folder``.

    Raises:
        AnnotationError: no file; a file outside the folder (a planted link), too large,
            not UTF-8 text, or without a label.
    """
    folder = Path(folder)
    found = {}
    for path in sorted(folder.glob("*.txt")):
        try:
            inside(folder, path.name)
            if not path.is_file() or path.stat().st_size > MAX_LABEL_FILE:
                raise AnnotationError(f"{path}: not a label file (a regular file up to 64 MiB)")
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError, VidcacheError) as exc:
            raise AnnotationError(f"{path}: cannot read frame labels ({exc})") from None
        labels = [plain_text(line).strip() for line in lines]
        while labels and not labels[-1]:
            labels.pop()
        if not labels or not all(labels):
            raise AnnotationError(f"{path}: one label per line, every frame (an empty line)")
        found[path.stem] = labels
    if not found:
        raise AnnotationError(f"{folder}: no <video>.txt frame label files")
    return found


def labels_of_rows(lines: list[str], frame_indices: np.ndarray, background: str):
    """Each row's label from its frame's line; and how many rows fell past the last line."""
    indices = np.asarray(frame_indices, np.int64)
    past = int((indices >= len(lines)).sum() + (indices < 0).sum())
    return [lines[i] if 0 <= i < len(lines) else background for i in indices], past
