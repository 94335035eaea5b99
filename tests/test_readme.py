# ruff: noqa: E501  (the tables hold README commands whole, to match them as written)
"""README.md's shell commands and Python examples, as written.

Every command of every ``bash`` block is either run here, in README order, in a folder
laid out as the README assumes (``data/videos`` of clips, ``clips/`` with ``labels.csv``,
``drives.h5``...), or listed in :data:`ELSEWHERE` with the reason it cannot run in a test
(a camera, a cluster, a download) and where its parts are tested. Either way its options
are checked against the command it is given to. A command added to the README without a
decision fails :func:`test_every_readme_command_is_run_or_has_a_reason`.

Offline there are no ImageNet weights: an extraction as written must then end in the
README's promise (one line naming ``--weights random``), and runs again with
``--weights random`` appended, the one substitution the README itself makes.
"""

from __future__ import annotations

import csv
import re
import shlex
import shutil
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

README = Path(__file__).resolve().parent.parent / "README.md"

# Commands that cannot run in a test, each with its reason (matched on the command's text).
ELSEWHERE = {
    "make demo": "builds .venv and runs the demo; CI runs `make test` on a clean clone",
    "make test": "the suite itself (CI runs it on a clean clone)",
    "vidcache predict runs/cap /dev/video0 --format v4l2 --stream --every 25": "a camera",
    "vidcache predict runs/steer /dev/video0 --stream --format v4l2": "a camera",
    "vidcache predict runs/lstm /dev/video0 --stream --format v4l2": "a camera",
    "extract-features videos/ -o clip.h5 --backbone clip-vit-b32 --weights clip_vit_base_patch32/": (
        "CLIP's weights are a keras-hub preset folder that cannot be downloaded here "
        "(test_clip builds CLIP from a saved random-init preset)"
    ),
    "extract-features videos/ -o prism.h5 --backbone videoprism-base --weights "
    "videoprism_public_v1_base/ --fps 25 --stride 4": (
        "the VideoPrism preset cannot be downloaded here (test_windows builds a tiny "
        "VideoPrism from a saved random-init preset, through the CLI)"
    ),
    "extract-features videos/ -o prism-frames.h5 --backbone videoprism-base --weights "
    "videoprism_public_v1_base/ --fps 25 --stride 8 --pooling frame": (
        "the VideoPrism preset cannot be downloaded here (test_windows: --pooling frame)"
    ),
    "extract-features av/ -o whisper.h5 --backbone whisper-tiny --weights whisper_tiny_en/ "
    "--fps 5": (
        "the Whisper preset cannot be downloaded here (test_audio_tasks builds Whisper from a "
        "saved random-init preset, through the CLI)"
    ),
    "train-rnn inception.h5 clip.h5 --fuse -o runs/fused": "needs clip.h5 (above); test_fusion",
    "vidcache evaluate runs/fused test_inception.h5 test_clip.h5": "needs runs/fused; test_fusion",
    "vidcache predict runs/fused new_clip.mp4 --stream": "needs runs/fused; test_fusion",
    "docs/examples/evaluate-datasets.sh runs/lstm /data/batch-2026-10 /data/batch-2026-11": (
        "folders under /data; the script runs on two folders in test_predict"
    ),
    "extract-features videos/ -o features.h5 --engine ray --address auto": (
        "a running Ray cluster; test_ray runs --engine ray on a local one"
    ),
    "extract-features s3://bucket/videos/ -o features.h5": (
        "a bucket with credentials; test_cloud runs the same against an S3-compatible "
        "server on 127.0.0.1"
    ),
    "extract-features s3://bucket/videos/ -o s3://bucket/features/ --engine ray": (
        "a bucket; test_ray_nodisk writes shards to one on an S3-compatible server on "
        "127.0.0.1 with a local Ray"
    ),
}


def readme_commands() -> list[str]:
    """The commands of README.md's ``bash`` blocks, continuation lines joined, comments
    dropped, in order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(" ".join(words))
    return commands


def variants(command: str) -> list[list[str]]:
    """The words of a command, once without and once with each ``[optional part]``."""
    optional = re.findall(r"\[([^\]]+)\]", command)
    plain = re.sub(r"\s*\[[^\]]+\]", "", command)
    found = [shlex.split(plain)]
    if optional:
        found.append(shlex.split(command.replace("[", "").replace("]", "")))
    return found


def click_command(words: list[str]) -> tuple[click.Command | None, list[str]]:
    """The click command a README command line runs, and its arguments."""
    from vidcache.pipeline import cli as commands

    program, args = words[0], words[1:]
    if program == "extract-features":
        return commands.extract_features_command, args
    if program == "train-rnn":
        return commands.train_rnn_script, args
    if program == "vidcache":
        return commands.cli.commands[args[0]], args[1:]
    return None, args


def test_every_readme_command_is_run_or_has_a_reason():
    commands = readme_commands()
    assert len(commands) >= 30
    stale = set(ELSEWHERE) - set(commands)
    assert not stale, f"ELSEWHERE names commands the README no longer has: {sorted(stale)}"
    decided = set(ELSEWHERE) | set(RUN_HERE)
    assert set(commands) <= decided, sorted(set(commands) - decided)


def test_every_option_of_a_readme_command_exists():
    makefile = (README.parent / "Makefile").read_text(encoding="utf-8")
    for command in readme_commands():
        for words in variants(command):
            target, args = click_command(words)
            if words[0] == "make":
                assert re.search(rf"^{args[0]}:", makefile, re.M), command
                continue
            if target is None:
                assert (README.parent / words[0]).is_file(), command
                continue
            names = {o for p in target.params for o in p.opts + p.secondary_opts}
            used = {w.split("=")[0] for w in args if re.match(r"--?[a-z]", w)}
            assert used <= names, f"{command}: {sorted(used - names)} not options of it"


def _clips(root: Path, classes, per_class: int, seed: int) -> list[Path]:
    """Demo clips of 5 frames (1 s); the video files among them (the last clip of each class
    is a folder of frames)."""
    from vidcache.features.synthetic import make_demo_dataset

    written = make_demo_dataset(root, per_class, classes=classes, seconds=1.0, width=64,
                                height=48, seed=seed)  # fmt: skip
    return [p for p in written if p.is_file()]


def _csv(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _prepare(root: Path, invoke) -> None:
    """What the README's commands take as given: the user's videos, CSVs and weights, and
    the caches its caption and regression examples start from (made at 75 px to be quick;
    the commands that use them extract exactly as those caches say)."""
    import keras
    import numpy as np

    from vidcache.features.cache.legacy import write_schema1
    from vidcache.features.cache.reader import CacheReader

    _clips(root / "data" / "videos", ("grow", "pulse", "shrink"), 2, seed=0)
    videos = sorted(str(p.relative_to(root)) for p in (root / "data" / "videos").glob("*/*"))
    # A split file as users write them: paths, not ids (issue 31).
    _csv(root / "data" / "split01.csv",
         [("path", "split")] + [(v, "val" if "_c02" in v else "train") for v in videos])  # fmt: skip
    new = _clips(root / "new_clips", ("grow", "shrink"), 2, seed=5)
    shutil.copy(new[0], root / "clip.mp4")
    shutil.copy(new[1], root / "new_clip.mp4")
    # clips/ with labels from a CSV, and a weights file of one's own (random, saved).
    _csv(root / "labels.csv",
         [("path", "label")] + [(str(p.relative_to(root)), p.parent.name)
                                for p in _clips(root / "clips", ("grow", "shrink"), 2, seed=9)])  # fmt: skip
    keras.utils.set_random_seed(3)
    keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg").save_weights(
        root / "my_inception_notop.weights.h5"
    )
    small = ["--weights", "random", "--image-size", "75", "-q"]
    # MSR-VTT-like captions, and a held-out test set with its own captions.
    _clips(root / "data" / "msrvtt" / "videos", ("grow", "shrink"), 3, seed=1)
    invoke(["extract-features", "data/msrvtt/videos", "-o", "data/msrvtt/features.h5", *small])
    captions = _rows(root / "data" / "msrvtt" / "videos" / "captions.csv")
    _csv(root / "data" / "msrvtt" / "captions.csv", captions)
    with CacheReader(root / "data" / "msrvtt" / "features.h5") as cache:
        ids = sorted(cache.entries())
    _csv(root / "data" / "msrvtt" / "split.csv",
         [("path", "split")] + [(v, "val" if "_c03" in v else "train") for v in ids])  # fmt: skip
    _clips(root / "test", ("grow", "shrink"), 1, seed=2)
    invoke(["extract-features", "test", "-o", "test.h5", "--like", "data/msrvtt/features.h5", "-q"])
    _csv(root / "test_captions.csv", _rows(root / "test" / "captions.csv"))
    # The demo's own segments (when the square grows, when it shrinks).
    shutil.copy(root / "data" / "videos" / "segments.csv", root / "segments.csv")
    # Videos with several labels each.
    from test_multilabel import tagged_videos
    from test_train import write_cache

    write_cache(root / "tagged.h5", tagged_videos(12, seed=1))
    # Drives with a steering value per frame (the demo's square size, renamed).
    drives = _clips(root / "drives", ("grow", "pulse"), 2, seed=4)
    invoke(["extract-features", "drives", "-o", "drives.h5", *small])
    targets = _rows(root / "drives" / "targets.csv")
    _csv(root / "steering.csv", [("path", "time", "steer")] + targets[1:])
    shutil.copy(drives[-1], root / "drive_042.mp4")
    # videos/ for the scale commands, and a schema-1 cache (vidcache 0.1) to migrate.
    from vidcache.features.shard import shard_of

    extra = _clips(root / "videos", ("grow", "shrink"), 2, seed=6)[0]
    # `--shard 3/16` of four videos may select none: one more video falls in share 3.
    name = next(f"grow/more_{n}.mp4" for n in range(200) if shard_of(f"grow/more_{n}.mp4", 16) == 3)
    shutil.copy(extra, root / "videos" / name)
    # The scale section's commands make their own features.h5: they run in a folder of
    # their own (the first section's `extract-features clips/ ...` wrote ./features.h5).
    shutil.copytree(root / "videos", root / "scale" / "videos")
    with CacheReader(root / "drives.h5") as cache:
        settings = cache.settings
        old = [(e, cache.features(v), np.arange(e.num_frames) / 5)
               for v, e in list(cache.entries().items())[:2]]  # fmt: skip
    write_schema1(root / "scale" / "old.h5", settings, old)


def _steer_csv(output: str) -> None:
    header = output.splitlines()[0]
    assert header == "path,time,steer", header  # "path,time,steer per frame"


def _top3(output: str) -> bool:
    """Four clips in new_clips/, each with three classes and their probabilities."""
    return len(re.findall(r": (\w+ [\d.]+, ){2}\w+ [\d.]+$", output, re.M)) == 4


# The commands run here, in README order, each with a check of what it printed beyond its
# exit status (None: the exit status and the files the next commands need are the check).
RUN_HERE = {
    "extract-features data/videos -o data/features.h5": None,
    "extract-features data/videos -o f16.h5 --num-frames 16 --precision bfloat16 --dtype float16": None,
    "extract-features clips/ --labels labels.csv --weights my_inception_notop.weights.h5": None,
    "train-rnn data/features.h5 -o runs/lstm": None,
    "train-rnn data/features.h5 -o runs/mean --head mean": None,
    "train-rnn data/features.h5 -o runs/ucf --split-file data/split01.csv --layers 2 --units 256": None,
    "train-rnn data/msrvtt/features.h5 -o runs/cap --task caption --captions data/msrvtt/captions.csv --split-file data/msrvtt/split.csv --attention --beam 3": None,
    "vidcache predict runs/cap new_clip.mp4 --beam 5": lambda out: re.search(
        r"new_clip.mp4: \w", out
    ),
    "vidcache evaluate runs/cap test.h5 --captions test_captions.csv": lambda out: (
        "BLEU-1..4" in out and "on 2 videos" in out
    ),
    "train-rnn drives.h5 -o runs/steer --task regress --targets steering.csv": None,
    "vidcache predict runs/steer drive_042.mp4 --csv": _steer_csv,
    "train-rnn data/features.h5 -o runs/seg --task segment --segments segments.csv --head tcn": None,
    "vidcache predict runs/seg new_clip.mp4": lambda out: re.search(
        r"new_clip.mp4: \d+ segment\(s\): \w", out
    ),
    "train-rnn tagged.h5 -o runs/tags --task multilabel --class-weight balanced --threshold 0.4": lambda out: (
        "GAP@20" in out
    ),
    "vidcache make-demo-data av/ --sound --clips-per-class 4": None,
    "extract-features av/ -o sound.h5 --backbone logmel --fps 5": None,
    "extract-features av/ -o frames.h5 --backbone mobilenetv3-large --fps 5": None,
    "extract-features av/ -o sound-grid.h5 --backbone logmel --fps 5 --grid frames.h5": (
        lambda out: "12 of 12 file(s) took their kept frames from frames.h5" in out
    ),
    "train-rnn frames.h5 sound.h5 --fuse -o runs/av": None,
    "vidcache predict runs/av av/grow/grow_c01.mp4 --stream": lambda out: (
        "final after 15 frames" in out
    ),
    "extract-features videos/ -o inception.h5": None,
    "vidcache predict runs/lstm new_clips/ --top 3": _top3,
    "vidcache predict runs/lstm clip.mp4 --stream --every 5": lambda out: (
        "final after 5 frames" in out
    ),
    "vidcache train-e2e runs/lstm data/videos -o runs/lstm-e2e --cache-cut": None,
    "extract-features videos/ -o shards/part-3.h5 --shard 3/16": None,
    "vidcache merge shards/ -o features.h5": None,
    "vidcache verify features.h5 [--repair]": None,
    "vidcache compact features.h5": None,
    "vidcache migrate old.h5 [-o new.h5]": None,
    "extract-features videos/ -o features.h5 --fsync": None,
}


#: The first command of the scale section run here (it and those after run in ./scale).
SCALE_SECTION = "extract-features videos/ -o shards/part-3.h5 --shard 3/16"

#: What an extraction as written says offline: no ImageNet weights (the README's promise:
#: the way out is named), or, for a cache made offline above, that its weights differ.
OFFLINE = ("--weights random", "weights: 'random:seed=0' != 'imagenet'")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_says_where_random_weights_stand_in():
    first = python_blocks()[0]
    assert 'WeightsSpec("imagenet")' in first and 'WeightsSpec("random")' in first


def _run_python_blocks(root: Path) -> None:
    """README's Python examples, in the folder its shell commands have filled: the first
    (offline, with the README's own way out) finds every video already cached."""
    blocks = python_blocks()
    assert len(blocks) == 2
    first = blocks[0].replace('WeightsSpec("imagenet")', 'WeightsSpec("random")', 1)
    scope: dict = {}
    exec(compile(first, "README.md (Python API)", "exec"), scope)
    from vidcache.pipeline.extraction.outcomes import CACHED

    assert scope["summary"].count(CACHED) == 6 and scope["x"].shape[1] == 2048
    assert scope["run"].classes == ["grow", "pulse", "shrink"]
    scope = {}
    exec(compile(blocks[1], "README.md (own Keras model)", "exec"), scope)  # ./features.h5
    assert scope["train"].class_names == ["grow", "shrink"]


@pytest.mark.slow
def test_the_readme_commands_and_python_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def invoke(words: list[str]):
        target, args = click_command(words)
        return CliRunner().invoke(target, args, prog_name=words[0])

    def ok(words: list[str]):
        result = invoke(words)
        assert result.exit_code == 0, f"{' '.join(words)}:\n{result.output}"
        return result

    started = time.monotonic()
    _prepare(tmp_path, ok)
    print(f"{time.monotonic() - started:6.1f} s  preparing the folder")
    ran = 0
    for command in readme_commands():
        if command in ELSEWHERE:
            continue
        if command == SCALE_SECTION:
            monkeypatch.chdir(tmp_path / "scale")
        for words in sorted(variants(command), key=len, reverse="migrate" in command):
            started = time.monotonic()
            result = invoke(words)
            if result.exit_code == 1 and any(text in result.output for text in OFFLINE):
                # One Error line, the last, and no traceback.
                said = result.output.splitlines()
                assert said[-1].startswith("Error: ") and "Traceback" not in result.output
                result = invoke([*words, "--weights", "random"])
            assert result.exit_code == 0, f"{command}:\n{result.output}"
            check = RUN_HERE[command]
            if check is not None:
                assert check(result.output) is not False, f"{command}:\n{result.output}"
            ran += 1
            print(f"{time.monotonic() - started:6.1f} s  {' '.join(words)}")
    assert ran == len(RUN_HERE) + 2  # the two commands with an [optional part] ran twice
    assert (tmp_path / "runs" / "lstm-e2e" / "comparison.json").is_file()
    assert (tmp_path / "scale" / "new.h5").is_file()
    monkeypatch.chdir(tmp_path)
    _run_python_blocks(tmp_path)
