"""Features in and out as one NumPy file per video, in the layout of v-iashin/video_features
(``<video>_<feature type>.npy``, ``<video>_timestamps_ms.npy``, ``<video>_fps.npy``), so
downstream code written for that tool reads vidcache's features, and features made by
another tool can be trained on with ``train-rnn``.

Export writes, for each live video of a cache (``<stem>`` is the video id without its
extension, its folders kept)::

    DIR/<stem>_<backbone>.npy          (T, D) features, the stored dtype or the one asked
    DIR/<stem>_timestamps_ms.npy       (T,) float64 milliseconds of each row
    DIR/<stem>_fps.npy                 () float64, the rate of the rows
    DIR/manifest.csv                   video_id, label, path, frames, fps, settings_sha256, file
    DIR/settings.json                  the cache's feature settings (provenance)

Import reads such a folder (``manifest.csv`` optional: without it every ``*.npy`` that is
not a ``_timestamps_ms`` or ``_fps`` file is one video, its label the name of its folder)
into a cache whose settings say the features were imported (``weights="import:<name>"``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from vidcache.features.cache import CacheEntry, CacheReader
from vidcache.features.cache.session import CacheSession
from vidcache.features.cache.store import Rows
from vidcache.features.errors import VidcacheError
from vidcache.features.settings import IMPORTED, FeatureSettings, SamplingSpec

MANIFEST = "manifest.csv"
COLUMNS = ("video_id", "label", "path", "frames", "fps", "settings_sha256", "file")
SIDE_FILES = ("_timestamps_ms.npy", "_fps.npy")


class NpyImportError(VidcacheError):
    """A folder of NumPy files cannot be imported (named in the message)."""


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
    folder.mkdir(parents=True, exist_ok=True)
    readers = [CacheReader(path) for path in caches]
    report = NpyReport()
    try:
        base, other, diffs = common_settings(readers)
        if other is not None:
            raise VidcacheError(
                f"{other.path} and {base.path} hold features made with other settings "
                f"({'; '.join(diffs)}); export caches of one kind together"
            )
        settings = base.settings
        key = settings.backbone.lower().replace(" ", "-")
        digest = settings.digest()
        rows, seen = [], set()
        for reader in readers:
            entries = reader.entries()
            for video_id, stored in reader.rows_many(list(entries)):
                if video_id in seen:
                    raise VidcacheError(f"video {video_id!r} is in two of the caches exported")
                seen.add(video_id)
                entry, stem = entries[video_id], _stem(video_id)
                target = folder / f"{stem}_{key}.npy"
                target.parent.mkdir(parents=True, exist_ok=True)
                np.save(target, stored.features.astype(dtype or stored.features.dtype))
                np.save(folder / f"{stem}_timestamps_ms.npy", stored.timestamps * 1000.0)
                rate = _row_rate(entry, settings, stored.timestamps)
                np.save(folder / f"{stem}_fps.npy", np.float64(rate))
                rows.append([video_id, entry.label, entry.path, len(stored.features), rate,
                             digest, target.relative_to(folder).as_posix()])  # fmt: skip
                report.videos += 1
                report.frames += len(stored.features)
        with open(folder / MANIFEST, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
        (folder / "settings.json").write_text(
            json.dumps(settings.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    finally:
        for reader in readers:
            reader.close()
    return report


@dataclass
class _Found:
    video_id: str
    label: str
    file: Path


def _discover(folder: Path, name: str) -> list[_Found]:
    """The videos of an import folder: its manifest's rows, or its feature files."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        with open(manifest, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        missing = {"video_id", "file"} - set(rows[0] if rows else {})
        if missing:
            raise NpyImportError(f"{manifest}: needs the columns video_id and file")
        return [_Found(r["video_id"], r.get("label", ""), folder / r["file"]) for r in rows]
    suffix = f"_{name.lower()}"
    found = []
    for file in sorted(folder.rglob("*.npy")):
        if file.name.endswith(SIDE_FILES):
            continue
        relative = file.relative_to(folder).with_suffix("").as_posix()
        video_id = relative[: -len(suffix)] if relative.lower().endswith(suffix) else relative
        label = file.parent.name if file.parent != folder else ""
        found.append(_Found(video_id, label, file))
    return found


def _side(file: Path, name: str, side: str) -> Path:
    stem = file.name[: -len(".npy")]
    suffix = f"_{name.lower()}"
    if stem.lower().endswith(suffix):
        stem = stem[: -len(suffix)]
    return file.with_name(f"{stem}{side}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def import_npy(
    folder: Path,
    output: Path,
    name: str,
    fps: float,
    dtype: str | None = None,
    labels: dict[str, str] | None = None,
) -> NpyReport:
    """Bring a folder of per-video NumPy features into the cache ``output`` (module doc).

    A file that is not a ``(T, D)`` float array of the common ``D`` is skipped with one
    line; a video already in ``output`` with the same file content is not read again.

    Args:
        folder: the NumPy files (with or without ``manifest.csv``).
        output: the cache; created, or extended when its settings are these.
        name: the backbone or feature name that made them (recorded in the settings).
        fps: rows per second, for videos without their own ``_timestamps_ms`` or ``_fps``.
        dtype: storage dtype. Defaults to float16 when the files are, else float32.
        labels: ``{video_id: label}`` over the folder names or the manifest's.

    Raises:
        NpyImportError: nothing to import, or a manifest without its columns.
        SettingsMismatch: ``output`` holds other features.
    """
    from vidcache.features.settings import check_compatible

    folder, output = Path(folder), Path(output)
    videos = _discover(folder, name)
    if not videos:
        raise NpyImportError(f"{folder}: no .npy feature files")
    report = NpyReport()
    loaded = []
    for video in videos:
        try:
            features = np.load(video.file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            report.skipped.append(f"{video.file}: not a NumPy array ({str(exc)[:80]})")
            continue
        if features.ndim != 2 or features.dtype.kind != "f" or not len(features):
            report.skipped.append(
                f"{video.file}: shape {features.shape} {features.dtype}; vidcache needs one "
                "float vector per frame, (T, D)"
            )
            continue
        loaded.append((video, features))
    if not loaded:
        raise NpyImportError(f"{folder}: no file holds (T, D) float features")
    dims = {features.shape[1] for _, features in loaded}
    dim = max(dims, key=lambda d: sum(f.shape[1] == d for _, f in loaded))
    dtype = dtype or ("float16" if all(f.dtype == np.float16 for _, f in loaded) else "float32")
    settings = FeatureSettings(
        weights=f"{IMPORTED}{name}", weights_sha256="unknown", image_size=0, resize="unknown",
        sampling=SamplingSpec(fps=float(fps)), dtype=dtype, backbone=name, pooling="unknown",
        feature_dim=dim, interpolation="unknown", preprocess="unknown", color="unknown",
    )  # fmt: skip
    with CacheSession(output) as session:
        if session.exists:
            check_compatible(session.settings(), settings, cache_name=str(output))
        with session.open(settings, {"imported_from": str(folder.resolve())}) as cache:
            cached = cache.entries()
            entries, batch = [], []
            for video, features in loaded:
                if features.shape[1] != dim:
                    report.skipped.append(
                        f"{video.file}: {features.shape[1]}-d features among {dim}-d ones"
                    )
                    continue
                fingerprint = _sha256(video.file)
                old = cached.get(video.video_id)
                if old is not None and old.fingerprint == fingerprint:
                    continue
                stamps, rate = _timestamps(video, name, len(features), fps)
                stat = os.stat(video.file)
                label = (labels or {}).get(video.video_id, video.label)
                entries.append(CacheEntry(
                    video.video_id, str(video.file.resolve()), label, "import", stat.st_size,
                    stat.st_mtime, fingerprint, len(features), rate,
                    duration=len(features) / rate if rate > 0 else math.nan,
                    codec="npy", meta={"imported_from": str(folder.resolve())},
                ))  # fmt: skip
                batch.append(Rows(features, stamps, np.arange(len(features))))
                report.videos += 1
                report.frames += len(features)
                if len(batch) >= 256:
                    cache.write_batch(entries, batch)
                    entries, batch = [], []
            cache.write_batch(entries, batch)
    return report


def _timestamps(video: _Found, name: str, frames: int, fps: float) -> tuple[np.ndarray, float]:
    """A video's row times (seconds) and rate, from its side files or ``fps``."""
    stamps_file = _side(video.file, name, "_timestamps_ms.npy")
    rate_file = _side(video.file, name, "_fps.npy")
    rate = float(np.load(rate_file)) if rate_file.is_file() else float(fps)
    if stamps_file.is_file():
        stamps = np.asarray(np.load(stamps_file), np.float64).reshape(-1) / 1000.0
        if len(stamps) == frames:
            return stamps, rate
    return np.arange(frames, dtype=np.float64) / rate, rate
