"""The record a cache keeps about one video, shared by both schemas."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np


def encode_key(video_id: str) -> str:
    """Schema 1's HDF5 group name of a video: the id with ``%`` and ``/`` percent-encoded.

    Both schemas list videos in the order of this key, so a migrated cache keeps its order.
    """
    return video_id.replace("%", "%25").replace("/", "%2F")


def decode_key(key: str) -> str:
    """Inverse of :func:`encode_key`."""
    return key.replace("%2F", "/").replace("%25", "%")


@dataclass
class CacheEntry:
    """What the cache records about one video.

    Attributes:
        video_id: stable id (relative path), the cache key.
        path: absolute path of the source at extraction time.
        label: class label, ``""`` for none.
        kind: ``"file"`` or ``"frames"``.
        size: bytes of the source.
        mtime: modification time of the source (seconds since the epoch).
        fingerprint: ``"sha256:<hex>"`` of the source's content.
        num_frames: sampled frames stored (rows of ``features``).
        fps: frame rate of the source.
        duration: seconds declared by the container, ``nan`` if unknown.
        source_frames: frames declared in (or counted from) the source, ``-1`` if unknown.
        width: source frame width.
        height: source frame height.
        codec: source codec name.
        meta: extra columns of a labels CSV.
        extracted_at: ISO time of extraction (UTC).
    """

    video_id: str
    path: str
    label: str
    kind: str
    size: int
    mtime: float
    fingerprint: str
    num_frames: int
    fps: float
    duration: float = math.nan
    source_frames: int = -1
    width: int = 0
    height: int = 0
    codec: str = ""
    meta: dict = field(default_factory=dict)
    extracted_at: str = ""

    def to_attrs(self) -> dict:
        """Flat values (``meta`` as JSON text), as stored."""
        attrs = asdict(self)
        attrs["meta"] = json.dumps(self.meta, sort_keys=True)
        return attrs

    @classmethod
    def from_attrs(cls, attrs) -> CacheEntry:
        """The inverse of :meth:`to_attrs`; accepts h5py attributes (bytes, numpy scalars)."""
        values = {name: attrs[name] for name in cls.__dataclass_fields__ if name in attrs}
        for name, value in values.items():
            if isinstance(value, bytes):
                values[name] = value.decode()
            elif isinstance(value, np.generic):
                values[name] = value.item()
        values["meta"] = json.loads(values.get("meta") or "{}")
        return cls(**values)
