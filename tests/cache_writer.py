"""A writer process for the fault tests: commits small videos as fast as it can.

Usage: python cache_writer.py PATH FIRST LAST [DIM [--no-space-check]]

``--no-space-check`` disables the writer's free-space check, so a full disk reaches HDF5.

Video ``i`` has ``1 + i % 7`` rows, all equal to ``i`` (so any reader can check its
content). After each commit returns, it prints the video's id: the parent then knows that
video was committed before the kill.
"""

import sys
from pathlib import Path

import numpy as np

from vidcache.features.cache import CacheEntry, CacheLock, FeatureCache
from vidcache.features.settings import FeatureSettings


def settings(dim: int) -> FeatureSettings:
    return FeatureSettings(weights="random:seed=0", weights_sha256="ab" * 32, feature_dim=dim)


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
    with CacheLock(path), FeatureCache.open(path, settings(dim), {}) as cache:
        done = cache.entries()
        for i in range(first, last):
            entry, features, stamps, indices = video(i, dim)
            if entry.video_id in done:
                continue
            cache.write_rows(entry, features, stamps, indices)
            print(entry.video_id, flush=True)


if __name__ == "__main__":
    main()
