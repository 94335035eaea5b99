"""The console scripts (``vidcache``, ``extract-features``, ``train-rnn``): SIGTERM and an
ignored SIGINT raise ``KeyboardInterrupt`` from the first instant, before any import, so a
signal during start-up is "Interrupted." and exit 130 like one during the work
(``pipeline.cli.common.terminate_as_interrupt`` does the same around each command for
callers that run the commands in-process)."""

from __future__ import annotations

import signal
import sys

_INTERRUPTED = 130


def _run(name: str) -> None:
    for sig, default in ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.SIG_IGN)):
        if signal.getsignal(sig) == default:
            signal.signal(sig, signal.default_int_handler)
    try:
        from vidcache.pipeline import cli

        code = _main(getattr(cli, name))
        # Done: a signal from now on would find the interpreter shutting down with its
        # handlers reset (the process then died by SIGTERM, -15, its work finished and
        # kept). Ignored, the process exits with its own status.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        sys.exit(code)
    except KeyboardInterrupt:
        _give_back_locks()
        print("Interrupted.", file=sys.stderr)
        sys.exit(_INTERRUPTED)
    except ImportError as exc:
        from vidcache.features.errors import interrupted

        if not interrupted(exc):
            raise
        print("Interrupted.", file=sys.stderr)
        sys.exit(_INTERRUPTED)


def _give_back_locks() -> None:
    """The cache lock files an interruption caught half taken or half given back."""
    for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal: let the cleanup finish
        signal.signal(sig, signal.SIG_IGN)
    lock = sys.modules.get("vidcache.features.cache.lock")
    if lock is not None:
        lock.release_abandoned()


def _main(command) -> int:
    """Run a click command as click's standalone mode does (errors shown, their exit
    codes), except that a ``KeyboardInterrupt`` raised while click itself runs (parsing,
    dispatch: outside each command's own handler), which click turns into "Aborted!" and
    exit 1, is an interruption like any other."""
    import click

    if not isinstance(command, click.Command):  # a plain callable stands in (tests)
        command()
        return 0
    try:
        code = command.main(standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        click.echo("Aborted!", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return code if isinstance(code, int) else 0


def vidcache() -> None:
    """``vidcache``."""
    _run("cli")


def extract_features() -> None:
    """``extract-features``."""
    _run("extract_features_command")


def train_rnn() -> None:
    """``train-rnn``."""
    _run("train_rnn_script")
