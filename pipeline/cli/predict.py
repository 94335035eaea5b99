"""``predict``: a trained run on new videos, whole or frame by frame (``--stream``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vidcache.features.errors import SettingsDiffer
from vidcache.pipeline.cli.common import CONTEXT, advice, core_errors
from vidcache.pipeline.cli.options import weights_file_option


@click.command("predict", context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("videos", nargs=-1, required=True)
@click.option("--top", "top_k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON document; with --stream, one JSON object per line (JSON lines).",
)
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="CSV: path,rank,label,probability (classify); path,caption (caption); path,values "
    "or path,time,values per frame (regress); frame,time,values with --stream.",
)
@click.option(
    "--stream",
    "as_stream",
    is_flag=True,
    help="Frame by frame: CNN once per frame, LSTM state carried on.",
)
@click.option(
    "--every",
    type=click.IntRange(min=1),
    help="With --stream: print every K sampled frames.  [default: 5; 1 for a regression run]",
)
@click.option("--format", "input_format", help="With --stream: FFmpeg input format (v4l2...).")
@click.option(
    "--beam",
    type=click.IntRange(min=1),
    help="Caption runs: beam width (1 = greedy).  [default: the run's --beam]",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Multi-label runs: name the labels at this probability or above.  [default: the "
    "run's --threshold]",
)
@weights_file_option
@click.option(
    "--cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the features of the videos in this cache (made or extended): predicting on "
    "them again, or training on them later, needs no CNN.",
)
@core_errors
def predict_command(
    run_dir,
    videos,
    top_k,
    as_json,
    as_csv,
    as_stream,
    every,
    input_format,
    beam,
    threshold,
    weights_path,
    cache,
) -> None:
    """Predict with a trained RUN: the classes, the caption or the values of new videos.

    Features are made exactly as in the run's cache (refused if they cannot be); videos
    already in that cache are not extracted again. With --stream, one video (or camera, or
    stream URL) is processed frame by frame the way a live system would: a classifier
    prints its current classes, a regressor a value per frame, a captioner the caption of
    the frames so far.

    \b
    Example:
        vidcache predict runs/lstm new/*.mp4 --top 3
        vidcache predict runs/lstm new/ --cache new_features.h5
        vidcache predict runs/cap new/clip.mp4 --beam 3
        vidcache predict runs/lstm clip.mp4 --stream --every 5
        vidcache predict runs/steer drive.mp4 --stream --csv > steering.csv
        vidcache predict runs/lstm /dev/video0 --stream --format v4l2
    """
    from vidcache.pipeline.inference.predict import predict_videos
    from vidcache.pipeline.training import load_run

    if as_json and as_csv:
        raise click.UsageError("--json cannot be used with --csv")
    caches = [v for v in videos if Path(v).suffix.lower() in (".h5", ".hdf5") and Path(v).is_file()]
    if caches:
        raise click.UsageError(
            f"{caches[0]} is a feature cache; predict takes videos: to score a cache against "
            f"its labels, run 'vidcache evaluate {run_dir} {caches[0]}'"
        )
    if threshold is not None:
        from vidcache.pipeline.training.runs import run_task

        task = run_task(run_dir).name  # before the model is loaded
        if task != "multilabel":
            raise click.UsageError(
                f"--threshold is for multi-label runs; {run_dir} is a {task} run"
            )
    run = load_run(run_dir)
    if threshold is not None:
        run.config["threshold"] = threshold  # this prediction's, not the run's file
    if as_stream:
        if len(videos) != 1:
            raise click.UsageError("--stream takes exactly one video or source")
        form = "json" if as_json else "csv" if as_csv else "text"
        _predict_stream(run, videos[0], every, top_k, weights_path, input_format, form, beam)
        return
    from vidcache.features.video.discover import discover

    sources = discover([Path(v) for v in videos])
    if not sources:
        raise click.ClickException("no videos found")
    with advice(SettingsDiffer, "give --cache a new file, or one made for this run"):
        predictions = predict_videos(run, sources, top_k, weights_path, beam=beam, cache=cache)
    from vidcache.pipeline.training.tasks.base import csv_field

    task = run.task_class
    if as_json:
        click.echo(json.dumps([_prediction_json(task, run, p) for p in predictions], indent=2))
    elif as_csv:
        click.echo(task.csv_header(run))
        for p in predictions:
            if not p.error:
                for line in task.csv_rows(run, csv_field(p.path), p):
                    click.echo(line)
    else:
        for p in predictions:
            if p.error:
                click.echo(f"{p.path}: skipped: {p.error}", err=True)
            else:
                click.echo(f"{p.path}: {task.prediction_text(run, p)}")
    if any(p.error for p in predictions):
        sys.exit(1)


def _prediction_json(task, run, p) -> dict:
    out = {"path": p.path, "video_id": p.video_id, "source": p.source, "error": p.error or None}
    return {**out, **task.prediction_json(run, p)}


def _predict_stream(run, location, every, top_k, weights_path, input_format, form, beam):
    import numpy as np

    from vidcache.pipeline.inference.predict import stream_predict

    task = run.task_class
    every = every or task.stream_every
    as_csv = form != "text"  # the summary goes to stderr when stdout is a table or JSON lines
    if form == "csv":
        click.echo(task.stream_header(run))

    def show(frame, timestamp, output):
        if form == "json":
            click.echo(json.dumps(task.stream_json(run, frame, timestamp, output, top_k)))
        else:
            click.echo(task.stream_line(run, frame, timestamp, output, form == "csv", top_k))

    report = stream_predict(run, location, every, top_k, weights_path, show, input_format, beam)
    if report.frames == 0:
        raise click.ClickException(f"{location}: no frames")
    total = np.add(report.cnn_seconds, report.step_seconds) * 1e3
    steady = slice(1, None) if report.frames > 1 else slice(None)
    cnn = np.median(report.cnn_seconds[steady]) * 1e3
    step = np.median(report.step_seconds[steady]) * 1e3
    # With --csv or --json, stdout is the table or the JSON lines; the summary goes to stderr.
    click.echo(f"final after {report.frames} frames: {task.stream_final(run, report)}", err=as_csv)
    click.echo(
        f"latency per frame (median after the first): CNN {cnn:.1f} ms + LSTM step "
        f"{step:.2f} ms; first frame {total[0]:.0f} ms (includes tracing)",
        err=as_csv,
    )
