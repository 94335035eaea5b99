"""``vidcache verify``, ``vidcache compact``, ``vidcache migrate``: keeping a cache healthy.

Thin click commands over :mod:`vidcache.features.cache.maintenance`, imported when a command
runs (``--help`` stays instant).
"""

from __future__ import annotations

from pathlib import Path

import click

from vidcache.pipeline.cli.common import CONTEXT, core_errors, expand_caches
from vidcache.pipeline.outputs import prepare_output_dir

_CACHE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _videos_in(paths, tolerant: bool = False) -> int:
    """Videos in the caches (a progress bar's total): one index read each."""
    from vidcache.features.cache import CacheReader

    total = 0
    for path in paths:
        with CacheReader(path, tolerant=tolerant) as reader:
            total += reader.stats()["videos"]
    return total


def _with_progress(label: str, total: int, quiet: bool, work):
    """``work(update)`` under a progress bar over ``total`` videos (none when quiet or
    small); ``update(done)`` moves it."""
    if quiet or total < 256:
        return work(None)
    with click.progressbar(length=total, label=label, file=click.get_text_stream("stderr")) as bar:
        state = {"done": 0}

        def update(done: int) -> None:
            bar.update(done - state["done"])
            state["done"] = done

        return work(update)


@click.command("verify", context_settings=CONTEXT)
@click.argument("cache", type=_CACHE)
@click.option(
    "--repair",
    is_flag=True,
    help="Drop the damaged videos, so the next extract-features run extracts them again.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@core_errors
def verify_command(cache: Path, repair: bool, quiet: bool) -> None:
    """Read every video of CACHE and check its rows against their checksums.

    Prints one line per damaged video and exits 1 when any is damaged (0 when all are
    whole). With --repair the damaged videos are dropped from the cache; re-running the
    extract-features command that made it then extracts exactly those again.

    \b
    Example:
        vidcache verify features.h5
        vidcache verify features.h5 --repair && extract-features videos/ -o features.h5
    """
    from vidcache.features.cache import maintenance

    total = _videos_in([cache], tolerant=True)
    report = _with_progress("verifying", total, quiet, lambda up: maintenance.verify(cache, up))
    if report.count_damaged:
        click.echo(
            f"damaged: the index: its commit count fails its checksum ({report.videos} videos "
            "in the records that check out)"
        )
    for position, video_id in report.damaged_records:
        click.echo(f"damaged: index record #{position} (video {video_id!r}) fails its checksum")
    for video_id, reason in report.damaged.items():
        click.echo(f"damaged: {video_id}: {reason}")
    whole = report.videos - len(report.damaged)
    index = "index checked" if report.checked else "index records unverified (no checksums)"
    if report.schema_version == 1:
        index = "no checksums in schema 1"
    bad = len(report.damaged) + len(report.damaged_records)
    count = ", its commit count damaged" if report.count_damaged else ""
    click.echo(
        f"{cache}: {whole} of {report.videos} videos whole, {bad} damaged{count} "
        f"({report.rows} rows, {report.bytes_read / 1e6:.1f} MB checked; schema "
        f"{report.schema_version}, {index})"
    )
    if not report.whole and repair:
        dropped = maintenance.repair(cache, report)
        click.echo(f"dropped {dropped} damaged video(s): run extract-features again to redo them")
        return
    if not report.whole:
        raise SystemExit(1)


@click.command("compact", context_settings=CONTEXT)
@click.argument("cache", type=_CACHE)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@core_errors
def compact_command(cache: Path, quiet: bool) -> None:
    """Rewrite CACHE without the rows of replaced and deleted videos.

    The new file is written beside the old one and renamed over it only when complete, so
    a crash leaves the old file as it was. Needs room for a second copy of the live rows.

    \b
    Example:
        vidcache compact features.h5
    """
    from vidcache.features.cache import maintenance

    total = _videos_in([cache])
    report = _with_progress("compacting", total, quiet, lambda up: maintenance.compact(cache, up))
    click.echo(
        f"{cache}: {report.videos} videos, {report.bytes_before / 1e6:.1f} MB -> "
        f"{report.bytes_after / 1e6:.1f} MB in {report.seconds:.1f} s"
    )


@click.command("migrate", context_settings=CONTEXT)
@click.argument("cache", type=_CACHE)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the upgraded cache here instead of replacing CACHE.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@core_errors
def migrate_command(cache: Path, output: Path | None, quiet: bool) -> None:
    """Upgrade a cache of schema 1 (vidcache 0.1) or 2 (no index checksums) to schema 3.

    The old file stays untouched until the new one is complete. Features, timestamps and
    every per-video record are copied as they are, so training on the upgraded cache gives
    the same results. (extract-features upgrades a schema-1 cache by itself.)

    \b
    Example:
        vidcache migrate old.h5 -o new.h5
        vidcache migrate features.h5
    """
    from vidcache.features.cache import maintenance
    from vidcache.features.cache.store import SCHEMA_VERSION

    if output is not None:
        prepare_output_dir(output.parent, "cache folder")
    if output is not None and output.exists():
        raise click.ClickException(
            f"{output} exists; name a new file, or omit -o to upgrade in place"
        )
    total = _videos_in([cache])
    report = _with_progress(
        "migrating", total, quiet, lambda up: maintenance.migrate(cache, output, up)
    )
    click.echo(
        f"{output or cache}: schema {SCHEMA_VERSION}, {report.videos} videos "
        f"({report.bytes_before / 1e6:.1f} MB -> {report.bytes_after / 1e6:.1f} MB, "
        f"{report.seconds:.1f} s)"
    )


@click.command("merge", context_settings=CONTEXT)
@click.argument("caches", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The merged cache (a new file).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@core_errors
def merge_command(caches, output: Path, quiet: bool) -> None:
    """Merge caches of one kind (the shards of an --shard run) into one new cache.

    Feature settings must be identical (refused otherwise, naming the difference). A video
    in several caches is kept once if its content fingerprint agrees, refused if not. Rows
    are copied in large sequential blocks; OUTPUT appears only when complete. A folder
    stands for the .h5 files in it. (train-rnn also takes the shards directly.)

    \b
    Example:
        extract-features videos/ -o shards/part-3.h5 --shard 3/16   # x16, anywhere
        vidcache merge shards/ -o features.h5
    """
    from vidcache.features.cache import maintenance

    sources = expand_caches(caches)
    prepare_output_dir(output.parent, "cache folder")
    total = _videos_in(sources)
    report = _with_progress(
        "merging", total, quiet, lambda up: maintenance.merge(sources, output, up)
    )
    click.echo(
        f"{output}: {report.videos} videos from {len(sources)} caches, "
        f"{report.feature_bytes / 1e9:.2f} GB of features in {report.seconds:.1f} s "
        f"({report.gb_per_second:.2f} GB/s)"
    )
