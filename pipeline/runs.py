"""Trained run folders: loading one, and the options it was trained with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vidcache.features.errors import VidcacheError
from vidcache.features.fusion import FusedSettings, settings_of
from vidcache.features.settings import FeatureSettings
from vidcache.pipeline.fitting import TrainConfig


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
        """``classify``, ``caption`` or ``regress``."""
        return self.config.get("task", "classify")

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
    needed = [run_dir / name for name in ("model.keras", "config.json")]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise RunError(f"{run_dir} is not a vidcache run (missing {', '.join(missing)})")
    from vidcache.features.backbone import import_tensorflow

    import_tensorflow()
    import keras

    import vidcache.models.attention  # noqa: F401  (registers the transformer head's layers)
    from vidcache.models.text import CaptionVocabulary

    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        task = config.get("task", "classify")
        classes = []
        if task == "classify":
            if not (run_dir / "labels.json").is_file():
                raise RunError(f"{run_dir} is not a vidcache run (missing labels.json)")
            classes = json.loads((run_dir / "labels.json").read_text(encoding="utf-8"))
        settings = settings_of(config["feature_settings"])
        model = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
        vocabulary = CaptionVocabulary.load(run_dir) if task == "caption" else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(
            f"{run_dir}: cannot load the run ({str(exc).splitlines()[0][:200]})"
        ) from None
    return Run(run_dir, model, classes, config, settings, vocabulary)


def run_train_config(run: Run) -> TrainConfig:
    """The ``TrainConfig`` a run was trained with (fields newer than the run take defaults)."""
    known = set(TrainConfig.__dataclass_fields__)
    return TrainConfig(**{k: v for k, v in run.config.get("train", {}).items() if k in known})
