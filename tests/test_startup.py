"""Read-only commands start instantly: ``--help``, ``--version``, ``inspect`` and ``verify``
import neither TensorFlow nor PyAV nor anything else they do not use (checked in a fresh
interpreter; the time itself is measured by ``bench/startup.py``, not here)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vidcache.features.cache import CacheEntry, FeatureCache
from vidcache.features.settings import FeatureSettings

HEAVY = ("tensorflow", "keras", "av", "matplotlib", "PIL", "tqdm", "ray", "scipy")
PROBE = """
import json, sys
from vidcache.pipeline.cli import {command}
try:
    {command}.main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


def loaded(args: list[str], command: str = "cli") -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(command=command), *args],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.fixture
def cache(tmp_path):
    settings = FeatureSettings(weights="random:seed=0", weights_sha256="ab" * 32, feature_dim=8)
    path = tmp_path / "c.h5"
    with FeatureCache.open(path, settings, {}) as writer:
        entry = CacheEntry("a.mp4", "/a.mp4", "x", "file", 1, 1.0, "sha256:1", 2, 25.0)
        writer.write_rows(entry, np.ones((2, 8)), [0.0, 0.2], [0, 5])
    return path


def test_help_and_version_import_nothing_heavy():
    for args in (["--help"], ["--version"], ["inspect", "--help"], ["train-rnn", "--help"]):
        found = loaded(args)
        assert not found & {*HEAVY, "h5py", "numpy"}, (args, found & {*HEAVY, "h5py", "numpy"})
    for command in ("extract_features_command", "train_rnn_script"):
        assert not loaded(["--help"], command) & {*HEAVY, "h5py", "numpy"}


def test_inspect_and_verify_import_neither_tensorflow_nor_pyav(cache):
    for args in (
        ["inspect", str(cache)],
        ["inspect", str(cache), "--json"],
        ["verify", str(cache)],
    ):
        found = loaded(args)
        assert "h5py" in found  # the probe really ran the command
        assert not found & set(HEAVY), (args, found & set(HEAVY))
