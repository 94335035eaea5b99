"""``vidcache export`` and ``vidcache import``: features as one NumPy file per video
(the v-iashin/video_features layout), out of a cache and into one."""

from __future__ import annotations

from pathlib import Path

import click

from vidcache.features.errors import SettingsDiffer
from vidcache.pipeline.cli.common import CONTEXT, advice, core_errors, expand_caches


@click.command("export", context_settings=CONTEXT)
@click.argument("caches", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["npy"]), default="npy", show_default=True,
              help="One .npy per video (video_features' layout).")  # fmt: skip
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default=None,
              help="Features' dtype in the files.  [default: the stored one]")  # fmt: skip
@core_errors
def export_command(caches, folder: Path, fmt: str, dtype: str | None) -> None:
    """Write every video of CACHES to FOLDER as <video>_<backbone>.npy (T, D), with
    <video>_timestamps_ms.npy, <video>_fps.npy, manifest.csv and settings.json.

    \b
    Example:
        vidcache export features.h5 npy/
    """
    from vidcache.features.npyio import export_npy

    report = export_npy(expand_caches(caches), folder, dtype)
    click.echo(f"{folder}: {report.videos} videos, {report.frames} frames")


@click.command("import", context_settings=CONTEXT)
@click.argument("sources", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))  # fmt: skip
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The cache to write (created, or extended with the same settings); for "
              "--format yt8m the folder of rgb.h5 and audio.h5.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["npy", "yt8m"]), default="npy",
              show_default=True,
              help="npy: a folder of per-video .npy files (video_features' layout, or "
              "'vidcache export'); yt8m: YouTube-8M frame-level TFRecord files.")  # fmt: skip
@click.option("--backbone-name",
              help="npy: what made the features (recorded as their backbone).  [default: a "
              "vidcache export's own; required for other folders]")  # fmt: skip
@click.option("--fps", type=click.FloatRange(min=0, min_open=True),
              help="npy: rows per second, for videos without _timestamps_ms / _fps files.  "
              "[default: a vidcache export's; required for other folders]")  # fmt: skip
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default=None,
              help="Storage dtype.  [default: npy: float16 if the files are, else float32; "
              "yt8m: float32, exact]")  # fmt: skip
@click.option("--vocabulary", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="yt8m: the dataset's vocabulary.csv (label names, not indices).")  # fmt: skip
@click.option("--shard", help="yt8m: K/N, only the videos whose id falls in share K of N.")
@core_errors
def import_command(sources, output: Path, fmt: str, backbone_name, fps, dtype, vocabulary,
                   shard) -> None:  # fmt: skip
    """Bring features made elsewhere into caches that train-rnn trains on.

    npy: a FOLDER of per-video .npy features (another tool's, or 'vidcache export'). Another
    tool's are recorded as imported; a vidcache export comes back as the cache it was (its
    settings, labels and provenance), with no option needed.

    yt8m: YouTube-8M frame-level TFRecord FILES (or folders of *.tfrecord) into OUTPUT/rgb.h5
    and OUTPUT/audio.h5, one row per second, labels joined by ';' (train them with
    --task multilabel, fused with --fuse). A rerun skips what is already imported.

    \b
    Example:
        vidcache import video_features_out/ -o clip.h5 --backbone-name clip-vit-b32 --fps 1
        vidcache import npy/ -o features.h5
        vidcache import --format yt8m train*.tfrecord -o yt8m/ --vocabulary vocabulary.csv
    """
    if fmt == "yt8m":
        if output.exists() and not output.is_dir():
            raise click.UsageError(f"-o {output} is a file; --format yt8m writes a folder")
        _import_yt8m(sources, output, dtype or "float32", vocabulary, shard)
        return
    if len(sources) != 1 or not sources[0].is_dir():
        raise click.UsageError("--format npy imports one folder of .npy files")
    if output.is_dir():  # as before --format existed: -o names the cache file
        raise click.UsageError(f"-o {output} is a folder; --format npy writes a cache file")
    for name, value in (("--vocabulary", vocabulary), ("--shard", shard)):
        if value is not None:
            raise click.UsageError(f"{name} needs --format yt8m")
    from vidcache.features.npyimport import import_npy

    with advice(SettingsDiffer, "import into a new file (-o)"):
        report = import_npy(sources[0], output, backbone_name, fps, dtype)
    for line in report.skipped:
        click.echo(f"skipped {line}", err=True)
    click.echo(f"{output}: imported {report.videos} videos, {report.frames} frames")
    if report.skipped:
        raise SystemExit(1)


def _import_yt8m(sources, output: Path, dtype: str, vocabulary, shard) -> None:
    from vidcache.features.shard import parse_shard
    from vidcache.features.yt8m import import_yt8m

    files = []
    for source in map(Path, sources):
        found = sorted(source.glob("*.tfrecord")) if source.is_dir() else [source]
        files.extend(found)
    share = parse_shard(shard) if shard else None

    def progress(path, report):
        click.echo(f"{path}: {report.videos} videos imported so far", err=True)

    with advice(SettingsDiffer, "import into a new folder (-o)"):
        report = import_yt8m(files, output, dtype, vocabulary, share, progress)
    for line in report.skipped:
        click.echo(f"skipped {line}", err=True)
    click.echo(
        f"{output}: imported {report.videos} videos ({report.seconds} s of rgb and audio rows), "
        f"{report.cached} already imported"
    )
    if report.skipped:
        raise SystemExit(1)
