"""``train-e2e``: fine-tune the backbone's top blocks and a run's head together."""

from __future__ import annotations

from pathlib import Path

import click

from vidcache.pipeline.cli.common import CONTEXT, core_errors
from vidcache.pipeline.cli.options import distribute_option, seed_option, weights_file_option


@click.command("train-e2e", context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("videos", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--unfreeze-from",
    default=None,
    show_default="the last two blocks: mixed9 for InceptionV3",
    help="First trainable block, or all: InceptionV3 mixed1..mixed10, ResNet50 "
    "conv2_block2..conv5_block3, EfficientNetV2S block1b..block6o, MobileNetV3Large "
    "expanded_conv_1..expanded_conv_14.",
)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Videos per step (of equal length).",
)
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--cache-cut",
    is_flag=True,
    help="Compute the frozen layers once per frame; epochs run only the top blocks.",
)
@click.option(
    "--frames-cache",
    is_flag=True,
    help="Keep decoded frames in OUT/frames_cache.h5: later epochs skip decoding.",
)
@weights_file_option
@seed_option
@distribute_option
@click.option("-q", "--quiet", is_flag=True)
@core_errors
def train_e2e_command(
    run_dir,
    videos,
    output,
    unfreeze_from,
    optimizer,
    lr,
    epochs,
    batch_size,
    patience,
    cache_cut,
    frames_cache,
    weights_path,
    seed,
    distribute,
    quiet,
) -> None:
    """Fine-tune the backbone's top blocks and RUN's LSTM together (stage three).

    Starts exactly where RUN is (same weights, sampling and split); VIDEOS must hold RUN's
    training and validation videos. Writes the run files plus comparison.json.

    \b
    Example:
        vidcache train-e2e runs/lstm data/videos -o runs/lstm-e2e --cache-cut
    """
    from vidcache.pipeline.training.e2e import E2EConfig, check_e2e_run, train_e2e

    check_e2e_run(run_dir, unfreeze_from)  # before any work: no output folder yet
    config = E2EConfig(
        unfreeze_from=unfreeze_from,
        optimizer=optimizer,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        patience=patience,
        cache_cut=cache_cut,
        frames_cache=frames_cache,
        seed=seed,
        verbose=0 if quiet else 2,
        distribute=distribute,
    )
    c = train_e2e(run_dir, list(videos), output, config, weights_path)
    click.echo(
        f"{output}: validation top-1 {c['stage_two_top1']:.3f} (stage two) -> "
        f"{c['end_to_end_top1']:.3f} (end to end) on {c['validation_videos']} videos; "
        f"seconds per epoch {c['stage_two_seconds_per_epoch']} (stage two) -> "
        f"{c['seconds_per_epoch']} (end to end); batch {c['batch_size']} videos, about "
        f"{c['estimated_gib_per_step']} GiB per step"
    )
    if c["best_epoch"] == 0:
        click.echo(
            f"kept the stage-two weights: no fine-tuned epoch beat the hand-over's validation "
            f"loss {c['handover_val_loss']:.4f} (epochs: "
            + ", ".join(f"{v:.4f}" for v in c["val_losses"])
            + ")"
        )
