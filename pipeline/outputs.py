"""Output folders checked before any work: one clear line instead of a traceback later."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vidcache.features.errors import VidcacheError


class OutputError(VidcacheError):
    """A run or cache folder cannot be created or written."""


def prepare_output_dir(path: Path, what: str = "run folder") -> Path:
    """Create ``path`` (and its parents) and make sure files can be written in it.

    Args:
        path: the folder.
        what: how messages name it. Defaults to ``"run folder"``.

    Raises:
        OutputError: a file stands there, it cannot be created, or it is not writable
            (a read-only or virtual file system, no permission).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: cannot write the {what} there (a file of that name exists)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # the only test that holds for root too
            pass
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot {'write in' if path.is_dir() else 'create'} the {what} "
            f"({exc.strerror or exc})"
        ) from None
    return path


@contextmanager
def output_dir(path: Path, what: str = "run folder") -> Iterator[Path]:
    """:func:`prepare_output_dir`, and the folder removed again when the work inside fails
    or is stopped (an error, Ctrl-C, SIGTERM) before it wrote anything in it: a run that
    did nothing leaves nothing behind. A folder that existed before is never removed."""
    path = Path(path)
    existed = path.exists()
    prepare_output_dir(path, what)
    try:
        yield path
    except BaseException:
        if not existed:
            _remove_if_empty(path)
        raise


def _remove_if_empty(path: Path) -> None:
    """Remove ``path`` when it holds nothing but empty folders."""
    for folder, dirs, files in os.walk(path, topdown=False):
        if files:
            return
        try:
            os.rmdir(folder)
        except OSError:
            return
