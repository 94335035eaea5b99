"""Local copies of videos in a store, for decoding.

A video in a store is downloaded whole to a temporary file, decoded from there like any
local file, and the copy removed: the decode plan demuxes a file once to index its packets
before it decodes the frames it keeps, so every byte is read at least once whichever way it
is read, and one streamed GET reads them faster than the scattered range requests of a
decoder seeking in a remote file object (``bench/cloud.py`` measures both). Copies go to
``$VIDCACHE_DOWNLOAD_DIR`` (default: the system's temporary folder); one file per decode
thread at a time.

After the download the object is looked up again: if its size or version differ from the
listing's, it changed while it was read, and the video fails (run again) rather than being
recorded with a version its features were not made from.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from vidcache.features.errors import VideoDecodeError
from vidcache.features.remote.objects import object_of
from vidcache.features.remote.urls import RemoteError, describe, filesystem
from vidcache.features.video.source import VideoSource

__all__ = ["download_dir", "local_copy"]

#: Room kept free beside a copy (bytes).
SPARE_BYTES = 1 << 20


def download_dir() -> str:
    """Where copies of remote videos go (``$VIDCACHE_DOWNLOAD_DIR``, or the temp folder)."""
    return os.environ.get("VIDCACHE_DOWNLOAD_DIR") or tempfile.gettempdir()


@contextlib.contextmanager
def local_copy(source: VideoSource) -> Iterator[VideoSource]:
    """``source`` itself when it is local; for an object of a store, the same source read
    from a local copy, removed on exit.

    Raises:
        VideoDecodeError: the object cannot be read (missing, access denied...), there is
            no room for the copy, or it changed while it was read.
    """
    if source.remote is None:
        yield source
        return
    listed = source.remote
    folder = download_dir()
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise VideoDecodeError(f"no folder for a local copy ({folder}: {exc.strerror})") from None
    if free < listed.size + SPARE_BYTES:
        raise VideoDecodeError(
            f"no room for a local copy of {listed.size / 2**20:.0f} MiB in {folder} "
            f"({free / 2**20:.0f} MiB free; set VIDCACHE_DOWNLOAD_DIR)"
        )
    try:
        fs, path = filesystem(listed.url)
    except RemoteError as exc:
        raise VideoDecodeError(str(exc)) from None
    suffix = posixpath.splitext(path)[1][:16]
    handle, temporary = tempfile.mkstemp(prefix="vidcache-", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        try:
            fs.get_file(path, temporary)
            fs.invalidate_cache(path)
            now = object_of(listed.url, fs.info(path))
        except Exception as exc:  # the store's library raises its own kinds
            raise VideoDecodeError(f"cannot be read from the store: {describe(exc)}") from None
        size = os.path.getsize(temporary)
        if now.version != listed.version or size != listed.size:
            raise VideoDecodeError(
                "changed while it was read (its size or version is not the listing's); run again"
            )
        yield replace(source, path=Path(temporary), remote=None)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
