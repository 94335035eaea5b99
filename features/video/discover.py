"""Find the videos under the inputs and give each a stable id and a label.

- A file argument is one video; its id is its file name and it has no label.
- A folder argument is walked recursively in sorted order. Every file with a known video
  extension (or matching ``glob``) is a video; its id is its path relative to the folder
  (POSIX separators) and its label is the name of the folder that holds it, the UCF101
  layout ``videos/<label>/<clip>.avi`` (a video directly in the argument has no label).
- A folder holding numbered JPEG/PNG/BMP images is one video of frames (not descended
  into); its label is the name of its parent folder.
- ``--labels FILE.csv`` (columns ``path,label``, extra columns kept as metadata) overrides
  labels; ``path`` is matched against the video id, or as a path relative to the CSV.

Ids must be unique across all inputs: duplicates are rejected before any work starts.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

from vidcache.features.errors import DiscoveryError
from vidcache.features.remote.urls import is_url, shown
from vidcache.features.video.source import (  # noqa: F401 - imported from here since 0.1
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    VideoSource,
    is_video_name,
)

_DIGITS = re.compile(r"(\d+)")


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder in frame order (by the last number in the name)."""

    def order(path: Path) -> tuple[int, str]:
        numbers = _DIGITS.findall(path.stem)
        return (int(numbers[-1]) if numbers else -1, path.name)

    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=order)


def _is_frame_folder(folder: Path) -> bool:
    try:
        images = [
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        ]
    except OSError:
        return False
    return bool(images) and all(_DIGITS.search(p.stem) for p in images)


def _walk(root: Path, glob: str | None, audio: bool = False) -> list[VideoSource]:
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs.sort()
        if here != root and _is_frame_folder(here):
            dirs[:] = []  # a clip, not a folder of clips
            label = here.parent.name if here.parent != root else None
            found.append(
                VideoSource(here.resolve(), here.relative_to(root).as_posix(), label, "frames")
            )
            continue
        for name in sorted(files):
            if is_video_name(name, glob, audio):
                path = here / name
                label = here.name if here != root else None
                found.append(VideoSource(path.resolve(), path.relative_to(root).as_posix(), label))
    return found


def _list_url(item, glob, audio):
    from vidcache.features.remote.listing import list_url

    return list_url(str(item), glob, audio)


def discover(
    inputs: list[Path | str],
    glob: str | None = None,
    audio: bool = False,
    unreadable=None,
) -> list[VideoSource]:
    """List the videos under ``inputs`` (files or folders) in a stable order.

    Args:
        inputs: files, folders and URLs (``s3://bucket/videos/``, an object, a CSV list;
            :mod:`vidcache.features.remote.listing`), as given on the command line.
        glob: file-name pattern that replaces the known video extensions (for example
            ``"*.avi"``). Defaults to ``None``.
        audio: list files with sound only too (:data:`AUDIO_EXTENSIONS`), for an audio
            backbone. Defaults to ``False``.
        unreadable: called with the :class:`RemoteError` of a URL that cannot be listed,
            and the other inputs go on; None raises it. Defaults to None.

    Raises:
        DiscoveryError: an input does not exist, or two videos would share an id.
        RemoteError: a URL cannot be listed (one line naming it).
    """
    sources: list[VideoSource] = []
    for item in inputs:
        if is_url(item):  # a prefix, an object or a CSV list in a store
            from vidcache.features.remote.urls import RemoteError

            try:
                sources.extend(_list_url(item, glob, audio))
            except RemoteError as exc:
                if unreadable is None:
                    raise
                unreadable(exc)
            continue
        path = Path(item)
        if path.is_dir():
            if _is_frame_folder(path):
                sources.append(VideoSource(path.resolve(), path.resolve().name, None, "frames"))
            else:
                sources.extend(_walk(path, glob, audio))
        elif path.is_file():
            sources.append(VideoSource(path.resolve(), path.name))
        else:
            raise DiscoveryError(f"{path}: no such file or folder")
    duplicates = [vid for vid, n in Counter(s.video_id for s in sources).items() if n > 1]
    if duplicates:
        shown = ", ".join(sorted(duplicates)[:5])
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        raise DiscoveryError(
            f"{len(duplicates)} video id(s) occur more than once across the inputs: {shown}{more}; "
            "pass each dataset once, or extract them into separate caches"
        )
    return sources


def read_labels_csv(csv_path: Path) -> dict[str, tuple[str, tuple[tuple[str, str], ...]]]:
    """Read ``path,label[,extra...]`` rows into ``{path: (label, extra_pairs)}``.

    Raises:
        DiscoveryError: the file cannot be read, lacks the columns, or repeats a path.
    """
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if "path" not in columns or "label" not in columns:
                raise DiscoveryError(
                    f"{csv_path}: a labels file needs the columns 'path' and 'label'; "
                    f"found {columns}"
                )
            rows: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
            for line, row in enumerate(reader, start=2):
                key = (row.get("path") or "").strip()
                if not key:
                    raise DiscoveryError(f"{csv_path}:{line}: empty path")
                if key in rows:
                    raise DiscoveryError(f"{csv_path}:{line}: path {key!r} is listed twice")
                extra = tuple(
                    (k, v or "") for k, v in row.items() if k not in ("path", "label") and k
                )
                rows[key] = ((row.get("label") or "").strip(), extra)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DiscoveryError(f"{csv_path}: cannot read labels file ({exc})") from None
    return rows


def apply_labels(sources: list[VideoSource], csv_path: Path) -> tuple[list[VideoSource], list[str]]:
    """Override labels (and add metadata) from a labels CSV.

    Returns:
        The updated sources, and the CSV paths that matched no video (to warn about).
    """
    rows = read_labels_csv(csv_path)
    base = csv_path.resolve().parent
    by_key: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {}
    for key, value in rows.items():
        by_key[key] = value
        if not is_url(key):
            by_key[str((base / key).resolve())] = value
        else:
            by_key[shown(key)] = value
    used: set[int] = set()
    updated = []
    for source in sources:
        hit = (
            by_key.get(source.video_id)
            or by_key.get(str(source.path))
            or by_key.get(shown(str(source.path)))
        )
        if hit is not None:
            used.add(id(hit))
            label, extra = hit
            source = replace(source, label=label or None, meta=extra)
        updated.append(source)
    unmatched = [key for key, value in rows.items() if id(value) not in used]
    return updated, unmatched
