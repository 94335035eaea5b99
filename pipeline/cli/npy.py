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
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The cache to write (created, or extended with the same settings).")  # fmt: skip
@click.option("--backbone-name",
              help="What made the features (recorded as their backbone).  [default: a "
              "vidcache export's own; required for other folders]")  # fmt: skip
@click.option("--fps", type=click.FloatRange(min=0, min_open=True),
              help="Rows per second, for videos without _timestamps_ms / _fps files.  "
              "[default: a vidcache export's; required for other folders]")  # fmt: skip
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default=None,
              help="Storage dtype.  [default: float16 if the files are, else float32]")  # fmt: skip
@core_errors
def import_command(folder: Path, output: Path, backbone_name: str, fps: float, dtype) -> None:
    """Bring FOLDER's per-video .npy features (another tool's, or 'vidcache export') into
    a cache that train-rnn trains on. Another tool's are recorded as imported; a vidcache
    export comes back as the cache it was (its settings, labels and provenance), with no
    option needed.

    \b
    Example:
        vidcache import video_features_out/ -o clip.h5 --backbone-name clip-vit-b32 --fps 1
        vidcache import npy/ -o features.h5
    """
    from vidcache.features.npyimport import import_npy

    with advice(SettingsDiffer, "import into a new file (-o)"):
        report = import_npy(folder, output, backbone_name, fps, dtype)
    for line in report.skipped:
        click.echo(f"skipped {line}", err=True)
    click.echo(f"{output}: imported {report.videos} videos, {report.frames} frames")
    if report.skipped:
        raise SystemExit(1)
