"""vidcache's command line and orchestration (stage one: ``pipeline.extract``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vidcache")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
