"""Videos under URLs: a prefix of a store walked like a local folder (class folders give
labels), one object, or a CSV that lists videos (``path[,label,...]``, paths as URLs or
relative to the CSV).

Each listed object becomes a :class:`~vidcache.features.video.discover.VideoSource` whose
``path`` is its URL as shown (:func:`~.urls.shown`) and whose ``remote`` is what the store
said of it, the URL it is read from included (size, time,
version): planning a re-run needs nothing more. Folders of frames are local only.
"""

from __future__ import annotations

import csv
import io
import posixpath

from vidcache.features.remote.objects import RemoteObject, object_of
from vidcache.features.remote.urls import (
    RemoteError,
    describe,
    filesystem,
    is_url,
    join,
    scheme,
    shown,
)
from vidcache.features.video.source import VideoSource, is_video_name

__all__ = ["list_csv", "list_url"]


def _url_of(fs, url: str, path: str) -> str:
    """The URL of ``path`` listed in ``fs`` under the input ``url`` (same scheme)."""
    try:
        return fs.unstrip_protocol(path)
    except Exception:  # some file systems cannot: build it from the input's scheme
        return f"{scheme(url)}://{path.lstrip('/')}"


def list_url(url: str, glob: str | None = None, audio: bool = False) -> list[VideoSource]:
    """The videos of one URL: an object, or every video under a prefix in sorted order
    (id: the key under the prefix; label: the folder that holds it, none at the top).

    Raises:
        RemoteError: the URL cannot be listed (missing, access denied, no credentials,
            unreachable): one line, naming it.
    """
    if url.lower().endswith(".csv"):
        return list_csv(url)
    fs, root = filesystem(url)
    try:
        fs.invalidate_cache()  # a listing is of now, not of an earlier call in this process
        info = fs.info(root)
        if info.get("type") != "directory":
            name = posixpath.basename(root.rstrip("/"))
            return [VideoSource(shown(url), name, remote=object_of(url, info))]
        found = fs.find(root, detail=True)
    except Exception as exc:  # the store's library raises its own kinds
        raise RemoteError(f"{shown(url)}: cannot be listed: {describe(exc)}") from None
    base = root.rstrip("/") + "/"
    sources = []
    for path in sorted(found):
        info = found[path]
        if info.get("type") == "directory" or not path.startswith(base):
            continue
        key = path[len(base) :]
        if not is_video_name(posixpath.basename(key), glob, audio):
            continue
        folder = posixpath.dirname(key)
        label = posixpath.basename(folder) if folder else None
        where = _url_of(fs, url, path)
        sources.append(VideoSource(shown(where), key, label, remote=object_of(where, info)))
    return sources


def _read_text(url: str) -> str:
    fs, path = filesystem(url)
    try:
        with fs.open(path, "rb") as handle:
            data = handle.read(64 << 20)
    except Exception as exc:
        raise RemoteError(f"{shown(url)}: cannot be read: {describe(exc)}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RemoteError(f"{shown(url)}: a video list must be UTF-8 text") from None


def list_csv(url: str) -> list[VideoSource]:
    """The videos a CSV lists (column ``path``; ``label`` and other columns optional).
    Paths are URLs or relative to the CSV's folder; the id is the path as written for a
    relative one, the bucket and key for a URL. Each listed object is looked up (size,
    version) in one request per object.

    Raises:
        RemoteError: the CSV cannot be read or lacks ``path``, or an object it lists
            cannot be looked up (one line naming it).
    """
    rows = list(csv.DictReader(io.StringIO(_read_text(url))))
    if rows and "path" not in rows[0]:
        raise RemoteError(f"{shown(url)}: a video list needs a 'path' column")
    folder = url.rsplit("/", 1)[0]
    sources = []
    for line, row in enumerate(rows, start=2):
        written = (row.get("path") or "").strip()
        if not written:
            raise RemoteError(f"{shown(url)}:{line}: empty path")
        if is_url(written):
            where, video_id = written, shown(written).split("://", 1)[1]
        else:
            where, video_id = join(folder, written), written.lstrip("/")
        label = (row.get("label") or "").strip() or None
        meta = tuple((k, v or "") for k, v in row.items() if k and k not in ("path", "label"))
        sources.append(
            VideoSource(shown(where), video_id, label, meta=meta, remote=stat_url(where))
        )
    return sources


def stat_url(url: str) -> RemoteObject:
    """What the store says of the object ``url`` now.

    Raises:
        RemoteError: it cannot be looked up, or is a prefix.
    """
    fs, path = filesystem(url)
    try:
        fs.invalidate_cache(path)
        info = fs.info(path)
    except Exception as exc:
        raise RemoteError(f"{shown(url)}: cannot be read: {describe(exc)}") from None
    if info.get("type") == "directory":
        raise RemoteError(f"{shown(url)}: a prefix, not a video (list it as a folder)")
    return object_of(url, info)


def exists(url: str) -> bool:
    """Whether the object ``url`` exists; True when the store cannot tell now (a failure
    to ask is no proof that it is gone)."""
    try:
        fs, path = filesystem(url)
        return bool(fs.exists(path))
    except Exception:
        return True
