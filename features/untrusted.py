"""Data from files, written out safely: file names made from ids, labels and backbone names
stay inside the folder the user named, and text cells of the CSVs vidcache writes are never
run as spreadsheet formulas.

Ids come from file paths, CSVs and other people's caches; they are data, never paths to
write to. The rule for a file name made from one (:func:`safe_relative`):

- it is split into folders at ``/`` and ``\\``; empty, ``.`` and ``..`` parts are dropped,
  so an absolute id or one that climbs (``../../victim/keep.mp4``) lands below the folder;
- in each part, every character other than letters, digits, ``-``, ``_``, ``.``, ``+``,
  ``=``, ``@``, ``,`` and space becomes ``_`` (control characters, NUL, ``:``, quotes...);
  a part that starts with ``.`` gets a leading ``_`` (no hidden files, no ``..``);
  parts are cut to 120 characters;
- two ids that come out the same (or differ only by case, for case-insensitive disks) are
  told apart by ``~2``, ``~3``... (:class:`UniqueNames`), and the manifest beside the files
  maps each file back to its id.

Every path is then checked to lie inside the folder after symlinks are resolved
(:func:`inside`), so a link planted in an output folder cannot redirect a write either.

CSV cells (:func:`csv_text`): a text cell that a spreadsheet would run as a formula (one
starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is written with a
leading ``'``, which spreadsheets show as text (OWASP's advice for CSV injection). So is a
cell that already starts with ``'``, so that :func:`csv_untext` gives back exactly the text
that was written. Numbers are written as numbers, untouched.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path, PurePosixPath

from vidcache.features.errors import VidcacheError

_UNSAFE = re.compile(r"[^\w\-.+=@, ]", re.ASCII)
_PART_LENGTH = 120
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


class UnsafePath(VidcacheError):
    """A path to be written lies outside the folder the user named."""


def safe_part(text: str) -> str:
    """One file-name part made from ``text`` (module doc); never empty, never hidden."""
    part = _UNSAFE.sub("_", text)[:_PART_LENGTH].strip(" ")
    if not part:
        return "_"
    return "_" + part if part.startswith(".") else part


def safe_relative(text: str) -> PurePosixPath:
    """A relative path with safe parts, made from an id that may hold folders (module doc)."""
    parts = [p for p in re.split(r"[/\\]+", text) if p not in ("", ".", "..")]
    return PurePosixPath(*[safe_part(p) for p in parts]) if parts else PurePosixPath("_")


class UniqueNames:
    """Hands out names no other id of the same run got (case-insensitively): ``a``, then
    ``a~2``, ``a~3``..."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def claim(self, name: PurePosixPath) -> PurePosixPath:
        candidate, n = name, 1
        while candidate.as_posix().casefold() in self._taken:
            n += 1
            candidate = name.with_name(f"{name.name}~{n}")
        self._taken.add(candidate.as_posix().casefold())
        return candidate


def inside(folder: Path, relative: PurePosixPath | str) -> Path:
    """``folder / relative``, checked to lie inside ``folder`` once symlinks are resolved.

    Raises:
        UnsafePath: it does not (a ``..`` or an absolute part, or a planted link).
    """
    root = Path(os.path.realpath(folder))
    target = Path(os.path.realpath(Path(folder) / relative))
    if target != root and root not in target.parents:
        raise UnsafePath(f"{Path(folder) / relative}: outside {folder}; nothing written there")
    return Path(folder) / relative


def plain_text(text: str) -> str:
    """``text`` with control characters (NUL, escape sequences...) turned into spaces: a
    caption or label read from a file is words, never terminal or C-string control."""
    if text.isprintable():
        return text
    return "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)


def csv_text(text: str) -> str:
    """``text`` as a CSV text cell that no spreadsheet runs as a formula (module doc)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_untext(cell: str) -> str:
    """The text :func:`csv_text` was given."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_FORMULA_START) else cell
