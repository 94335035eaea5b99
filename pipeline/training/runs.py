"""Trained run folders: loading one, and the options it was trained with."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from vidcache.features.errors import VidcacheError
from vidcache.features.fusion import FusedSettings, settings_of
from vidcache.features.settings import FeatureSettings
from vidcache.pipeline.training.fitting import TrainConfig


class RunError(VidcacheError):
    """A run folder is missing or incomplete."""


@dataclass
class Run:
    """A trained run folder, loaded."""

    path: Path
    model: object
    classes: list[str]
    config: dict
    settings: FeatureSettings | FusedSettings
    vocabulary: object = None  # models.text.CaptionVocabulary of a caption run

    @property
    def task(self) -> str:
        """The task's name: ``classify``, ``caption``, ``regress`` or a registered one."""
        return self.config.get("task", "classify")

    @property
    def task_class(self):
        """The run's :class:`~vidcache.pipeline.training.tasks.base.Task` (its outputs,
        metrics and formatting)."""
        from vidcache.pipeline.training.tasks import get_task

        return get_task(self.task)

    @property
    def target_names(self) -> list[str]:
        """The outputs of a regression run."""
        return list(self.config.get("targets", {}).get("names", []))

    @property
    def per_frame(self) -> bool:
        """A regression run with one output per frame."""
        return bool(self.config.get("targets", {}).get("per_frame", False))


def load_run(run_dir: Path) -> Run:
    """Load ``model.keras``, ``config.json`` and the task's files (``labels.json`` of a
    classifier, ``vectorizer.keras`` of a captioner) of a run.

    Raises:
        RunError: the folder is not a complete run.
    """
    run_dir = Path(run_dir)
    check_run_folder(run_dir)
    from vidcache.features.backbone import import_tensorflow

    import_tensorflow()
    import keras

    import vidcache.models.attention  # noqa: F401  (registers the transformer head's layers)
    from vidcache.pipeline.training.tasks.base import MissingRunFile

    task = run_task(run_dir)
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    try:
        found = task.load(run_dir, config)  # the task's files (labels.json, ...)
        settings = settings_of(config["feature_settings"])
        model = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
    except MissingRunFile as exc:
        raise RunError(f"{run_dir} is not a vidcache run (missing {exc})") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(
            f"{run_dir}: cannot load the run ({str(exc).splitlines()[0][:200]})"
        ) from None
    return Run(run_dir, model, found.get("classes", []), config, settings, found.get("vocabulary"))


def check_run_folder(run_dir: Path) -> None:
    """Raise :class:`RunError` naming what a run folder lacks (model, config)."""
    needed = [Path(run_dir) / name for name in ("model.keras", "config.json")]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise RunError(f"{run_dir} is not a vidcache run (missing {', '.join(missing)})")


def run_task(run_dir: Path):
    """The :class:`~vidcache.pipeline.training.tasks.base.Task` a run folder was trained
    for, from its ``config.json`` alone (no model is loaded).

    Raises:
        RunError: no readable ``config.json``, or a task this installation does not have.
    """
    from vidcache.pipeline.training.tasks import get_task

    check_run_folder(run_dir)
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(
            f"{run_dir}: cannot load the run ({str(exc).splitlines()[0][:200]})"
        ) from None
    name = config.get("task", "classify")
    try:
        return get_task(name)
    except ValueError:
        raise RunError(
            f"{run_dir} is a {name!r} run, a task this installation does not have"
        ) from None


def run_train_config(run: Run) -> TrainConfig:
    """The ``TrainConfig`` a run was trained with (fields newer than the run take defaults)."""
    known = set(TrainConfig.__dataclass_fields__)
    return TrainConfig(**{k: v for k, v in run.config.get("train", {}).items() if k in known})


def staging_dir(run_dir: Path) -> Path:
    """Where a run that will replace ``run_dir`` is trained (beside it, hidden), so the
    old run stays whole until the new one is complete (``train-rnn --overwrite``)."""
    run_dir = Path(run_dir)
    return run_dir.with_name(f".{run_dir.name}.new-{os.getpid()}")


def replace_run(new: Path, run_dir: Path) -> None:
    """Put the complete run ``new`` in the place of ``run_dir``: the old run is moved
    aside, the new one renamed in, then the old one removed."""
    run_dir = Path(run_dir)
    old = run_dir.with_name(f".{run_dir.name}.old-{os.getpid()}")
    os.replace(run_dir, old)
    os.replace(new, run_dir)
    shutil.rmtree(old, ignore_errors=True)
