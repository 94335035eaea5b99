"""What every command module shares: click context, core-error mapping, cache arguments."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading

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


def backbone_option(help_text):
    """The ``--backbone NAME`` option (default InceptionV3), checked against the registry;
    ``help_text`` is the help, or a function that writes it when ``--help`` is shown."""
    from vidcache.pipeline.cli.registry_help import LazyHelpOption

    lazy = {"help_factory": help_text} if callable(help_text) else {"help": help_text}
    return click.option(
        "--backbone",
        cls=LazyHelpOption,
        default="InceptionV3",
        show_default=True,
        metavar="NAME",
        callback=_known_backbone,
        **lazy,
    )


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (a batch scheduler's pre-emption, ``kill``, ``docker stop``) acts as Ctrl-C
    for the block: it raises ``KeyboardInterrupt`` in the main thread, so every command
    stops, keeps what it finished and cleans up exactly as after Ctrl-C (exit 130). Code
    that handles Ctrl-C gracefully (extraction, training) installs its own handler for
    both signals inside; a handler someone else installed is left alone. An ignored SIGINT
    is honoured too (``kill -INT`` of a job a script started in the background)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # SIGINT too when it is ignored: a shell starts background jobs with SIGINT ignored,
    # and training used to honour it only once its first epoch had begun.
    changed = {}
    for sig, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.SIG_IGN)):
        previous = signal.getsignal(sig)
        if previous == default:
            changed[sig] = signal.signal(sig, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, previous in changed.items():
            signal.signal(sig, previous)


def parse_weights(value: str, seed: int = 0):
    """``--weights VALUE`` as a ``WeightsSpec``; a value that is neither a keyword nor an
    existing path is a usage error (exit 2) that suggests the keyword it resembles."""
    import difflib

    from vidcache.features.backbone import WeightsSpec
    from vidcache.features.errors import WeightsUnavailable

    try:
        return WeightsSpec.parse(value, seed)
    except WeightsUnavailable as exc:
        close = difflib.get_close_matches(value, ["imagenet", "random"], n=1)
        hint = f" (did you mean --weights {close[0]}?)" if close else ""
        raise click.BadParameter(f"{exc}{hint}", param_hint="'--weights'") from None


@contextlib.contextmanager
def advice(error: type[VidcacheError], text: str):
    """Add what this command's user can do to an ``error`` from the library (which does
    not know the command): ``CACHE holds other settings (...); TEXT``."""
    try:
        yield
    except error as exc:
        raise error(f"{exc}; {text}") from None


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
    and Ctrl-C or SIGTERM into one line and exit 130."""

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        try:
            with terminate_as_interrupt():
                return function(*args, **kwargs)
        except VidcacheError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a full disk, a read-only mount, no permission...
            raise click.ClickException(os_error_line(exc)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except ImportError as exc:  # a signal during a compiled module's initialisation
            from vidcache.features.errors import interrupted

            if not interrupted(exc):
                raise
            click.echo("Interrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapped
