"""Checks over the cache's root attributes: the settings record and everything else
vidcache reads back from the file's root.

HDF5 checksums its own metadata (object headers, B-trees), but a variable-length string's
bytes live in the global heap, which carries none: one flipped bit in the settings JSON
(``"num_frames":4`` becoming ``5``) used to read back as other settings, silently. So:

- the settings text must hash to the ``settings_sha256`` stored beside it (every cache ever
  written stores that hash of exactly that text, so this holds for old files too);
- since 0.3 the file also stores ``attrs_sha256``, a SHA-256 over every root attribute
  vidcache reads (:data:`CHECKED`), made when the file is created (the root attributes are
  never changed afterwards); files written before carry none and are checked as far as
  the first rule and the next one go;
- the settings must agree with the rows: ``feature_dim`` and ``dtype`` (root attributes and
  settings) equal the shape and type of ``/rows/features``, whose header HDF5 checksums.

A check that fails is damage (:class:`CacheDamaged`), one line naming the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np

from vidcache.features.errors import CacheDamaged
from vidcache.features.settings import FeatureSettings

#: The root attributes covered by ``attrs_sha256``, in this order.
CHECKED = ("format", "schema_version", "settings", "settings_sha256", "versions", "created",
           "feature_dim", "dtype")  # fmt: skip
DIGEST = "attrs_sha256"


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def attrs_digest(attrs) -> str:
    """SHA-256 over the :data:`CHECKED` attributes present in ``attrs`` (name and value)."""
    pairs = [[name, _plain(attrs[name])] for name in CHECKED if name in attrs]
    return hashlib.sha256(json.dumps(pairs, sort_keys=True).encode()).hexdigest()


def stamp(handle: h5py.File) -> None:
    """Store the digest of the root attributes just written (at creation only)."""
    handle.attrs[DIGEST] = attrs_digest(handle.attrs)


def check_record(attrs: dict, path: Path) -> None:
    """Raise :class:`CacheDamaged` when the settings text or the root attributes fail
    their checks (the first two rules of the module doc)."""
    text = _plain(attrs.get("settings", ""))
    stored = _plain(attrs.get("settings_sha256"))
    if stored is not None and hashlib.sha256(str(text).encode()).hexdigest() != stored:
        raise _damaged(path, "its settings record fails its check: settings_sha256 does not match")
    digest = attrs.get(DIGEST)
    if digest is not None and _plain(digest) != attrs_digest(attrs):
        raise _damaged(path, "its root attributes fail their check (attrs_sha256)")


def check_rows(attrs: dict, handle: h5py.File, path: Path, settings: FeatureSettings) -> None:
    """Raise :class:`CacheDamaged` when the settings disagree with the rows (module doc)."""
    for name, want in (("feature_dim", settings.feature_dim), ("dtype", settings.dtype)):
        if name in attrs and _plain(attrs[name]) != want:
            found = _plain(attrs[name])
            raise _damaged(
                path, f"its {name} attribute {found!r} differs from its settings' {want!r}"
            )
    features = handle.get("rows/features")
    if isinstance(features, h5py.Dataset):
        if features.ndim != 2 or features.shape[1] != settings.feature_dim:
            raise _damaged(
                path,
                f"its rows are {features.shape[1:]} wide, its settings say {settings.feature_dim}",
            )
        if features.dtype != np.dtype(settings.dtype):
            raise _damaged(
                path, f"its rows are {features.dtype}, its settings say {settings.dtype}"
            )
    schema = attrs.get("schema_version")
    if schema is not None and int(schema) >= 2:  # schema 4 holds spans: windows and sound
        spans = settings.has_spans
        if spans != (int(schema) >= 4):
            said = ("sound" if settings.hears else "windows") if spans else "one row per frame"
            raise _damaged(path, f"its settings say {said}, but it is a schema-{int(schema)} file")


def _damaged(path: Path, what: str) -> CacheDamaged:
    return CacheDamaged(f"{path}: damaged cache ({what})")
