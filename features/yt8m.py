"""``vidcache import --format yt8m``: YouTube-8M frame-level TFRecords into two caches.

The format (the dataset's download page and the starter code's ``readers.py``,
https://github.com/google/youtube-8m): each record is a ``tf.train.SequenceExample``
whose context holds ``id`` (bytes) and ``labels`` (int64 vocabulary indices), and whose
feature lists ``rgb`` and ``audio`` hold one bytes feature per second: 1,024 (InceptionV3
after PCA) and 128 (VGGish-like) unsigned 8-bit values. Values are dequantised exactly as
the starter code's ``utils.Dequantize`` does: ``q * 4 / 255 + 4 / 512 - 2``.

Rows are one per second, timestamp ``i`` seconds for row ``i``. The rgb rows go to
``OUT/rgb.h5`` and the audio rows to ``OUT/audio.h5`` (settings ``import:yt8m-rgb`` and
``import:yt8m-audio``, 1 row per second), so ``train-rnn OUT/rgb.h5 OUT/audio.h5 --fuse
--task multilabel`` trains on both. A video's labels are its indices joined by ``;`` (or
their names, given the dataset's ``vocabulary.csv``).

Every record is untrusted: one that does not parse, lacks ``id``, has a frame of the wrong
size, or holds no frame is one line (file and record number) and the rest goes on; a file
cut short keeps what came before. Video-level records (``mean_rgb``) are refused in one
line. Records are parsed with protobuf (no TensorFlow graph), read file by file and
committed in blocks, so memory stays bounded; a rerun skips videos already cached with the
same bytes, and ``--shard K/N`` takes the videos whose id falls in share K.
"""

from __future__ import annotations

import csv
import hashlib
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidcache.features.cache import CacheEntry
from vidcache.features.cache.session import CacheSession
from vidcache.features.cache.store import Rows
from vidcache.features.errors import VidcacheError
from vidcache.features.settings import IMPORTED, FeatureSettings, SamplingSpec, check_compatible
from vidcache.features.shard import shard_of

#: feature list -> width, as the dataset ships them.
PARTS = {"rgb": 1024, "audio": 128}
_BLOCK = 256  # videos per commit


class Yt8mError(VidcacheError):
    """The files cannot be imported at all (the message says why)."""


class BadRecord(VidcacheError):
    """One record cannot be used."""


def dequantize(values: np.ndarray) -> np.ndarray:
    """8-bit values to float32 as YouTube-8M's ``utils.Dequantize(x, 2, -2)``."""
    return (values.astype(np.float32) * np.float32(4.0 / 255.0)) + np.float32(4.0 / 512.0 - 2.0)


@dataclass
class Video:
    """One parsed record."""

    video_id: str
    labels: list[int]
    parts: dict[str, np.ndarray]  # "rgb" -> (T, 1024) uint8, "audio" -> (T, 128) uint8
    digest: str


@dataclass
class Yt8mReport:
    """What an import did."""

    videos: int = 0
    seconds: int = 0
    cached: int = 0
    skipped: list[str] = field(default_factory=list)


def parse_record(raw: bytes) -> Video:
    """A frame-level record's id, labels and 8-bit rows.

    Raises:
        BadRecord: not a frame-level SequenceExample, or rows of the wrong size.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.example.example_pb2 import SequenceExample

    try:
        example = SequenceExample.FromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise BadRecord(f"not a SequenceExample ({exc})") from None
    context = example.context.feature
    if "mean_rgb" in context or "mean_audio" in context:
        raise BadRecord("a video-level record (mean_rgb): import the frame-level files")
    ids = context["id"].bytes_list.value if "id" in context else []
    if len(ids) != 1 or not ids[0]:
        raise BadRecord("no 'id'")
    video_id = ids[0].decode("utf-8", "replace")
    labels = [int(v) for v in context["labels"].int64_list.value] if "labels" in context else []
    parts = {}
    for name, width in PARTS.items():
        if name not in example.feature_lists.feature_list:
            raise BadRecord(f"{video_id}: no '{name}' frames")
        rows = [f.bytes_list.value for f in example.feature_lists.feature_list[name].feature]
        if not rows:
            raise BadRecord(f"{video_id}: no '{name}' frames")
        if any(len(r) != 1 or len(r[0]) != width for r in rows):
            raise BadRecord(f"{video_id}: a '{name}' frame is not {width} bytes")
        parts[name] = np.frombuffer(b"".join(r[0] for r in rows), np.uint8).reshape(-1, width)
    if len(parts["rgb"]) != len(parts["audio"]):
        raise BadRecord(
            f"{video_id}: {len(parts['rgb'])} rgb frames but {len(parts['audio'])} audio frames"
        )
    return Video(video_id, labels, parts, "sha256:" + hashlib.sha256(raw).hexdigest())


def read_vocabulary(path: Path) -> dict[int, str]:
    """``{index: name}`` of the dataset's ``vocabulary.csv`` (columns ``Index`` and
    ``Name``)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return {int(r["Index"]): r["Name"].strip() for r in rows if r.get("Name")}
    except (OSError, KeyError, ValueError, TypeError, csv.Error) as exc:
        raise Yt8mError(f"{path}: not YouTube-8M's vocabulary.csv (Index,Name...): {exc}") from None


def records(path: Path):
    """``(number, raw bytes)`` of each record of a TFRecord file, in order.

    Raises:
        BadRecord: the file is cut short or damaged (after the good records before it).
    """
    import tensorflow as tf

    number = 0
    try:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            number += 1
            yield number, raw
    except (tf.errors.DataLossError, tf.errors.OpError) as exc:
        reason = str(exc).splitlines()[0]
        raise BadRecord(f"{path}: damaged after record {number} ({reason})") from None


def settings_for(part: str, dtype: str) -> FeatureSettings:
    """The settings of an imported YouTube-8M feature set (``rgb`` or ``audio``)."""
    name = f"yt8m-{part}"
    return FeatureSettings(
        weights=f"{IMPORTED}{name}", weights_sha256="unknown", image_size=0, resize="unknown",
        sampling=SamplingSpec(fps=1.0), dtype=dtype, backbone=name, pooling="unknown",
        feature_dim=PARTS[part], interpolation="unknown", preprocess="unknown",
        color="unknown",
    )  # fmt: skip


def import_yt8m(
    files: list[Path],
    output: Path,
    dtype: str = "float32",
    vocabulary: Path | None = None,
    shard: tuple[int, int] | None = None,
    on_file=None,
) -> Yt8mReport:
    """Import frame-level TFRecord ``files`` into ``output/rgb.h5`` and
    ``output/audio.h5`` (module doc).

    Args:
        files: the TFRecord files, read in this order.
        output: the folder of the two caches (made when missing).
        dtype: ``float32`` (exact) or ``float16`` (half the disk; within 1e-3).
        vocabulary: ``vocabulary.csv`` to record label names instead of indices.
        shard: ``(K, N)``: only the videos whose id falls in share K of N.
        on_file: called with each file's path and report after it is done (progress).

    Raises:
        Yt8mError: no file, or nothing importable in any of them.
        SettingsMismatch: a cache in ``output`` holds other features.
    """
    if not files:
        raise Yt8mError("no TFRecord files given")
    names = read_vocabulary(vocabulary) if vocabulary else {}
    output = Path(output)
    made_folder = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    paths = {part: output / f"{part}.h5" for part in PARTS}
    created = [path for path in paths.values() if not path.exists()]
    report = Yt8mReport()
    with ExitStack() as stack:
        caches = {}
        for part, path in paths.items():
            session = stack.enter_context(CacheSession(path))
            settings = settings_for(part, dtype)
            if session.exists:
                check_compatible(session.settings(), settings, cache_name=str(session.path))
            versions = {"imported_from": "youtube-8m frame-level TFRecords"}
            caches[part] = stack.enter_context(session.open(settings, versions))
        _import_files(files, caches, names, shard, report, on_file)
    if report.videos == 0:  # no empty cache, no empty folder left behind
        for path in created:
            path.unlink(missing_ok=True)
        if made_folder and not any(output.iterdir()):
            output.rmdir()
    if report.videos == 0 and report.cached == 0:
        raise Yt8mError(
            "no frame-level record could be imported"
            + "".join(f"\n  {line}" for line in report.skipped[:20])
        )
    return report


def _import_files(files, caches, names, shard, report, on_file) -> None:
    cached = {part: cache.entries() for part, cache in caches.items()}
    for path in map(Path, files):
        pending: dict[str, tuple[list, list]] = {part: ([], []) for part in PARTS}
        try:
            stat = os.stat(path)
            for number, raw in records(path):
                try:
                    video = parse_record(raw)
                except BadRecord as exc:
                    report.skipped.append(f"{path} record {number}: {exc}")
                    continue
                if shard is not None and shard_of(video.video_id, shard[1]) != shard[0]:
                    continue
                old = cached["rgb"].get(video.video_id)
                if old is not None and old.fingerprint == video.digest:
                    report.cached += 1
                    continue
                _add(video, path, stat, number, names, pending)
                report.videos += 1
                report.seconds += len(video.parts["rgb"])
                if len(pending["rgb"][0]) >= _BLOCK:
                    _commit(caches, pending)
        except (BadRecord, OSError) as exc:
            report.skipped.append(str(exc) if isinstance(exc, BadRecord) else f"{path}: {exc}")
        _commit(caches, pending)
        if on_file is not None:
            on_file(path, report)


def _add(video: Video, path: Path, stat, number: int, names: dict, pending) -> None:
    label = ";".join(names.get(i, str(i)) for i in video.labels)
    length = len(video.parts["rgb"])
    stamps = np.arange(length, dtype=np.float64)
    for part, rows in video.parts.items():
        entry = CacheEntry(
            video.video_id, f"{path.resolve()}#{number}", label, "import", stat.st_size,
            stat.st_mtime, video.digest, length, 1.0, duration=float(length), codec="yt8m",
            meta={"record": number},
        )  # fmt: skip
        pending[part][0].append(entry)
        pending[part][1].append(Rows(dequantize(rows), stamps, np.arange(length)))


def _commit(caches, pending) -> None:
    """Write the pending videos, audio first: a video is done once its rgb rows are in."""
    for part in ("audio", "rgb"):
        entries, rows = pending[part]
        if entries:
            caches[part].write_batch(entries, rows)
        pending[part] = ([], [])


def write_records(path: Path, videos: list[tuple[str, list[int], np.ndarray, np.ndarray]]):
    """Write frame-level records as the dataset ships them (tests and benchmarks):
    ``(id, labels, rgb (T, 1024) uint8, audio (T, 128) uint8)`` per video."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for video_id, labels, rgb, audio in videos:
            example = tf.train.SequenceExample()
            context = example.context.feature
            context["id"].bytes_list.value.append(video_id.encode("utf-8"))
            context["labels"].int64_list.value.extend(int(v) for v in labels)
            for name, rows in (("rgb", rgb), ("audio", audio)):
                frames = example.feature_lists.feature_list[name].feature
                for row in np.asarray(rows, np.uint8):
                    frames.add().bytes_list.value.append(row.tobytes())
            writer.write(example.SerializeToString())
    return path
