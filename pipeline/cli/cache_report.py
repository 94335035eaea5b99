"""``vidcache inspect``'s summary of a cache: read from the index columns alone, so it
imports neither TensorFlow nor PyAV and lists 100,000 videos without building an entry
for each."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path

from vidcache.features.cache import CacheReader
from vidcache.features.errors import SettingsMismatch
from vidcache.features.remote.urls import is_url
from vidcache.features.settings import SamplingSpec

__all__ = ["cache_summary", "format_cache_summary"]


def _per_label(reader: CacheReader) -> tuple[dict, float]:
    """Videos and frames per label, and the seconds of source video, of the live videos."""
    labels: dict[str, dict[str, int]] = defaultdict(lambda: {"videos": 0, "frames": 0})
    duration = 0.0
    index = reader.index
    if index is None:  # schema 1: a group per video
        rows = [(e.label, e.num_frames, e.duration) for e in reader.entries().values()]
    else:
        positions = list(index.live.values())
        text, frames = index.text["label"], index.numbers["num_frames"].tolist()
        seconds = index.numbers["duration"].tolist()
        rows = [(text[p], frames[p], seconds[p]) for p in positions]
    for label, count, seconds in rows:
        row = labels[label or ""]
        row["videos"] += 1
        row["frames"] += count
        if not math.isnan(seconds):
            duration += seconds
    return labels, duration


def cache_summary(path: Path | list[Path]) -> dict:
    """A JSON-ready summary of a cache: settings, provenance, videos and frames per label.

    Several caches (the shards of one dataset) are summed into one summary, with their
    paths under ``caches``.

    Raises:
        SettingsMismatch: the caches were made with other settings.
    """
    if isinstance(path, (list, tuple)):
        return _combined_summary([p if is_url(str(p)) else Path(p) for p in path])
    with CacheReader(path) as reader:
        labels, duration = _per_label(reader)
        return {
            "path": str(path),
            "schema_version": reader.schema_version,
            "storage": reader.stats(),
            "settings": reader.settings.to_dict(),
            "settings_sha256": reader.settings.digest(),
            "versions": reader.versions,
            "created": reader.created,
            "updated": reader.updated,
            "checked": reader.checked,
            "videos": sum(row["videos"] for row in labels.values()),
            "frames": sum(row["frames"] for row in labels.values()),
            "source_seconds": round(duration, 3),
            "labels": dict(sorted(labels.items())),
        }


def _common_folder(paths) -> str:
    """The folder (or store prefix) that holds all of ``paths``."""
    if all(is_url(str(p)) for p in paths):
        common = os.path.commonprefix([str(p).rsplit("/", 1)[0] + "/" for p in paths])
        return common[: common.rfind("/") + 1]
    return os.path.commonpath([str(Path(p).parent) for p in paths])


def _combined_summary(paths: list[Path]) -> dict:
    parts = [cache_summary(p) for p in paths]
    total = dict(parts[0])
    for part in parts[1:]:
        diffs = sorted(
            key
            for key in set(total["settings"]) | set(part["settings"])
            if total["settings"].get(key) != part["settings"].get(key)
        )
        if diffs:
            raise SettingsMismatch(
                f"{part['path']} and {parts[0]['path']} hold features made with other settings "
                f"({', '.join(diffs)} differ); they are not one dataset"
            )
    labels: dict[str, dict[str, int]] = defaultdict(lambda: {"videos": 0, "frames": 0})
    for part in parts:
        for label, row in part["labels"].items():
            labels[label]["videos"] += row["videos"]
            labels[label]["frames"] += row["frames"]
    total.update(
        path=f"{len(paths)} caches in {_common_folder(paths)}",
        caches=[str(p) for p in paths],
        schema_version=min(p["schema_version"] for p in parts),
        checked=all(p["checked"] for p in parts),
        storage={k: sum(p["storage"][k] for p in parts) for k in parts[0]["storage"]},
        created=min(p["created"] for p in parts),
        updated=max(p["updated"] for p in parts),
        videos=sum(p["videos"] for p in parts),
        frames=sum(p["frames"] for p in parts),
        source_seconds=round(sum(p["source_seconds"] for p in parts), 3),
        labels=dict(sorted(labels.items())),
    )
    return total


def _input_line(s: dict, sampled: str) -> str:
    """What the backbone took: frames of a size, or sound at a rate over a span."""
    stored = f"compute {s['precision']}, stored {s['dtype']}"
    if s.get("sample_rate"):
        hears = (
            f"each row hears {s['audio_span']:g} s centred on its frame"
            if s.get("audio_span")
            else "each row hears its window"
        )
        return f"  sound: {s['sample_rate']} Hz mono, rows {sampled}, {hears}; {stored}"
    return f"  frames: {s['image_size']}x{s['image_size']} {s['resize']}, {sampled}; {stored}"


def format_cache_summary(summary: dict) -> str:
    """The human-readable form of :func:`cache_summary`."""
    s = summary["settings"]
    sampling = s["sampling"]
    sampled = SamplingSpec(**sampling).describe()
    versions = summary["versions"]
    lines = [
        f"{summary['path']}: vidcache feature cache, schema {summary['schema_version']}",
        f"  videos: {summary['videos']} in {len(summary['labels'])} label(s), "
        f"frames: {summary['frames']}, source video: {summary['source_seconds']:.1f} s",
        f"  backbone: {s['backbone']} ({s['pooling']}-pooled, {s['feature_dim']}-d), "
        f"weights {s['weights']} (sha256 {s['weights_sha256'][:12]})",
        _input_line(s, sampled),
        f"  settings sha256: {summary['settings_sha256'][:16]}",
        "  made with: "
        + ", ".join(
            f"{k} {versions[k]}" for k in ("vidcache", "tensorflow", "keras") if k in versions
        ),
        f"  created {summary['created']}, updated {summary['updated']}",
    ]
    storage = summary["storage"]
    if storage["rows"] > storage["live_rows"]:
        waste = 1 - storage["live_rows"] / storage["rows"]
        lines.append(
            f"  storage: {storage['rows'] - storage['live_rows']} of {storage['rows']} rows "
            f"({waste:.0%}) belong to replaced or deleted videos; 'vidcache compact' frees them"
        )
    if summary["schema_version"] < 3:
        what = "vidcache 0.1" if summary["schema_version"] == 1 else "no index checksums"
        lines.append(
            f"  schema {summary['schema_version']} ({what}): upgrade with "
            f"'vidcache migrate {summary['path']}'"
        )
    if summary["labels"]:
        width = max(12, *(len(label or "(none)") for label in summary["labels"]))
        lines.append(f"  {'label':<{width}}  {'videos':>6}  {'frames':>7}")
        for label, row in summary["labels"].items():
            lines.append(f"  {label or '(none)':<{width}}  {row['videos']:>6}  {row['frames']:>7}")
    if s["weights"].startswith("random"):
        lines.append(
            "  NOTE: random weights: these features are not pretrained (tests/demos only)."
        )
    return "\n".join(lines)


def video_spans(paths: list[Path], video_id: str) -> dict:
    """Each row of ``video_id`` (found in the first of ``paths`` that holds it): its time,
    frame index and span.

    Raises:
        click.ClickException: no cache holds the video.
    """
    import click

    for path in paths:
        with CacheReader(path) as reader:
            if video_id not in reader:
                continue
            rows = reader.rows(video_id)
            frames, times = rows.spans()
            return {
                "cache": str(path),
                "video_id": video_id,
                "rows": [
                    {
                        "time": float(rows.timestamps[i]),
                        "frame_index": int(rows.frame_indices[i]),
                        "frames": [int(frames[i, 0]), int(frames[i, 1])],
                        "seconds": [float(times[i, 0]), float(times[i, 1])],
                    }
                    for i in range(len(rows.timestamps))
                ],
            }
    raise click.ClickException(f"no cache of {', '.join(map(str, paths))} holds {video_id!r}")


def format_spans(table: dict) -> str:
    """:func:`video_spans` as a table, a row per line."""
    lines = [f"{table['cache']}: {table['video_id']!r}, {len(table['rows'])} rows",
             f"{'row':>5} {'time s':>9} {'frame':>7}  {'frames':>13}  {'seconds':>19}"]  # fmt: skip
    for number, row in enumerate(table["rows"]):
        first, last = row["frames"]
        start, end = row["seconds"]
        lines.append(
            f"{number:>5} {row['time']:>9.3f} {row['frame_index']:>7}  "
            f"{first:>6}-{last:<6}  {start:>9.3f}-{end:<9.3f}"
        )
    return "\n".join(lines)
