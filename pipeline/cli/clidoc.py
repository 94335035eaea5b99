"""``docs/cli.md`` written from the click commands themselves, so the reference can never
drift from ``--help``: ``python -m vidcache.pipeline.cli.clidoc > docs/cli.md`` (a test fails
when the file is not what this prints).
"""

from __future__ import annotations

import inspect
import textwrap

import click

from vidcache.pipeline.cli import cli, extract_features_command, train_rnn_script

HEADER = """# Command reference

Generated from the commands themselves by `python -m vidcache.pipeline.cli.clidoc > docs/cli.md`
(`tests/test_docs.py` fails when this file is out of date). The README explains what the
commands are for; this page lists every option with its default.

Console scripts: `vidcache` (the group below), `extract-features` (= `vidcache extract`)
and `train-rnn` (= `vidcache train-rnn`).

Exit codes, the same for every command: `0` done; `1` an error, or some inputs failed
(each named in one line); `2` a usage error (a bad option or argument); `130` interrupted
(Ctrl-C or SIGTERM; what was finished is kept).
"""


def _type_name(param: click.Parameter) -> str:
    kind = param.type
    if isinstance(kind, click.Choice):
        return "|".join(map(str, kind.choices))
    if getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None):
        return "flag"
    if isinstance(kind, click.Path):
        return "path"
    if isinstance(kind, (click.IntRange, click.FloatRange)):
        return kind.describe_range() if hasattr(kind, "describe_range") else kind.name
    return kind.name


def _default(param: click.Option, context: click.Context) -> str:
    default = param.get_default(context, call=False)
    if param.is_flag and not param.secondary_opts:
        return "on" if default is True else "off"
    if (
        default is None
        or default == ()
        or callable(default)
        or type(default).__name__ == "Sentinel"
    ):
        return ""
    if isinstance(default, (list, tuple)):
        return ", ".join(map(str, default))
    return str(default)


def _help(text: str) -> str:
    """A command's help as Markdown: paragraphs joined, click's ``\\b`` blocks (examples)
    kept verbatim in a code block."""
    out, verbatim, block = [], False, []
    for line in inspect.cleandoc(text).splitlines() + [""]:
        if line.strip() == "\b":
            verbatim = True
            continue
        if verbatim:
            if line.strip():
                block.append(line)
                continue
            out += ["```", *textwrap.dedent("\n".join(block)).splitlines(), "```", ""]
            verbatim, block = False, []
            continue
        out.append(line)
    return "\n".join(out).strip()


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def command_section(name: str, command: click.Command) -> str:
    """The Markdown of one command: usage, help, and a table of its options."""
    context = click.Context(command, info_name=name)
    lines = [f"## `{name}`", "", "```", command.get_usage(context), "```", ""]
    lines += [_help(command.help or ""), ""]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if arguments:
        args = ", ".join(f"`{p.human_readable_name}`" for p in arguments)
        lines += [f"Arguments: {args}.", ""]
    options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    if options:
        lines += ["| option | type | default | meaning |", "|---|---|---|---|"]
        for option in options:
            names = ", ".join(f"`{n}`" for n in (*option.opts, *option.secondary_opts))
            lines.append(
                f"| {names} | {_cell(_type_name(option))} | {_cell(_default(option, context))} | "
                f"{_cell(option.help or '')} |"
            )
        lines.append("")
    return "\n".join(lines)


def commands() -> dict[str, click.Command]:
    """Every command by the name a user types, in the order of ``vidcache --help``."""
    found = {"vidcache": cli}
    context = click.Context(cli, info_name="vidcache")
    for name in cli.list_commands(context):
        found[f"vidcache {name}"] = cli.get_command(context, name)
    assert found["vidcache extract"] is extract_features_command
    assert found["vidcache train-rnn"] is train_rnn_script
    return found


def render() -> str:
    """The whole of ``docs/cli.md``."""
    sections = [HEADER]
    for name, command in commands().items():
        sections.append(command_section(name, command))
    return "\n".join(sections).rstrip() + "\n"


if __name__ == "__main__":
    click.echo(render(), nl=False)
