"""Decode threads that keep the CNN fed: each takes the next video, decodes and samples its
frames and packs them into the shared batch, so batches fill across video boundaries and
always hold ``batch_size`` frames (except the very last one)."""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field

import numpy as np

from vidcache.features.errors import VideoDecodeError
from vidcache.features.fingerprint import fingerprint
from vidcache.features.remote.copy import local_copy
from vidcache.features.video.decode import open_source
from vidcache.features.video.frames import sampled_frames
from vidcache.features.video.sampling import windows
from vidcache.features.video.windowrows import WindowOwner, pad_window
from vidcache.pipeline.extraction.config import ExtractConfig
from vidcache.pipeline.extraction.session import Job

__all__ = ["Batch", "Producer", "Stop", "default_decode_workers"]


def default_decode_workers() -> int:
    """One decode thread when the CNN runs on the CPU, several when it runs on a GPU.

    On the CPU the model already uses every core, so a second decoder would only take cycles
    from it; a GPU outruns one decoding core, so up to 8 decode in parallel there.
    """
    from vidcache.features.backbone import import_tensorflow

    tf = import_tensorflow()
    if tf.config.list_logical_devices("GPU"):
        return max(1, min(8, (os.cpu_count() or 2) - 1))
    return 1


@dataclass
class Batch:
    """Frames on their way to the CNN, who they belong to, and the videos they finish."""

    images: np.ndarray
    # (slot, time, index) of a frame, or (slot, WindowOwner) of a window
    owners: list[tuple] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return len(self.owners) == len(self.images)


class Stop(Exception):
    """The run is stopping: a decode thread leaves its video."""


class Producer:
    """Decode threads: each takes the next job, decodes it and packs its frames into the
    shared batch, so batches fill across video boundaries.

    One video is always decoded by one thread, so its frames enter batches in order; its
    "done" or "failed" event goes on the batch being filled after its last frame, so the
    main thread handles it only after every frame of the video went through the CNN.
    """

    def __init__(
        self, jobs: list[Job], config: ExtractConfig, out: queue.Queue, workers: int = 1
    ) -> None:
        self.config, self.out = config, out
        self.stop = threading.Event()
        size, window = config.image_size, config.sampling.window
        unit = (size, size, 3) if window is None else (window, size, size, 3)
        self._shape = (config.units_per_batch, *unit)
        self._jobs = iter(jobs)
        self._lock = threading.Lock()
        self._batch = self._new_batch()
        self._running = workers
        self._threads = [
            threading.Thread(target=self._work, name=f"vidcache-decode-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _new_batch(self) -> Batch:
        return Batch(np.empty(self._shape, np.uint8))

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise Stop

    def _add_frame(self, image: np.ndarray, owner: tuple) -> None:
        with self._lock:  # put under the lock too: batches reach the queue in fill order
            batch = self._batch
            batch.images[len(batch.owners)] = image
            batch.owners.append(owner)
            if batch.full:
                self._put(batch)
                self._batch = self._new_batch()

    def _add_event(self, event: tuple) -> None:
        with self._lock:
            self._batch.events.append(event)

    def _next_job(self) -> Job | None:
        with self._lock:
            return next(self._jobs, None)

    def _work(self) -> None:
        try:
            while not self.stop.is_set():
                job = self._next_job()
                if job is None:
                    break
                self._add_event(self._decode(job))
            with self._lock:
                self._running -= 1
                if self._running == 0 and not self.stop.is_set():  # the last one closes
                    if self._batch.owners or self._batch.events:
                        self._put(self._batch)
                    self._put(None)
        except Stop:
            pass
        except BaseException as exc:  # a bug: hand it to the main thread, never hang it
            self.stop.set()
            try:
                self.out.put(exc, timeout=5)
            except queue.Full:
                pass

    def _decode(self, job: Job) -> tuple:
        """Feed the job's frames to the batches; returns its done or failed event."""
        config = self.config
        count = 0
        try:
            content = fingerprint(job.source)
            with local_copy(job.source) as local, open_source(local, config.folder_fps) as reader:
                frames = sampled_frames(reader, config.sampling, config.image_size, config.resize)
                if config.sampling.windowed:
                    size = config.sampling.window
                    for start, group in windows(frames, size, config.sampling.stride):
                        owner = WindowOwner(start, tuple((i, t) for i, t, _ in group))
                        self._add_frame(pad_window([g[2] for g in group], size), (job.slot, owner))
                        count += 1
                else:
                    for index, time_s, image in frames:
                        self._add_frame(image, (job.slot, time_s, index))
                        count += 1
                info = reader.info
            if count == 0:
                raise VideoDecodeError("no frames were sampled")
            return ("done", job, info, content, count)
        except Stop:
            raise
        except VideoDecodeError as exc:
            return ("failed", job, str(exc))
        except OSError as exc:
            return ("failed", job, exc.strerror or str(exc))
        except Exception as exc:  # one odd file must not end the batch
            return ("failed", job, f"unexpected {type(exc).__name__}: {exc}")
