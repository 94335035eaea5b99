"""Stage two entry points: train a sequence model on cached features, evaluate a run.

The task modules do the work (:mod:`classify`, :mod:`caption`, :mod:`regress`) on the
shared machinery of :mod:`fitting`; this module only picks one. A run folder holds
everything needed to use and to reproduce the model::

    model.keras            the best model (by validation loss), safe-mode loadable
    labels.json            class names in output order (classification)
    config.json            the exact configuration: caches and their settings hash, the
                           feature settings, the split (ids), hyper-parameters, versions
    history.csv            per-epoch loss and accuracy (Keras CSVLogger)
    metrics.json           the task's validation metrics (and test ones with a split file)
    learning_curves.png    loss (and accuracy) per epoch
    confusion_matrix.png   the confusion matrix of the validation split (classification)
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from vidcache.features.errors import SettingsMismatch
from vidcache.features.fusion import FusedSettings
from vidcache.models.data import DataError, open_caches, open_fused
from vidcache.pipeline.caption import evaluate_captions, train_captioner
from vidcache.pipeline.classify import evaluate_classifier, train_classifier
from vidcache.pipeline.distribute import distribution
from vidcache.pipeline.fitting import TrainConfig, TrainResult, write_json
from vidcache.pipeline.outputs import prepare_output_dir
from vidcache.pipeline.regress import evaluate_regression, train_regressor
from vidcache.pipeline.runs import Run, RunError, load_run, run_train_config

__all__ = [
    "Run",
    "RunError",
    "TrainConfig",
    "TrainResult",
    "evaluate_run",
    "load_run",
    "run_train_config",
    "train_rnn",
]


def train_rnn(
    cache_paths: list[Path], run_dir: Path, config: TrainConfig = TrainConfig()
) -> TrainResult:
    """Train a sequence model on ``cache_paths``; write the run folder.

    ``config.task`` picks the model: a classifier of the labelled videos (``classify``), a
    captioner (``caption``, :func:`pipeline.caption.train_captioner`) or a regressor
    (``regress``, :func:`pipeline.regress.train_regressor`).

    With ``config.distribute`` (:mod:`vidcache.pipeline.distribute`) every worker trains
    and only the chief writes ``run_dir``.

    Raises:
        SettingsMismatch: caches made with other settings.
        DataError: no labels, a single class, a class with one clip, an impossible split.
        DistributeError: the distributed run cannot be set up.
    """
    # First of all: a multi-worker strategy must exist before TensorFlow runs anything.
    spread = distribution(config.distribute)
    if spread.active:
        spread.check_batch(config.batch_size)
    if not spread.chief:
        # Every worker trains (the steps are collective); only the chief writes the run.
        scratch = Path(tempfile.mkdtemp(prefix=f"vidcache-worker{spread.worker_index}-"))
        try:
            result = _train(cache_paths, scratch / "run", config)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        result.run_dir = Path(run_dir)
        return result
    prepare_output_dir(run_dir)
    return _train(cache_paths, run_dir, config)


def _train(cache_paths: list[Path], run_dir: Path, config: TrainConfig) -> TrainResult:
    trainers = {
        "classify": train_classifier,
        "caption": train_captioner,
        "regress": train_regressor,
    }
    if config.task not in trainers:
        raise ValueError(f"task must be classify, caption or regress. Received: {config.task}")
    return trainers[config.task](cache_paths, run_dir, config)


def evaluate_run(
    run_dir: Path,
    cache_path: Path | list[Path],
    out_dir: Path | None = None,
    annotations: Path | None = None,
    scorer: str | None = None,
) -> tuple[dict, Path]:
    """Recompute the metrics of a run on caches made with the same settings.

    A classifier is scored on every labelled video (videos whose label is not one of the
    run's classes are left out and counted); a captioner on the videos ``annotations`` (a
    captions CSV) describes, a regressor on those it (a targets CSV) gives targets for.

    Args:
        run_dir: the run.
        cache_path: one cache, or several (the shards of a dataset).
        out_dir: where the metrics go. Defaults to ``RUN/eval-<first cache name>``.
        annotations: captions or targets CSV of a caption or regression run.
        scorer: caption scorer (``fast`` or ``coco``). Defaults to the run's.

    Returns:
        The metrics and the folder they were written to.

    Raises:
        SettingsMismatch: a cache was made with other feature settings than the run's.
        DataError: nothing to score, or a caption/regression run without ``annotations``.
    """
    paths = [Path(p) for p in ([cache_path] if isinstance(cache_path, (str, Path)) else cache_path)]
    run = load_run(run_dir)
    out_dir = Path(out_dir) if out_dir else run.path / f"eval-{paths[0].stem}"
    prepare_output_dir(out_dir, "evaluation folder")
    if run.task != "classify" and annotations is None:
        option = "--captions" if run.task == "caption" else "--targets"
        raise DataError(f"{run.path} is a {run.task} run: give the references with {option} CSV")
    config = run_train_config(run)
    if scorer is not None:
        config = replace(config, scorer=scorer)
    if isinstance(run.settings, FusedSettings):  # one cache per part, matched by settings
        readers, settings = open_fused(paths, run.settings)
    else:
        readers, settings = open_caches(paths)
    try:
        folders = any(reader.holds_folders() for reader in readers)
        diffs = run.settings.differences(settings, folders=folders)
        if diffs:
            raise SettingsMismatch(
                f"{paths[0]} holds features made with other settings than run {run.path} "
                f"({'; '.join(diffs)}, run != cache)"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        if run.task == "caption":
            metrics = evaluate_captions(run, readers, Path(annotations), config, out_dir)
        elif run.task == "regress":
            metrics = evaluate_regression(run, readers, Path(annotations), config)
        else:
            metrics = evaluate_classifier(run, readers, config, out_dir)
    finally:
        for reader in readers:
            reader.close()
    resolved = [str(p.resolve()) for p in paths]
    metrics["cache"] = resolved[0] if len(resolved) == 1 else resolved
    write_json(out_dir / "metrics.json", metrics)
    return metrics, out_dir
