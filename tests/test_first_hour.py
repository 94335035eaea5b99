"""A newcomer's first hour: runs are not replaced by accident, summaries say what was kept,
and every option a message suggests exists on the command that prints it."""

from __future__ import annotations

import json
import re

import click
from click.testing import CliRunner
from test_train import ordered_videos, write_cache

from vidcache.pipeline.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_run_folder_is_replaced_only_when_asked_and_only_by_a_complete_run(tmp_path):
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=4))
    run = tmp_path / "run"
    small = ["--units", "4", "--epochs", "3", "--patience", "1", "-q"]
    first = invoke("train-rnn", cache, "-o", run, "--cell", "gru", *small)
    assert first.exit_code == 0, first.output
    assert "classify (gru) trained" in first.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert 1 <= metrics["best_epoch"] <= metrics["epochs"] <= 3
    if metrics["best_epoch"] != metrics["epochs"]:
        assert f"kept epoch {metrics['best_epoch']}" in first.output
    before = (run / "model.keras").read_bytes()
    again = invoke("train-rnn", cache, "-o", run, *small)
    assert again.exit_code == 2 and "already holds a run" in again.output
    assert "--overwrite" in again.output and (run / "model.keras").read_bytes() == before
    # A replacement that fails (no class left) leaves the old run whole and nothing beside.
    drop = tmp_path / "drop.csv"
    drop.write_text("up,\ndown,\npeak,\n")
    failed = invoke("train-rnn", cache, "-o", run, "--overwrite", "--label-map", drop, *small)
    assert failed.exit_code == 1, failed.output
    assert (run / "model.keras").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drop.csv", "f.h5", "run"]
    replaced = invoke("train-rnn", cache, "-o", run, "--overwrite", *small)
    assert replaced.exit_code == 0, replaced.output
    assert "classify (lstm)" in replaced.output
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["cell"] == "lstm"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drop.csv", "f.h5", "run"]


def _messages() -> dict[str, list[str]]:
    """Every message text in the command layer and the library, by the file it is in."""
    from pathlib import Path

    import vidcache

    root = Path(vidcache.__file__).resolve().parent.parent
    found = {}
    for folder in ("pipeline", "features", "models"):
        for path in (root / folder).rglob("*.py"):
            found[str(path.relative_to(root))] = re.findall(
                r"--[a-z][a-z0-9-]+", path.read_text(encoding="utf-8")
            )
    return found


def test_every_option_a_message_names_exists_on_some_command():
    """A message may only send a user to an option that exists: every ``--option`` named
    in the code's text is an option of one of the commands (or of Python/pip/Keras tools
    the messages quote by name)."""
    options = set()

    def collect(command: click.Command) -> None:
        for param in command.params:
            options.update(o for o in param.opts + param.secondary_opts if o.startswith("--"))
        for sub in getattr(command, "commands", {}).values():
            collect(sub)

    collect(cli)
    outside = {"--help", "--version", "--increment"}  # h5clear's, quoted in h5recover
    unknown = {
        f"{file}: {name}"
        for file, names in _messages().items()
        for name in names
        if name not in options | outside
    }
    assert not unknown, sorted(unknown)
