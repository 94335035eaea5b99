"""The integrity findings of issue 19, re-run: one row per finding, what each command did.

python bench/faults.py [--videos 200] [--dir DIR]

Runs against whatever ``vidcache`` is importable, so the same script measures two versions
(put an older checkout first on PYTHONPATH to see "before"). Each finding builds a cache
of N videos through that version's own writer (no CNN), damages it or its place the way
the finding says, runs the commands in subprocesses (30 s limit each) and prints a table:
exit code and the first line of the answer (a traceback shows as ``Traceback: <error>``),
and for silent findings what the cache then says.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import h5py

BUILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from pathlib import Path
    from vidcache.features.cache import CacheEntry, CacheLock, FeatureCache
    from vidcache.features.settings import FeatureSettings
    s = FeatureSettings(weights="random:seed=0", weights_sha256="ab" * 32, feature_dim=64)
    path, count = Path(sys.argv[1]), int(sys.argv[2])
    with CacheLock(path), FeatureCache.open(path, s, {}) as cache:
        for i in range(count):
            e = CacheEntry(f"clips/{i:05d}.mp4", f"/data/clips/{i:05d}.mp4", f"c{i % 3}", "file",
                           1000 + i, float(i), f"sha256:{i:064x}", 3, 25.0, meta={"k": "v"})
            cache.write_rows(e, np.full((3, 64), i, np.float32), np.arange(3) / 5, np.arange(3))
    """
)
HOLD = textwrap.dedent(
    """
    import sys, time
    from vidcache.features.cache import CacheLock, FeatureCache
    from vidcache.features.cache import read_settings
    with CacheLock(sys.argv[1]), FeatureCache.open(sys.argv[1], read_settings(sys.argv[1]), {}):
        print("writing", flush=True)
        time.sleep(60)
    """
)
# What extract-features and predict --cache do once the settings agree: open the writer.
WRITE_OPEN = textwrap.dedent(
    """
    import sys
    from vidcache.features.cache import CacheLock, FeatureCache, read_settings
    from vidcache.features.errors import VidcacheError
    try:
        with CacheLock(sys.argv[1]), FeatureCache.open(sys.argv[1], read_settings(sys.argv[1]), {}):
            print("opened")
    except VidcacheError as exc:
        print(f"Error: {exc}")
        sys.exit(1)
    """
)
SUMMARY = textwrap.dedent(
    """
    import sys, json
    from vidcache.features.cache import CacheReader
    try:
        with CacheReader(sys.argv[1]) as r:
            e = r.entries()
            print(json.dumps({"videos": len(e), "labels": sorted({x.label for x in e.values()}),
                              "ids": sum(1 for v in e if not v.startswith("clips/0"))}))
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__}))
    """
)


def run(args: list, timeout: float = 30, env: dict | None = None) -> str:
    """``exit N: first line`` of a vidcache command (``hang`` past the limit)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "vidcache", *map(str, args)],
            capture_output=True, text=True, timeout=timeout, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"hang (> {timeout:g} s)"
    if done.returncode < 0:
        return f"killed by signal {-done.returncode}"
    if "Traceback" in done.stderr:
        last = done.stderr.strip().splitlines()[-1]
        return f"exit {done.returncode}: Traceback: {last[:90]}"
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    error = [line for line in lines if line.startswith("Error")]
    shown = (error or lines or [""])[0]
    return f"exit {done.returncode}: {shown[:110]}"


def script(code: str, path: Path, timeout: float = 30) -> str:
    """``exit N: first line`` of a Python snippet run on ``path``."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"hang (> {timeout:g} s)"
    if "Traceback" in done.stderr:
        return f"exit {done.returncode}: Traceback: {done.stderr.strip().splitlines()[-1][:90]}"
    return f"exit {done.returncode}: {(done.stdout.strip().splitlines() or [''])[0][:110]}"


def summary(path: Path) -> str:
    out = subprocess.run([sys.executable, "-c", SUMMARY, str(path)], capture_output=True, text=True)
    try:
        found = json.loads(out.stdout)
    except ValueError:
        return "?"
    if "error" in found:
        return f"refused ({found['error']})"
    return f"{found['videos']} videos, labels {','.join(found['labels'])}, odd ids {found['ids']}"


def build(path: Path, count: int) -> None:
    subprocess.run([sys.executable, "-c", BUILD, str(path), str(count)], check=True)


def flip(path: Path, dataset: str, element: int, byte: int = 0) -> None:
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        offset = ds.id.get_offset()
        if offset is None:
            offset = ds.id.get_chunk_info(0).byte_offset
        item = ds.dtype.itemsize
    raw = bytearray(path.read_bytes())
    raw[offset + element * item + byte] ^= 0x01
    path.write_bytes(bytes(raw))


def header_flip(path: Path, dataset: str) -> None:
    with h5py.File(path, "r") as f:
        address = h5py.h5o.get_info(f[dataset].id).addr
    raw = bytearray(path.read_bytes())
    raw[address + 30] ^= 0x5A
    path.write_bytes(bytes(raw))


def text_byte(path: Path, column: str, record: int) -> int:
    with h5py.File(path, "r") as f:
        return int(f[f"index/{column}/offsets"][record])


def mount(kind: str, where: Path, source: Path | None = None) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if kind == "tmpfs":
        args = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)]
    else:
        args = ["mount", "--bind", "-o", "ro", str(source), str(where)]
    return subprocess.run(args, capture_output=True).returncode == 0


def fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass


def findings(root: Path, count: int) -> list[tuple[str, str, str]]:
    rows = []
    good = root / "good.h5"
    build(good, count)

    def copy(name: str) -> Path:
        path = root / name
        shutil.copyfile(good, path)
        return path

    path = copy("commit.h5")
    with h5py.File(path, "r+") as f:
        f["commit"][0] = 39
    rows.append(("commit count 200 -> 39", "verify", run(["verify", path])))
    rows.append(("", "compact", run(["compact", path])))
    rows.append(("", "then the cache holds", summary(path)))

    path = copy("deleted.h5")
    flip(path, "index/deleted", 17)
    rows.append(("index/deleted flipped", "verify", run(["verify", path])))
    rows.append(("", "the cache holds", summary(path)))

    path = copy("label.h5")
    flip(path, "index/label/bytes", text_byte(path, "label", 5) + 1)
    rows.append(("one byte of index/label/bytes", "inspect", run(["inspect", path])))
    rows.append(("", "the cache holds", summary(path)))

    path = copy("id.h5")
    flip(path, "index/video_id/bytes", text_byte(path, "video_id", 5) + 7)
    rows.append(("one byte of index/video_id/bytes", "verify", run(["verify", path])))
    rows.append(("", "the cache holds", summary(path)))

    path = copy("meta.h5")
    flip(path, "index/meta/bytes", text_byte(path, "meta", 3) + 1)
    rows.append(("one byte of index/meta/bytes", "inspect", run(["inspect", path])))

    for size in (8, 9):
        path = root / f"cut{size}.h5"
        path.write_bytes(good.read_bytes()[:size])
        rows.append((f"file cut to {size} bytes", "inspect", run(["inspect", path])))

    path = copy("header.h5")
    header_flip(path, "rows/timestamps")
    rows.append(("object header of rows/timestamps", "verify", run(["verify", path])))
    rows.append(("", "compact", run(["compact", path])))
    rows.append(("", "writer open (as extract)", script(WRITE_OPEN, path)))

    # two writers through a symlink
    target = copy("c.h5")
    link = root / "link.h5"
    link.symlink_to(target)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True
    )
    holder.stdout.readline()
    rows.append(("a writer holds c.h5", "compact link.h5", run(["compact", link])))
    hard = root / "hard.h5"
    os.link(target, hard)
    rows.append(("", "compact hard link", run(["compact", hard])))
    holder.kill()
    holder.communicate()

    disk = root / "disk"
    if mount("tmpfs", disk):
        try:
            shutil.copyfile(good, disk / "c.h5")
            fill(disk)
            link = root / "full-link.h5"
            link.symlink_to(disk / "c.h5")
            rows.append(("0 bytes free", "compact", run(["compact", disk / "c.h5"])))
            rows.append(("", "merge -o", run(["merge", disk / "c.h5", "-o", disk / "m.h5"])))
            rows.append(("", "compact via symlink", run(["compact", link])))
            left = sorted(p.name for p in disk.iterdir() if p.name not in ("c.h5", "filler"))
            rows.append(("", "left behind", ", ".join(left) or "nothing"))
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)

    data = root / "ro-src"
    data.mkdir()
    shutil.copyfile(good, data / "c.h5")
    ro = root / "ro"
    if mount("ro", ro, data):
        try:
            rows.append(("read-only mount", "compact", run(["compact", ro / "c.h5"])))
            rows.append(("", "migrate", run(["migrate", ro / "c.h5"])))
        finally:
            subprocess.run(["umount", "-l", str(ro)], check=False)

    real = copy("real.h5")
    link = root / "alias.h5"
    link.symlink_to(real)
    run(["compact", link])
    rows.append(
        (
            "compact through a symlink",
            "afterwards",
            "link kept" if link.is_symlink() else "link replaced by a file",
        )
    )

    target = copy("killed.h5")
    leftover = root / f".{target.name}.rewrite-99999"
    leftover.write_bytes(b"\0" * 1_000_000)
    run(["compact", target])
    rows.append(
        (
            "a killed compact's temp file",
            "next compact",
            "removed" if not leftover.exists() else "still there",
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vidcache-faults-", dir=args.dir))
    started = time.perf_counter()
    try:
        rows = findings(root, args.videos)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    import vidcache

    print(
        f"\nvidcache from {Path(vidcache.__file__).parent}, {time.perf_counter() - started:.0f} s\n"
    )
    print("| finding | command | result |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")


if __name__ == "__main__":
    main()
