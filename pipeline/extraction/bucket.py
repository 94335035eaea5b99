"""``extract-features ... -o s3://bucket/features/ --engine ray``: shard caches kept in a
store, whose objects cannot be written in place.

1. The remote shards are listed and the index of each is read in place by ranged reads
   (:func:`vidcache.features.remote.caches.open_remote`): a shard none of whose videos is
   new, changed or (``--prune``) gone is left where it is, and not one of its rows is read.
2. Each shard that has work is staged in a local folder: a copy an interrupted run left,
   when the remote shard is still the one it started from, is continued (its committed
   videos are not done again); else the remote shard is downloaded, or a new one begun.
3. The ordinary folder run (:func:`.ray_engine.extract_with_ray`, with or without a
   shared disk) brings the staged shards up to date.
4. Each staged shard is uploaded whole as soon as the run has finished it (the others go
   on), and the rest at the end (also when interrupted): an object store shows an upload
   under its name only once it is complete, so a reader never sees half a shard. A remote
   shard that another run replaced meanwhile is not overwritten (one line; the copy stays
   staged for a rerun).

The staging folder is ``$VIDCACHE_STAGE_DIR/<key>`` (default ``~/.cache/vidcache/stage``),
``<key>`` a hash of the URL; beside each staged shard, ``<shard>.base`` holds the version
of the remote shard it started from (``none``: a new shard).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import replace
from pathlib import Path

from vidcache.features.cache import CacheReader
from vidcache.features.errors import VidcacheError
from vidcache.features.remote.objects import RemoteObject, object_of
from vidcache.features.remote.urls import RemoteError, describe, filesystem, join, shown
from vidcache.features.settings import check_compatible
from vidcache.features.shard import shard_of
from vidcache.pipeline.extraction.outcomes import ExtractSummary, Reporter
from vidcache.pipeline.extraction.ray_engine import SHARD_NAME, extract_with_ray, shard_path
from vidcache.pipeline.extraction.session import gone_videos, has_folders, plan

__all__ = ["extract_to_bucket", "stage_folder"]


def stage_folder(url: str) -> Path:
    """Where the shards of the output ``url`` are staged on this machine."""
    root = os.environ.get("VIDCACHE_STAGE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "vidcache" / "stage"
    return base / hashlib.sha256(shown(url).rstrip("/").encode()).hexdigest()[:16]


def _remote_shards(fs, prefix: str, url: str) -> dict[str, RemoteObject]:
    """The shard caches directly under ``prefix`` (the path of ``url`` in ``fs``)."""
    prefix = prefix.rstrip("/")
    try:
        fs.invalidate_cache()
        listed = fs.ls(prefix, detail=True) if fs.exists(prefix) else []
    except Exception as exc:
        raise RemoteError(f"{shown(url)}: cannot be listed: {describe(exc)}") from None
    shards = {}
    for info in listed:
        name = posixpath.basename(info["name"].rstrip("/"))
        if info.get("type") != "directory" and SHARD_NAME.fullmatch(name):
            shards[name] = object_of(join(url, name), info)
    return shards


def _needs_work(url: str, sources, config, prune: bool) -> tuple[bool, dict]:
    """Whether the remote shard ``url`` lacks, holds stale, or (prune) holds gone videos,
    and its videos; reads its settings and index in place."""
    with CacheReader(url) as reader:
        check_compatible(
            reader.settings,
            config.settings(),
            cache_name=shown(url),
            ignore=("weights_sha256",),
            folders=has_folders(sources),
        )
        entries = reader.entries()
    jobs, touched = plan(sources, entries, ExtractSummary(), Reporter())
    return bool(jobs or touched or (prune and gone_videos(sources, entries))), entries


def extract_to_bucket(sources, url: str, config, reporter: Reporter, options) -> ExtractSummary:
    """Extract ``sources`` into the shard caches under the prefix ``url`` (see the module).

    Raises:
        RemoteError: the prefix cannot be listed or a shard cannot be read or uploaded.
        as :func:`.ray_engine.extract_with_ray`.
    """
    if url.lower().rstrip("/").endswith((".h5", ".hdf5")):
        raise VidcacheError(
            f"{shown(url)}: a cache in a store is a folder of shards; give a prefix "
            "(s3://bucket/features/)"
        )
    if config.overwrite:
        raise VidcacheError(f"{shown(url)}: --overwrite of shards in a store: delete them first")
    fs, prefix = filesystem(url)
    remote = _remote_shards(fs, prefix, url)
    counts = {int(SHARD_NAME.fullmatch(name).group(2)) for name in remote}
    if len(counts) > 1:
        raise VidcacheError(f"{shown(url)} holds shards of several counts ({sorted(counts)})")
    count = counts.pop() if counts else options.shards or None
    if count and options.shards and options.shards != count:
        raise VidcacheError(f"{shown(url)} holds shards of {count}; run with --shards {count}")
    stage = stage_folder(url)
    stage.mkdir(parents=True, exist_ok=True)
    summary = ExtractSummary()
    work = list(sources)
    if count:
        work = _stage(fs, url, stage, remote, sources, count, config, summary)
        options = replace(options, shards=count)
    failed: list[str] = []

    def upload(path: Path) -> None:  # a shard this run finished, while the others go on
        if not _upload_one(fs, url, Path(path), reporter):
            failed.append(Path(path).name)

    done = ExtractSummary()
    if work:
        done = extract_with_ray(work, stage, config, reporter, options, on_shard=upload)
    done.outcomes[:0] = summary.outcomes
    for local in sorted(stage.glob("shard-*.h5")):  # the rest: no work, or interrupted
        if local.name not in failed and not _upload_one(fs, url, local, reporter):
            failed.append(local.name)
    if failed:
        raise RemoteError(
            f"{shown(url)}: {len(failed)} shard(s) not uploaded (the notes above); their "
            f"videos stay staged in {stage}, and a rerun uploads them"
        )
    return done


def _stage(fs, url, stage: Path, remote, sources, count: int, config, summary) -> list:
    """Stage the shards that have work; return their videos (the others' are reported
    cached into ``summary``)."""
    groups: dict[int, list] = {}
    for source in sources:
        groups.setdefault(shard_of(source.video_id, count), []).append(source)
    work = []
    for k in range(count):
        name = shard_path(Path(), k, count).name
        mine = groups.get(k, [])
        held = remote.get(name)
        base = held.version if held else "none"
        local, stamp = stage / name, stage / (name + ".base")
        continued = local.exists() and stamp.exists() and stamp.read_text() == base
        if not continued:
            local.unlink(missing_ok=True)
            stamp.unlink(missing_ok=True)
        if held is None and not mine and not continued:
            continue
        if not continued and held is not None:
            needed, entries = _needs_work(held.url, mine, config, config.prune)
            if not needed:
                plan(mine, entries, summary, Reporter())
                continue
            _download(fs, held, local)
        stamp.write_text(base)
        work.extend(mine)
    return work


def _download(fs, held: RemoteObject, local: Path) -> None:
    part = local.with_name(local.name + ".part")
    try:
        fs.get_file(filesystem(held.url)[1], str(part))
    except Exception as exc:
        part.unlink(missing_ok=True)
        raise RemoteError(f"{shown(held.url)}: cannot be downloaded: {describe(exc)}") from None
    os.replace(part, local)


def _upload_one(fs, url: str, local: Path, reporter: Reporter) -> bool:
    """Upload one staged shard whole, unless its remote changed since it was staged; True
    when it is uploaded (and removed from the stage) or was not there."""
    if not local.exists():
        return True
    stamp = local.with_name(local.name + ".base")
    target = join(url, local.name)
    path = filesystem(target)[1]
    try:
        fs.invalidate_cache(path)
        now = object_of(target, fs.info(path)).version if fs.exists(path) else "none"
    except Exception as exc:
        reporter.note(f"{shown(target)} not uploaded: {describe(exc)}")
        return False
    if stamp.exists() and now != stamp.read_text():
        reporter.note(
            f"{shown(target)} was replaced by another run; this run's copy stays in "
            f"{local.parent}: run again to redo it"
        )
        return False
    try:
        fs.put_file(str(local), path)
    except Exception as exc:
        reporter.note(f"{shown(target)} not uploaded: {describe(exc)}")
        return False
    local.unlink()
    stamp.unlink(missing_ok=True)
    return True
