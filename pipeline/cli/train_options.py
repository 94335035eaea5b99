"""``train-rnn``'s option groups: the sequence model, the data, the fitting, and the options
only one task reads (each named in its help text)."""

from __future__ import annotations

from pathlib import Path

import click

from vidcache.pipeline.cli.options import compose


def _tensorboard_installed(context, parameter, value: bool) -> bool:
    """Click callback of ``--tensorboard``: one line, before any work, when it is missing."""
    import importlib.util

    if value and importlib.util.find_spec("tensorboard") is None:
        raise click.ClickException(
            "--tensorboard needs TensorBoard, which is not installed; install it with "
            "pip install 'vidcache[tensorboard]'"
        )
    return value


#: The sequence model: head, cell, size, regularisation.
model_options = compose(
    click.option(
        "--head",
        type=click.Choice(["lstm", "mean", "transformer", "tcn"]),
        default="lstm",
        show_default=True,
        help="LSTM, the mean-of-frames baseline, or a causal transformer (self-attention over "
        "the frames so far; --units wide, --layers blocks; streams like the LSTM; a caption "
        "run's encoder); for --task segment also tcn, MS-TCN's multi-stage dilated "
        "convolutions (--units channels).",
    ),
    click.option(
        "--attention-heads",
        type=click.IntRange(min=1),
        default=4,
        show_default=True,
        help="Attention heads of --head transformer (--units must be a multiple).",
    ),
    click.option(
        "--cell",
        type=click.Choice(["lstm", "gru"]),
        default="lstm",
        show_default=True,
        help="The recurrent cell of the lstm head (a caption run's encoder and decoder): LSTM, "
        "or GRU (fewer weights; streams the same way).",
    ),
    click.option(
        "--readout",
        type=click.Choice(["pooled", "last"]),
        default="pooled",
        show_default=True,
        help="What the classifier reads from the LSTM: its final state and the mean of its "
        "outputs over time (remembers how a clip began; streams exactly), or the final state "
        "only (vidcache 0.1).",
    ),
    click.option("--units", type=click.IntRange(min=1), default=128, show_default=True),
    click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True),
    click.option("--bidirectional", is_flag=True, help="Bidirectional LSTMs (no --stream then)."),
    click.option(
        "--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True
    ),
    click.option(
        "--recurrent-dropout",
        type=click.FloatRange(0, 1, max_open=True),
        default=0.0,
        show_default=True,
    ),
)

#: Which sequences, split how, shaped how.
data_options = compose(
    click.option(
        "--val-split",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=0.2,
        show_default=True,
    ),
    click.option(
        "--group-regex",
        default=r"_g(\d+)_c\d+",
        show_default=True,
        help="Clips whose names share its match stay on one side of the split.",
    ),
    click.option(
        "--split-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="CSV path,split (train/val/test) instead of --val-split.",
    ),
    click.option("--seq-len", type=click.IntRange(min=1), help="Resample sequences to N steps."),
    click.option("--max-len", type=click.IntRange(min=1), help="Crop sequences to N steps."),
    click.option(
        "--stream",
        "stream_data",
        is_flag=True,
        help="Read sequences from HDF5 per batch (data larger than memory).",
    ),
    click.option(
        "--label-map",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="CSV old,new to rename or merge labels (empty new drops a class).",
    ),
    click.option(
        "--fuse",
        is_flag=True,
        help="FEATURES are feature sets of the same videos (one cache per backbone, same "
        "sampling): train on their per-frame concatenation.",
    ),
)

#: How long and how fast it learns, and what it logs.
fitting_options = compose(
    click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True),
    click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True),
    click.option(
        "--lr",
        type=click.FloatRange(min=0, min_open=True),
        default=1e-3,
        show_default=True,
        help="Adam learning rate.",
    ),
    click.option(
        "--patience",
        type=click.IntRange(min=1),
        default=8,
        show_default=True,
        help="Epochs without a better validation loss before stopping.",
    ),
    click.option(
        "--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True
    ),
    click.option(
        "--tensorboard",
        is_flag=True,
        callback=_tensorboard_installed,
        help="Write TensorBoard logs to RUN/logs (needs pip install 'vidcache[tensorboard]').",
    ),
)

#: Options only one task reads (the task is named in each help text).
task_options = compose(
    click.option("--attention", is_flag=True, help="caption: the decoder attends over the frames."),
    click.option(
        "--beam",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="caption: beam width for validation captions (1 = greedy).",
    ),
    click.option(
        "--max-words",
        type=click.IntRange(min=1),
        default=20,
        show_default=True,
        help="caption: captions are cut to and generated up to N words.",
    ),
    click.option(
        "--vocab-size",
        type=click.IntRange(min=5),
        default=5000,
        show_default=True,
        help="caption: vocabulary ids (rarer words become [UNK]).",
    ),
    click.option("--embedding-dim", type=click.IntRange(min=1), default=128, show_default=True),
    click.option(
        "--stages",
        type=click.IntRange(min=1),
        default=4,
        show_default=True,
        help="segment: stages of --head tcn (each refines the previous one's probabilities).",
    ),
    click.option(
        "--stage-layers",
        type=click.IntRange(1, 16),
        default=10,
        show_default=True,
        help="segment: dilated residual layers per stage of --head tcn (dilation 1 to 2^(N-1)).",
    ),
    click.option(
        "--smoothing",
        type=click.FloatRange(min=0),
        default=0.15,
        show_default=True,
        help="segment: weight of --head tcn's smoothing loss (MS-TCN's truncated MSE of "
        "consecutive frames' log-probabilities; 0: none).",
    ),
    click.option(
        "--causal",
        is_flag=True,
        help="segment: --head tcn looks at past frames only, so predict --stream equals "
        "offline (MS-TCN itself also looks ahead).",
    ),
    click.option(
        "--threshold",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=0.5,
        show_default=True,
        help="multilabel: a label is predicted at this probability or above.",
    ),
    click.option(
        "--time-tolerance",
        type=click.FloatRange(min=0),
        default=0.05,
        show_default=True,
        help="regress: seconds between a frame and its per-frame target row.",
    ),
)
