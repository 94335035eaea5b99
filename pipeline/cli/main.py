"""The ``vidcache`` group: its own small commands (``inspect``, ``make-demo-data``,
``weights``) and every other module's, and the console scripts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vidcache.pipeline import __version__
from vidcache.pipeline.cli import cache as cache_commands
from vidcache.pipeline.cli import e2e, evaluate, predict, train
from vidcache.pipeline.cli import extract as extract_command
from vidcache.pipeline.cli import npy as npy_commands
from vidcache.pipeline.cli.common import CONTEXT, backbone_option, core_errors, expand_caches
from vidcache.pipeline.cli.urls import CacheInput


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="vidcache")
def cli() -> None:
    """vidcache: extract CNN features from video once, train sequence models many times.

    \b
    Example:
        vidcache make-demo-data demo/videos
        vidcache extract demo/videos -o demo/features.h5 --weights random
        vidcache inspect demo/features.h5
    """


@cli.command("inspect", context_settings=CONTEXT)
@click.argument("caches", nargs=-1, required=True, type=CacheInput())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--spans",
    "spans_of",
    metavar="VIDEO_ID",
    help="Print each row of one video instead: its time, frame index and span (the frames "
    "and seconds a window row covers).",
)
@core_errors
def inspect_command(caches: tuple[Path, ...], as_json: bool, spans_of: str | None) -> None:
    """Summarise a feature cache: videos per label, frames, settings, provenance. Several
    caches, or a folder of shard caches, are summarised as one dataset.

    \b
    Example:
        vidcache inspect features.h5
        vidcache inspect shards/
        vidcache inspect features.h5 --json | jq .labels
        vidcache inspect prism.h5 --spans class/clip.mp4
    """
    from vidcache.pipeline.cli.cache_report import (
        cache_summary,
        format_cache_summary,
        format_spans,
        video_spans,
    )

    paths = expand_caches(caches, copy=False)  # a cache in a store is read in place
    if spans_of is not None:
        table = video_spans(paths, spans_of)
        click.echo(json.dumps(table, indent=2) if as_json else format_spans(table))
        return
    summary = cache_summary(paths[0] if len(paths) == 1 else paths)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        click.echo(format_cache_summary(summary))


@cli.command("make-demo-data", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--clips-per-class", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seconds", type=click.FloatRange(min=0.5), default=3.0, show_default=True)
@click.option("--fps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--sound",
    is_flag=True,
    help="Every clip a file with a soundtrack: a tone whose pitch follows the square.",
)
@core_errors
def make_demo_data(
    directory: Path, clips_per_class: int, seconds: float, fps: int, seed: int, sound: bool
) -> None:
    """Write small synthetic videos of three classes (grow, shrink, pulse) to DIRECTORY.

    Clips come in several containers and codecs (H.264 MP4, MPEG-4 AVI, VP9 WebM, FFV1 MKV,
    MJPEG AVI) plus one folder of PNG frames per class. The classes differ only in the order
    of their frames. With --sound, every clip has a soundtrack whose pitch follows the
    square (AAC MP4, Opus MKV, PCM AVI), for the audio backbones (docs/audio.md).
    DIRECTORY/captions.csv describes each clip (for --task caption) and
    DIRECTORY/targets.csv gives the square's size per frame (for --task regress).

    \b
    Example:
        vidcache make-demo-data demo/videos --clips-per-class 8
    """
    from vidcache.features.synthetic import DEMO_CLASSES, make_demo_dataset
    from vidcache.pipeline.outputs import prepare_output_dir

    prepare_output_dir(directory, "demo data folder")
    written = make_demo_dataset(
        directory, clips_per_class, fps=fps, seconds=seconds, seed=seed, sound=sound
    )
    click.echo(
        f"wrote {len(written)} clips of {len(DEMO_CLASSES)} classes ({', '.join(DEMO_CLASSES)}) "
        f"to {directory}, with captions.csv (3 per clip), targets.csv (square size per frame), "
        "segments.csv (when it grows, when it shrinks) and tags.csv (labels for --task "
        "multilabel)"
    )


@cli.command("weights", context_settings=CONTEXT)
@click.option("--check", is_flag=True, help="Only check; exit 1 if the ImageNet file is missing.")
@click.option(
    "--list",
    "list_all",
    is_flag=True,
    help="List every registered backbone: its features, input size and pretrained file, "
    "present or not (downloads nothing).",
)
@backbone_option("Whose weights: a registered backbone.")
@core_errors
def weights_command(check: bool, list_all: bool, backbone: str) -> None:
    """Show where Keras' ImageNet weights of a backbone (InceptionV3 by default) live, and
    fetch them if missing.

    With no network, fetch the file elsewhere and copy it to the printed path, or pass
    --weights PATH to extract-features.

    \b
    Example:
        vidcache weights            # download into the Keras cache if missing
        vidcache weights --check    # exit status 0 when present
        vidcache weights --list     # every backbone and where its file goes
    """
    from vidcache.features.backbone import imagenet_weights
    from vidcache.features.errors import WeightsUnavailable

    if list_all:
        _list_backbones()
        return

    try:
        path = imagenet_weights(download=not check, backbone=backbone)
    except WeightsUnavailable as exc:
        if not check:
            raise
        click.echo(f"Not available: {exc}", err=True)
        sys.exit(1)
    click.echo(f"ImageNet weights: {path}")


def _list_backbones() -> None:
    """One line per registered backbone: dimension, input sizes, pretrained file and state."""
    from vidcache.features.backbones import backbone_names, get_backbone, keras_cache_dir

    folder = keras_cache_dir()
    click.echo(f"Keras cache: {folder}")
    for name in backbone_names():
        entry = get_backbone(name)
        line = (
            f"{name}: {entry.feature_dim}-d, {entry.default_image_size} px "
            f"(at least {entry.min_image_size})"
        )
        if entry.hears:
            line = f"{name}: {entry.feature_dim}-d, hears {entry.sample_rate} Hz mono"
        if entry.pretrained is None:
            needs = ""
            if entry.extra is not None:
                needs = f"; needs the {entry.extra} extra (pip install 'vidcache[{entry.extra}]')"
                if _extra_installed(entry.extra):
                    needs = f"; {entry.extra} extra installed"
            click.echo(f"{line}; real weights: {entry.real_weights or 'a weights file'}{needs}")
            continue
        state = "present" if (folder / entry.pretrained.name).is_file() else "missing"
        click.echo(f"{line}; {entry.pretrained.name} ({state}) from {entry.pretrained.url}")


def _extra_installed(extra: str) -> bool:
    """Whether the packages of a vidcache extra that backbones need are importable."""
    import importlib.util

    modules = {"hub": "keras_hub"}
    return importlib.util.find_spec(modules.get(extra, extra)) is not None


# Commands of their own modules (they import nothing from this one).
for _command in (
    extract_command.extract,
    train.train_rnn_command,
    evaluate.evaluate_command,
    predict.predict_command,
    e2e.train_e2e_command,
    cache_commands.verify_command,
    cache_commands.compact_command,
    cache_commands.migrate_command,
    cache_commands.merge_command,
    npy_commands.export_command,
    npy_commands.import_command,
):
    cli.add_command(_command)
#: The ``extract-features`` console script: the same command as ``vidcache extract``.
extract_features_command = click.version_option(__version__, prog_name="extract-features")(
    extract_command.extract
)
# The console script is the command itself; it answers --version (so does `vidcache train-rnn`).
train_rnn_script = click.version_option(__version__, prog_name="train-rnn")(train.train_rnn_command)
