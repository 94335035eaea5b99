"""Options more than one command takes, declared once (the sqlite-utils pattern: a
decorator per option or group of options).

``train-rnn``'s model, data and fitting groups live beside it (:mod:`.train`); the ones
here are shared: the task, its annotation files, the caption scorer, the weights file of
a run, tf.distribute, the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click


def compose(*decorators: Callable) -> Callable:
    """One decorator applying ``decorators`` in the order they read (top one outermost)."""

    def apply(function: Callable) -> Callable:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


class TaskChoice(click.Choice):
    """``--task``: the registered tasks at the moment the command runs, so a task a plug-in
    (or a test) registers is a choice without editing vidcache."""

    def __init__(self) -> None:
        super().__init__(())  # the property below answers

    @staticmethod
    def _names() -> list[str]:
        from vidcache.pipeline.training.tasks import task_names

        return task_names()

    @property
    def choices(self):  # read the table each time
        return tuple(self._names())

    @choices.setter
    def choices(self, value) -> None:  # click's __init__ sets it; the table is the truth
        pass


task_option = click.option(
    "--task",
    type=TaskChoice(),
    default="classify",
    show_default=True,
)


def annotation_options(captions_help: str, targets_help: str, segments_help: str) -> Callable:
    """``--captions``, ``--targets`` and ``--segments``: the annotation files of the
    caption, regress and segment tasks (how a command uses them is its help text)."""
    return compose(
        click.option(
            "--captions",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help=captions_help,
        ),
        click.option(
            "--targets",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help=targets_help,
        ),
        click.option(
            "--segments",
            type=click.Path(exists=True, path_type=Path),
            help=segments_help,
        ),
    )


scorer_option = click.option(
    "--scorer",
    type=click.Choice(["fast", "coco"]),
    default=None,
    help="caption: 'coco' adds the standard coco-caption scores (PTB tokens, BLEU, METEOR, "
    "ROUGE-L, CIDEr-D; pip install 'vidcache[coco]') to the fast ones.  [default: fast]",
)


def check_scorer(scorer: str | None) -> None:
    """``--scorer coco`` without the ``coco`` extra: one line before any work."""
    if scorer == "coco":
        from vidcache.models.cocoscore import check_available

        check_available()


weights_file_option = click.option(
    "--weights",
    "weights_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The weights file, when the run's cache used one.",
)

distribute_option = click.option(
    "--distribute",
    type=click.Choice(["none", "mirrored", "multi-worker"]),
    default="none",
    show_default=True,
    help="tf.distribute: every GPU of this machine (mirrored), or the workers of TF_CONFIG "
    "(multi-worker; run the same command on each, worker 0 writes the run). --batch-size is "
    "the global batch. See docs/scale.md.",
)

seed_option = click.option("--seed", type=int, default=0, show_default=True)
