"""The wheel installs one top-level package, ``vidcache``, and works outside the repository."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_api_is_lazy_and_complete():
    import vidcache

    assert {"CacheReader", "extract_features", "load_run", "discover"} <= set(dir(vidcache))
    from vidcache.features.cache import CacheReader

    assert vidcache.CacheReader is CacheReader
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        vidcache.nothing  # noqa: B018


@pytest.mark.slow
def test_the_wheel_holds_only_vidcache_and_imports_from_a_plain_install(tmp_path):
    wheels = tmp_path / "wheels"
    # Built from a copy without build outputs: an in-tree build copies a stale build/lib
    # into the wheel, which hid a package missing from setup.cfg.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        "build", "dist", ".venv", ".git", ".tox", "*.egg-info", "__pycache__", "demo", "runs",
    ))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("vidcache-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"vidcache", wheel.name.split("-py")[0] + ".dist-info"}, top
    for package in ("pipeline", "features", "models"):
        assert f"vidcache/{package}/__init__.py" in names
    assert "vidcache/features/cache/__init__.py" in names
    assert "vidcache/pipeline/training/tasks/classify.py" in names
    # Every sub-package of the source tree is in it (setup.cfg lists them one by one).
    for package in ("pipeline", "features", "models"):
        for init in (ROOT / package).rglob("__init__.py"):
            if "build" not in init.relative_to(ROOT).parts:
                assert f"vidcache/{init.relative_to(ROOT).as_posix()}" in names, init

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    code = (
        "import vidcache, vidcache.pipeline.cli, vidcache.features.cache;"
        "print(vidcache.__file__); print(vidcache.features.cache.__file__);"
        "from vidcache import CacheReader; print(CacheReader.__module__)"
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=outside,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(target)) and lines[1].startswith(str(target)), lines
    assert lines[2] == "vidcache.features.cache.reader"
    help_text = subprocess.run(
        [sys.executable, "-m", "vidcache", "--help"],
        cwd=outside,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "extract" in help_text and "train-rnn" in help_text
