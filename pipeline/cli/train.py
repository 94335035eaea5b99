"""``train-rnn``: train a sequence model on cached features (stage two)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vidcache.pipeline.cli.common import CONTEXT, core_errors, expand_caches
from vidcache.pipeline.cli.options import (
    annotation_options,
    check_scorer,
    distribute_option,
    scorer_option,
    seed_option,
    task_option,
)
from vidcache.pipeline.cli.train_options import (
    data_options,
    fitting_options,
    model_options,
    task_options,
)
from vidcache.pipeline.cli.urls import CacheInput


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
  multilabel the cache's labels split at ';' (several per video); sigmoid
            outputs; mAP, GAP@20, hit@1
  segment   --segments CSV: video,start,end,label (seconds); a class per
            frame (background outside every segment); --head tcn (MS-TCN)
            or lstm/transformer, --head mean the per-frame baseline; frame
            accuracy, Edit, F1@{10,25,50}

\b
Example:
    train-rnn features.h5 -o runs/lstm
    train-rnn features.h5 -o runs/mean --head mean
    train-rnn a.h5 b.h5 -o runs/big --layers 2 --units 256 --class-weight balanced
    train-rnn features.h5 -o runs/cap --task caption --captions captions.csv --attention --beam 3
    train-rnn features.h5 -o runs/steer --task regress --targets steering.csv
    train-rnn features.h5 -o runs/seg --task segment --segments segments.csv --head tcn
"""


@click.command("train-rnn", help=_TRAIN_HELP, context_settings=CONTEXT)
@click.argument("features", nargs=-1, required=True, type=CacheInput())
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
    "segment: CSV video,start,end,label (seconds; frames outside every segment are "
    "'background'), or a folder of <video>.txt files, one label per frame (MS-TCN's "
    "ground truth).",
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
    if head == "tcn" and task != "segment":
        raise click.UsageError("--head tcn needs --task segment")
    if task == "segment":
        _check_segment_options(options)
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


def _check_segment_options(options: dict) -> None:
    """The TCN's options need its head; a segmentation head looks at the past only."""
    from vidcache.pipeline.training.tasks.segment import TCN_OPTIONS

    if options["head"] != "tcn":
        for name, default in TCN_OPTIONS.items():
            if options[name] != default:
                raise click.UsageError(f"{_flag(name)} needs --head tcn")
    if options["bidirectional"]:
        raise click.UsageError("--bidirectional cannot be used with --task segment")


#: What a task-only option is when it was not given (``--scorer``'s None stands for
#: "fast", so that giving ``--scorer fast`` to another task is refused too).
_DEFAULTS = {
    "attention": False,
    "beam": 1,
    "scorer": None,
    "stages": 4,
    "stage_layers": 10,
    "smoothing": 0.15,
    "causal": False,
    "threshold": 0.5,
}


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
    for name in ("split_file", "captions", "targets", "segments"):
        values[name] = str(values[name]) if values[name] else None
    values["scorer"] = values["scorer"] or "fast"
    values["verbose"] = 0 if quiet else 2
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:  # an option without a field would be silently dropped
        raise TypeError(f"train-rnn options without a TrainConfig field: {unknown}")
    return TrainConfig(**values)
