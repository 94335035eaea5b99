"""What the CLI shows: the progress bar, the end-of-run summary, the cache summary."""

from __future__ import annotations

import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from vidcache.features.cache import CacheReader
from vidcache.features.errors import SettingsMismatch
from vidcache.pipeline.extract import (
    CACHED,
    EXTRACTED,
    FAILED,
    ExtractSummary,
    Reporter,
    VideoOutcome,
)


class ProgressReporter(Reporter):
    """A tqdm bar over videos with frames/s, on stderr; it redraws only on a terminal.

    Without a terminal (a batch job writing a log) a plain progress line is printed every
    ``log_every`` seconds instead. Failed videos are printed as one
    ``skipped PATH: reason`` line each, always.

    Args:
        quiet: no bar and no progress lines (problems are still printed). Defaults to False.
        stream: where to write. Defaults to ``sys.stderr``.
        log_every: seconds between progress lines when there is no terminal. Defaults to 30.
    """

    def __init__(self, quiet: bool = False, stream=None, log_every: float = 30.0) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.log_every = log_every
        self._bar = None
        self._frames = 0
        self._videos = 0
        self._total = 0
        self._started = self._logged = 0.0

    def begin(self, total_videos: int) -> None:
        self._total = total_videos
        self._started = self._logged = time.monotonic()
        if not self.quiet:
            self._bar = tqdm(
                total=total_videos,
                unit="video",
                file=self.stream,
                dynamic_ncols=True,
                disable=None,  # None: only on a TTY
            )

    def video(self, outcome: VideoOutcome) -> None:
        if outcome.status == FAILED:
            self.note(f"skipped {outcome.path}: {outcome.reason}")
        self._videos += 1
        if self._bar is not None:
            self._bar.update(1)
        self._maybe_log()

    def frames(self, count: int) -> None:
        self._frames += count
        if self._bar is not None and not self._bar.disable:
            self._bar.set_postfix_str(
                f"{self._frames} frames, {self._rate():.1f} frames/s", refresh=False
            )
        self._maybe_log()

    def _rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return self._frames / elapsed if elapsed > 0 else 0.0

    def _maybe_log(self) -> None:
        if self.quiet or self._bar is None or not self._bar.disable:
            return
        now = time.monotonic()
        if now - self._logged >= self.log_every:
            self._logged = now
            self.note(
                f"progress: {self._videos}/{self._total} videos, {self._frames} frames, "
                f"{self._rate():.1f} frames/s"
            )

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def format_summary(summary: ExtractSummary, output: Path) -> str:
    """The end-of-run summary: counts, frames and throughput, and each failure."""
    lines = []
    if summary.interrupted:
        lines.append(
            "Interrupted: every video finished before the stop is kept; "
            "run the same command again to finish."
        )
    if summary.stopped_early:
        lines.append("Stopped at the first failure (--strict).")
    counts = (
        f"{summary.count(EXTRACTED)} extracted, {summary.count(CACHED)} already cached, "
        f"{summary.count(FAILED)} failed"
    )
    if summary.pruned:
        counts += f", {summary.pruned} pruned"
    lines.append(f"{output}: {counts}")
    if summary.frames:
        lines.append(
            f"{summary.frames} frames in {summary.seconds:.1f} s "
            f"({summary.frames_per_second:.1f} frames/s; "
            f"model built in {summary.model_seconds:.1f} s)"
        )
    for failure in summary.failures:
        lines.append(f"  failed: {failure.path}: {failure.reason}")
    return "\n".join(lines)


def cache_summary(path: Path | list[Path]) -> dict:
    """A JSON-ready summary of a cache: settings, provenance, videos and frames per label.

    Several caches (the shards of one dataset) are summed into one summary, with their
    paths under ``caches``.

    Raises:
        SettingsMismatch: the caches were made with other settings.
    """
    if isinstance(path, (list, tuple)):
        return _combined_summary([Path(p) for p in path])
    with CacheReader(path) as reader:
        entries = reader.entries()
        labels: dict[str, dict[str, int]] = defaultdict(lambda: {"videos": 0, "frames": 0})
        duration = 0.0
        for entry in entries.values():
            row = labels[entry.label or ""]
            row["videos"] += 1
            row["frames"] += entry.num_frames
            if not math.isnan(entry.duration):
                duration += entry.duration
        return {
            "path": str(path),
            "schema_version": reader.schema_version,
            "storage": reader.stats(),
            "settings": reader.settings.to_dict(),
            "settings_sha256": reader.settings.digest(),
            "versions": reader.versions,
            "created": reader.created,
            "updated": reader.updated,
            "videos": len(entries),
            "frames": sum(e.num_frames for e in entries.values()),
            "source_seconds": round(duration, 3),
            "labels": dict(sorted(labels.items())),
        }


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
        path=f"{len(paths)} caches in {os.path.commonpath([str(p.parent) for p in paths])}",
        caches=[str(p) for p in paths],
        schema_version=min(p["schema_version"] for p in parts),
        storage={k: sum(p["storage"][k] for p in parts) for k in parts[0]["storage"]},
        created=min(p["created"] for p in parts),
        updated=max(p["updated"] for p in parts),
        videos=sum(p["videos"] for p in parts),
        frames=sum(p["frames"] for p in parts),
        source_seconds=round(sum(p["source_seconds"] for p in parts), 3),
        labels=dict(sorted(labels.items())),
    )
    return total


def format_cache_summary(summary: dict) -> str:
    """The human-readable form of :func:`cache_summary`."""
    s = summary["settings"]
    sampling = s["sampling"]
    if sampling["num_frames"]:
        sampled = f"{sampling['num_frames']} frames evenly spaced"
    else:
        sampled = "every frame" if sampling["fps"] is None else f"up to {sampling['fps']:g} fps"
        if sampling["max_frames"]:
            sampled += f", at most {sampling['max_frames']} frames"
    versions = summary["versions"]
    lines = [
        f"{summary['path']}: vidcache feature cache, schema {summary['schema_version']}",
        f"  videos: {summary['videos']} in {len(summary['labels'])} label(s), "
        f"frames: {summary['frames']}, source video: {summary['source_seconds']:.1f} s",
        f"  backbone: {s['backbone']} ({s['pooling']}-pooled, {s['feature_dim']}-d), "
        f"weights {s['weights']} (sha256 {s['weights_sha256'][:12]})",
        f"  frames: {s['image_size']}x{s['image_size']} {s['resize']}, {sampled}; "
        f"compute {s['precision']}, stored {s['dtype']}",
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
    if summary["schema_version"] == 1:
        lines.append(
            f"  schema 1 (vidcache 0.1): upgrade with 'vidcache migrate {summary['path']}'"
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
