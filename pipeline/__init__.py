"""vidcache's command line and orchestration (stage one: ``vidcache.pipeline.extract``)."""

from vidcache import __version__

__all__ = ["__version__"]
