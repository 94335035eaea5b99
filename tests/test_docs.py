"""The docs match the commands: docs/cli.md is what the commands generate, and the README
mentions every option of the commands it documents."""

from __future__ import annotations

import re
from pathlib import Path

import click

from vidcache.pipeline.cli import clidoc

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# README section headers (their text up to the next header) that document each command
SECTIONS = {
    "vidcache extract": ("`extract-features VIDEOS",),
    "vidcache train-rnn": (
        "`train-rnn FEATURES",
        "Captioning:",
        "Regression:",
        "Action segmentation:",
        "Multi-label:",
    ),
    "vidcache evaluate": ("`vidcache evaluate",),
    "vidcache predict": ("`vidcache predict",),
    "vidcache train-e2e": ("`vidcache train-e2e",),
    "vidcache inspect": ("`vidcache inspect",),
}


def section(title: str) -> str:
    match = re.search(rf"^(###[^\n]*{re.escape(title)}.*?)(?=^##)", README, re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def test_docs_cli_md_is_what_the_commands_generate():
    written = (ROOT / "docs" / "cli.md").read_text()
    assert written == clidoc.render(), (
        "docs/cli.md is out of date: python -m vidcache.pipeline.cli.clidoc > docs/cli.md"
    )
    assert "(docs/cli.md)" in README


def test_the_readme_mentions_every_option_of_the_commands_it_documents():
    commands = clidoc.commands()
    missing = []
    for name, titles in SECTIONS.items():
        text = "".join(section(title) for title in titles)
        for param in commands[name].params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            longest = max(param.opts, key=len)
            if longest == "--help" or longest == "--version":
                continue
            if not re.search(rf"(?<![\w-]){re.escape(longest)}(?![\w-])", text):
                missing.append(f"{name} {longest}")
    assert not missing, f"README lacks: {', '.join(missing)}"
