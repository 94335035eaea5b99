"""``evaluate``: a run's metrics recomputed on caches, or on videos."""

from __future__ import annotations

from pathlib import Path

import click

from vidcache.features.remote.urls import is_url
from vidcache.pipeline.cli.common import CONTEXT, core_errors, expand_caches
from vidcache.pipeline.cli.options import (
    annotation_options,
    check_scorer,
    scorer_option,
    weights_file_option,
)
from vidcache.pipeline.cli.urls import CacheInput


@click.command("evaluate", context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("features", nargs=-1, required=True, type=CacheInput())
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write metrics.json and confusion_matrix.png.  [default: RUN/eval-<cache name>]",
)
@annotation_options(
    "The references, for a caption run (CSV path,caption).",
    "The true values, for a regression run (CSV as for train-rnn).",
    "The true segments, for a segmentation run (CSV or folder, as for train-rnn).",
)
@scorer_option
@click.option(
    "--cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the features of VIDEOS are kept, so evaluating again costs no CNN.  "
    "[default: OUTPUT/features.h5]",
)
@weights_file_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar while extracting.")
@core_errors
def evaluate_command(
    run_dir: Path,
    features: tuple[Path, ...],
    output: Path | None,
    captions,
    targets,
    segments,
    scorer,
    cache: Path | None,
    weights_path: Path | None,
    quiet: bool,
) -> None:
    """Recompute a run's metrics on caches made with the same settings, or on videos.

    Several caches, or a folder of shard caches, count as one dataset. Videos (files, or
    folders of them) get their features made exactly as the run's and kept in a cache
    (--cache): the same command again, on the same videos, runs no CNN.

    \b
    Example:
        vidcache evaluate runs/lstm test_features.h5
        vidcache evaluate runs/lstm test_shards/
        vidcache evaluate runs/lstm test_videos/
        vidcache evaluate runs/cap test_features.h5 --captions test_captions.csv
        vidcache evaluate runs/steer test_features.h5 --targets test_steering.csv
        vidcache evaluate runs/seg test_features.h5 --segments test_segments.csv
    """
    from vidcache.pipeline.training import evaluate_run
    from vidcache.pipeline.training.runs import run_task

    given = {
        name: path
        for name, path in (("captions", captions), ("targets", targets), ("segments", segments))
        if path is not None
    }
    if len(given) > 1:
        first, second = list(given)[:2]
        raise click.UsageError(f"--{first} cannot be used with --{second}")
    references = next(iter(given.values()), None)
    check_scorer(scorer)
    task = run_task(run_dir)  # what the run needs is checked before any work
    if task.annotations and task.annotations not in given:
        raise click.UsageError(
            f"{run_dir} is a {task.name} run: give the references with --{task.annotations} CSV"
        )
    if given and task.annotations not in given:
        raise click.UsageError(f"{run_dir} is a {task.name} run: it takes no --{list(given)[0]}")
    caches, videos = _caches_and_videos(features)
    if videos:
        output = output or run_dir / f"eval-{videos[0].resolve().name}"
        kept = cache or output / "features.h5"
        labelled = task.annotations is None
        caches.extend(_cache_videos(run_dir, videos, kept, weights_path, quiet, labelled))
    elif cache is not None:
        raise click.UsageError("--cache keeps the features of videos; no videos were given")
    metrics, out = evaluate_run(run_dir, caches, output, references, scorer)
    features = features[0] if len(features) == 1 else f"{len(caches)} caches"
    for note in metrics.get("notes", []):
        click.echo(f"Note: {note}", err=True)
    for line in run_task(run_dir).evaluation_lines(metrics, str(features), out):
        click.echo(line)


def _caches_and_videos(paths) -> tuple[list[Path], list[Path]]:
    """Cache files and folders of caches, apart from videos and folders of videos."""
    caches, videos = [], []
    for path in paths:
        if is_url(str(path)):  # a cache or a prefix of caches, else videos in a store
            is_cache = str(path).lower().endswith((".h5", ".hdf5")) or _holds_caches(str(path))
            if is_cache:
                caches.extend(expand_caches([path]))
            else:
                videos.append(path)
            continue
        path = Path(path)
        is_cache = path.suffix.lower() in (".h5", ".hdf5") and path.is_file()
        if is_cache or (path.is_dir() and any(path.glob("*.h5"))):
            caches.extend(expand_caches([path]))
        else:
            videos.append(path)
    return caches, videos


def _holds_caches(url: str) -> bool:
    from vidcache.features.remote.caches import list_caches
    from vidcache.features.remote.urls import RemoteError

    try:
        return bool(list_caches(url))
    except RemoteError:
        return False


def _cache_videos(
    run_dir: Path, videos: list[Path], cache: Path, weights_path, quiet, labelled: bool
) -> list[Path]:
    """Bring ``cache`` up to date with the features of ``videos`` as the run made them (a
    fused run: one cache per feature set beside it). ``labelled``: the run scores labels,
    so videos without one are refused before any extraction."""
    from vidcache.features.video.discover import discover
    from vidcache.pipeline.extraction.local import run_settings
    from vidcache.pipeline.extraction.report import ProgressReporter, format_summary
    from vidcache.pipeline.extraction.reproduce import feature_parts, part_cache
    from vidcache.pipeline.inference.predict import features_for_run

    sources = discover(videos)
    if not sources:
        raise click.ClickException(f"no videos found in {', '.join(map(str, videos))}")
    if labelled and not any(s.label for s in sources):
        raise click.ClickException(
            f"no video in {', '.join(map(str, videos))} has a label to score against: give "
            "a folder whose sub-folders are the classes (class/clip.mp4), or a cache"
        )
    parts = feature_parts(run_settings(run_dir))
    made = []
    for number, settings in enumerate(parts, start=1):
        where = part_cache(cache, number, settings, len(parts))
        reporter = ProgressReporter(quiet=quiet)
        summary = features_for_run(settings, sources, where, weights_path, 32, reporter)
        click.echo(format_summary(summary, where), err=True)
        made.append(where)
    return made
