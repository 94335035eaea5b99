"""The command line: thin click commands that map options onto the library.

Errors from the core (``features.errors.VidcacheError``) become one ``Error: ...`` line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vidcache.pipeline import __version__, cache_commands, extract_command, npy_commands
from vidcache.pipeline.cli_common import CONTEXT, backbone_option, core_errors, expand_caches


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="vidcache")
def cli() -> None:
    """vidcache: extract CNN features from video once, train sequence models many times.

    \b
    Example:
        vidcache make-demo-data demo/videos
        vidcache extract demo/videos -o demo/features.h5 --weights random
        vidcache inspect demo/features.h5
    """


@cli.command("inspect", context_settings=CONTEXT)
@click.argument("caches", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@core_errors
def inspect_command(caches: tuple[Path, ...], as_json: bool) -> None:
    """Summarise a feature cache: videos per label, frames, settings, provenance. Several
    caches, or a folder of shard caches, are summarised as one dataset.

    \b
    Example:
        vidcache inspect features.h5
        vidcache inspect shards/
        vidcache inspect features.h5 --json | jq .labels
    """
    from vidcache.pipeline.cache_report import cache_summary, format_cache_summary

    paths = expand_caches(caches)
    summary = cache_summary(paths[0] if len(paths) == 1 else paths)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        click.echo(format_cache_summary(summary))


@cli.command("make-demo-data", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--clips-per-class", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--seconds", type=click.FloatRange(min=0.5), default=3.0, show_default=True)
@click.option("--fps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@core_errors
def make_demo_data(
    directory: Path, clips_per_class: int, seconds: float, fps: int, seed: int
) -> None:
    """Write small synthetic videos of three classes (grow, shrink, pulse) to DIRECTORY.

    Clips come in several containers and codecs (H.264 MP4, MPEG-4 AVI, VP9 WebM, FFV1 MKV,
    MJPEG AVI) plus one folder of PNG frames per class. The classes differ only in the order
    of their frames. DIRECTORY/captions.csv describes each clip (for --task caption) and
    DIRECTORY/targets.csv gives the square's size per frame (for --task regress).

    \b
    Example:
        vidcache make-demo-data demo/videos --clips-per-class 8
    """
    from vidcache.features.synthetic import DEMO_CLASSES, make_demo_dataset
    from vidcache.pipeline.outputs import prepare_output_dir

    prepare_output_dir(directory, "demo data folder")
    written = make_demo_dataset(directory, clips_per_class, fps=fps, seconds=seconds, seed=seed)
    click.echo(
        f"wrote {len(written)} clips of {len(DEMO_CLASSES)} classes ({', '.join(DEMO_CLASSES)}) "
        f"to {directory}, with captions.csv (3 per clip) and targets.csv (square size per frame)"
    )


def _tensorboard_installed(context, parameter, value: bool) -> bool:
    """Click callback of ``--tensorboard``: one line, before any work, when it is missing."""
    import importlib.util

    if value and importlib.util.find_spec("tensorboard") is None:
        raise click.ClickException(
            "--tensorboard needs TensorBoard, which is not installed; install it with "
            "pip install 'vidcache[tensorboard]'"
        )
    return value


@cli.command("weights", context_settings=CONTEXT)
@click.option("--check", is_flag=True, help="Only check; exit 1 if the ImageNet file is missing.")
@click.option(
    "--list",
    "list_all",
    is_flag=True,
    help="List every registered backbone: its features, input size and pretrained file, "
    "present or not (downloads nothing).",
)
@backbone_option("Whose weights: a registered backbone.")
@core_errors
def weights_command(check: bool, list_all: bool, backbone: str) -> None:
    """Show where Keras' ImageNet weights of a backbone (InceptionV3 by default) live, and
    fetch them if missing.

    With no network, fetch the file elsewhere and copy it to the printed path, or pass
    --weights PATH to extract-features.

    \b
    Example:
        vidcache weights            # download into the Keras cache if missing
        vidcache weights --check    # exit status 0 when present
        vidcache weights --list     # every backbone and where its file goes
    """
    from vidcache.features.backbone import imagenet_weights
    from vidcache.features.errors import WeightsUnavailable

    if list_all:
        _list_backbones()
        return

    try:
        path = imagenet_weights(download=not check, backbone=backbone)
    except WeightsUnavailable as exc:
        if not check:
            raise
        click.echo(f"Not available: {exc}", err=True)
        sys.exit(1)
    click.echo(f"ImageNet weights: {path}")


def _list_backbones() -> None:
    """One line per registered backbone: dimension, input sizes, pretrained file and state."""
    from vidcache.features.backbones import backbone_names, get_backbone, keras_cache_dir

    folder = keras_cache_dir()
    click.echo(f"Keras cache: {folder}")
    for name in backbone_names():
        entry = get_backbone(name)
        line = (
            f"{name}: {entry.feature_dim}-d, {entry.default_image_size} px "
            f"(at least {entry.min_image_size})"
        )
        if entry.pretrained is None:
            needs = ""
            if entry.extra is not None:
                needs = f"; needs the {entry.extra} extra (pip install 'vidcache[{entry.extra}]')"
                if _extra_installed(entry.extra):
                    needs = f"; {entry.extra} extra installed"
            click.echo(f"{line}; real weights: {entry.real_weights or 'a weights file'}{needs}")
            continue
        state = "present" if (folder / entry.pretrained.name).is_file() else "missing"
        click.echo(f"{line}; {entry.pretrained.name} ({state}) from {entry.pretrained.url}")


def _extra_installed(extra: str) -> bool:
    """Whether the packages of a vidcache extra that backbones need are importable."""
    import importlib.util

    modules = {"hub": "keras_hub"}
    return importlib.util.find_spec(modules.get(extra, extra)) is not None


def _read_label_map(path: Path | None) -> dict:
    """``old,new`` rows (a header ``label,new_label`` is optional); empty ``new`` drops."""
    if path is None:
        return {}
    import csv

    mapping = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.reader(handle):
            if not row or row[0].startswith("#") or row[:2] == ["label", "new_label"]:
                continue
            if len(row) < 2:
                raise click.ClickException(f"{path}: each row needs 'old,new' (got {row})")
            mapping[row[0].strip()] = row[1].strip()
    return mapping


_DISTRIBUTE = click.option(
    "--distribute",
    type=click.Choice(["none", "mirrored", "multi-worker"]),
    default="none",
    show_default=True,
    help="tf.distribute: every GPU of this machine (mirrored), or the workers of TF_CONFIG "
    "(multi-worker; run the same command on each, worker 0 writes the run). --batch-size is "
    "the global batch. See docs/scale.md.",
)

_SCORER = click.option(
    "--scorer",
    type=click.Choice(["fast", "coco"]),
    default=None,
    help="caption: 'coco' adds the standard coco-caption scores (PTB tokens, BLEU, METEOR, "
    "ROUGE-L, CIDEr-D; pip install 'vidcache[coco]') to the fast ones.  [default: fast]",
)


def _check_scorer(scorer: str | None) -> None:
    if scorer == "coco":
        from vidcache.models.cocoscore import check_available

        check_available()


_TRAIN_HELP = """Train a sequence model on cached features (stage two).

Reads videos from one or more FEATURES caches (made with the same settings), splits them
(stratified by label, never splitting a UCF101 group), standardises features on the
training split, trains, and writes RUN (model.keras, config.json, history.csv,
metrics.json, learning_curves.png and the task's own files).

\b
Tasks:
  classify  the videos' labels (default); top-1/top-5, confusion matrix
  caption   --captions CSV (path,caption; several rows per video); an LSTM
            encoder-decoder, BLEU-1..4 and CIDEr-D against all references
  regress   --targets CSV: path,value[,value...] per video, or (header
            path,time,value...) per frame matched by timestamp; MSE, MAE

\b
Example:
    train-rnn features.h5 -o runs/lstm
    train-rnn features.h5 -o runs/mean --head mean
    train-rnn a.h5 b.h5 -o runs/big --layers 2 --units 256 --class-weight balanced
    train-rnn features.h5 -o runs/cap --task caption --captions captions.csv --attention --beam 3
    train-rnn features.h5 -o runs/steer --task regress --targets steering.csv
"""


@click.command("train-rnn", help=_TRAIN_HELP, context_settings=CONTEXT)
@click.argument(
    "features",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, path_type=Path),
)
@click.option(
    "-o",
    "--output",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The run folder.",
)
@click.option(
    "--head",
    type=click.Choice(["lstm", "mean", "transformer"]),
    default="lstm",
    show_default=True,
    help="LSTM, the mean-of-frames baseline, or a causal transformer (self-attention over "
    "the frames so far; --units wide, --layers blocks; streams like the LSTM; a caption "
    "run's encoder).",
)
@click.option(
    "--attention-heads",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Attention heads of --head transformer (--units must be a multiple).",
)
@click.option(
    "--cell",
    type=click.Choice(["lstm", "gru"]),
    default="lstm",
    show_default=True,
    help="The recurrent cell of the lstm head (a caption run's encoder and decoder): LSTM, "
    "or GRU (fewer weights; streams the same way).",
)
@click.option(
    "--readout",
    type=click.Choice(["pooled", "last"]),
    default="pooled",
    show_default=True,
    help="What the classifier reads from the LSTM: its final state and the mean of its "
    "outputs over time (remembers how a clip began; streams exactly), or the final state "
    "only (vidcache 0.1).",
)
@click.option("--units", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--bidirectional", is_flag=True, help="Bidirectional LSTMs (no --stream then).")
@click.option(
    "--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True
)
@click.option(
    "--recurrent-dropout",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
)
@click.option("--epochs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Adam learning rate.",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Epochs without a better validation loss before stopping.",
)
@click.option(
    "--val-split",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
)
@click.option(
    "--group-regex",
    default=r"_g(\d+)_c\d+",
    show_default=True,
    help="Clips whose names share its match stay on one side of the split.",
)
@click.option(
    "--split-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV path,split (train/val/test) instead of --val-split.",
)
@click.option("--seq-len", type=click.IntRange(min=1), help="Resample sequences to N steps.")
@click.option("--max-len", type=click.IntRange(min=1), help="Crop sequences to N steps.")
@click.option(
    "--stream",
    "stream_data",
    is_flag=True,
    help="Read sequences from HDF5 per batch (data larger than memory).",
)
@click.option(
    "--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True
)
@click.option(
    "--label-map",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV old,new to rename or merge labels (empty new drops a class).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--tensorboard",
    is_flag=True,
    callback=_tensorboard_installed,
    help="Write TensorBoard logs to RUN/logs (needs pip install 'vidcache[tensorboard]').",
)
@click.option(
    "--task",
    type=click.Choice(["classify", "caption", "regress"]),
    default="classify",
    show_default=True,
)
@click.option(
    "--captions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="caption: CSV path,caption (several rows per video allowed).",
)
@click.option(
    "--targets",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="regress: CSV path,value[,value...] or path,time,value[,value...] (with header).",
)
@click.option("--attention", is_flag=True, help="caption: the decoder attends over the frames.")
@_SCORER
@click.option(
    "--beam",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="caption: beam width for validation captions (1 = greedy).",
)
@click.option(
    "--max-words",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="caption: captions are cut to and generated up to N words.",
)
@click.option(
    "--vocab-size",
    type=click.IntRange(min=5),
    default=5000,
    show_default=True,
    help="caption: vocabulary ids (rarer words become [UNK]).",
)
@click.option("--embedding-dim", type=click.IntRange(min=1), default=128, show_default=True)
@click.option(
    "--time-tolerance",
    type=click.FloatRange(min=0),
    default=0.05,
    show_default=True,
    help="regress: seconds between a frame and its per-frame target row.",
)
@click.option(
    "--fuse",
    is_flag=True,
    help="FEATURES are feature sets of the same videos (one cache per backbone, same "
    "sampling): train on their per-frame concatenation.",
)
@_DISTRIBUTE
@click.option("-q", "--quiet", is_flag=True, help="No per-epoch output.")
@core_errors
def train_rnn_command(
    features,
    run_dir,
    head,
    attention_heads,
    cell,
    readout,
    units,
    layers,
    bidirectional,
    dropout,
    recurrent_dropout,
    epochs,
    batch_size,
    lr,
    patience,
    val_split,
    group_regex,
    split_file,
    seq_len,
    max_len,
    stream_data,
    class_weight,
    label_map,
    seed,
    tensorboard,
    task,
    captions,
    targets,
    attention,
    beam,
    max_words,
    vocab_size,
    embedding_dim,
    time_tolerance,
    fuse,
    distribute,
    quiet,
    scorer,
) -> None:
    from vidcache.pipeline.train import TrainConfig, train_rnn

    if fuse:
        folders = [str(path) for path in features if Path(path).is_dir()]
        if folders:
            raise click.ClickException(
                f"--fuse reads one cache file per feature set; {folders[0]} is a folder"
            )

    if seq_len is not None and max_len is not None:
        raise click.ClickException("--seq-len cannot be used with --max-len")
    if task == "caption" and captions is None:
        raise click.ClickException("--task caption needs --captions CSV")
    if task == "regress" and targets is None:
        raise click.ClickException("--task regress needs --targets CSV")
    if task != "caption" and captions is not None:
        raise click.ClickException("--captions needs --task caption")
    if task != "regress" and targets is not None:
        raise click.ClickException("--targets needs --task regress")
    if task != "caption" and (attention or beam != 1):
        raise click.ClickException("--attention and --beam need --task caption")
    if scorer is not None and task != "caption":
        raise click.ClickException("--scorer needs --task caption")
    if head == "transformer":
        if units % attention_heads:
            raise click.ClickException(
                f"--units {units} must be a multiple of --attention-heads {attention_heads}"
            )
        if bidirectional:
            raise click.ClickException("--bidirectional: the transformer head is causal only")
    elif attention_heads != 4:
        raise click.ClickException("--attention-heads needs --head transformer")
    if cell != "lstm" and head != "lstm":
        raise click.ClickException(f"--cell {cell} needs the lstm head (--head {head} has none)")
    _check_scorer(scorer)
    config = TrainConfig(
        head=head,
        attention_heads=attention_heads,
        cell=cell,
        readout=readout,
        units=units,
        layers=layers,
        bidirectional=bidirectional,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        val_split=val_split,
        group_regex=group_regex,
        split_file=str(split_file) if split_file else None,
        seq_len=seq_len,
        max_len=max_len,
        stream=stream_data,
        class_weight=class_weight,
        label_map=_read_label_map(label_map),
        seed=seed,
        tensorboard=tensorboard,
        verbose=0 if quiet else 2,
        task=task,
        captions=str(captions) if captions else None,
        targets=str(targets) if targets else None,
        attention=attention,
        beam=beam,
        scorer=scorer or "fast",
        max_words=max_words,
        vocab_size=vocab_size,
        embedding_dim=embedding_dim,
        time_tolerance=time_tolerance,
        distribute=distribute,
        fuse=fuse,
    )
    result = train_rnn(expand_caches(features), run_dir, config)
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    if result.interrupted:
        click.echo("Interrupted: the best model so far is kept.")
    _print_training(result, run_dir, task, head)
    if result.interrupted:
        sys.exit(130)  # like every command stopped by Ctrl-C


def _print_training(result, run_dir: Path, task: str, head: str) -> None:
    """The lines ``train-rnn`` ends with: the validation (and test) figures of the run."""
    m = result.metrics
    trained = f"{run_dir}: {task} ({head}) trained {result.epochs_run} epochs; validation"
    if task == "caption":
        b = m["baseline_most_common"]
        click.echo(
            f"{trained} {_caption_scores(m)} on {m['videos']} videos\n"
            f"baseline (always {b['caption']!r}): {_caption_scores(b)}"
        )
        if result.test_metrics:
            t = result.test_metrics
            click.echo(f"test {_caption_scores(t)} on {t['videos']} videos")
        return
    if task == "regress":
        click.echo(f"{trained} {_regression_scores(m)}")
        if result.test_metrics:
            click.echo(f"test {_regression_scores(result.test_metrics)}")
        return
    click.echo(
        f"{trained} top-1 {m['top1']:.3f}, top-5 {m['top5']:.3f}, macro F1 {m['macro_f1']:.3f} "
        f"on {m['examples']} videos"
    )
    if result.test_metrics:
        t = result.test_metrics
        click.echo(f"test top-1 {t['top1']:.3f} on {t['examples']} videos")


def _caption_scores(m: dict) -> str:
    bleu = "/".join(f"{m[f'bleu{n}']:.3f}" for n in range(1, 5))
    text = f"BLEU-1..4 {bleu}, CIDEr-D {m['cider_d']:.3f}"
    if "coco" in m:
        c = m["coco"]
        text += (
            f"; coco-caption scorer: BLEU-4 {c['bleu4']:.3f}, METEOR {c['meteor']:.3f}, "
            f"ROUGE-L {c['rouge_l']:.3f}, CIDEr-D {c['cider_d']:.3f}"
        )
    return text


def _regression_scores(m: dict) -> str:
    where = (
        f"{m['frames']} frames of {m['videos']} videos"
        if "frames" in m
        else f"{m['videos']} videos"
    )
    b = m["baseline_mean"]
    r2 = f", R^2 {m['r2']:.3f}" if m.get("r2") is not None else ""
    return (
        f"MSE {m['mse']:.4g}, MAE {m['mae']:.4g}{r2} on {where} "
        f"(predicting the training mean: MSE {b['mse']:.4g}, MAE {b['mae']:.4g})"
    )


cli.add_command(train_rnn_command)
# The console script is the command itself; it answers --version (so does `vidcache train-rnn`).
train_rnn_script = click.version_option(__version__, prog_name="train-rnn")(train_rnn_command)


@cli.command("evaluate", context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("features", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write metrics.json and confusion_matrix.png.  [default: RUN/eval-<cache name>]",
)
@click.option(
    "--captions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The references, for a caption run (CSV path,caption).",
)
@click.option(
    "--targets",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The true values, for a regression run (CSV as for train-rnn).",
)
@_SCORER
@click.option(
    "--cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the features of VIDEOS are kept, so evaluating again costs no CNN.  "
    "[default: OUTPUT/features.h5]",
)
@click.option(
    "--weights",
    "weights_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The weights file, when the run's cache used one.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar while extracting.")
@core_errors
def evaluate_command(
    run_dir: Path,
    features: tuple[Path, ...],
    output: Path | None,
    captions,
    targets,
    scorer,
    cache: Path | None,
    weights_path: Path | None,
    quiet: bool,
) -> None:
    """Recompute a run's metrics on caches made with the same settings, or on videos.

    Several caches, or a folder of shard caches, count as one dataset. Videos (files, or
    folders of them) get their features made exactly as the run's and kept in a cache
    (--cache): the same command again, on the same videos, runs no CNN.

    \b
    Example:
        vidcache evaluate runs/lstm test_features.h5
        vidcache evaluate runs/lstm test_shards/
        vidcache evaluate runs/lstm test_videos/
        vidcache evaluate runs/cap test_features.h5 --captions test_captions.csv
        vidcache evaluate runs/steer test_features.h5 --targets test_steering.csv
    """
    from vidcache.pipeline.train import evaluate_run

    if captions is not None and targets is not None:
        raise click.ClickException("--captions cannot be used with --targets")
    _check_scorer(scorer)
    caches, videos = _caches_and_videos(features)
    if videos:
        output = output or run_dir / f"eval-{videos[0].resolve().name}"
        caches.extend(_cache_videos(run_dir, videos, cache or output / "features.h5",
                                    weights_path, quiet))  # fmt: skip
    elif cache is not None:
        raise click.ClickException("--cache keeps the features of videos; no videos were given")
    metrics, out = evaluate_run(run_dir, caches, output, captions or targets, scorer)
    features = features[0] if len(features) == 1 else f"{len(caches)} caches"
    for note in metrics.get("notes", []):
        click.echo(f"Note: {note}", err=True)
    if "cider_d" in metrics:
        click.echo(
            f"{features}: {_caption_scores(metrics)} on {metrics['videos']} videos "
            f"-> {out}/metrics.json"
        )
        return
    if "mse" in metrics:
        click.echo(f"{features}: {_regression_scores(metrics)} -> {out}/metrics.json")
        return
    click.echo(
        f"{features}: top-1 {metrics['top1']:.3f}, top-5 {metrics['top5']:.3f}, macro F1 "
        f"{metrics['macro_f1']:.3f} on {metrics['examples']} videos -> {out}/metrics.json"
    )
    if metrics["unknown_label_videos"]:
        click.echo(
            f"({metrics['unknown_label_videos']} videos with labels the run does not know "
            "were left out)"
        )


def _caches_and_videos(paths) -> tuple[list[Path], list[Path]]:
    """Cache files and folders of caches, apart from videos and folders of videos."""
    caches, videos = [], []
    for path in paths:
        path = Path(path)
        is_cache = path.suffix.lower() in (".h5", ".hdf5") and path.is_file()
        if is_cache or (path.is_dir() and any(path.glob("*.h5"))):
            caches.extend(expand_caches([path]))
        else:
            videos.append(path)
    return caches, videos


def _cache_videos(
    run_dir: Path, videos: list[Path], cache: Path, weights_path, quiet
) -> list[Path]:
    """Bring ``cache`` up to date with the features of ``videos`` as the run made them (a
    fused run: one cache per feature set beside it)."""
    from vidcache.features.discover import discover
    from vidcache.pipeline.extract import run_settings
    from vidcache.pipeline.predict import feature_parts, features_for_run, part_cache
    from vidcache.pipeline.report import ProgressReporter, format_summary

    sources = discover(videos)
    if not sources:
        raise click.ClickException(f"no videos found in {', '.join(map(str, videos))}")
    parts = feature_parts(run_settings(run_dir))
    made = []
    for number, settings in enumerate(parts, start=1):
        where = part_cache(cache, number, settings, len(parts))
        reporter = ProgressReporter(quiet=quiet)
        summary = features_for_run(settings, sources, where, weights_path, 32, reporter)
        click.echo(format_summary(summary, where), err=True)
        made.append(where)
    return made


@cli.command("predict", context_settings=CONTEXT)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("videos", nargs=-1, required=True)
@click.option("--top", "top_k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="CSV: path,rank,label,probability (classify); path,caption (caption); path,values "
    "or path,time,values per frame (regress); frame,time,values with --stream.",
)
@click.option(
    "--stream",
    "as_stream",
    is_flag=True,
    help="Frame by frame: CNN once per frame, LSTM state carried on.",
)
@click.option(
    "--every",
    type=click.IntRange(min=1),
    help="With --stream: print every K sampled frames.  [default: 5; 1 for a regression run]",
)
@click.option("--format", "input_format", help="With --stream: FFmpeg input format (v4l2...).")
@click.option(
    "--beam",
    type=click.IntRange(min=1),
    help="Caption runs: beam width (1 = greedy).  [default: the run's --beam]",
)
@click.option(
    "--weights",
    "weights_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The weights file, when the run's cache used one.",
)
@click.option(
    "--cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the features of the videos in this cache (made or extended): predicting on "
    "them again, or training on them later, needs no CNN.",
)
@core_errors
def predict_command(
    run_dir,
    videos,
    top_k,
    as_json,
    as_csv,
    as_stream,
    every,
    input_format,
    beam,
    weights_path,
    cache,
) -> None:
    """Predict with a trained RUN: the classes, the caption or the values of new videos.

    Features are made exactly as in the run's cache (refused if they cannot be); videos
    already in that cache are not extracted again. With --stream, one video (or camera, or
    stream URL) is processed frame by frame the way a live system would: a classifier
    prints its current classes, a regressor a value per frame, a captioner the caption of
    the frames so far.

    \b
    Example:
        vidcache predict runs/lstm new/*.mp4 --top 3
        vidcache predict runs/lstm new/ --cache new_features.h5
        vidcache predict runs/cap new/clip.mp4 --beam 3
        vidcache predict runs/lstm clip.mp4 --stream --every 5
        vidcache predict runs/steer drive.mp4 --stream --csv > steering.csv
        vidcache predict runs/lstm /dev/video0 --stream --format v4l2
    """
    from vidcache.pipeline.predict import predict_videos
    from vidcache.pipeline.train import load_run

    if as_json and as_csv:
        raise click.ClickException("--json cannot be used with --csv")
    run = load_run(run_dir)
    if as_stream:
        if len(videos) != 1:
            raise click.ClickException("--stream takes exactly one video or source")
        if as_json:
            raise click.ClickException("--stream prints text or --csv, not --json")
        _predict_stream(run, videos[0], every, top_k, weights_path, input_format, as_csv, beam)
        return
    from vidcache.features.discover import discover

    sources = discover([Path(v) for v in videos])
    if not sources:
        raise click.ClickException("no videos found")
    predictions = predict_videos(run, sources, top_k, weights_path, beam=beam, cache=cache)
    if as_json:
        click.echo(json.dumps([_prediction_json(run, p) for p in predictions], indent=2))
    elif as_csv:
        _prediction_csv(run, predictions)
    else:
        for p in predictions:
            if p.error:
                click.echo(f"{p.path}: skipped: {p.error}", err=True)
            else:
                click.echo(f"{p.path}: {_prediction_text(run, p)}")
    if any(p.error for p in predictions):
        sys.exit(1)


def _values_text(names: list[str], values) -> str:
    return ", ".join(f"{n} {v:.4g}" for n, v in zip(names, values))


def _prediction_text(run, p) -> str:
    import numpy as np

    if run.task == "caption":
        return p.caption
    if run.task == "regress":
        if not run.per_frame:
            return _values_text(run.target_names, p.values)
        values = np.asarray(p.values).reshape(len(p.values), -1)
        return f"{len(values)} frames; " + ", ".join(
            f"{n} mean {values[:, k].mean():.4g} (min {values[:, k].min():.4g}, "
            f"max {values[:, k].max():.4g})"
            for k, n in enumerate(run.target_names)
        )
    return ", ".join(f"{c} {q:.3f}" for c, q in p.top)


def _prediction_json(run, p) -> dict:
    out = {"path": p.path, "video_id": p.video_id, "source": p.source, "error": p.error or None}
    if run.task == "caption":
        out["caption"] = p.caption
    elif run.task == "regress":
        out["names"] = run.target_names
        if run.per_frame:
            out["frames"] = [
                {"time": round(t, 6), "values": [round(v, 6) for v in row]}
                for t, row in zip(p.times, p.values)
            ]
        else:
            out["values"] = [round(v, 6) for v in p.values]
    else:
        out["top"] = [{"label": c, "probability": round(q, 6)} for c, q in p.top]
    return out


def _prediction_csv(run, predictions) -> None:
    names = ",".join(_csv_field(n) for n in run.target_names)
    header = {
        "caption": "path,caption",
        "regress": f"path,time,{names}" if run.per_frame else f"path,{names}",
    }.get(run.task, "path,rank,label,probability")
    click.echo(header)
    for p in predictions:
        path = _csv_field(p.path)
        if p.error:
            continue
        if run.task == "caption":
            click.echo(f"{path},{_csv_field(p.caption)}")
        elif run.task == "regress" and run.per_frame:
            for t, row in zip(p.times, p.values):
                click.echo(f"{path},{t:.6g}," + ",".join(f"{v:.6g}" for v in row))
        elif run.task == "regress":
            click.echo(f"{path}," + ",".join(f"{v:.6g}" for v in p.values))
        else:
            for rank, (c, q) in enumerate(p.top, start=1):
                click.echo(f"{path},{rank},{_csv_field(c)},{q:.6f}")


def _predict_stream(run, location, every, top_k, weights_path, input_format, as_csv, beam):
    import numpy as np

    from vidcache.pipeline.predict import stream_predict

    regress, captioning = run.task == "regress", run.task == "caption"
    every = every or (1 if regress else 5)
    names = run.target_names
    if as_csv:
        columns = ",".join(_csv_field(n) for n in names) if regress else "label,probability"
        click.echo("frame,time," + ("caption" if captioning else columns))

    def show(frame, timestamp, output):
        if captioning:
            if as_csv:
                click.echo(f"{frame},{timestamp:.6g},{_csv_field(output)}")
            else:
                click.echo(f"frame {frame} ({timestamp:.2f} s): {output}")
        elif as_csv:
            if regress:
                click.echo(f"{frame},{timestamp:.6g}," + ",".join(f"{v:.6g}" for v in output))
            else:
                best = int(np.argmax(output))
                click.echo(
                    f"{frame},{timestamp:.6g},{_csv_field(run.classes[best])},{output[best]:.6f}"
                )
        elif regress:
            click.echo(f"frame {frame} ({timestamp:.2f} s): {_values_text(names, output)}")
        else:
            top = np.argsort(-output)[:top_k]
            click.echo(
                f"frame {frame}: " + ", ".join(f"{run.classes[i]} {output[i]:.3f}" for i in top)
            )

    report = stream_predict(run, location, every, top_k, weights_path, show, input_format, beam)
    if report.frames == 0:
        raise click.ClickException(f"{location}: no frames")
    total = np.add(report.cnn_seconds, report.step_seconds) * 1e3
    steady = slice(1, None) if report.frames > 1 else slice(None)
    cnn = np.median(report.cnn_seconds[steady]) * 1e3
    step = np.median(report.step_seconds[steady]) * 1e3
    if captioning:
        final = report.caption
    elif regress:
        final = _values_text(names, report.output)
    else:
        final = ", ".join(f"{c} {p:.3f}" for c, p in report.top)
    # With --csv, stdout is the table; the summary goes to stderr.
    click.echo(f"final after {report.frames} frames: {final}", err=as_csv)
    click.echo(
        f"latency per frame (median after the first): CNN {cnn:.1f} ms + LSTM step "
        f"{step:.2f} ms; first frame {total[0]:.0f} ms (includes tracing)",
        err=as_csv,
    )


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\n') else text


@cli.command("train-e2e", context_settings=CONTEXT)
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
@click.option(
    "--weights",
    "weights_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The weights file, when the run's cache used one.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@_DISTRIBUTE
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
    from vidcache.pipeline.e2e import E2EConfig, check_e2e_run, train_e2e

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


# Commands of their own modules (they import nothing from this one).
for _command in (
    extract_command.extract,
    cache_commands.verify_command,
    cache_commands.compact_command,
    cache_commands.migrate_command,
    cache_commands.merge_command,
):
    cli.add_command(_command)
#: The ``extract-features`` console script: the same command as ``vidcache extract``.
extract_features_command = click.version_option(__version__, prog_name="extract-features")(
    extract_command.extract
)
cli.add_command(npy_commands.export_command)
cli.add_command(npy_commands.import_command)
