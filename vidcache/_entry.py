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

        getattr(cli, name)()
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(_INTERRUPTED)
    except ImportError as exc:
        from vidcache.features.errors import interrupted

        if not interrupted(exc):
            raise
        print("Interrupted.", file=sys.stderr)
        sys.exit(_INTERRUPTED)


def vidcache() -> None:
    """``vidcache``."""
    _run("cli")


def extract_features() -> None:
    """``extract-features``."""
    _run("extract_features_command")


def train_rnn() -> None:
    """``train-rnn``."""
    _run("train_rnn_script")
