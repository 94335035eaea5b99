"""``python -m vidcache``: the ``vidcache`` command."""

from vidcache.pipeline.cli import cli

if __name__ == "__main__":
    cli()
