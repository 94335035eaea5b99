"""Distributed training with ``tf.distribute``: ``--distribute mirrored|multi-worker``.

* ``mirrored``: every GPU of this machine (``MirroredStrategy``). On a machine without
  GPUs it mirrors over the logical CPU devices: one, unless ``VIDCACHE_CPU_REPLICAS=N``
  splits the CPU into N (to try the distributed path on a laptop, and in the tests).
* ``multi-worker``: ``MultiWorkerMirroredStrategy`` over the workers that the standard
  ``TF_CONFIG`` variable lists (set by SLURM scripts, Kubernetes' TFJob, Ray Train...);
  every worker runs the same command, worker 0 (or the ``chief``) writes the run folder.

``--batch-size`` is the **global** batch: each step trains on that many sequences in all,
``batch / replicas`` on each replica, so a distributed run takes the same steps with the
same batch as a single-process run (the learning rate needs no scaling). Each input
pipeline (one per worker) reads only its share of the batches.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from vidcache.features.errors import VidcacheError
from vidcache.pipeline.outputs import output_dir

T = TypeVar("T")

KINDS = ("none", "mirrored", "multi-worker")
CPU_REPLICAS_ENV = "VIDCACHE_CPU_REPLICAS"


class DistributeError(VidcacheError):
    """A distributed run cannot be set up (no TF_CONFIG, a batch that does not split...)."""


@dataclass
class Distribution:
    """The strategy of this process and where the process stands in it.

    Args:
        kind: ``none``, ``mirrored`` or ``multi-worker``.
        strategy: the ``tf.distribute`` strategy (None for ``none``).
        replicas: replicas in sync over all workers.
        workers: processes taking part.
        worker_index: this process's place among them (0 writes the run).
        chief: this process writes the run folder.
    """

    kind: str = "none"
    strategy: object = None
    replicas: int = 1
    workers: int = 1
    worker_index: int = 0
    chief: bool = True

    @property
    def active(self) -> bool:
        return self.strategy is not None

    def scope(self):
        """Where models and optimizers are built (a no-op without a strategy)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def check_batch(self, batch_size: int, option: str = "--batch-size") -> int:
        """The per-replica batch of a global ``batch_size``.

        Raises:
            DistributeError: the batch does not split evenly over the replicas.
        """
        if batch_size % self.replicas:
            raise DistributeError(
                f"{option} {batch_size} is the global batch; it must be a multiple of the "
                f"{self.replicas} replicas"
            )
        return batch_size // self.replicas

    def dataset(
        self,
        make: Callable[[int, tuple[int, int] | None, bool], object],
        batches_of: Callable[[int], int],
        batch_size: int,
    ) -> tuple[object, int | None]:
        """A dataset for ``model.fit`` and its steps per epoch.

        Args:
            make: ``make(batch, shard, repeat)`` -> a ``tf.data.Dataset`` of batches of
                ``batch``; ``shard = (index, count)`` keeps batches ``index``,
                ``index + count``... of each epoch; ``repeat`` repeats it forever.
            batches_of: ``batches_of(batch)`` -> the batches of one epoch at that size.
            batch_size: the global batch.

        Returns:
            ``(dataset, None)`` without a strategy; else a distributed dataset repeated
            forever and the steps of one epoch (every worker takes the same number).
        """
        if self.strategy is None:
            return make(batch_size, None, False), None
        per_replica = self.check_batch(batch_size)
        steps = max(1, math.ceil(batches_of(per_replica) / self.replicas))

        def per_pipeline(context):
            shard = (context.input_pipeline_id, context.num_input_pipelines)
            return make(context.get_per_replica_batch_size(batch_size), shard, True)

        return self.strategy.distribute_datasets_from_function(per_pipeline), steps

    def record(self, batch_size: int) -> dict:
        """What ``config.json`` records of the distribution."""
        return {
            "strategy": self.kind,
            "replicas": self.replicas,
            "workers": self.workers,
            "global_batch_size": batch_size,
            "per_replica_batch_size": batch_size // self.replicas,
        }


_made: dict[str, Distribution] = {}


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise DistributeError(
            "--distribute multi-worker needs TF_CONFIG (the cluster's workers and this "
            "process's index); see docs/scale.md"
        )
    try:
        config = json.loads(text)
        workers = config["cluster"].get("worker", []) + config["cluster"].get("chief", [])
        task = config["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DistributeError(f"TF_CONFIG is not valid ({exc})") from None
    if kind not in ("worker", "chief") or not workers:
        raise DistributeError(f"TF_CONFIG: task type {kind!r} cannot train (worker or chief)")
    return {"workers": len(workers), "type": kind, "index": index, "config": config}


def distribution(kind: str) -> Distribution:
    """The process's distribution for ``kind`` (made once: TensorFlow allows one).

    Raises:
        DistributeError: an unknown kind, no TF_CONFIG for multi-worker, or TensorFlow
            started before the CPU could be split.
    """
    if kind not in KINDS:
        raise DistributeError(f"--distribute must be one of {', '.join(KINDS)}; got {kind!r}")
    if kind in _made:
        return _made[kind]
    if kind == "none":
        made = Distribution()
    else:
        from vidcache.features.backbone import import_tensorflow

        tf = import_tensorflow()
        if kind == "mirrored":
            made = _mirrored(tf)
        else:
            found = _tf_config()
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
            has_chief = bool(found["config"]["cluster"].get("chief"))
            chief = found["type"] == "chief" or (not has_chief and found["index"] == 0)
            made = Distribution(
                kind,
                strategy,
                int(strategy.num_replicas_in_sync),
                found["workers"],
                found["index"] + (1 if has_chief and found["type"] == "worker" else 0),
                chief,
            )
    _made[kind] = made
    return made


def _mirrored(tf) -> Distribution:
    if tf.config.list_physical_devices("GPU"):
        strategy = tf.distribute.MirroredStrategy()
    else:
        wanted = int(os.environ.get(CPU_REPLICAS_ENV, "1") or 1)
        if wanted > 1:
            try:  # only before TensorFlow's runtime starts (listing logical devices starts it)
                tf.config.set_logical_device_configuration(
                    tf.config.list_physical_devices("CPU")[0],
                    [tf.config.LogicalDeviceConfiguration() for _ in range(wanted)],
                )
            except RuntimeError:
                pass
        cpus = tf.config.list_logical_devices("CPU")
        if wanted > 1 and len(cpus) != wanted:
            raise DistributeError(
                f"{CPU_REPLICAS_ENV}={wanted}: TensorFlow already started with {len(cpus)} "
                "CPU device(s); set it before the run starts"
            )
        strategy = tf.distribute.MirroredStrategy(
            [d.name for d in cpus], cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    return Distribution("mirrored", strategy, int(strategy.num_replicas_in_sync))


def on_every_worker(
    spread: Distribution, out_dir: Path, work: Callable[[Path], T], prefix: str = "vidcache"
) -> T:
    """Run ``work(folder)`` on every worker of a distributed run; only the chief's folder is
    ``out_dir`` (checked writable first), the others write into a scratch folder that is
    removed afterwards (their steps are collective, so they must train too)."""
    if spread.chief:
        with output_dir(out_dir) as folder:
            return work(folder)
    scratch = Path(tempfile.mkdtemp(prefix=f"{prefix}-worker{spread.worker_index}-"))
    try:
        return work(scratch / "out")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
