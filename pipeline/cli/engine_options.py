"""``extract-features``'s engine options (``--engine`` and the Ray group), declared once and
handed to the command as one :class:`Engine`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import click

from vidcache.features.remote.urls import is_url

__all__ = ["Engine", "engine_options"]


@dataclass(frozen=True)
class Engine:
    """Where ``extract-features`` runs, as its options say."""

    engine: str
    address: str | None
    workers: int
    cpus_per_worker: int
    num_gpus_per_worker: float
    shards: int
    shared_disk: bool | None

    def check(self, output, shard: str | None) -> None:
        """Usage errors of the engine options, one line each."""
        if self.engine == "local":
            given = [
                name
                for name, value, default in (
                    ("--address", self.address, None),
                    ("--workers", self.workers, 0),
                    ("--num-gpus-per-worker", self.num_gpus_per_worker, 0.0),
                    ("--shards", self.shards, 0),
                    ("--cpus-per-worker", self.cpus_per_worker, 1),
                    ("--shared-disk/--no-shared-disk", self.shared_disk, None),
                )
                if value != default
            ]
            if given:
                raise click.UsageError(f"{', '.join(given)} need --engine ray")
            if is_url(str(output)):
                raise click.UsageError(
                    f"{output} is in a store: a folder of shards there needs --engine ray "
                    "(a local Ray runs on this machine)"
                )
            if Path(output).is_dir():
                raise click.UsageError(
                    f"{output} is a folder; give a cache file (a folder of shards needs "
                    "--engine ray)"
                )
        elif shard is not None:
            raise click.UsageError("--shard runs one share here; --engine ray shards by itself")

    def ray_options(self):
        from vidcache.pipeline.extraction.ray_engine import RayOptions

        return RayOptions(
            address=self.address,
            workers=self.workers,
            cpus_per_worker=self.cpus_per_worker,
            num_gpus_per_worker=self.num_gpus_per_worker,
            shards=self.shards,
            shared_disk=self.shared_disk,
        )


_OPTIONS = (
    click.option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Where the CNN runs: this process, or a pool of Ray workers (pip install "
        "'vidcache[ray]'; see docs/scale.md).",
    ),
    click.option(
        "--address",
        metavar="auto|ray://HOST:PORT",
        help="Ray cluster to join (--engine ray); without it a local Ray runs on this machine.",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Ray workers, one model each; 0: as many as the cluster's CPUs (or GPUs) allow.",
    ),
    click.option(
        "--cpus-per-worker",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="CPU cores per Ray worker (its CNN threads and decoding).",
    ),
    click.option(
        "--num-gpus-per-worker",
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        help="GPUs per Ray worker (0.5: two workers share one GPU).",
    ),
    click.option(
        "--shards",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Shards of the work on Ray (0: four per worker); a shard of a dead worker is "
        "retried on a new one.",
    ),
    click.option(
        "--shared-disk/--no-shared-disk",
        default=None,
        help="Whether the Ray workers see the output's folder (they write shard caches "
        "there) or not (their rows come back through Ray's object store). Default: "
        "detected by a probe file read on every node.",
    ),
)


def engine_options(function):
    """The engine options, handed to ``function`` as ``engine=Engine(...)``."""

    @functools.wraps(function)
    def command(*args, engine, address, workers, cpus_per_worker, num_gpus_per_worker,
                shards, shared_disk, **kwargs):  # fmt: skip
        chosen = Engine(
            engine, address, workers, cpus_per_worker, num_gpus_per_worker, shards, shared_disk
        )
        return function(*args, engine=chosen, **kwargs)

    for option in reversed(_OPTIONS):
        command = option(command)
    return command
