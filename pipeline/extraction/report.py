"""What the CLI shows: the progress bar, the end-of-run summary, the cache summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm import tqdm

from vidcache.pipeline.extraction.outcomes import (
    CACHED,
    EXTRACTED,
    FAILED,
    ExtractSummary,
    Reporter,
    VideoOutcome,
)


class ProgressReporter(Reporter):
    """A tqdm bar over videos with frames/s, on stderr; it redraws only on a terminal.

    Without a terminal (a batch job writing a log) a plain progress line is printed when
    the model is built, after the first ``first_log`` seconds of work, then every
    ``log_every`` seconds. Rates and the bar's ETA count from the moment the model is
    built (its build is not work per video). Failed videos are printed as one
    ``skipped PATH: reason`` line each, always.

    Args:
        quiet: no bar and no progress lines (problems are still printed). Defaults to False.
        stream: where to write. Defaults to ``sys.stderr``.
        log_every: seconds between progress lines when there is no terminal. Defaults to 30.
    """

    def __init__(
        self, quiet: bool = False, stream=None, log_every: float = 30.0, first_log: float = 5.0
    ) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.log_every = log_every
        self.first_log = min(first_log, log_every)
        self._bar = None
        self._frames = 0
        self._videos = 0
        self._total = 0
        self._started = self._logged = 0.0

    def begin(self, total_videos: int) -> None:
        self._total = total_videos
        self._started = time.monotonic()
        self._logged = self._started - self.log_every + self.first_log  # an early first line
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

    def ready(self, model_seconds: float) -> None:
        now = time.monotonic()
        self._started, self._frames = now, 0
        self._logged = now - self.log_every + self.first_log
        if self._bar is not None and not self._bar.disable:
            self._bar.unpause()  # tqdm's own clock: the build is not time per video
        elif self._bar is not None and not self.quiet:
            left = self._total - self._videos
            self.note(f"model built in {model_seconds:.1f} s; extracting {left} video(s)")

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
    """The end-of-run summary: counts, frames and throughput; failures are not repeated
    (each was reported once, as it happened)."""
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
    if summary.failures:  # each was one "skipped PATH: reason" line as it happened
        lines.append(f"  the {len(summary.failures)} failed: the 'skipped' lines above")
    return "\n".join(lines)
