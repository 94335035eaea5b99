"""``train-rnn``'s options: :class:`TrainConfig`, composed of small option groups (model,
data, fitting, and each task's own), every field recorded in a run's ``config.json``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TypeVar

from vidcache.models.split import UCF101_GROUP

__all__ = [
    "GROUPS",
    "CaptionOptions",
    "DataOptions",
    "FitOptions",
    "ModelOptions",
    "MultilabelOptions",
    "RegressOptions",
    "SegmentOptions",
    "TrainConfig",
]

T = TypeVar("T")


@dataclass(frozen=True)
class ModelOptions:
    """The sequence model (:mod:`vidcache.models.heads`, :mod:`vidcache.models.captioner`).

    Args:
        head: ``"lstm"``, ``"mean"`` (the order-blind baseline), ``"transformer"``
            (causal self-attention) or, for ``segment`` runs, ``"tcn"`` (MS-TCN). Defaults
            to ``"lstm"``.
        units: LSTM units (MLP units for ``mean``). Defaults to 128.
        layers: stacked LSTM layers (transformer blocks). Defaults to 1.
        bidirectional: bidirectional LSTMs (cannot stream). Defaults to False.
        dropout: LSTM input dropout. Defaults to 0.2.
        recurrent_dropout: LSTM recurrent dropout. Defaults to 0.0.
        cell: the recurrent cell of the ``lstm`` head, ``"lstm"`` or ``"gru"``. Defaults to
            ``"lstm"``.
        attention_heads: attention heads of the ``transformer`` head. Defaults to 4.
        readout: what a classifier reads from its LSTM, ``"pooled"`` or ``"last"``.
            Defaults to ``"pooled"``.
    """

    head: str = "lstm"
    units: int = 128
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.2
    recurrent_dropout: float = 0.0
    cell: str = "lstm"
    attention_heads: int = 4
    readout: str = "pooled"


@dataclass(frozen=True)
class DataOptions:
    """Which sequences, split how, shaped how.

    Args:
        val_split: share of each class held out for validation. Defaults to 0.2.
        group_regex: clips matching it share a group that is never split. Defaults to the
            UCF101 ``_g<NN>_c<NN>`` pattern.
        split_file: CSV ``path,split`` with explicit train/val/test. Defaults to None.
        seq_len: resample every sequence to this many steps. Defaults to None.
        max_len: crop sequences to this many steps. Defaults to None.
        stream: read sequences from HDF5 per batch instead of loading them. Defaults to False.
        label_map: ``{old: new}`` label renames; ``""`` drops a class. Defaults to None.
        fuse: the caches are feature sets of the same videos, fused per frame
            (:mod:`vidcache.features.fusion`). Defaults to False.
    """

    val_split: float = 0.2
    group_regex: str = UCF101_GROUP
    split_file: str | None = None
    seq_len: int | None = None
    max_len: int | None = None
    stream: bool = False
    label_map: dict = field(default_factory=dict)
    fuse: bool = False


@dataclass(frozen=True)
class FitOptions:
    """How long and how fast the model learns, and what is logged.

    Args:
        epochs: at most this many epochs. Defaults to 50.
        batch_size: sequences per batch (the global batch of a distributed run). Defaults
            to 16.
        lr: Adam learning rate. Defaults to 1e-3.
        patience: epochs without a better validation loss before stopping. Defaults to 8.
        class_weight: ``"none"`` or ``"balanced"``. Defaults to ``"none"``.
        seed: seeds the split, initialisation and shuffling. Defaults to 0.
        tensorboard: write TensorBoard logs to ``RUN/logs``. Defaults to False.
        verbose: Keras progress output (0, 1, 2). Defaults to 2.
        distribute: ``"none"``, ``"mirrored"`` or ``"multi-worker"``
            (:mod:`vidcache.pipeline.training.distribute`). Defaults to ``"none"``.
    """

    epochs: int = 50
    batch_size: int = 16
    lr: float = 1e-3
    patience: int = 8
    class_weight: str = "none"
    seed: int = 0
    tensorboard: bool = False
    verbose: int = 2
    distribute: str = "none"


@dataclass(frozen=True)
class CaptionOptions:
    """What only a caption run reads.

    Args:
        captions: captions CSV (``path,caption``). Defaults to None.
        attention: the decoder attends over the frames. Defaults to False.
        beam: beam width for the validation captions (1 = greedy). Defaults to 1.
        max_words: captions are cut to, and generated up to, this many words. Defaults to 20.
        vocab_size: vocabulary ids, padding and reserved tokens included. Defaults to 5000.
        embedding_dim: word embedding size. Defaults to 128.
        scorer: ``"fast"``, or ``"coco"`` to add the coco-caption scores. Defaults to
            ``"fast"``.
    """

    captions: str | None = None
    attention: bool = False
    beam: int = 1
    max_words: int = 20
    vocab_size: int = 5000
    embedding_dim: int = 128
    scorer: str = "fast"


@dataclass(frozen=True)
class RegressOptions:
    """What only a regression run reads.

    Args:
        targets: targets CSV (per video or per frame). Defaults to None.
        time_tolerance: seconds between a frame and the nearest per-frame target row for
            them to match. Defaults to 0.05.
    """

    targets: str | None = None
    time_tolerance: float = 0.05


@dataclass(frozen=True)
class SegmentOptions:
    """What only a segmentation run reads.

    Args:
        segments: segments CSV (``video,start,end,label``, seconds). Defaults to None.
        stages: stages of the ``tcn`` head. Defaults to 4 (MS-TCN's).
        stage_layers: dilated residual layers per stage of the ``tcn`` head (dilations 1 to
            2^(N-1)). Defaults to 10 (MS-TCN's).
        smoothing: weight of the ``tcn`` head's smoothing loss. Defaults to 0.15 (MS-TCN's).
        causal: the ``tcn`` head looks at past frames only (it can stream). Defaults to
            False (MS-TCN's acausal network).
    """

    segments: str | None = None
    stages: int = 4
    stage_layers: int = 10
    smoothing: float = 0.15
    causal: bool = False


@dataclass(frozen=True)
class MultilabelOptions:
    """What only a multi-label run reads.

    Args:
        threshold: a label is predicted when its probability is at least this (precision,
            recall and F1 in the metrics; the labels ``predict`` names). Defaults to 0.5.
    """

    threshold: float = 0.5


#: The option groups of :class:`TrainConfig`, by the name of the property that returns one.
GROUPS = {
    "model": ModelOptions,
    "data": DataOptions,
    "fit": FitOptions,
    "caption": CaptionOptions,
    "regress": RegressOptions,
    "segment": SegmentOptions,
    "multilabel": MultilabelOptions,
}


@dataclass(frozen=True)
class TrainConfig(
    MultilabelOptions,
    SegmentOptions,
    RegressOptions,
    CaptionOptions,
    FitOptions,
    DataOptions,
    ModelOptions,
):
    """Options of ``train-rnn``: the task and its option groups, every field recorded in
    ``config.json`` (flat, as ``train``).

    A field is reached flat (``config.units``) or through its group (``config.model``, a
    :class:`ModelOptions`; ``config.data``, ``config.fit``, ``config.caption``,
    ``config.regress``, ``config.segment``, ``config.multilabel``). Each group is
    documented on its class.

    Args:
        task: a registered task (:mod:`vidcache.pipeline.training.tasks`): ``"classify"``,
            ``"caption"``, ``"regress"``, ``"segment"``, ``"multilabel"`` or your own.
            Defaults to ``"classify"``.
    """

    task: str = "classify"

    def group(self, kind: type[T]) -> T:
        """The fields of one option group, as that group."""
        return kind(**{f.name: getattr(self, f.name) for f in fields(kind)})

    @property
    def model(self) -> ModelOptions:
        return self.group(ModelOptions)

    @property
    def data(self) -> DataOptions:
        return self.group(DataOptions)

    @property
    def fit(self) -> FitOptions:
        return self.group(FitOptions)

    @property
    def caption(self) -> CaptionOptions:
        return self.group(CaptionOptions)

    @property
    def regress(self) -> RegressOptions:
        return self.group(RegressOptions)

    @property
    def segment(self) -> SegmentOptions:
        return self.group(SegmentOptions)

    @property
    def multilabel(self) -> MultilabelOptions:
        return self.group(MultilabelOptions)
