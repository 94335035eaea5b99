"""``python -m vidcache.pipeline``: the ``vidcache`` command (``python -m vidcache`` too)."""

from vidcache.pipeline.cli import cli

if __name__ == "__main__":
    cli()
