"""Caches in a store: listed, opened for reading by range requests, or copied first.

h5py reads a Python file object, so a cache in a store can be opened where it is: each read
HDF5 makes becomes a ranged GET of a block (:data:`BLOCK_BYTES`, cached). That suits what
reads little of a file (``inspect``, planning a rerun from the shards' indexes: the
superblock, the root attributes and the index columns, a few requests whatever the size of
the rows). What reads every row (``train-rnn``, ``evaluate``) copies the file first, once:
a copy is kept under ``$VIDCACHE_REMOTE_CACHE`` (default ``~/.cache/vidcache/remote``),
named by the URL and checked against the object's version at every use, so a changed
object is copied again and an unchanged one is not. ``bench/cloud.py`` measures both ways.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
from pathlib import Path

from vidcache.features.errors import CacheFormatError
from vidcache.features.remote.objects import object_of
from vidcache.features.remote.urls import RemoteError, describe, filesystem, join, shown

__all__ = ["BLOCK_BYTES", "cache_copy", "list_caches", "open_remote"]

#: Bytes of one ranged read of a cache opened in place (HDF5's small reads share it).
BLOCK_BYTES = 1 << 20


def list_caches(url: str) -> list[str]:
    """The cache URLs ``url`` stands for: the object itself (``.h5``/``.hdf5``) or the
    ``*.h5`` objects directly under a prefix, in name order.

    Raises:
        RemoteError: it cannot be listed, or a prefix holds no cache.
    """
    fs, path = filesystem(url)
    try:
        fs.invalidate_cache()
        info = fs.info(path)
        if info.get("type") != "directory":
            return [url]
        names = sorted(
            posixpath.basename(p)
            for p in fs.ls(path, detail=False)
            if p.lower().endswith((".h5", ".hdf5"))
        )
    except Exception as exc:
        raise RemoteError(f"{shown(url)}: cannot be listed: {describe(exc)}") from None
    if not names:
        raise RemoteError(f"{shown(url)}: a prefix without .h5 caches")
    return [join(url, name) for name in names]


def open_remote(url: str):
    """``(h5py.File, file object)`` of a cache read in place by ranged reads.

    Raises:
        CacheFormatError: the object cannot be read, or is not an HDF5 file.
    """
    import h5py

    try:
        fs, path = filesystem(url)
        fs.invalidate_cache(path)  # the object as it is now, not as this process last saw it
        handle = fs.open(path, "rb", block_size=BLOCK_BYTES, cache_type="blockcache")
    except RemoteError as exc:
        raise CacheFormatError(str(exc)) from None
    except Exception as exc:
        raise CacheFormatError(f"{shown(url)}: cannot be read: {describe(exc)}") from None
    try:
        return h5py.File(handle, "r"), handle
    except Exception as exc:
        handle.close()
        raise CacheFormatError(
            f"{shown(url)} is not a readable HDF5 file ({describe(exc)})"
        ) from None


def copies_folder() -> Path:
    where = os.environ.get("VIDCACHE_REMOTE_CACHE")
    return Path(where) if where else Path.home() / ".cache" / "vidcache" / "remote"


def cache_copy(url: str) -> Path:
    """A local copy of the cache ``url``, made or refreshed when the object's version is
    not the copy's.

    Raises:
        RemoteError: the object cannot be read or the copy cannot be written.
    """
    fs, path = filesystem(url)
    try:
        fs.invalidate_cache(path)
        now = object_of(url, fs.info(path))
    except Exception as exc:
        raise RemoteError(f"{shown(url)}: cannot be read: {describe(exc)}") from None
    key = hashlib.sha256(shown(url).encode()).hexdigest()[:16]
    folder = copies_folder() / key
    name = posixpath.basename(path.rstrip("/"))
    if name in ("", ".", "..") or "\0" in name or not name.lower().endswith((".h5", ".hdf5")):
        name = "cache.h5"  # a key is data, never a path to write to
    copy = folder / name
    stamp = folder / (copy.name + ".version")
    try:
        if copy.is_file() and stamp.read_text() == now.version:
            return copy
    except OSError:
        pass
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".part-")
        os.close(handle)
        try:
            fs.get_file(path, temporary)
            fs.invalidate_cache(path)
            if object_of(url, fs.info(path)).version != now.version:
                raise RemoteError(f"{shown(url)}: changed while it was copied; run again")
            os.replace(temporary, copy)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        stamp.write_text(now.version)
    except RemoteError:
        raise
    except OSError as exc:
        raise RemoteError(
            f"{shown(url)}: cannot be copied to {folder} ({exc.strerror or exc})"
        ) from None
    except Exception as exc:
        raise RemoteError(f"{shown(url)}: cannot be read: {describe(exc)}") from None
    return copy
