"""``train-rnn``: train a sequence model on cached features (stage two)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vidcache.pipeline.cli.common import CONTEXT, core_errors, expand_caches
from vidcache.pipeline.cli.options import (
    annotation_options,
    check_scorer,
    compose,
    distribute_option,
    scorer_option,
    seed_option,
    task_option,
)


def _tensorboard_installed(context, parameter, value: bool) -> bool:
    """Click callback of ``--tensorboard``: one line, before any work, when it is missing."""
    import importlib.util

    if value and importlib.util.find_spec("tensorboard") is None:
        raise click.ClickException(
            "--tensorboard needs TensorBoard, which is not installed; install it with "
            "pip install 'vidcache[tensorboard]'"
        )
    return value


def _read_label_map(path: Path | None) -> dict:
    """``old,new`` rows (a header ``label,new_label`` is optional); empty ``new`` drops."""
    if path is None:
        return {}
    import csv

    mapping = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.reader(handle):
            if not row or row[0].startswith("#") or row[:2] == ["label", "new_label"]:
                continue
            if len(row) < 2:
                raise click.ClickException(f"{path}: each row needs 'old,new' (got {row})")
            mapping[row[0].strip()] = row[1].strip()
    return mapping


_TRAIN_HELP = """Train a sequence model on cached features (stage two).

Reads videos from one or more FEATURES caches (made with the same settings), splits them
(stratified by label, never splitting a UCF101 group), standardises features on the
training split, trains, and writes RUN (model.keras, config.json, history.csv,
metrics.json, learning_curves.png and the task's own files).

\b
Tasks:
  classify  the videos' labels (default); top-1/top-5, confusion matrix
  caption   --captions CSV (path,caption; several rows per video); an LSTM
            encoder-decoder, BLEU-1..4 and CIDEr-D against all references
  regress   --targets CSV: path,value[,value...] per video, or (header
            path,time,value...) per frame matched by timestamp; MSE, MAE

\b
Example:
    train-rnn features.h5 -o runs/lstm
    train-rnn features.h5 -o runs/mean --head mean
    train-rnn a.h5 b.h5 -o runs/big --layers 2 --units 256 --class-weight balanced
    train-rnn features.h5 -o runs/cap --task caption --captions captions.csv --attention --beam 3
    train-rnn features.h5 -o runs/steer --task regress --targets steering.csv
"""


#: The sequence model: head, cell, size, regularisation.
model_options = compose(
    click.option(
        "--head",
        type=click.Choice(["lstm", "mean", "transformer"]),
        default="lstm",
        show_default=True,
        help="LSTM, the mean-of-frames baseline, or a causal transformer (self-attention over "
        "the frames so far; --units wide, --layers blocks; streams like the LSTM; a caption "
        "run's encoder).",
    ),
    click.option(
        "--attention-heads",
        type=click.IntRange(min=1),
        default=4,
        show_default=True,
        help="Attention heads of --head transformer (--units must be a multiple).",
    ),
    click.option(
        "--cell",
        type=click.Choice(["lstm", "gru"]),
        default="lstm",
        show_default=True,
        help="The recurrent cell of the lstm head (a caption run's encoder and decoder): LSTM, "
        "or GRU (fewer weights; streams the same way).",
    ),
    click.option(
        "--readout",
        type=click.Choice(["pooled", "last"]),
        default="pooled",
        show_default=True,
        help="What the classifier reads from the LSTM: its final state and the mean of its "
        "outputs over time (remembers how a clip began; streams exactly), or the final state "
        "only (vidcache 0.1).",
    ),
    click.option("--units", type=click.IntRange(min=1), default=128, show_default=True),
    click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True),
    click.option("--bidirectional", is_flag=True, help="Bidirectional LSTMs (no --stream then)."),
    click.option(
        "--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True
    ),
    click.option(
        "--recurrent-dropout",
        type=click.FloatRange(0, 1, max_open=True),
        default=0.0,
        show_default=True,
    ),
)

#: Which sequences, split how, shaped how.
data_options = compose(
    click.option(
        "--val-split",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=0.2,
        show_default=True,
    ),
    click.option(
        "--group-regex",
        default=r"_g(\d+)_c\d+",
        show_default=True,
        help="Clips whose names share its match stay on one side of the split.",
    ),
    click.option(
        "--split-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="CSV path,split (train/val/test) instead of --val-split.",
    ),
    click.option("--seq-len", type=click.IntRange(min=1), help="Resample sequences to N steps."),
    click.option("--max-len", type=click.IntRange(min=1), help="Crop sequences to N steps."),
    click.option(
        "--stream",
        "stream_data",
        is_flag=True,
        help="Read sequences from HDF5 per batch (data larger than memory).",
    ),
    click.option(
        "--label-map",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="CSV old,new to rename or merge labels (empty new drops a class).",
    ),
    click.option(
        "--fuse",
        is_flag=True,
        help="FEATURES are feature sets of the same videos (one cache per backbone, same "
        "sampling): train on their per-frame concatenation.",
    ),
)

#: How long and how fast it learns, and what it logs.
fitting_options = compose(
    click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True),
    click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True),
    click.option(
        "--lr",
        type=click.FloatRange(min=0, min_open=True),
        default=1e-3,
        show_default=True,
        help="Adam learning rate.",
    ),
    click.option(
        "--patience",
        type=click.IntRange(min=1),
        default=8,
        show_default=True,
        help="Epochs without a better validation loss before stopping.",
    ),
    click.option(
        "--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True
    ),
    click.option(
        "--tensorboard",
        is_flag=True,
        callback=_tensorboard_installed,
        help="Write TensorBoard logs to RUN/logs (needs pip install 'vidcache[tensorboard]').",
    ),
)

#: Options only one task reads (the task is named in each help text).
task_options = compose(
    click.option("--attention", is_flag=True, help="caption: the decoder attends over the frames."),
    click.option(
        "--beam",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="caption: beam width for validation captions (1 = greedy).",
    ),
    click.option(
        "--max-words",
        type=click.IntRange(min=1),
        default=20,
        show_default=True,
        help="caption: captions are cut to and generated up to N words.",
    ),
    click.option(
        "--vocab-size",
        type=click.IntRange(min=5),
        default=5000,
        show_default=True,
        help="caption: vocabulary ids (rarer words become [UNK]).",
    ),
    click.option("--embedding-dim", type=click.IntRange(min=1), default=128, show_default=True),
    click.option(
        "--time-tolerance",
        type=click.FloatRange(min=0),
        default=0.05,
        show_default=True,
        help="regress: seconds between a frame and its per-frame target row.",
    ),
)


@click.command("train-rnn", help=_TRAIN_HELP, context_settings=CONTEXT)
@click.argument(
    "features",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, path_type=Path),
)
@click.option(
    "-o",
    "--output",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The run folder.",
)
@task_option
@annotation_options(
    "caption: CSV path,caption (several rows per video allowed).",
    "regress: CSV path,value[,value...] or path,time,value[,value...] (with header).",
)
@model_options
@data_options
@fitting_options
@seed_option
@task_options
@scorer_option
@distribute_option
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the run already in the output folder (the old one is kept until the new "
    "one is complete).",
)
@click.option("-q", "--quiet", is_flag=True, help="No per-epoch output.")
@core_errors
def train_rnn_command(features, run_dir, quiet, overwrite, **options) -> None:
    from vidcache.pipeline.training import train_rnn
    from vidcache.pipeline.training.runs import replace_run, staging_dir
    from vidcache.pipeline.training.tasks import get_task

    if options["fuse"]:
        folders = [str(path) for path in features if Path(path).is_dir()]
        if folders:
            raise click.UsageError(
                f"--fuse reads one cache file per feature set; {folders[0]} is a folder"
            )
    check_options(options)
    config = train_config(options, quiet)
    holds_run = run_dir.is_dir() and any(run_dir.iterdir())
    if holds_run and not overwrite:
        raise click.UsageError(
            f"{run_dir} already holds a run; give another -o, or --overwrite to replace it"
        )
    work = staging_dir(run_dir) if holds_run else run_dir
    result = train_rnn(expand_caches(features), work, config)
    if work != run_dir:
        replace_run(work, run_dir)
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    if result.interrupted:
        click.echo("Interrupted: the best model so far is kept.")
    trained = f"{run_dir}: {config.task} ({_model_name(config)}) {_epochs_text(result, config)}"
    for line in get_task(config.task).result_lines(result, trained):
        click.echo(line)
    if result.interrupted:
        sys.exit(130)  # like every command stopped by Ctrl-C


def _model_name(config) -> str:
    """``lstm``, ``gru`` (an lstm head with GRU cells), ``mean``, ``transformer``..."""
    return config.cell if config.head == "lstm" else config.head


def _epochs_text(result, config) -> str:
    """``trained 9 epochs (stopped early; kept epoch 4, the lowest validation loss);
    validation``: what was trained and which weights were kept."""
    text = f"trained {result.epochs_run} epochs"
    notes = []
    if result.epochs_run < config.epochs and not result.interrupted:
        notes.append("stopped early")
    if result.best_epoch is not None and result.best_epoch != result.epochs_run:
        notes.append(f"kept epoch {result.best_epoch}, the lowest validation loss")
    return f"{text} ({'; '.join(notes)}); validation" if notes else f"{text}; validation"


def check_options(options: dict) -> None:
    """Options that do not go together: one line each, before any work."""
    from vidcache.pipeline.training.tasks import get_task, task_names

    task = options["task"]
    if options["seq_len"] is not None and options["max_len"] is not None:
        raise click.UsageError("--seq-len cannot be used with --max-len")
    chosen = get_task(task)
    if chosen.annotations and options[chosen.annotations] is None:
        raise click.UsageError(f"--task {task} needs --{chosen.annotations} CSV")
    for other in map(get_task, task_names()):
        if other.name == task:
            continue
        if other.annotations and options.get(other.annotations) is not None:
            raise click.UsageError(f"--{other.annotations} needs --task {other.name}")
        for group in other.options:  # refused together, named together
            if any(options.get(name) != _DEFAULTS.get(name) for name in group):
                verb = "needs" if len(group) == 1 else "need"
                flags = " and ".join(_flag(name) for name in group)
                raise click.UsageError(f"{flags} {verb} --task {other.name}")
    head, units, heads = options["head"], options["units"], options["attention_heads"]
    if head == "transformer":
        if units % heads:
            raise click.UsageError(
                f"--units {units} must be a multiple of --attention-heads {heads}"
            )
        if options["bidirectional"]:
            raise click.UsageError("--bidirectional: the transformer head is causal only")
    elif heads != 4:
        raise click.UsageError("--attention-heads needs --head transformer")
    if options["cell"] != "lstm" and head != "lstm":
        raise click.UsageError(
            f"--cell {options['cell']} needs the lstm head (--head {head} has none)"
        )
    check_scorer(options["scorer"])


#: What a task-only option is when it was not given (``--scorer``'s None stands for
#: "fast", so that giving ``--scorer fast`` to another task is refused too).
_DEFAULTS = {"attention": False, "beam": 1, "scorer": None}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def train_config(options: dict, quiet: bool):
    """The :class:`TrainConfig` of the command's options (files as strings, the label map
    read, ``-q`` as Keras' verbosity): every field comes from the option of its name."""
    from dataclasses import fields

    from vidcache.pipeline.training import TrainConfig

    values = dict(options)
    values["stream"] = values.pop("stream_data")
    values["label_map"] = _read_label_map(values["label_map"])
    for name in ("split_file", "captions", "targets"):
        values[name] = str(values[name]) if values[name] else None
    values["scorer"] = values["scorer"] or "fast"
    values["verbose"] = 0 if quiet else 2
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:  # an option without a field would be silently dropped
        raise TypeError(f"train-rnn options without a TrainConfig field: {unknown}")
    return TrainConfig(**values)
