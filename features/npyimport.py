"""``vidcache import``: a folder of per-video NumPy features (video_features' layout, or a
``vidcache export``; see :mod:`features.npyio`) into a cache.

Every file is untrusted and checked before anything is written (:func:`check_video`):

- the feature file must lie inside the folder (a manifest row naming ``../x.npy`` or an
  absolute path is refused), be a regular file and a ``.npy`` whose header is read first,
  memory-mapped: a header claiming more elements than the file holds, a pickled or object
  array, or anything but a 2-D float array with at least one row and column is refused
  without loading a byte of it;
- its values must be finite (NaN or infinity would train to NaN silently);
- a ``_fps.npy`` must hold one finite number in (0, 10000] frames per second, and a
  ``_timestamps_ms.npy`` one finite number per row (same checks on the header).

A bad file is one line naming it and why; the others are imported. When no file is good,
nothing is written (no empty cache).

A folder ``vidcache export`` wrote (:func:`export_record`: a ``settings.json`` that parses
as vidcache's settings, checked field by field, and hashes to the ``settings_sha256`` of
every manifest row) comes back as the cache it was: its settings (the files' dtype kept),
versions, labels, source paths and durations, with no option. A ``settings.json`` that
does not hash to the manifest's value (edited, damaged) is refused in one line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vidcache.features.cache import CacheEntry
from vidcache.features.cache.session import CacheSession
from vidcache.features.cache.store import Rows
from vidcache.features.errors import VidcacheError
from vidcache.features.npyio import MANIFEST, SIDE_FILES, NpyReport
from vidcache.features.settings import IMPORTED, FeatureSettings, SamplingSpec
from vidcache.features.untrusted import UnsafePath, csv_untext, inside

#: The highest frame rate an import accepts (high-speed cameras stay below it).
MAX_FPS = 10_000.0
_BLOCK = 1 << 22  # values checked for finiteness this many at a time


class NpyImportError(VidcacheError):
    """A folder of NumPy files cannot be imported (named in the message)."""


class BadFile(VidcacheError):
    """One file of an import is refused (the message says which and why)."""


@dataclass
class _Found:
    video_id: str
    label: str
    file: Path
    path: str = ""  # the source video, as a vidcache export's manifest gives it
    duration: float | None = None  # None: not given (then rows / rate); NaN: unknown


@dataclass(frozen=True)
class ExportRecord:
    """What a vidcache export says about the cache it came from."""

    settings: FeatureSettings
    versions: dict


def export_record(folder: Path) -> ExportRecord | None:
    """The settings and versions of a folder ``vidcache export`` wrote, checked; None for
    a folder another tool wrote (no ``settings.json`` beside a ``manifest.csv``).

    Raises:
        NpyImportError: a ``settings.json`` that is not vidcache's, or that does not hash
            to the manifest's ``settings_sha256``.
    """
    file, manifest = Path(folder) / "settings.json", Path(folder) / MANIFEST
    if not (file.is_file() and manifest.is_file()):
        return None
    try:
        settings = FeatureSettings.from_json(file.read_text(encoding="utf-8"))
        with open(manifest, newline="", encoding="utf-8") as handle:
            digests = {row.get("settings_sha256") for row in csv.DictReader(handle)}
        versions = {}
        if (Path(folder) / "versions.json").is_file():
            versions = json.loads((Path(folder) / "versions.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, RecursionError, csv.Error) as exc:
        raise NpyImportError(f"{file}: not the settings of a vidcache export ({exc})") from None
    if digests != {settings.digest()}:
        raise NpyImportError(
            f"{file}: its settings do not hash to the settings_sha256 of {manifest} (edited "
            "or damaged); restore it, or remove it to import the files as another tool's"
        )
    if not (isinstance(versions, dict) and all(isinstance(v, str) for v in versions.values())):
        versions = {}
    return ExportRecord(settings, versions)


@dataclass
class Checked:
    """One video that passed every check: its rows, their times (seconds) and rate."""

    video: _Found
    features: np.ndarray
    stamps: np.ndarray
    rate: float
    spans: tuple[np.ndarray, np.ndarray] | None = None  # a window export's (frames, times)


def _discover(folder: Path, name: str, skipped: list[str]) -> list[_Found]:
    """The videos of an import folder: its manifest's rows, or its feature files."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            with open(manifest, newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise NpyImportError(f"{manifest}: not a readable CSV ({exc})") from None
        missing = {"video_id", "file"} - set(rows[0] if rows else {})
        if missing:
            raise NpyImportError(f"{manifest}: needs the columns video_id and file")
        found = []
        for row in rows:
            file = csv_untext(row["file"] or "")
            try:
                found.append(_Found(csv_untext(row["video_id"] or ""),
                                    csv_untext(row.get("label") or ""),
                                    inside(folder, file), csv_untext(row.get("path") or ""),
                                    _seconds(row.get("duration"))))  # fmt: skip
            except UnsafePath:
                skipped.append(f"{file}: names a file outside {folder} (from {MANIFEST})")
        return found
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


def _seconds(text: str | None) -> float | None:
    """A manifest's duration: seconds, NaN when unknown, None without the column."""
    if text is None:
        return None
    try:
        value = float(text or "nan")
    except ValueError:
        return math.nan
    return value if math.isfinite(value) and value >= 0 else math.nan


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


def _mapped(file: Path) -> np.ndarray:
    """``file`` memory-mapped after its header was checked against its size.

    Raises:
        BadFile: not a regular file, not a NumPy array file, a header that claims more
            than the file holds, or a pickled/object array.
    """
    if not file.is_file():
        raise BadFile(f"{file}: {'missing' if not file.exists() else 'not a regular file'}")
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise BadFile(f"{file}: not a NumPy array file vidcache can read ({reason})") from None
    if not isinstance(array, np.ndarray) or array.dtype.hasobject:
        raise BadFile(f"{file}: holds Python objects, not numbers")
    return array


def _finite(array: np.ndarray) -> bool:
    flat = array.reshape(-1)
    return all(np.isfinite(flat[i : i + _BLOCK]).all() for i in range(0, flat.size, _BLOCK))


def check_video(video: _Found, name: str, fps: float) -> Checked:
    """Load one video's files after checking them (module doc).

    Raises:
        BadFile: the first problem found, naming the file.
    """
    mapped = _mapped(video.file)
    if mapped.ndim != 2 or mapped.dtype.kind != "f" or 0 in mapped.shape:
        raise BadFile(
            f"{video.file}: shape {mapped.shape} {mapped.dtype}; vidcache needs one float "
            "vector per frame, (T, D) with T and D at least 1"
        )
    if not _finite(mapped):
        raise BadFile(f"{video.file}: holds NaN or infinite values")
    features = np.array(mapped)
    rate = float(fps)
    rate_file = _side(video.file, name, "_fps.npy")
    if rate_file.exists():
        stored = _mapped(rate_file)
        if stored.size != 1 or stored.dtype.kind not in "fiu":
            raise BadFile(f"{rate_file}: holds {stored.shape} {stored.dtype}, not one number")
        rate = float(stored.reshape(-1)[0])
    if not (math.isfinite(rate) and 0 < rate <= MAX_FPS):
        where = rate_file if rate_file.exists() else "--fps"
        raise BadFile(f"{where}: a frame rate of {rate} (must be above 0 and at most {MAX_FPS:g})")
    stamps = np.arange(len(features), dtype=np.float64) / rate
    stamps_file = _side(video.file, name, "_timestamps_ms.npy")
    if stamps_file.exists():
        stored = _mapped(stamps_file)
        if stored.size != len(features) or stored.dtype.kind not in "fiu":
            raise BadFile(
                f"{stamps_file}: {stored.size} {stored.dtype} values for {len(features)} rows"
            )
        stamps = np.asarray(stored, np.float64).reshape(-1) / 1000.0
        if not np.isfinite(stamps).all():
            raise BadFile(f"{stamps_file}: holds NaN or infinite times")
    return Checked(video, features, stamps, rate, _spans(video, name, len(features)))


def _spans(video: _Found, name: str, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A window export's ``_spans.npy`` as ``(span_frames, span_times)``, checked: ``(T, 4)``
    finite numbers, whole non-negative frame indices, first <= last, start <= end."""
    file = _side(video.file, name, "_spans.npy")
    if not file.exists():
        return None
    stored = _mapped(file)
    if stored.shape != (count, 4) or stored.dtype.kind not in "fiu":
        raise BadFile(f"{file}: {stored.shape} {stored.dtype}, not ({count}, 4) numbers")
    spans = np.asarray(stored, np.float64)
    frames, times = spans[:, :2], spans[:, 2:] / 1000.0
    if not np.isfinite(spans).all():
        raise BadFile(f"{file}: holds NaN or infinite values")
    if (frames < 0).any() or (frames != np.round(frames)).any() or (frames >= 2**53).any():
        raise BadFile(f"{file}: frame indices that are not whole numbers from 0")
    if (frames[:, 0] > frames[:, 1]).any() or (times[:, 0] > times[:, 1]).any():
        raise BadFile(f"{file}: a span that ends before it starts")
    return frames.astype(np.int64), times


def import_npy(
    folder: Path,
    output: Path,
    name: str | None = None,
    fps: float | None = None,
    dtype: str | None = None,
    labels: dict[str, str] | None = None,
) -> NpyReport:
    """Bring a folder of per-video NumPy features into the cache ``output`` (module doc).

    A file that fails a check, or whose ``D`` is not the common one, is skipped with one
    line; a video already in ``output`` with the same file content is not read again.

    Args:
        folder: the NumPy files (with or without ``manifest.csv``).
        output: the cache; created, or extended when its settings are these.
        name: the backbone or feature name that made them (recorded in the settings).
            Defaults to a vidcache export's own; required for other folders.
        fps: rows per second, for videos without their own ``_timestamps_ms`` or ``_fps``.
            Defaults to a vidcache export's sampling rate (or 25); required for others.
        dtype: storage dtype. Defaults to float16 when the files are, else float32.
        labels: ``{video_id: label}`` over the folder names or the manifest's.

    Raises:
        NpyImportError: nothing to import, or a manifest without its columns.
        SettingsMismatch: ``output`` holds other features.
    """
    from vidcache.features.settings import check_compatible

    folder, output = Path(folder), Path(output)
    record = export_record(folder)
    if record is None and (name is None or fps is None):
        raise NpyImportError(
            f"{folder} is not a vidcache export (no settings.json beside manifest.csv): say "
            "what made the features and their rate (--backbone-name NAME --fps F)"
        )
    if record is not None:
        name = name or record.settings.backbone.lower().replace(" ", "-")
        fps = fps or record.settings.sampling.fps or 25.0
    report = NpyReport()
    videos = _discover(folder, name, report.skipped)
    if not videos and not report.skipped:
        raise NpyImportError(f"{folder}: no .npy feature files")
    loaded: list[Checked] = []
    for video in videos:
        try:
            loaded.append(check_video(video, name, fps))
        except BadFile as exc:
            report.skipped.append(str(exc))
    if not loaded:
        raise NpyImportError(
            f"{folder}: no file holds usable (T, D) float features; nothing written"
            + "".join(f"\n  {line}" for line in report.skipped[:20])
        )
    dims = {c.features.shape[1] for c in loaded}
    dim = max(dims, key=lambda d: sum(c.features.shape[1] == d for c in loaded))
    float16 = all(c.features.dtype == np.float16 for c in loaded)
    dtype = dtype or ("float16" if float16 else "float32")
    if record is not None:  # vidcache's own features come back as they were
        settings = replace(record.settings, dtype=dtype)
    else:
        settings = FeatureSettings(
            weights=f"{IMPORTED}{name}", weights_sha256="unknown", image_size=0,
            resize="unknown", sampling=SamplingSpec(fps=float(fps)), dtype=dtype,
            backbone=name, pooling="unknown", feature_dim=dim, interpolation="unknown",
            preprocess="unknown", color="unknown",
        )  # fmt: skip
    with CacheSession(output) as session:
        if session.exists:
            check_compatible(session.settings(), settings, cache_name=str(output))
        versions = {**(record.versions if record else {}), "imported_from": str(folder.resolve())}
        with session.open(settings, versions) as cache:
            cached = cache.entries()
            entries, batch = [], []
            for checked in loaded:
                video, features = checked.video, checked.features
                if features.shape[1] != dim:
                    report.skipped.append(
                        f"{video.file}: {features.shape[1]}-d features among {dim}-d ones"
                    )
                    continue
                fingerprint = _sha256(video.file)
                old = cached.get(video.video_id)
                if old is not None and old.fingerprint == fingerprint:
                    continue
                stat = os.stat(video.file)
                label = (labels or {}).get(video.video_id, video.label)
                duration = video.duration
                if duration is None:
                    duration = len(features) / checked.rate
                entries.append(CacheEntry(
                    video.video_id, video.path or str(video.file.resolve()), label, "import",
                    stat.st_size, stat.st_mtime, fingerprint, len(features), checked.rate,
                    duration=duration, codec="npy",
                    meta={"imported_from": str(folder.resolve())},
                ))  # fmt: skip
                spans = checked.spans if settings.has_spans else None
                if settings.has_spans and spans is None:
                    kind = "sound" if settings.hears else "windows"
                    report.skipped.append(
                        f"{video.file}: no _spans.npy beside it (the export is of {kind})"
                    )
                    entries.pop()
                    continue
                batch.append(
                    Rows(features, checked.stamps, np.arange(len(features)), *(spans or ()))
                )
                report.videos += 1
                report.frames += len(features)
                if len(batch) >= 256:
                    cache.write_batch(entries, batch)
                    entries, batch = [], []
            cache.write_batch(entries, batch)
    return report
