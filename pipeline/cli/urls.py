"""Argument types that take a URL in a store (``s3://``, ``gs://``...) beside a local path:
a local path must exist when given; a URL is listed or read when the command runs."""

from __future__ import annotations

from pathlib import Path

import click

from vidcache.features.remote.urls import is_url

__all__ = ["CacheInput", "OutputPath", "VideoInput"]


class VideoInput(click.ParamType):
    """A video, a folder of them, or a URL (``s3://bucket/videos/``, an object, a CSV
    list): a local one must exist; a URL is listed when the run starts."""

    name = "path|url"

    def convert(self, value, param, ctx):
        if isinstance(value, Path) or not is_url(str(value)):
            path = Path(value)
            if not path.exists():
                self.fail(f"{str(value)!r} does not exist.", param, ctx)
            return path
        return str(value)


class OutputPath(click.ParamType):
    """A cache file, a folder of shards, or a folder URL in a store (``s3://bucket/out/``)."""

    name = "path|url"

    def convert(self, value, param, ctx):
        return str(value) if is_url(str(value)) else Path(value)


class CacheInput(VideoInput):
    """A cache, a folder of shard caches, or their URL (``s3://bucket/features/``)."""
