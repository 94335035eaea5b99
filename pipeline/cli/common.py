"""What every command module shares: click context, core-error mapping, cache arguments."""

from __future__ import annotations

import functools
import sys

import click

from vidcache.features.errors import VidcacheError
from vidcache.features.shard import expand_caches

__all__ = ["CONTEXT", "backbone_option", "core_errors", "expand_caches"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


#: Exit codes, the same for every command (README, "Exit codes").
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _known_backbone(context, parameter, value: str) -> str:
    """Click callback of ``--backbone``: a registered backbone's name."""
    from vidcache.features.backbones import backbone_names, get_backbone

    try:
        return get_backbone(value).name  # any spelling in, the recorded name out
    except ValueError:
        known = ", ".join(backbone_names())
        raise click.BadParameter(f"{value!r} is not a registered backbone ({known})") from None


def backbone_option(help_text: str):
    """The ``--backbone NAME`` option (default InceptionV3), checked against the registry."""
    return click.option(
        "--backbone",
        default="InceptionV3",
        show_default=True,
        metavar="NAME",
        callback=_known_backbone,
        help=help_text,
    )


def os_error_line(exc: OSError) -> str:
    """An operating-system error as one line naming the place: ``PATH: reason``."""
    import errno

    place = exc.filename or ""
    if exc.filename2:
        place = f"{place} -> {exc.filename2}"
    reason = exc.strerror or (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    advice = {
        errno.ENOSPC: "; free some space and run the same command again",
        errno.EROFS: "; write somewhere else",
        errno.EACCES: "; write somewhere you may write",
    }.get(exc.errno, "")
    return f"{place}: {reason}{advice}" if place else f"{reason}{advice}"


def core_errors(function):
    """Turn core errors (``VidcacheError``) into ``click.ClickException`` (one line, exit 1)
    and Ctrl-C into one line and exit 130."""

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except VidcacheError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a full disk, a read-only mount, no permission...
            raise click.ClickException(os_error_line(exc)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapped
