"""Objects of a store as sources: what an object is now (size, time, version) and the
listing of a prefix.

Change detection uses what the store says of an object, never its bytes: a re-run lists the
prefix (one request per thousand objects) and re-extracts an object whose size or
**version** changed. The version is, by what the store offers, in this order:

- ``generation:<n>`` (Google Cloud Storage: a new number for every write);
- ``version:<id>`` (S3 with versioning on);
- ``etag:<value>`` (S3, Azure, most HTTP servers: the content's hash for a plain upload);
- ``mtime:<seconds>`` (anything else: the time of the last write).

It is recorded as the video's ``fingerprint`` in the cache, prefix included, so the record
says which was used (a local file's is ``sha256:``, of its bytes).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["RemoteObject", "object_of"]


@dataclass(frozen=True)
class RemoteObject:
    """An object as its store described it when it was listed.

    Attributes:
        url: where to read it (the store's URL, as given or listed).
        size: bytes.
        mtime: last write, seconds since the epoch (0.0 when the store gives none).
        version: ``generation:``, ``version:``, ``etag:`` or ``mtime:`` (see the module).
    """

    url: str
    size: int
    mtime: float
    version: str


def _seconds(value) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return _seconds(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return 0.0
    return 0.0


def object_of(url: str, info: dict) -> RemoteObject:
    """The :class:`RemoteObject` of an fsspec ``info`` dict (s3fs, gcsfs, adlfs, http)."""
    lower = {str(k).lower(): v for k, v in info.items()}
    mtime = 0.0
    for key in ("lastmodified", "last_modified", "updated", "mtime", "modified", "created"):
        if lower.get(key):
            mtime = _seconds(lower[key])
            break
    if lower.get("generation"):
        version = f"generation:{lower['generation']}"
    elif lower.get("versionid"):
        version = f"version:{lower['versionid']}"
    elif lower.get("etag"):
        version = f"etag:{str(lower['etag']).strip(chr(34))}"
    else:
        version = f"mtime:{mtime!r}"
    return RemoteObject(url, int(lower.get("size") or 0), mtime, version)
