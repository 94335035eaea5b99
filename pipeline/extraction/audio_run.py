"""Stage one for an audio backbone: each file's sound into rows on the frames' grid.

Data flow::

    decode thread:  fingerprint -> decode the sound (and find the kept frames, or read
                    them from ``--grid CACHE``) of the next files, up to ``AHEAD`` ahead
    main thread:    hear (log-mel, or Whisper's encoder) -> pool per row -> commit the file

One file is heard at a time (a file is a few hundred to a few thousand rows, and a
Whisper chunk is 30 s of sound: batching across files buys little). A file without
sound is one line and is skipped: a row of made-up silence would tell a model that the
video is silent, which nobody heard. Ctrl-C (or SIGTERM) stops after the current file.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from vidcache.features.audio.extractor import AudioExtractor, prepare_audio
from vidcache.features.audio.grid import GridCache
from vidcache.features.cache import FeatureCache
from vidcache.features.cache.buffer import FeatureBuffer
from vidcache.features.errors import VideoDecodeError
from vidcache.features.fingerprint import fingerprint
from vidcache.features.remote.copy import local_copy
from vidcache.features.settings import FeatureSettings
from vidcache.pipeline.extraction.commit import Interrupts, commit, spill_full
from vidcache.pipeline.extraction.config import ExtractConfig
from vidcache.pipeline.extraction.outcomes import FAILED, ExtractSummary, Reporter
from vidcache.pipeline.extraction.session import Job

__all__ = ["AHEAD", "run_audio"]

#: Files decoded ahead of the one being heard.
AHEAD = 2


def _prepare(job: Job, settings: FeatureSettings, grid: GridCache | None):
    content = fingerprint(job.source)
    kept = grid.lookup(job.source.video_id, content) if grid is not None else None
    with local_copy(job.source) as local:
        return content, prepare_audio(local, settings, kept)


def _hear(job: Job, future, extractor: AudioExtractor, settings, config, reporter, cache_path):
    """The file's commit event and its rows' buffer (``None`` when it failed)."""
    try:
        content, prepared = future.result()
        rows = extractor.rows(prepared, settings)
    except VideoDecodeError as exc:
        return ("failed", job, str(exc)), None
    except OSError as exc:
        return ("failed", job, exc.strerror or str(exc)), None
    except Exception as exc:  # one odd file must not end the batch
        return ("failed", job, f"unexpected {type(exc).__name__}: {exc}"), None
    buffer = FeatureBuffer(extractor.feature_dim, config.spill_rows)
    try:
        for place, vector in enumerate(rows.features):
            buffer.append(vector, rows.times[place], rows.indices[place], rows.spans[place])
    except OSError as exc:
        with contextlib.suppress(OSError):  # closing flushes to the same full disk
            buffer.close()
        full = spill_full(exc, cache_path)
        if full is None:
            raise
        raise full from None
    if rows.note:
        reporter.note(f"{job.source.video_id}: {rows.note}")
    return ("done", job, rows.info, content, len(rows.features)), buffer


def run_audio(
    jobs: list[Job],
    config: ExtractConfig,
    extractor: AudioExtractor,
    cache: FeatureCache,
    summary: ExtractSummary,
    reporter: Reporter,
    settings: FeatureSettings,
) -> None:
    """Hear every job's file and commit its rows (the module's data flow)."""
    started = time.perf_counter()
    grid = GridCache(config.grid, settings) if config.grid is not None else None
    pending = iter(jobs)
    ahead: deque = deque()
    pool = ThreadPoolExecutor(1, thread_name_prefix="vidcache-audio-decode")

    def submit() -> None:
        job = next(pending, None)
        if job is not None:
            ahead.append((job, pool.submit(_prepare, job, settings, grid)))

    try:
        with Interrupts() as interrupts:
            for _ in range(AHEAD):
                submit()
            while ahead:
                if interrupts.flag:
                    summary.interrupted = True
                    break
                job, future = ahead.popleft()
                submit()
                event, buffer = _hear(
                    job, future, extractor, settings, config, reporter, cache.path
                )
                outcome = commit(event, buffer, cache, config.dtype)
                summary.frames += outcome.frames
                reporter.frames(outcome.frames)
                summary.outcomes.append(outcome)
                reporter.video(outcome)
                if outcome.status == FAILED and config.strict:
                    summary.stopped_early = True
                    break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        summary.seconds = time.perf_counter() - started
        if grid is not None:
            grid.close()
            reporter.note(
                f"{grid.used} of {len(jobs)} file(s) took their kept frames from {grid.path} "
                "(the others were decoded)"
            )
