"""What a task is: the one class a new kind of run implements.

A :class:`Task` owns everything that differs between kinds of runs: which cached videos it
learns from and their targets (its annotations), the model it builds, its batches, its
metrics, the files of its run folder beside ``model.keras``/``config.json``, how a saved
run predicts, and how its results read as text, JSON and CSV. Everything they share (the
caches, the split, the strategy scope, the fitting loop, the run folder, the plots of the
loss) is the training skeleton's (:mod:`vidcache.pipeline.training.skeleton`), written
once.

One instance serves one training run (``Task(config)``): what it learns along the way (the
classes, a vocabulary, the targets) lives on it. The methods about a saved run are class
methods: they get the :class:`~vidcache.pipeline.training.runs.Run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vidcache.features.untrusted import csv_text
from vidcache.models.data import DataError, SequenceSource

if TYPE_CHECKING:  # pragma: no cover
    from vidcache.pipeline.training.fitting import TrainConfig, TrainResult

#: A loaded run folder (:class:`vidcache.pipeline.training.runs.Run`, which imports this
#: module's registry: named here, not imported).
Run = Any


class MissingRunFile(Exception):
    """A file the task needs is not in the run folder (the message names it)."""


class Task:
    """One kind of run (classify, caption, regress, or one of your own).

    Class attributes:
        name: what ``--task`` and ``config.json``'s ``task`` call it.
        summary: one line saying what the task learns, from what.
        annotations: the ``TrainConfig`` field (and ``--`` option) naming the task's
            annotations file (``captions``, ``targets``), or None when the cache alone
            holds what it learns (class labels, or a target computed from the features).
        options: groups of ``TrainConfig`` fields only this task reads; giving one of a
            group with another task is refused on the command line, naming the group
            (``--attention and --beam need --task caption``).
        curve: the Keras metric drawn beside the loss in ``learning_curves.png``.
        stream_every: ``predict --stream``'s default ``--every``.
        fine_tunable: ``train-e2e`` can fine-tune its runs end to end (it trains the run's
            classifier head: class labels and cross-entropy). Defaults to False.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    annotations: ClassVar[str | None] = None
    options: ClassVar[tuple[tuple[str, ...], ...]] = ()
    curve: ClassVar[str] = "accuracy"
    stream_every: ClassVar[int] = 5
    fine_tunable: ClassVar[bool] = False

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.notes: list[str] = []

    # -- training, in the order the skeleton calls it ------------------------------------

    def check(self) -> None:
        """Refuse options this task cannot train with, before any data is read.

        Raises:
            DataError: an option does not fit the task.
        """
        if self.annotations and not getattr(self.config, self.annotations):
            raise DataError(f"a {self.name} run needs --{self.annotations} CSV")

    def collect(self, readers: list) -> list:
        """The cached videos (``models.data.Example``) to learn from; their targets stay
        on ``self``. Notes about what was left out go to ``self.notes``.

        Raises:
            DataError: nothing to learn from.
        """
        raise NotImplementedError

    def check_split(self, examples: list, parts: dict[str, list[int]]) -> None:
        """Refuse a split the task cannot train on (classify: a class with no training
        video). ``parts`` maps ``train``/``val``/``test`` to indices of ``examples``."""

    def prepare(self, examples: list, parts: dict[str, list[int]]) -> None:
        """After the split, before the model: what depends on the training part only
        (a vocabulary, the mean target)."""

    def check_distribution(self, distributed: bool) -> None:
        """Refuse options that a distributed run cannot honour."""

    def build(self, mean: np.ndarray, variance: np.ndarray):
        """The compiled Keras model (called inside the strategy's scope, seeded).
        ``mean``/``variance``: per-feature statistics of the training sequences."""
        raise NotImplementedError

    def before_fit(self, run_dir: Path) -> None:
        """Files the run folder needs while training (a caption run's vocabulary)."""

    def size(self, split: str, source: SequenceSource) -> int:
        """Examples in one epoch of ``split`` (captioning: one per caption)."""
        return len(source)

    def dataset(
        self,
        split: str,
        source: SequenceSource,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        shard=None,
        repeat: bool = False,
    ):
        """The ``tf.data`` batches of ``split`` (``train`` shuffled by ``seed``)."""
        raise NotImplementedError

    def class_weight(self) -> dict | None:
        """Keras ``class_weight`` for ``fit``, if the task has one."""
        return None

    def score(self, model, split: str, source: SequenceSource, run_dir: Path) -> dict:
        """The metrics of ``model`` on ``split`` (``val`` or ``test``) of the videos."""
        raise NotImplementedError

    def final_metrics(self, val: dict) -> dict:
        """The validation metrics as reported (a caption run adds its decoding)."""
        return val

    def save(self, run_dir: Path) -> None:
        """The task's own files of the run folder (``labels.json``, ``targets.json``)."""

    def record(self) -> dict[str, Any]:
        """Keys the task adds to ``config.json`` (classify: ``classes``)."""
        return {}

    def plots(self, run_dir: Path, val: dict) -> None:
        """Plots beyond the learning curves (classify: the confusion matrix)."""

    # -- a saved run -----------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir: Path, config: dict) -> dict[str, Any]:
        """The task's files of a run folder, as :class:`Run` fields (``classes``,
        ``vocabulary``).

        Raises:
            MissingRunFile: a file the task needs is missing.
        """
        return {}

    @classmethod
    def evaluate(
        cls, run: Run, readers: list, annotations: Path | None, config: TrainConfig, out_dir: Path
    ) -> dict:
        """Score ``run`` on the videos of ``readers`` (with the references in
        ``annotations`` when the task has them); files go to ``out_dir``."""
        raise NotImplementedError

    @classmethod
    def predict(cls, run: Run, sequences: list, times: list, top_k: int, beam: int | None):
        """The run's output for each ``(T, D)`` sequence (``times``: its timestamps), as
        :class:`~vidcache.pipeline.inference.predict.Prediction` fields (a dict each)."""
        raise NotImplementedError

    @classmethod
    def stream(cls, run: Run, beam: int | None):
        """The object ``predict --stream`` feeds one frame's features at a time
        (``step(features) -> output``); classify and regress use
        :class:`~vidcache.models.stream.StreamingModel`."""
        from vidcache.models.stream import StreamingModel

        return StreamingModel(run.model)

    @classmethod
    def stream_output(cls, run: Run, stream, output):
        """What ``predict --stream`` reports at an update (a caption run: the caption of
        the frames so far, decoded only then)."""
        return output

    @classmethod
    def stream_result(cls, run: Run, stream, output, top_k: int) -> dict[str, Any]:
        """``StreamReport`` fields after the last frame: ``output`` (NaN when there was
        no frame) and ``top``, the ``top_k`` classes of a classifier."""
        if output is None:
            output = np.full(max(1, len(run.classes) or len(run.target_names)), np.nan)
        return {
            "top": top_classes(output, run.classes, top_k) if run.classes else [],
            "output": output,
        }

    # -- text ------------------------------------------------------------------------------

    @classmethod
    def scores_text(cls, metrics: dict) -> str:
        """One line of the metrics (``top-1 0.833, ...``)."""
        raise NotImplementedError

    @classmethod
    def result_lines(cls, result: TrainResult, trained: str) -> list[str]:
        """What ``train-rnn`` ends with; ``trained`` starts the first line
        (``RUN: TASK (HEAD) trained N epochs; validation``)."""
        lines = [f"{trained} {cls.scores_text(result.metrics)}"]
        if result.test_metrics:
            lines.append(f"test {cls.scores_text(result.test_metrics)}")
        return lines

    @classmethod
    def evaluation_lines(cls, metrics: dict, where: str, out: Path) -> list[str]:
        """What ``evaluate`` prints: ``where`` names the data, ``out`` the folder of
        ``metrics.json``."""
        return [f"{where}: {cls.scores_text(metrics)} -> {out}/metrics.json"]

    @classmethod
    def prediction_text(cls, run: Run, prediction) -> str:
        """``predict``'s text for one video."""
        raise NotImplementedError

    @classmethod
    def prediction_json(cls, run: Run, prediction) -> dict:
        """``predict --json``'s fields for one video, beside ``path``, ``video_id``..."""
        raise NotImplementedError

    @classmethod
    def csv_header(cls, run: Run) -> str:
        """``predict --csv``'s header line."""
        raise NotImplementedError

    @classmethod
    def csv_rows(cls, run: Run, path: str, prediction) -> list[str]:
        """``predict --csv``'s lines for one video (``path`` already CSV-quoted)."""
        raise NotImplementedError

    @classmethod
    def stream_header(cls, run: Run) -> str:
        """``predict --stream --csv``'s header line."""
        return "frame,time," + cls._stream_columns(run)

    @classmethod
    def _stream_columns(cls, run: Run) -> str:
        raise NotImplementedError

    @classmethod
    def stream_line(cls, run: Run, frame: int, time: float, output, as_csv: bool, top_k: int):
        """``predict --stream``'s line at an update."""
        raise NotImplementedError

    @classmethod
    def stream_json(cls, run: Run, frame: int, time: float, output, top_k: int) -> dict:
        """``predict --stream --json``'s object at an update (one JSON line): the caption,
        the ``top_k`` classes or the named values of the frames so far."""
        out: dict[str, Any] = {"frame": frame, "time": round(time, 6)}
        if isinstance(output, str):
            out["caption"] = output
        elif run.classes:
            top = top_classes(np.asarray(output), run.classes, top_k)
            out["top"] = [{"label": c, "probability": round(q, 6)} for c, q in top]
        else:
            out["values"] = {n: float(v) for n, v in zip(run.target_names, np.ravel(output))}
        return out

    @classmethod
    def stream_final(cls, run: Run, report) -> str:
        """The output after the last frame, as ``final after N frames: ...`` ends."""
        raise NotImplementedError


def read_class_names(run_dir: Path) -> list[str]:
    """The class names of a run folder's ``labels.json``.

    Raises:
        MissingRunFile: there is none.
    """
    import json

    labels = Path(run_dir) / "labels.json"
    if not labels.is_file():
        raise MissingRunFile("labels.json")
    return json.loads(labels.read_text(encoding="utf-8"))


def csv_field(text: str) -> str:
    """``text`` as one CSV field (quoted when it holds a comma, a quote or a newline),
    never a spreadsheet formula (:func:`features.untrusted.csv_text`)."""
    text = csv_text(text)
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\n\r') else text


def values_text(names: list[str], values) -> str:
    """``name value, ...`` of regression outputs."""
    return ", ".join(f"{n} {v:.4g}" for n, v in zip(names, values))


def top_classes(probs: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable classes and their probabilities."""
    best = np.argsort(-probs)[: min(k, len(classes))]
    return [(classes[i], float(probs[i])) for i in best]
