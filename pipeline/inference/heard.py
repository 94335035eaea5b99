"""``predict --stream`` for runs that hear: the rows of a run with audio parts (alone or
fused with frames), as the file plays. Each kept frame goes through the run's picture
backbones at once; each audio part hears the file's own audio stream as far as the row
needs (:class:`features.audio.stream.SoundStream`); a row comes out, in order, when every
part has its vector."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator

import numpy as np

from vidcache.features.audio.stream import SoundStream
from vidcache.features.video.transform import fit_frame

__all__ = ["heard_rows"]


def heard_rows(frames, extractors, location: str, frame_seconds: float) -> Iterator[tuple]:
    """``(time, features, seconds of backbone work)`` of each row, in order.

    Args:
        frames: the sampled frames ``(index, time, frame)`` as they are decoded.
        extractors: ``(part settings, extractor)`` per part of the run, in its order.
        location: the file (its audio stream is read beside the pictures).
        frame_seconds: one source frame's duration (``1 / fps``).
    """
    sounds = {
        k: SoundStream(location, part, extractor.hearing)
        for k, (part, extractor) in enumerate(extractors)
        if part.hears
    }
    rows: dict[int, list] = {}  # row number -> [time, seconds, vector per part]
    order: deque[int] = deque()
    try:
        for number, (_, timestamp, frame) in enumerate(frames):
            started = time.perf_counter()
            vectors = [
                None
                if part.hears
                else extractor(fit_frame(frame, part.image_size, part.resize)[None])[0]
                for part, extractor in extractors
            ]
            rows[number] = [timestamp, 0.0, vectors]
            order.append(number)
            for k, sound in sounds.items():
                for key, vector in sound.add(timestamp, frame_seconds, number):
                    rows[key][2][k] = vector
            rows[number][1] = time.perf_counter() - started
            yield from _finished(order, rows)
        for k, sound in sounds.items():
            for key, vector in sound.close():
                rows[key][2][k] = vector
        yield from _finished(order, rows)
    finally:
        for sound in sounds.values():
            sound.shut()


def _finished(order: deque, rows: dict) -> Iterator[tuple]:
    while order and all(v is not None for v in rows[order[0]][2]):
        timestamp, seconds, vectors = rows.pop(order.popleft())
        yield timestamp, np.concatenate(vectors), seconds
