"""Stage two, written once: train any task on cached features, evaluate a run.

Every task runs the same steps in the same order: open the caches, let the task collect
its videos and targets, split, standardise, build the model inside the distribution
strategy's scope, fit, score, write the run folder, plot. What differs is the task's
(:mod:`vidcache.pipeline.training.tasks`). A run folder holds everything needed to use
and to reproduce the model::

    model.keras            the best model (by validation loss), safe-mode loadable
    config.json            the exact configuration: caches and their settings hash, the
                           feature settings, the split (ids), hyper-parameters, versions
    history.csv            per-epoch loss and metrics (Keras CSVLogger)
    metrics.json           the task's validation metrics (and test ones with a split file)
    learning_curves.png    loss (and the task's metric) per epoch
    ...                    the task's own files (labels.json, vectorizer.keras, ...)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from vidcache.features.errors import SettingsMismatch
from vidcache.features.fusion import FusedSettings
from vidcache.models.annotations import cached_paths
from vidcache.models.data import DataError, open_caches, open_fused, standardization
from vidcache.pipeline.outputs import output_dir
from vidcache.pipeline.training.distribute import distribution, on_every_worker
from vidcache.pipeline.training.fitting import (
    TrainConfig,
    TrainResult,
    batch_count,
    fit_model,
    make_source,
    run_config,
    split_examples,
    write_json,
)
from vidcache.pipeline.training.runs import load_run, run_train_config
from vidcache.pipeline.training.tasks import get_task

__all__ = ["evaluate_run", "train_rnn"]


def train_rnn(
    cache_paths: list[Path], run_dir: Path, config: TrainConfig = TrainConfig()
) -> TrainResult:
    """Train a sequence model on ``cache_paths``; write the run folder.

    ``config.task`` names the task (:func:`~vidcache.pipeline.training.tasks.get_task`):
    a classifier of the labelled videos (``classify``), a captioner (``caption``), a
    regressor (``regress``), or a registered one of your own.

    With ``config.distribute`` (:mod:`vidcache.pipeline.training.distribute`) every worker
    trains and only the chief writes ``run_dir``.

    Raises:
        ValueError: an unknown task.
        SettingsMismatch: caches made with other settings.
        DataError: no labels, a single class, a class with one clip, an impossible split.
        DistributeError: the distributed run cannot be set up.
    """
    # First of all: a multi-worker strategy must exist before TensorFlow runs anything.
    spread = distribution(config.distribute)
    if spread.active:
        spread.check_batch(config.batch_size)
    task = get_task(config.task)
    result = on_every_worker(
        spread, run_dir, lambda folder: _train(task(config), cache_paths, folder)
    )
    result.run_dir = Path(run_dir)
    return result


def _train(task, cache_paths: list[Path], run_dir: Path) -> TrainResult:
    """The training skeleton: the same steps for every task, in this order."""
    from vidcache.features.backbone import import_tensorflow

    import_tensorflow()  # quietly, before Keras
    import keras

    from vidcache.pipeline.training.plots import plot_learning_curves

    config = task.config
    task.check()
    run_dir = Path(run_dir)
    readers, settings = open_caches([Path(p) for p in cache_paths], config.fuse)
    try:
        examples = task.collect(readers)
        parts = split_examples(examples, config, cached_paths(readers), task.notes)
        task.check_split(examples, parts)
        sources = {
            name: make_source(readers, examples, parts[name], config) for name in ("train", "val")
        }
        mean, variance = standardization(sources["train"])
        task.prepare(examples, parts)

        spread = distribution(config.distribute)
        task.check_distribution(spread.active)
        keras.utils.set_random_seed(config.seed)
        with spread.scope():
            model = task.build(mean, variance)
        run_dir.mkdir(parents=True, exist_ok=True)
        task.before_fit(run_dir)
        data = {}
        for name, shuffle in (("train", True), ("val", False)):
            data[name] = spread.dataset(
                lambda b, shard, repeat, name=name, shuffle=shuffle: task.dataset(
                    name, sources[name], b, shuffle, config.seed if shuffle else 0, shard, repeat
                ),
                batch_count(task.size(name, sources[name])),
                config.batch_size,
            )
        fitted = fit_model(
            model,
            data["train"][0],
            data["val"][0],
            run_dir,
            config,
            steps=(data["train"][1], data["val"][1]),
            class_weight=task.class_weight(),
        )
        scores = {"val": task.score(fitted.model, "val", sources["val"], run_dir)}
        if parts["test"] and parts["test"] != parts["val"]:
            test_source = make_source(readers, examples, parts["test"], config)
            scores["test"] = task.score(fitted.model, "test", test_source, run_dir)
        metrics = task.final_metrics(scores["val"])
        test = scores.get("test")
        task.save(run_dir)
        write_json(
            run_dir / "metrics.json",
            {
                "split": "val",
                **metrics,
                **({"test": test} if test else {}),
                "epochs": fitted.epochs_run,
                "best_epoch": fitted.best_epoch,
            },  # fmt: skip
        )
        write_json(
            run_dir / "config.json",
            run_config(config, readers, settings, examples, parts, fitted, **task.record()),
        )
        plot_learning_curves(run_dir / "history.csv", run_dir / "learning_curves.png", task.curve)
        task.plots(run_dir, metrics)
        return TrainResult(
            run_dir, metrics, fitted.epochs_run, fitted.interrupted, test, task.notes,
            best_epoch=fitted.best_epoch,
        )  # fmt: skip
    finally:
        for reader in readers:
            reader.close()


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
        annotations: the references of a task that has them (captions or targets CSV).
        scorer: caption scorer (``fast`` or ``coco``). Defaults to the run's.

    Returns:
        The metrics and the folder they were written to.

    Raises:
        SettingsMismatch: a cache was made with other feature settings than the run's.
        DataError: nothing to score, or a task with annotations but none given.
    """
    paths = [Path(p) for p in ([cache_path] if isinstance(cache_path, (str, Path)) else cache_path)]
    run = load_run(run_dir)
    task = run.task_class
    out_dir = Path(out_dir) if out_dir else run.path / f"eval-{paths[0].stem}"
    if task.annotations and annotations is None:
        raise DataError(
            f"{run.path} is a {run.task} run: give the references with --{task.annotations} CSV"
        )
    with output_dir(out_dir, "evaluation folder"):
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
            metrics = task.evaluate(run, readers, annotations, config, out_dir)
        finally:
            for reader in readers:
                reader.close()
        resolved = [str(p.resolve()) for p in paths]
        metrics["cache"] = resolved[0] if len(resolved) == 1 else resolved
        write_json(out_dir / "metrics.json", metrics)
    return metrics, out_dir
