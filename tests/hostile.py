"""What the hostile-input tests assert about every command they run: a documented exit
status with at most one ``Error:`` line, no traceback, and nothing written outside the
folder the test named (the whole temporary tree is listed before and after)."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from vidcache.pipeline.cli import cli

#: Exit statuses the README documents: done, failed (one line), usage, interrupted.
DOCUMENTED = (0, 1, 2, 130)


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and link below ``root``: ``{relative path: (size, mtime_ns)}``."""
    listing = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            stat = path.lstat()
            key = path.relative_to(root).as_posix()
            # A folder by its presence only: what changes in it shows as its entries.
            listing[key] = (0, 0) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return listing


def changed_outside(before: dict, after: dict, allowed: list[str]) -> list[str]:
    """Paths added, removed or changed that do not lie in one of ``allowed`` (relative)."""

    def free(path: str) -> bool:
        return any(path == a or path.startswith(a.rstrip("/") + "/") for a in allowed)

    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k) and not free(k))


class Cases:
    """Runs commands in-process and counts what they did."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.counts = {"ok": 0, "refused": 0}

    def run(self, args: list[str], allowed: list[str], expect_ok: bool | None = None):
        """Run ``vidcache ARGS``; assert the rules (module doc); the result."""
        before = tree(self.root)
        result = CliRunner().invoke(cli, [str(a) for a in args])
        output = result.output
        assert result.exit_code in DOCUMENTED, (args, result.exit_code, output)
        assert "Traceback" not in output, (args, output)
        if result.exception is not None:
            assert isinstance(result.exception, SystemExit), (args, repr(result.exception))
        if result.exit_code != 0:
            errors = [line for line in output.splitlines() if line.startswith("Error:")]
            assert len(errors) <= 1, (args, output)
        if expect_ok is not None:
            assert (result.exit_code == 0) == expect_ok, (args, output)
        outside = changed_outside(before, tree(self.root), allowed)
        assert not outside, (args, outside)
        self.counts["ok" if result.exit_code == 0 else "refused"] += 1
        return result
