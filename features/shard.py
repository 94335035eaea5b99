"""Deterministic shares of a dataset, so N independent processes (a SLURM array, a
Kubernetes Indexed Job, GNU parallel) together extract every video exactly once.

A video belongs to shard ``int(sha256(video_id)[:8]) % N``: stable across runs and
machines, independent of the order or the number of videos, so adding videos to a dataset
moves none of the others to another shard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from vidcache.features.errors import VidcacheError
from vidcache.features.remote.urls import is_url
from vidcache.features.video.discover import VideoSource


class ShardError(VidcacheError):
    """A ``K/N`` shard spec that cannot be used."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N``.

    Raises:
        ShardError: not two integers, or K outside ``0..N-1``.
    """
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ShardError(
            f"--shard takes K/N, e.g. 0/8 (K from 0 to N-1). Received: {text}"
        ) from None
    if count < 1 or not 0 <= index < count:
        raise ShardError(f"--shard K/N needs 0 <= K < N. Received: {text}")
    return index, count


def shard_of(video_id: str, count: int) -> int:
    """The shard (``0..count-1``) a video id belongs to."""
    digest = hashlib.sha256(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(sources: Sequence[VideoSource], index: int, count: int) -> list[VideoSource]:
    """The videos of shard ``index`` of ``count``, in their discovery order."""
    return [s for s in sources if shard_of(s.video_id, count) == index]


def expand_caches(paths, copy: bool = True) -> list[Path | str]:
    """Cache files as given, a folder standing for the ``*.h5`` files in it (the shards
    of a ``--shard`` run, say). A URL (an object or a prefix of shards in a store) stands
    for local copies of its caches (``copy``: what reads every row), or for their URLs,
    read in place (what reads an index: :mod:`vidcache.features.remote.caches`).

    Raises:
        ShardError: a folder holds no cache.
        RemoteError: a URL cannot be listed or copied.
    """
    found: list[Path | str] = []
    for path in paths:
        if is_url(str(path)):
            from vidcache.features.remote.caches import cache_copy, list_caches

            urls = list_caches(str(path))
            if copy:
                found.extend(cache_copy(url) for url in urls)
            else:
                found.extend(urls)
            continue
        path = Path(path)
        if path.is_dir():
            shards = sorted(path.glob("*.h5"))
            if not shards:
                raise ShardError(f"{path}: a folder without .h5 caches")
            found.extend(shards)
        else:
            found.append(path)
    return found
