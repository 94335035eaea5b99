"""A writer process for the fault tests: commits small videos as fast as it can.

Usage: python cache_writer.py PATH FIRST LAST [DIM [--no-space-check] [--windows]]

``--no-space-check`` disables the writer's free-space check, so a full disk reaches HDF5.
``--windows`` writes a window cache (schema 4): each row with its span (:func:`spans`).

Video ``i`` has ``1 + i % 7`` rows, all equal to ``i`` (so any reader can check its
content). After each commit returns, it prints the video's id: the parent then knows that
video was committed before the kill.
"""

import sys
from pathlib import Path

import numpy as np

from vidcache.features.cache import CacheEntry, CacheLock, FeatureCache
from vidcache.features.settings import FeatureSettings


def settings(dim: int, windows: bool = False) -> FeatureSettings:
    if windows:  # videoprism-base's windows (the dimension is the test's, not 768)
        from vidcache.features.settings import SamplingSpec

        return FeatureSettings(
            weights="random:seed=0", weights_sha256="ab" * 32, feature_dim=dim,
            backbone="videoprism-base", pooling="window", image_size=288,
            sampling=SamplingSpec(window=16, stride=4),
        )  # fmt: skip
    return FeatureSettings(weights="random:seed=0", weights_sha256="ab" * 32, feature_dim=dim)


def spans(i: int):
    """Video ``i``'s row spans in a window cache: row k covers frames 4k..4k+15."""
    rows = 1 + i % 7
    frames = np.stack([np.arange(rows) * 4, np.arange(rows) * 4 + 15], axis=1)
    return frames, frames / 25.0


def video(i: int, dim: int):
    rows = 1 + i % 7
    entry = CacheEntry(
        video_id=f"clips/{i:05d}.mp4", path=f"/data/clips/{i:05d}.mp4", label=f"c{i % 3}",
        kind="file", size=1000 + i, mtime=float(i), fingerprint=f"sha256:{i:064x}",
        num_frames=rows, fps=25.0,
    )  # fmt: skip
    features = np.full((rows, dim), i, np.float32)
    return entry, features, np.arange(rows) * 0.2, np.arange(rows) * 5


def main() -> None:
    path, first, last = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    dim = int(sys.argv[4]) if len(sys.argv) > 4 else 64
    if "--no-space-check" in sys.argv:
        from vidcache.features.cache import appender

        appender.StoreWriter._check_space = lambda self, rows: None
    windows = "--windows" in sys.argv
    with CacheLock(path), FeatureCache.open(path, settings(dim, windows), {}) as cache:
        done = cache.entries()
        for i in range(first, last):
            entry, features, stamps, indices = video(i, dim)
            if entry.video_id in done:
                continue
            cache.write_rows(entry, features, stamps, indices, spans(i) if windows else None)
            print(entry.video_id, flush=True)


if __name__ == "__main__":
    main()
