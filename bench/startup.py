"""How fast read-only commands start: ``vidcache --help``, ``--version`` and ``inspect`` of
caches of 1,000 and 100,000 videos, as whole commands (a fresh interpreter each time).

python bench/startup.py [--rounds 5] [--dir DIR]

Caches are built through the real writer (batched commits, no CNN). Prints the median of
each, and the import time of the CLI module alone.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from integrity import build  # noqa: E402


def whole(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vidcache", *args], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vidcache-startup-", dir=args.dir))
    try:
        caches = {}
        for size in (1_000, 100_000):
            caches[size] = root / f"c{size}.h5"
            build(caches[size], size, 2)
        cases = {
            "vidcache --help": ["--help"],
            "vidcache --version": ["--version"],
            "vidcache inspect (1,000 videos)": ["inspect", str(caches[1_000])],
            "vidcache inspect (100,000 videos)": ["inspect", str(caches[100_000])],
            "python -c 'import sys' (the interpreter alone)": None,
        }
        times = {name: [] for name in cases}
        for _ in range(args.rounds):  # alternate the cases: noise hits them alike
            for name, case in cases.items():
                if case is None:
                    started = time.perf_counter()
                    subprocess.run([sys.executable, "-c", "import sys"], check=True)
                    times[name].append(time.perf_counter() - started)
                else:
                    times[name].append(whole(case))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nStart-up, whole commands ({args.rounds} rounds, medians)\n")
    print("| command | seconds |")
    print("|---|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} |")


if __name__ == "__main__":
    main()
