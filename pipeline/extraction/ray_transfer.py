"""``--engine ray`` without a shared disk: rows travel through Ray's object store.

On a cluster whose nodes have only their own disks (a KubeRay cluster on a cloud), an actor
cannot write where the driver reads. Then each block of videos is extracted by an actor
into a cache of its own in its node's working folder (``$VIDCACHE_WORK_DIR``, or the
temporary folder), and the driver pulls what it holds, video by video, in pieces of at
most :data:`PIECE_BYTES`, and commits each video to the output itself:

* **back-pressure**: the driver asks for one piece at a time and writes it before it asks
  for the next, so its memory holds one piece, whatever the size of the videos or the
  number of actors; an actor holds its block on its own disk until the driver has taken it;
* **integrity**: the driver checks each video's CRC-32 over the rows it received against
  the actor's record before the video's index record is written: a video whose pieces do
  not add up is never committed;
* **crashes**: a video is done when the driver commits it. An actor that dies loses its
  block's uncommitted videos, and the block is retried, without the videos the driver
  already committed, on a new actor; a driver that dies keeps every video it committed
  (the cache is crash-safe as always) and its rerun plans from them.

How a run knows (:func:`shared_disk`): the driver writes a probe file with a random token
beside its output, and a zero-CPU Ray task on every alive node reads it back; any node
that cannot read the token means no shared disk. ``--shared-disk`` / ``--no-shared-disk``
decide it instead (a cluster that adds nodes later should say so).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidcache.features.cache import CacheEntry, CacheReader, FeatureCache
from vidcache.features.errors import CacheFormatError, SettingsMismatch
from vidcache.features.settings import FeatureSettings
from vidcache.pipeline.extraction.ray_actors import ExtractWorker

__all__ = [
    "PIECE_BYTES",
    "BlockManifest",
    "NodeWorker",
    "Receiver",
    "TransferBroken",
    "VideoManifest",
    "shared_disk",
]

#: The most feature bytes the driver asks an actor for at once.
PIECE_BYTES = 8 << 20


class TransferBroken(CacheFormatError):
    """A video's rows did not arrive whole (their CRC-32 is not the actor's record's)."""


@dataclass
class VideoManifest:
    """One video an actor committed to its block cache: its record and its small columns;
    its feature rows stay on the actor until pulled."""

    entry: CacheEntry
    timestamps: np.ndarray
    frame_indices: np.ndarray
    span_frames: np.ndarray | None
    span_times: np.ndarray | None
    crc: int
    row_bytes: int


@dataclass
class BlockManifest:
    """What an actor's block cache holds."""

    path: str
    settings: str
    versions: dict
    videos: list[VideoManifest] = field(default_factory=list)


def work_folder() -> str | None:
    return os.environ.get("VIDCACHE_WORK_DIR") or None


class NodeWorker(ExtractWorker):
    """Ray actor of the no-shared-disk mode: blocks extracted into its node's working
    folder, handed to the driver in pieces."""

    def __init__(self, config, cpus: int, board) -> None:
        super().__init__(config, cpus, board)
        self.folder = Path(tempfile.mkdtemp(prefix="vidcache-node-", dir=work_folder()))

    def folder_path(self) -> str:
        return str(self.folder)

    def extract_block(self, task: tuple[int, int], sources) -> tuple:
        """Extract ``sources`` into a new cache of this node; returns its summary and its
        :class:`BlockManifest` (None when it holds no video)."""
        path = self.folder / f"block-{task[0]:05d}-{task[1]}.h5"
        path.unlink(missing_ok=True)
        summary = self.run(task, sources, str(path))
        if not path.exists():
            return summary, None
        with CacheReader(path) as reader:
            manifest = BlockManifest(str(path), reader.settings.to_json(), reader.versions)
            index = reader.index
            dim = reader.settings.feature_dim
            for video_id, entry in reader.entries().items():
                rows = reader.rows(video_id)  # checked against its CRC-32 here
                span_frames, span_times = rows.span_frames, rows.span_times
                manifest.videos.append(
                    VideoManifest(
                        entry,
                        rows.timestamps,
                        rows.frame_indices,
                        span_frames,
                        span_times,
                        int(index.numbers["crc32"][index.live[video_id]]),
                        max(1, rows.features.itemsize * dim),
                    )
                )
        return summary, manifest

    def piece(self, path: str, video_id: str, start: int, stop: int) -> np.ndarray:
        """Feature rows ``start:stop`` of a video of the block cache ``path``."""
        with CacheReader(Path(path)) as reader:
            return reader.feature_slice(video_id, start, stop)

    def drop(self, path: str) -> None:
        """Delete a block cache the driver has taken."""
        Path(path).unlink(missing_ok=True)

    def close(self) -> None:
        """Remove this actor's working folder (the driver calls it before it stops the
        actor; a killed actor's folder stays, in ``$VIDCACHE_WORK_DIR``)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _crc_rest(crc: int, video: VideoManifest) -> int:
    """Continue a CRC-32 over the features with the small columns (:func:`rows_crc`)."""
    crc = zlib.crc32(np.ascontiguousarray(video.timestamps, "<f8"), crc)
    crc = zlib.crc32(np.ascontiguousarray(video.frame_indices, "<i8"), crc)
    if video.span_frames is not None:
        crc = zlib.crc32(np.ascontiguousarray(video.span_frames, "<i8"), crc)
        crc = zlib.crc32(np.ascontiguousarray(video.span_times, "<f8"), crc)
    return crc


class Receiver:
    """The driver's side: pulls a block's videos from its actor and commits them.

    Args:
        ray: the ray module.
        open_cache: ``(shard, settings, versions) -> FeatureCache`` where a video of that
            shard is committed (opened once and kept by the caller).
        piece_bytes: the most bytes asked for at once. Defaults to :data:`PIECE_BYTES`.
    """

    def __init__(self, ray, open_cache, piece_bytes: int = PIECE_BYTES) -> None:
        self.ray = ray
        self.open_cache = open_cache
        self.piece_bytes = piece_bytes
        self.committed: set[str] = set()

    def receive(self, worker, shard: int, manifest: BlockManifest | None) -> list[CacheEntry]:
        """Commit every video of ``manifest`` (pulled from ``worker``); returns their
        records as committed.

        Raises:
            Ray's actor errors: the actor died while it was pulled from (the videos
                committed before stay committed).
            SettingsMismatch: the actor made features of other settings than the cache.
            TransferBroken: a video's rows came damaged (nothing of it is committed).
        """
        done: list[CacheEntry] = []
        if manifest is None:
            return done
        settings = FeatureSettings.from_json(manifest.settings)
        cache: FeatureCache = self.open_cache(shard, settings, manifest.versions)
        for video in manifest.videos:
            self._commit(worker, manifest.path, video, cache)
            self.committed.add(video.entry.video_id)
            done.append(video.entry)
        self.ray.get(worker.drop.remote(manifest.path))
        return done

    def _commit(self, worker, path: str, video: VideoManifest, cache: FeatureCache) -> None:
        count = len(video.timestamps)
        step = max(1, self.piece_bytes // video.row_bytes)
        video_id = video.entry.video_id

        def pieces():
            crc = 0
            for start in range(0, count, step):
                block = self.ray.get(worker.piece.remote(path, video_id, start, start + step))
                block = np.ascontiguousarray(block)
                crc = zlib.crc32(block, crc)
                yield block
                del block
            if _crc_rest(crc, video) != video.crc:
                raise TransferBroken(
                    f"{video_id!r}: its rows did not arrive whole from the Ray worker "
                    "(CRC-32 mismatch); it is not committed"
                )

        spans = None if video.span_frames is None else (video.span_frames, video.span_times)
        cache.write_blocks(video.entry, pieces(), video.timestamps, video.frame_indices, spans)


def check_settings(cached: FeatureSettings, made: FeatureSettings, target: Path) -> None:
    """Refuse rows made with other settings than the cache they go to."""
    diffs = cached.differences(made)
    if diffs:
        raise SettingsMismatch(
            f"a Ray worker made features with other settings than {target} ({'; '.join(diffs)})"
        )


# -- detection ---------------------------------------------------------------------------


def _reads(path: str, token: str) -> bool:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read() == token
    except (OSError, UnicodeDecodeError):
        return False


def shared_disk(ray, folder: Path) -> tuple[bool, str]:
    """Whether every alive node of the cluster reads ``folder`` as the driver does, and
    the reason in words.

    A probe file with a random token is written in ``folder`` and read back by a zero-CPU
    task pinned to each alive node; it is removed afterwards.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(16)
    probe = Path(folder) / f".vidcache-probe-{token[:12]}"
    probe.write_text(token, encoding="ascii")
    try:
        reader = ray.remote(num_cpus=0, max_retries=0)(_reads)
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
        refs = [
            reader.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
            ).remote(str(probe), token)
            for node in nodes
        ]
        seen = ray.get(refs, timeout=120)
    finally:
        probe.unlink(missing_ok=True)
    blind = sum(1 for s in seen if not s)
    if blind:
        return False, f"{blind} of {len(nodes)} Ray node(s) cannot read {folder}"
    return True, f"all {len(nodes)} Ray node(s) read {folder}"
