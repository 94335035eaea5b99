"""What an extraction run reports: each video's outcome, the run's summary, and the
progress callbacks (the library never prints; :mod:`.report` draws them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CACHED", "EXTRACTED", "FAILED", "ExtractSummary", "Reporter", "VideoOutcome"]

EXTRACTED, CACHED, FAILED = "extracted", "cached", "failed"


@dataclass
class VideoOutcome:
    """What happened to one video: ``status`` is extracted, cached or failed."""

    video_id: str
    path: Path
    status: str
    frames: int = 0
    reason: str = ""


@dataclass
class ExtractSummary:
    """The result of a run."""

    outcomes: list[VideoOutcome] = field(default_factory=list)
    pruned: int = 0
    frames: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    interrupted: bool = False
    stopped_early: bool = False

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failures(self) -> list[VideoOutcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Reporter:
    """Progress callbacks; the base class ignores them (the library never prints)."""

    def begin(self, total_videos: int) -> None: ...

    def video(self, outcome: VideoOutcome) -> None: ...

    def frames(self, count: int) -> None: ...

    def ready(self, model_seconds: float) -> None:
        """The model is built (it took ``model_seconds``): the videos' work starts now."""

    def note(self, text: str) -> None: ...

    def end(self) -> None: ...
