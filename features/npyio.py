"""Features in and out as one NumPy file per video, in the layout of v-iashin/video_features
(``<video>_<feature type>.npy``, ``<video>_timestamps_ms.npy``, ``<video>_fps.npy``), so
downstream code written for that tool reads vidcache's features, and features made by
another tool can be trained on with ``train-rnn``.

Export writes, for each live video of a cache (``<stem>`` is the video id without its
extension, its folders kept, made safe and unique as :mod:`features.untrusted` says: an id
never names a place outside DIR, and the manifest maps each file back to its id)::

    DIR/<stem>_<backbone>.npy          (T, D) features, the stored dtype or the one asked
    DIR/<stem>_timestamps_ms.npy       (T,) float64 milliseconds of each row
    DIR/<stem>_fps.npy                 () float64, the rate of the rows
    DIR/<stem>_spans.npy               (T, 4) float64, window caches only (since 0.3): each
                                       row's first and last frame index, start and end ms
    DIR/manifest.csv                   video_id, label, path, frames, fps, settings_sha256, file,
                                       duration (seconds of source video; since 0.3)
    DIR/settings.json                  the cache's feature settings (provenance)
    DIR/versions.json                  the libraries that made the cache (since 0.3)

Import reads such a folder (``manifest.csv`` optional: without it every ``*.npy`` that is
not a ``_timestamps_ms`` or ``_fps`` file is one video, its label the name of its folder)
into a cache: :mod:`features.npyimport`. A vidcache export (its ``settings.json`` hashing
to the manifest's ``settings_sha256``) comes back with its own settings, needing no
option; anything else is recorded as imported (``weights="import:<name>"``). Text cells of
the manifest are written as :func:`features.untrusted.csv_text` says (no spreadsheet
formulas) and read back exactly.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from vidcache.features.cache import CacheEntry, CacheReader
from vidcache.features.errors import VidcacheError
from vidcache.features.settings import FeatureSettings
from vidcache.features.untrusted import (
    UniqueNames,
    csv_text,
    inside,
    safe_part,
    safe_relative,
)

MANIFEST = "manifest.csv"
COLUMNS = ("video_id", "label", "path", "frames", "fps", "settings_sha256", "file", "duration")
SIDE_FILES = ("_timestamps_ms.npy", "_fps.npy", "_spans.npy")


@dataclass
class NpyReport:
    """What an export or an import did."""

    videos: int = 0
    frames: int = 0
    skipped: list[str] = field(default_factory=list)  # one line each: "NAME: reason"


def _stem(video_id: str) -> str:
    suffix = PurePosixPath(video_id).suffix
    return video_id[: -len(suffix)] if suffix and len(suffix) <= 6 else video_id


def _row_rate(entry: CacheEntry, settings: FeatureSettings, stamps: np.ndarray) -> float:
    """Rows per second of one video: the sampling rate, else the video's own rate."""
    if settings.sampling.num_frames is not None and len(stamps) > 1:
        span = float(stamps[-1] - stamps[0])
        return (len(stamps) - 1) / span if span > 0 else entry.fps
    if settings.sampling.fps is not None and entry.fps > 0:
        return min(settings.sampling.fps, entry.fps)
    return entry.fps


def _save(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file renamed into place: a file under its final
    name is always whole (a full disk or a kill mid-write leaves no half file)."""
    temporary = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        with open(temporary, "wb") as out:
            np.save(out, array)
        os.replace(temporary, path)
    except OSError as exc:  # name the file: a write into an open file names none
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    finally:
        if temporary.exists():
            temporary.unlink()


def export_npy(caches: list[Path], folder: Path, dtype: str | None = None) -> NpyReport:
    """Write every live video of ``caches`` as NumPy files in ``folder`` (module doc).

    Args:
        caches: caches of one kind (their settings are compared).
        folder: where to write; made if missing.
        dtype: ``"float32"`` or ``"float16"``. Defaults to the stored dtype.

    Raises:
        CacheFormatError: a cache cannot be read.
        VidcacheError: the caches hold other settings, or two hold one video.
    """
    from vidcache.features.cache import common_settings

    folder = Path(folder)
    readers: list[CacheReader] = []
    report = NpyReport()
    try:
        for path in caches:  # every cache checked before the folder is made
            readers.append(CacheReader(path))
        base, other, diffs = common_settings(readers)
        if other is not None:
            raise VidcacheError(
                f"{other.path} and {base.path} hold features made with other settings "
                f"({'; '.join(diffs)}); export caches of one kind together"
            )
        settings = base.settings
        folder.mkdir(parents=True, exist_ok=True)
        key = safe_part(settings.backbone.lower().replace(" ", "-"))
        digest = settings.digest()
        rows, seen, names = [], set(), UniqueNames()
        for reader in readers:
            entries = reader.entries()
            for video_id, stored in reader.rows_many(list(entries)):
                if video_id in seen:
                    raise VidcacheError(f"video {video_id!r} is in two of the caches exported")
                seen.add(video_id)
                entry = entries[video_id]
                stem = names.claim(safe_relative(_stem(video_id)))
                features, stamps, rate = (
                    inside(folder, f"{stem}{side}") for side in (f"_{key}.npy", *SIDE_FILES[:2])
                )
                features.parent.mkdir(parents=True, exist_ok=True)
                _save(features, stored.features.astype(dtype or stored.features.dtype))
                _save(stamps, stored.timestamps * 1000.0)
                row_rate = _row_rate(entry, settings, stored.timestamps)
                _save(rate, np.float64(row_rate))
                if settings.has_spans:
                    span_frames, span_times = stored.spans()
                    spans = np.concatenate([span_frames, span_times * 1000.0], axis=1)
                    _save(inside(folder, f"{stem}_spans.npy"), spans.astype(np.float64))
                rows.append([csv_text(video_id), csv_text(entry.label), csv_text(entry.path),
                             len(stored.features), row_rate, digest,
                             csv_text(f"{stem}_{key}.npy"), entry.duration])  # fmt: skip
                report.videos += 1
                report.frames += len(stored.features)
        with open(folder / MANIFEST, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
        (folder / "settings.json").write_text(
            json.dumps(settings.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        (folder / "versions.json").write_text(
            json.dumps(base.versions, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    finally:
        for reader in readers:
            reader.close()
    return report
