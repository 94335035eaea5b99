"""The command line: thin click commands that map options onto the library.

Errors from the core (``features.errors.VidcacheError``) become one ``Error: ...`` line.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from features.errors import VidcacheError
from features.settings import PRECISIONS, RESIZE_POLICIES, STORAGE_DTYPES
from pipeline import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def core_errors(function):
    """Turn core errors (``VidcacheError``) into ``click.ClickException``: one line, exit 1."""

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except VidcacheError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapped


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


_EXTRACT_HELP = """Extract per-frame InceptionV3 features of VIDEOS into an HDF5 cache.

VIDEOS are files or folders (searched recursively; videos/<label>/<clip>.avi gives labels,
a folder of numbered images is one video). Re-runs skip videos already cached with the
same content, so an interrupted run continues where it stopped.

\b
Example:
    extract-features videos/ -o features.h5
    extract-features videos/ -o features.h5 --num-frames 16 --precision bfloat16
    extract-features clips/ -o test.h5 --weights random --seed 0 --image-size 75
"""


@click.command("extract", help=_EXTRACT_HELP, context_settings=CONTEXT)
@click.argument("videos", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("features.h5"),
    show_default=True,
    help="The HDF5 feature cache.",
)
@click.option(
    "--labels",
    "labels_csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with columns path,label (extra columns kept as metadata); overrides folder labels.",
)
@click.option(
    "--glob",
    "glob",
    metavar="PATTERN",
    help="File-name pattern of videos (e.g. '*.avi'), instead of known extensions.",
)
@click.option(
    "--fps",
    type=click.FloatRange(min=0),
    default=None,
    help="Keep frames at most F per second; 0 keeps every frame.  [default: 5]",
)
@click.option(
    "--num-frames",
    type=click.IntRange(min=1),
    help="Keep exactly N frames evenly spaced over each clip.",
)
@click.option("--max-frames", type=click.IntRange(min=1), help="Keep at most N frames per clip.")
@click.option(
    "--image-size",
    type=click.IntRange(min=75),
    default=299,
    show_default=True,
    help="Side of the square CNN input in pixels.",
)
@click.option(
    "--resize",
    type=click.Choice(RESIZE_POLICIES),
    default="center-crop",
    show_default=True,
    help="How frames become square (see docs/cache-format.md).",
)
@click.option(
    "--folder-fps",
    type=click.FloatRange(min=0, min_open=True),
    default=25.0,
    show_default=True,
    help="Frame rate of folders of numbered images.",
)
@click.option(
    "--weights",
    default="imagenet",
    show_default=True,
    metavar="imagenet|random|PATH",
    help="Backbone weights: Keras' ImageNet file, a seeded random init (tests and "
    "demos only), or a weights file.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --weights random.")
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="float32",
    show_default=True,
    help="CNN compute precision.",
)
@click.option(
    "--dtype",
    type=click.Choice(STORAGE_DTYPES),
    default="float32",
    show_default=True,
    help="Storage dtype of the features.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Frames per CNN call (packed across videos).",
)
@click.option(
    "--decode-workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Videos decoded at once; 0: one on a CPU, several when a GPU runs the CNN.",
)
@click.option("--prune", is_flag=True, help="Drop cached videos whose source file is gone.")
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing cache instead of adding to it."
)
@click.option("--strict", is_flag=True, help="Stop at the first video that cannot be read.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; errors and summary only.")
@core_errors
def extract(
    videos,
    output,
    labels_csv,
    glob,
    fps,
    num_frames,
    max_frames,
    image_size,
    resize,
    folder_fps,
    weights,
    seed,
    precision,
    dtype,
    batch_size,
    decode_workers,
    prune,
    overwrite,
    strict,
    quiet,
) -> None:
    from features.backbone import WeightsSpec
    from features.discover import apply_labels, discover
    from features.settings import SamplingSpec
    from pipeline.extract import ExtractConfig, extract_features
    from pipeline.report import ProgressReporter, format_summary

    if num_frames is not None and fps is not None:
        raise click.ClickException("--num-frames cannot be used with --fps")
    if num_frames is not None and max_frames is not None:
        raise click.ClickException("--num-frames cannot be used with --max-frames")
    if num_frames is None and fps is None:
        fps = 5.0
    sampling = SamplingSpec(fps=fps or None, num_frames=num_frames, max_frames=max_frames)
    spec = WeightsSpec.parse(weights, seed)
    sources = discover(list(videos), glob)
    if labels_csv is not None:
        sources, unmatched = apply_labels(sources, labels_csv)
        for path in unmatched[:10]:
            click.echo(f"Warning: {labels_csv}: {path} matches no video", err=True)
        if len(unmatched) > 10:
            click.echo(f"Warning: ... and {len(unmatched) - 10} more unmatched rows", err=True)
    if not sources:
        raise click.ClickException(
            f"no videos found in {', '.join(str(v) for v in videos)} (see --glob)"
        )
    if spec.kind == "random":
        click.echo(
            f"Warning: --weights random: features come from an UNTRAINED network (seed {seed}); "
            "use them for tests and demos only.",
            err=True,
        )
    config = ExtractConfig(
        weights=spec,
        image_size=image_size,
        resize=resize,
        sampling=sampling,
        folder_fps=folder_fps,
        precision=precision,
        dtype=dtype,
        batch_size=batch_size,
        overwrite=overwrite,
        prune=prune,
        strict=strict,
        decode_workers=decode_workers,
    )
    reporter = ProgressReporter(quiet=quiet)
    summary = extract_features(sources, output, config, reporter)
    click.echo(format_summary(summary, output))
    if summary.interrupted:
        sys.exit(130)
    if summary.failures:
        sys.exit(1)


cli.add_command(extract)
#: The ``extract-features`` console script: the same command as ``vidcache extract``.
extract_features_command = extract


@cli.command("inspect", context_settings=CONTEXT)
@click.argument("cache", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@core_errors
def inspect_command(cache: Path, as_json: bool) -> None:
    """Summarise a feature cache: videos per label, frames, settings, provenance.

    \b
    Example:
        vidcache inspect features.h5
        vidcache inspect features.h5 --json | jq .labels
    """
    from pipeline.report import cache_summary, format_cache_summary

    summary = cache_summary(cache)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        click.echo(format_cache_summary(summary))


@cli.command("make-demo-data", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--clips-per-class", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seconds", type=click.FloatRange(min=0.5), default=3.0, show_default=True)
@click.option("--fps", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def make_demo_data(
    directory: Path, clips_per_class: int, seconds: float, fps: int, seed: int
) -> None:
    """Write small synthetic videos of three classes (grow, shrink, pulse) to DIRECTORY.

    Clips come in several containers and codecs (H.264 MP4, MPEG-4 AVI, VP9 WebM, FFV1 MKV,
    MJPEG AVI) plus one folder of PNG frames per class. The classes differ only in the order
    of their frames.

    \b
    Example:
        vidcache make-demo-data demo/videos --clips-per-class 8
    """
    from features.synthetic import DEMO_CLASSES, make_demo_dataset

    written = make_demo_dataset(directory, clips_per_class, fps=fps, seconds=seconds, seed=seed)
    click.echo(
        f"wrote {len(written)} clips of {len(DEMO_CLASSES)} classes ({', '.join(DEMO_CLASSES)}) "
        f"to {directory}"
    )


@cli.command("weights", context_settings=CONTEXT)
@click.option("--check", is_flag=True, help="Only check; exit 1 if the ImageNet file is missing.")
@core_errors
def weights_command(check: bool) -> None:
    """Show where Keras' ImageNet InceptionV3 weights live, and fetch them if missing.

    With no network, fetch the file elsewhere and copy it to the printed path, or pass
    --weights PATH to extract-features.

    \b
    Example:
        vidcache weights            # download into the Keras cache if missing
        vidcache weights --check    # exit status 0 when present
    """
    from features.backbone import imagenet_weights
    from features.errors import WeightsUnavailable

    try:
        path = imagenet_weights(download=not check)
    except WeightsUnavailable as exc:
        if not check:
            raise
        click.echo(f"Not available: {exc}", err=True)
        sys.exit(1)
    click.echo(f"ImageNet weights: {path}")
