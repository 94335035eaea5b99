"""Shared fixtures: tiny lossless videos made on the fly, and one small random-init CNN.

Every video is written by the test that needs it; the one exception is
``tests/data/release-0.2.0/`` (two 3 KB clips and the cache 0.2.0 made of them), kept to prove
that later code reproduces a released cache. The CNN is
InceptionV3 at 75x75 (its smallest input) with seeded random weights, built once per session.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

SMALL = 75  # the smallest input InceptionV3 accepts
SMALL_BATCH = 4


def lossless(path: Path, frames, fps: int = 10) -> Path:
    """Write frames losslessly (H.264 RGB, crf 0), so decoded frames equal the input."""
    from vidcache.features.synthetic import write_video

    return write_video(path, frames, fps, "libx264rgb", "rgb24", {"crf": "0"})


def solid_frames(colours, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """One frame per RGB colour, filled with it."""
    frames = []
    for colour in colours:
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = colour
        frames.append(frame)
    return frames


def random_frames(count: int, seed: int = 0, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Frames of smooth random content (blocky noise, which survives scaling)."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        frames.append(np.kron(small, np.ones((8, 8, 1), np.uint8)))
    return frames


@pytest.fixture(scope="session")
def extractor():
    """InceptionV3 at 75x75, random weights (seed 0), batch of 4: shared by the suite."""
    from vidcache.features.backbone import FeatureExtractor, WeightsSpec

    return FeatureExtractor(SMALL, WeightsSpec("random", seed=0), "float32", SMALL_BATCH)


@pytest.fixture
def small_config():
    """An ExtractConfig matching the shared extractor."""
    from vidcache.features.backbone import WeightsSpec
    from vidcache.pipeline.extraction.local import ExtractConfig

    def make(**changes):
        values = dict(
            weights=WeightsSpec("random", seed=0),
            image_size=SMALL,
            batch_size=SMALL_BATCH,
        )
        values.update(changes)
        return ExtractConfig(**values)

    return make


@pytest.fixture
def run_extract(extractor):
    """``extract_features`` with the shared CNN (no model build per test)."""
    from vidcache.features.video.discover import discover
    from vidcache.pipeline.extraction.local import extract_features

    def run(inputs, output, config, **kwargs):
        sources = discover([p if "://" in str(p) else Path(p) for p in inputs])
        return extract_features(
            sources, output, config, extractor_factory=lambda c: extractor, **kwargs
        )

    return run


@pytest.fixture
def dataset(tmp_path):
    """``videos/<label>/<clip>.mkv``: 2 labels x 2 clips of 6 frames at 10 fps, lossless."""
    root = tmp_path / "videos"
    for label_index, label in enumerate(("left", "right")):
        for clip in range(2):
            lossless(
                root / label / f"{label}_c{clip}.mkv",
                random_frames(6, seed=10 * label_index + clip),
            )
    return root


def finish(process, timeout: float = 300) -> str:
    """Wait for a subprocess started in its own session; kill its whole group (Ray, TF
    workers) if it runs past ``timeout``. Its output."""
    import os
    import signal

    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return output


def fill(disk: Path) -> None:
    """Fill the file system of ``disk`` (a folder) to its last byte: ``disk/filler``."""
    with open(disk / "filler", "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs (we are root), unmounted afterwards: a disk that fills for real."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
