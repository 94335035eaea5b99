"""Stage three orchestration: fine-tune the backbone's top blocks and the LSTM together.

Starts from a stage-two run: its head (standardisation, LSTM, classifier) and the backbone
weights that made its cache (verified by checksum), the same frame sampling, and the same
train/validation split, so the comparison with the run is fair. Frames are decoded on the
fly each epoch (nothing the size of a dataset is held in memory); with ``cache_cut`` the
activation at the cut is computed once per frame and kept in ``RUN-e2e/cut_cache.h5``, and
every epoch runs only the unfrozen blocks and the head (:mod:`.e2e_data`).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vidcache.features.backbone import build_backbone
from vidcache.features.backbones import backbone_names, get_backbone
from vidcache.features.cache import CacheReader
from vidcache.features.errors import CacheFormatError, SettingsMismatch
from vidcache.features.fusion import FusedSettings
from vidcache.features.video.discover import discover
from vidcache.models.data import DataError
from vidcache.models.e2e import (
    available_memory,
    build_e2e,
    bytes_per_frame,
    cut_layer_name,
    default_unfreeze,
    fit_batch_size,
    freeze,
    split_backbone,
)
from vidcache.models.metrics import classification_metrics
from vidcache.pipeline.extraction.reproduce import weights_for
from vidcache.pipeline.training.distribute import DistributeError, distribution, on_every_worker
from vidcache.pipeline.training.e2e_data import (
    Epochs,
    cut_cache,
    cut_shape,
    decoding,
    frames_cache,
)
from vidcache.pipeline.training.multiworker import fit_multi_worker
from vidcache.pipeline.training.runs import load_run


@dataclass(frozen=True)
class E2EConfig:
    """Options of ``train-e2e``; recorded in ``config.json``.

    Args:
        unfreeze_from: first trainable block (InceptionV3 ``mixed1``..``mixed10``; the
            backbone's ``blocks``) or ``all``. Defaults to ``None``: the last two blocks
            (``mixed9`` for InceptionV3).
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9). Defaults to ``"adam"``.
        lr: learning rate; low, so pretrained features are nudged, not erased.
            Defaults to 1e-5.
        clipnorm: gradient clipping by norm. Defaults to 1.0.
        epochs: at most this many. Defaults to 10.
        batch_size: videos per step (of equal length: no padding frames). Defaults to 2.
        patience: early stopping on validation loss. Defaults to 3.
        cache_cut: cache the activation at the cut once per frame. Defaults to False.
        frames_cache: keep decoded, fitted uint8 frames in ``OUT/frames_cache.h5`` so later
            epochs (and later runs into the same folder) skip decoding. Defaults to False.
        seed: batch order. Defaults to 0.
        verbose: Keras output. Defaults to 2.
        distribute: ``none``, ``mirrored`` or ``multi-worker``
            (:mod:`vidcache.pipeline.training.distribute`); ``batch_size`` is then the global batch.
            Defaults to ``"none"``.
    """

    unfreeze_from: str | None = None
    optimizer: str = "adam"
    lr: float = 1e-5
    clipnorm: float = 1.0
    epochs: int = 10
    batch_size: int = 2
    patience: int = 3
    cache_cut: bool = False
    frames_cache: bool = False
    seed: int = 0
    verbose: int = 2
    distribute: str = "none"


def train_e2e(
    run_dir: Path,
    videos: list[Path],
    out_dir: Path,
    config: E2EConfig = E2EConfig(),
    weights_path: Path | None = None,
) -> dict:
    """Fine-tune end to end from a stage-two run; writes ``out_dir`` like ``train-rnn``
    plus ``comparison.json`` (before/after accuracy and seconds per epoch).

    Raises:
        SettingsMismatch: the backbone weights found are not the ones of the run's cache.
        DataError: VIDEOS hold none of the run's training or validation videos.
        OutputError: ``out_dir`` cannot be created or written.
    """
    spread = distribution(config.distribute)  # before TensorFlow runs anything
    return on_every_worker(
        spread,
        out_dir,
        lambda folder: _train_e2e(run_dir, videos, folder, config, weights_path, spread),
        prefix="vidcache-e2e",
    )


def check_e2e_run(run_dir: Path, unfreeze_from: str | None) -> None:
    """What ``train-e2e`` checks before any work (no output folder, no decoding): the run's
    features come from one backbone that can be cut into blocks, and ``unfreeze_from`` is
    one of its blocks.

    Raises:
        DataError: a fused run, or a backbone without blocks (CLIP).
        E2EError: ``unfreeze_from`` is not a block of the run's backbone.
    """
    from vidcache.pipeline.extraction.config import run_settings

    try:
        settings = run_settings(run_dir)
    except CacheFormatError:
        return  # not a run: loading it says so, in the words it always has
    network = _fine_tunable(settings, run_dir)
    if unfreeze_from in (None, "all"):
        return
    size = settings.image_size  # the network without weights: its layer names are enough
    cut_layer_name(unfreeze_from, network.blocks(network.build((size, size, 3))))


def _fine_tunable(settings, run_path):
    """The registry entry of the run's backbone, when ``train-e2e`` can fine-tune it."""
    if isinstance(settings, FusedSettings):
        raise DataError(
            f"{run_path} was trained on fused feature sets ({settings.backbone}); end-to-end "
            "training fine-tunes one backbone: start from a run on one cache"
        )
    network = get_backbone(settings.backbone)
    if network.blocks is None:
        raise DataError(
            f"{run_path}'s features come from {settings.backbone}, which vidcache cannot cut "
            "into blocks for end-to-end training (convolutional backbones only: "
            + ", ".join(n for n in backbone_names() if get_backbone(n).blocks is not None)
            + ")"
        )
    return network


def _train_e2e(run_dir, videos, out_dir: Path, config: E2EConfig, weights_path, spread) -> dict:
    import keras

    from vidcache.pipeline.training.plots import plot_confusion, plot_learning_curves

    run = load_run(run_dir)
    if not run.task_class.fine_tunable:
        raise DataError(
            f"{run.path} is a {run.task} run; end-to-end training starts from a classification "
            "run (train-rnn without --task)"
        )
    settings = run.settings
    network = _fine_tunable(settings, run.path)
    backbone, digest = build_backbone(
        settings.image_size, weights_for(settings, weights_path), backbone=settings.backbone
    )
    blocks = network.blocks(backbone)
    unfreeze_from = config.unfreeze_from or default_unfreeze(blocks)
    cut = cut_layer_name(unfreeze_from, blocks)
    if digest != settings.weights_sha256:
        raise SettingsMismatch(
            f"cannot rebuild the backbone of run {run.path}: weights {settings.weights} have "
            f"checksum {digest[:12]}, the run's cache was made with {settings.weights_sha256[:12]}"
        )
    split = run.config.get("split", {})
    index = {name: i for i, name in enumerate(run.classes)}
    by_id = {s.video_id: s for s in discover([Path(v) for v in videos])}
    labels, lengths = {}, {}
    for cache in run.config.get("caches", []):
        if Path(cache["path"]).is_file():
            with CacheReader(cache["path"]) as reader:
                for video_id, entry in reader.entries().items():
                    labels[video_id], lengths[video_id] = entry.label, entry.num_frames
    parts = {}
    for name in ("train", "val"):
        ids = [v for v in split.get(name, []) if v in by_id and labels.get(v) in index]
        if not ids:
            raise DataError(f"none of run {run.path}'s {name} videos are under the given VIDEOS")
        parts[name] = ids
    freeze(backbone, cut)
    per_frame = bytes_per_frame(backbone, cut, cached=config.cache_cut and cut is not None)
    longest = max(lengths[v] for ids in parts.values() for v in ids)
    batch_size = fit_batch_size(config.batch_size, longest, per_frame, available_memory())
    if batch_size < config.batch_size:
        warnings.warn(
            f"--batch-size {config.batch_size} would need about "
            f"{per_frame * longest * config.batch_size / 2**30:.1f} GiB; using {batch_size}",
            stacklevel=2,
        )
    head = run.model
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    if config.cache_cut and cut is not None:
        bottom, top = split_backbone(backbone, cut)
        store, loader = cut_cache(
            out_dir / "cut_cache.h5", parts, by_id, settings, bottom, network.preprocess
        )
        model = build_e2e(head, top, settings.image_size, cut_shape(store, parts["train"][0]))
    elif config.frames_cache:
        store, loader = frames_cache(out_dir / "frames_cache.h5", by_id, settings)
    else:
        store, loader = None, decoding(by_id, settings)

    if not (config.cache_cut and cut is not None):
        model = build_e2e(head, backbone, settings.image_size, backbone_name=network.name)

    def make_optimizer():
        if config.optimizer == "sgd":
            return keras.optimizers.SGD(config.lr, momentum=0.9, clipnorm=config.clipnorm)
        return keras.optimizers.Adam(config.lr, clipnorm=config.clipnorm)

    model.compile(make_optimizer(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    epochs = {
        name: Epochs(
            ids,
            [index[labels[v]] for v in ids],
            [lengths[v] for v in ids],
            batch_size,
            config.seed,
            loader(ids),
        )
        for name, ids in parts.items()
    }
    val_targets = np.array([index[labels[v]] for v in parts["val"]])
    before = classification_metrics(
        model.predict(epochs["val"].dataset(False).map(lambda x, y: x), verbose=0),
        val_targets,
        run.classes,
    )
    # Epoch 0: the exact hand-over competes with every fine-tuned epoch; fine-tuning that
    # does not beat it must not replace it.
    handover_loss = float(model.evaluate(epochs["val"].dataset(False), verbose=0)[0])
    handover_weights = model.get_weights()
    times = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: times.append(-time.perf_counter()),
        on_epoch_end=lambda e, logs: times.__setitem__(-1, times[-1] + time.perf_counter()),
    )
    keras.utils.set_random_seed(config.seed)  # same dropout masks with or without cut cache
    callbacks = [
        keras.callbacks.EarlyStopping(
            "val_loss", patience=config.patience, restore_best_weights=True
        ),
        keras.callbacks.CSVLogger(str(out_dir / "history.csv")),
        timer,
    ]
    if spread.active:
        losses = _fit_distributed(model, epochs, spread, config, make_optimizer, callbacks)
    else:
        history = model.fit(
            epochs["train"].dataset(True),
            validation_data=epochs["val"].dataset(False),
            epochs=config.epochs,
            shuffle=False,
            verbose=config.verbose,
            callbacks=callbacks,
        )
        losses = [float(v) for v in history.history.get("val_loss", [])]
    best_epoch = int(np.argmin(losses)) + 1 if losses else 0
    if not losses or handover_loss <= losses[best_epoch - 1]:
        model.set_weights(handover_weights)  # nothing beat the starting point: keep it
        best_epoch = 0
    after = classification_metrics(
        model.predict(epochs["val"].dataset(False).map(lambda x, y: x), verbose=0),
        val_targets,
        run.classes,
    )
    if store is not None:
        store.close()
    # the same layers, trained weights
    full = build_e2e(head, backbone, settings.image_size, backbone_name=network.name)
    full.save(out_dir / "model.keras")
    comparison = {
        "validation_videos": len(parts["val"]),
        "stage_two_top1": before["top1"],
        "stage_two_seconds_per_epoch": run.config.get("seconds_per_epoch"),
        "end_to_end_top1": after["top1"],
        "handover_val_loss": round(handover_loss, 6),
        "val_losses": [round(v, 6) for v in losses],
        "best_epoch": best_epoch,
        "kept": "stage two (no epoch beat the hand-over)" if best_epoch == 0 else "end to end",
        "seconds_per_epoch": round(float(np.median(times)), 3) if times else None,
        "cache_cut": config.cache_cut,
        "unfreeze_from": unfreeze_from,
        "batch_size": batch_size,
        "estimated_gib_per_step": round(per_frame * longest * batch_size / 2**30, 3),
        **({"distribution": spread.record(batch_size)} if spread.active else {}),
    }
    (out_dir / "labels.json").write_text(json.dumps(run.classes, indent=2) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps({"split": "val", **after}, indent=2) + "\n")
    (out_dir / "comparison.json").write_text(json.dumps(comparison, indent=2) + "\n")
    (out_dir / "config.json").write_text(
        json.dumps(
            {
                "task": "classify-e2e",
                "from_run": str(Path(run_dir).resolve()),
                "e2e": {**asdict(config), "unfreeze_from": unfreeze_from},
                "feature_settings": settings.to_dict(),
                "classes": run.classes,
                "split": parts,
                "train": run.config.get("train", {}),
            },
            indent=2,
        )
        + "\n"
    )
    plot_learning_curves(out_dir / "history.csv", out_dir / "learning_curves.png")
    plot_confusion(after, out_dir / "confusion_matrix.png", "validation (end to end)")
    return comparison


def _fit_distributed(model, epochs, spread, config, make_optimizer, callbacks):
    """Fit a twin of ``model`` built in the strategy's scope on sharded, repeated datasets,
    then give ``model`` its best weights.

    Returns:
        The validation loss of each epoch.
    """
    import keras

    with spread.scope():
        twin = keras.models.clone_model(model, recursive=True)
        twin.set_weights(model.get_weights())
        twin.compile(make_optimizer(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    data, steps = {}, {}
    for name, shuffle in (("train", True), ("val", False)):
        source = epochs[name]
        per_replica = spread.check_batch(source.batch_size)
        if not source.batches_of(per_replica):
            raise DistributeError(
                f"no {name} videos of one length fill a batch of {per_replica} per replica; "
                "lower --batch-size"
            )
        data[name], steps[name] = spread.dataset(
            lambda b, shard, repeat, source=source, shuffle=shuffle: source.dataset(
                shuffle, b, shard, repeat
            ),
            source.batches_of,
            source.batch_size,
        )
    if spread.kind == "multi-worker":  # model.fit cannot run there (training/multiworker.py)
        history = fit_multi_worker(
            twin, data["train"], data["val"], (steps["train"], steps["val"]), config.epochs,
            callbacks, config.verbose,
        )  # fmt: skip
    else:
        history = twin.fit(
            data["train"],
            validation_data=data["val"],
            steps_per_epoch=steps["train"],
            validation_steps=steps["val"],
            epochs=config.epochs,
            shuffle=False,
            verbose=config.verbose,
            callbacks=callbacks,
        )
    model.set_weights(twin.get_weights())
    return [float(v) for v in history.history.get("val_loss", [])]
