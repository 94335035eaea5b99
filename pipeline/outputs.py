"""Output folders checked before any work: one clear line instead of a traceback later."""

from __future__ import annotations

import errno
import os
import shutil
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
    """:func:`prepare_output_dir` for work that fills the folder, which is removed again,
    with whatever the work had put in it, when the work fails or is stopped (an error,
    Ctrl-C, SIGTERM, a full disk): a run that did not finish leaves no half run behind (no
    model without its metrics, no model file cut short by a full disk). Work that handles
    Ctrl-C itself and finishes (training keeps its best model) returns normally and keeps
    everything. A folder that existed before is never removed.

    Raises:
        OutputError: the folder cannot be made, or the work inside could not write in it
            (disk full, read-only, permission, quota): one line naming the folder.
    """
    path = Path(path)
    existed = path.exists()
    prepare_output_dir(path, what)
    try:
        yield path
    except BaseException as exc:
        if not existed:
            shutil.rmtree(path, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in _UNWRITABLE and _names_inside(exc, path):
            raise OutputError(f"{path}: cannot write the {what} ({exc.strerror or exc})") from None
        raise


#: Errors of a place that cannot take more writes: full, read-only, forbidden, over quota.
_UNWRITABLE = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT})


def _names_inside(exc: OSError, folder: Path) -> bool:
    """Whether ``exc`` is about ``folder``: it names a file in it, or no file at all (a
    write into an open file names none)."""
    if not exc.filename:
        return True
    named = Path(os.path.realpath(exc.filename))
    return Path(os.path.realpath(folder)) in (named, *named.parents)
