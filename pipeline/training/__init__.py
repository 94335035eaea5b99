"""Stage two: train a sequence model on cached features, evaluate a run.

``skeleton`` is the one training procedure (caches -> split -> data -> strategy scope ->
fit -> run folder -> plots); ``tasks/`` holds what differs per task, one module each;
``fitting``, ``distribute`` and ``multiworker`` the machinery; ``runs`` loads a run folder;
``e2e`` is the optional third stage.
"""

from __future__ import annotations

import importlib

#: The public names, imported on first use (``vidcache --help`` imports this package to
#: list the tasks and must not pay for numpy, h5py or Keras).
_EXPORTS = {
    "Run": "runs",
    "RunError": "runs",
    "TrainConfig": "fitting",
    "TrainResult": "fitting",
    "evaluate_run": "skeleton",
    "load_run": "runs",
    "run_train_config": "runs",
    "train_rnn": "skeleton",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
