"""The Ray actors of ``extract-features --engine ray``: :class:`ExtractWorker` (one model,
shard after shard through the ordinary pipeline) and :class:`ProgressBoard` (the workers'
progress, for the driver's one bar)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from vidcache.features.video.discover import VideoSource
from vidcache.pipeline.extraction.config import ExtractConfig
from vidcache.pipeline.extraction.local import default_extractor, extract_features
from vidcache.pipeline.extraction.outcomes import ExtractSummary, Reporter, VideoOutcome

__all__ = ["ExtractWorker", "ProgressBoard"]


class _BoardReporter(Reporter):
    """Forwards an actor's progress to the board, at most every ``every`` seconds."""

    def __init__(self, board, task: tuple[int, int], every: float = 0.5) -> None:
        self._board, self._task, self._every = board, task, every
        self._outcomes: list[VideoOutcome] = []
        self._frames = 0
        self._sent = time.monotonic()

    def video(self, outcome: VideoOutcome) -> None:
        self._outcomes.append(outcome)
        self._maybe_send(force=True)  # at once: the driver must learn of every commit

    def frames(self, count: int) -> None:
        self._frames += count
        self._maybe_send()

    def _maybe_send(self, force: bool = False) -> None:
        if force or time.monotonic() - self._sent >= self._every:
            if self._outcomes or self._frames:
                self._board.push.remote(self._task, self._outcomes, self._frames)
            self._outcomes, self._frames = [], 0
            self._sent = time.monotonic()

    def end(self) -> None:
        self._maybe_send(force=True)


class ProgressBoard:
    """Ray actor: collects the progress events of the workers for the driver."""

    def __init__(self) -> None:
        self._events: list = []

    def push(self, task, outcomes, frames) -> None:
        self._events.append((task, outcomes, frames))

    def drain(self) -> list:
        events, self._events = self._events, []
        return events


class ExtractWorker:
    """Ray actor: one CNN (built on first need) for shard after shard.

    Args:
        config: the run's options.
        cpus: cores reserved for it (TensorFlow's thread pools are sized to them).
        board: the :class:`ProgressBoard` actor.
    """

    def __init__(self, config: ExtractConfig, cpus: int, board) -> None:
        self.config = config
        self.cpus = cpus
        self.board = board
        self.extractor = None
        self.model_seconds = 0.0

    def pid(self) -> int:
        return os.getpid()

    def _build(self, config: ExtractConfig):
        if self.extractor is None:
            from vidcache.features.backbone import import_tensorflow

            started = time.perf_counter()
            tf = import_tensorflow()
            try:
                tf.config.threading.set_intra_op_parallelism_threads(self.cpus)
                tf.config.threading.set_inter_op_parallelism_threads(min(2, self.cpus))
            except RuntimeError:  # already initialised
                pass
            # the local engine's own: a CNN at the config's units per batch (a clip
            # backbone's windows), or an audio backbone
            self.extractor = default_extractor(config)
            self.model_seconds = time.perf_counter() - started
        return self.extractor

    def run(self, task: tuple[int, int], sources: list[VideoSource], path: str) -> ExtractSummary:
        """Extract ``sources`` into the shard cache ``path``; ``task`` is (shard, attempt)."""
        reporter = _BoardReporter(self.board, task)
        summary = extract_features(sources, Path(path), self.config, reporter, self._build)
        summary.model_seconds = self.model_seconds
        return summary
