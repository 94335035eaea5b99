"""``vidcache extract`` (``extract-features``): videos to a feature cache, on one machine
or on a Ray cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vidcache.features.errors import SettingsDiffer
from vidcache.features.remote.urls import is_url
from vidcache.features.settings import PRECISIONS, RESIZE_POLICIES, STORAGE_DTYPES
from vidcache.pipeline.cli.common import (
    CONTEXT,
    advice,
    backbone_option,
    core_errors,
    parse_weights,
)
from vidcache.pipeline.cli.engine_options import engine_options
from vidcache.pipeline.cli.registry_help import (  # noqa: E402
    LazyHelpOption,
    backbone_help,
    image_size_default,
    image_size_help,
    weights_help,
)
from vidcache.pipeline.cli.urls import OutputPath, VideoInput

OVERWRITE_ADVICE = "use --overwrite to replace it, or write to a new file"

_EXTRACT_HELP = """Extract per-frame features of VIDEOS (InceptionV3's by default, or another
--backbone's) into an HDF5 cache.

VIDEOS are files or folders (searched recursively; videos/<label>/<clip>.avi gives labels,
a folder of numbered images is one video), or URLs in a store (s3://bucket/videos/, an
object, a CSV list; pip install 'vidcache[cloud]'). Re-runs skip videos already cached with
the same content, so an interrupted run continues where it stopped.

\b
Example:
    extract-features videos/ -o features.h5
    extract-features videos/ -o features.h5 --num-frames 16 --precision bfloat16
    extract-features clips/ -o test.h5 --weights random --seed 0 --image-size 75
    extract-features videos/ -o features.h5 --engine ray --address auto
    extract-features videos/ -o shards/ --engine ray --workers 8 --num-gpus-per-worker 1
    extract-features s3://bucket/videos/ -o s3://bucket/features/ --engine ray
"""


@click.command("extract", help=_EXTRACT_HELP, context_settings=CONTEXT)
@click.argument("videos", nargs=-1, required=True, type=VideoInput())
@click.option(
    "-o",
    "--output",
    type=OutputPath(),
    default=Path("features.h5"),
    show_default=True,
    help="The HDF5 feature cache (with --engine ray, a folder: one cache per shard, also "
    "in a store: s3://bucket/features/).",
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
    "--sampling",
    type=click.Choice(["frames", "keyframes"]),
    default="frames",
    show_default=True,
    help="Which frames are candidates: all, or only keyframes (decoding nothing else; "
    "thinned by --fps, capped by --max-frames).",
)
@click.option(
    "--window",
    type=click.IntRange(min=1, max=4096),
    help="Group the kept frames into windows of W for a clip backbone (--backbone "
    "videoprism-base: 16, its default); each row covers a window (docs/recipes.md).",
)
@click.option(
    "--stride",
    type=click.IntRange(min=1, max=4096),
    help="Kept frames from one window's start to the next.  [default: the window]",
)
@click.option(
    "--pooling",
    type=click.Choice(["window", "frame"]),
    default=None,
    help="A clip backbone's rows: one per window (the mean of its tokens), or one per "
    "kept frame (its own tokens, from the window where it sits most central).  "
    "[default: window]",
)
@click.option(
    "--audio-span",
    type=click.FloatRange(min=0, max=60, min_open=True),
    default=None,
    metavar="SECONDS",
    help="An audio backbone's frame rows: seconds of sound each hears, centred on its "
    "frame (docs/audio.md); window rows hear their window.  [default: 0.96]",
)
@click.option(
    "--grid",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    metavar="CACHE",
    help="An audio backbone's run: take each file's kept frames from CACHE (a frame cache of "
    "the same sampling) instead of decoding the pictures again.",
)
@click.option(
    "--image-size",
    cls=LazyHelpOption,
    type=click.IntRange(min=1),
    default=None,
    help_factory=image_size_help,
    default_factory=image_size_default,
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
@backbone_option(backbone_help)
@click.option(
    "--weights",
    cls=LazyHelpOption,
    default="imagenet",
    show_default=True,
    metavar="imagenet|random|PATH",
    help_factory=weights_help,
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
@click.option(
    "--shard",
    metavar="K/N",
    help="Extract only share K of N (K from 0 to N-1, by a stable hash of the video id): N "
    "runs (a SLURM array, an Indexed Job) together cover every video once; then "
    "'vidcache merge'.",
)
@click.option(
    "--like",
    type=click.Path(exists=True, path_type=Path),
    help="Exactly the feature settings of this cache or run folder (weights, size, "
    "sampling, precision, dtype): new videos extracted to match it.",
)
@engine_options
@click.option("--prune", is_flag=True, help="Drop cached videos whose source file is gone.")
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing cache instead of adding to it."
)
@click.option("--strict", is_flag=True, help="Stop at the first video that cannot be read.")
@click.option(
    "--fsync",
    is_flag=True,
    help="fsync the cache at every commit: committed videos survive power loss too "
    "(a killed run never loses them either way).",
)
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
    sampling,
    window,
    stride,
    pooling,
    audio_span,
    grid,
    image_size,
    resize,
    folder_fps,
    backbone,
    weights,
    seed,
    precision,
    dtype,
    batch_size,
    decode_workers,
    shard,
    like,
    engine,
    prune,
    overwrite,
    strict,
    fsync,
    quiet,
) -> None:
    from dataclasses import replace

    from vidcache.features.video.discover import apply_labels, discover
    from vidcache.pipeline.cli.extract_settings import requested_run, settings_of
    from vidcache.pipeline.extraction.config import ExtractConfig
    from vidcache.pipeline.extraction.local import extract_features
    from vidcache.pipeline.extraction.report import ProgressReporter, format_summary

    engine.check(output, shard)
    if like is not None:  # the settings of another cache or run, copied as they are
        settings, spec = settings_of(like, weights)
        requested = replace(
            ExtractConfig.for_settings(settings, spec, batch_size),
            expect_weights_sha256=settings.weights_sha256,
        )
    else:
        spec = parse_weights(weights, seed)
        requested = requested_run(
            spec, fps, num_frames, max_frames, sampling, image_size, resize, folder_fps,
            backbone, precision, dtype, batch_size, window=window, stride=stride, pooling=pooling,
            audio_span=audio_span,
        )  # fmt: skip
        spec = requested.weights
    unreadable: list[str] = []

    def cannot_list(exc: Exception) -> None:
        unreadable.append(str(exc))
        click.echo(f"Error: {exc}", err=True)

    sources = discover(list(videos), glob, audio=requested.features.hears, unreadable=cannot_list)
    if labels_csv is not None:
        sources, unmatched = apply_labels(sources, labels_csv)
        for path in unmatched[:10]:
            click.echo(f"Warning: {labels_csv}: {path} matches no video", err=True)
        if len(unmatched) > 10:
            click.echo(f"Warning: ... and {len(unmatched) - 10} more unmatched rows", err=True)
    if not sources and unreadable:
        sys.exit(1)  # each input that could not be listed had its line: nothing more to say
    if not sources:
        raise click.ClickException(
            f"no videos found in {', '.join(str(v) for v in videos)} (see --glob)"
        )
    folders = [v for v in videos if Path(v).is_dir()]
    if folders and labels_csv is None and not any(s.label for s in sources):
        click.echo(
            f"Note: the videos have no labels: labels are the names of the sub-folders of the "
            f"folders given (give the folder above {folders[0]} to label its videos "
            f"{Path(folders[0]).resolve().name!r}), or come from --labels CSV",
            err=True,
        )
    if shard is not None:
        from vidcache.features.shard import parse_shard, select_shard

        index, count = parse_shard(shard)
        total = len(sources)
        sources = select_shard(sources, index, count)
        click.echo(f"shard {index}/{count}: {len(sources)} of {total} videos", err=True)
    if spec.kind == "random":
        click.echo(
            f"Warning: --weights random: features come from an UNTRAINED network (seed "
            f"{spec.seed}); use them for tests and demos only.",
            err=True,
        )
    if grid is not None and not requested.features.hears:
        raise click.UsageError(
            f"--grid gives an audio backbone its rows; {requested.backbone} decodes the frames"
        )
    config = replace(
        requested,
        grid=grid,
        overwrite=overwrite,
        prune=prune,
        strict=strict,
        fsync=fsync,
        decode_workers=decode_workers,
    )
    reporter = ProgressReporter(quiet=quiet)
    if engine.engine == "ray":
        from vidcache.pipeline.extraction.ray_engine import extract_with_ray as run

        if is_url(str(output)):  # shards in a store, staged here
            from vidcache.pipeline.extraction.bucket import extract_to_bucket as run

        with advice(SettingsDiffer, OVERWRITE_ADVICE):
            summary = run(sources, output, config, reporter, engine.ray_options())
    else:
        with advice(SettingsDiffer, OVERWRITE_ADVICE):
            summary = extract_features(sources, output, config, reporter)
    click.echo(format_summary(summary, output))
    if summary.interrupted:
        sys.exit(130)
    if summary.failures or unreadable:
        sys.exit(1)
