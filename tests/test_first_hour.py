"""A newcomer's first hour: runs are not replaced by accident, summaries say what was kept,
and every option a message suggests exists on the command that prints it."""

from __future__ import annotations

import json
import re

import click
from click.testing import CliRunner
from test_train import ordered_videos, write_cache

from vidcache.pipeline.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_run_folder_is_replaced_only_when_asked_and_only_by_a_complete_run(tmp_path):
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=4))
    run = tmp_path / "run"
    small = ["--units", "4", "--epochs", "3", "--patience", "1", "-q"]
    first = invoke("train-rnn", cache, "-o", run, "--cell", "gru", *small)
    assert first.exit_code == 0, first.output
    assert "classify (gru) trained" in first.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert 1 <= metrics["best_epoch"] <= metrics["epochs"] <= 3
    if metrics["best_epoch"] != metrics["epochs"]:
        assert f"kept epoch {metrics['best_epoch']}" in first.output
    before = (run / "model.keras").read_bytes()
    again = invoke("train-rnn", cache, "-o", run, *small)
    assert again.exit_code == 2 and "already holds a run" in again.output
    assert "--overwrite" in again.output and (run / "model.keras").read_bytes() == before
    # A replacement that fails (no class left) leaves the old run whole and nothing beside.
    drop = tmp_path / "drop.csv"
    drop.write_text("up,\ndown,\npeak,\n")
    failed = invoke("train-rnn", cache, "-o", run, "--overwrite", "--label-map", drop, *small)
    assert failed.exit_code == 1, failed.output
    assert (run / "model.keras").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drop.csv", "f.h5", "run"]
    replaced = invoke("train-rnn", cache, "-o", run, "--overwrite", *small)
    assert replaced.exit_code == 0, replaced.output
    assert "classify (lstm)" in replaced.output
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["cell"] == "lstm"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drop.csv", "f.h5", "run"]


def _messages() -> dict[str, list[str]]:
    """Every message text in the command layer and the library, by the file it is in."""
    from pathlib import Path

    import vidcache

    root = Path(vidcache.__file__).resolve().parent.parent
    found = {}
    for folder in ("pipeline", "features", "models"):
        for path in (root / folder).rglob("*.py"):
            found[str(path.relative_to(root))] = re.findall(
                r"--[a-z][a-z0-9-]+", path.read_text(encoding="utf-8")
            )
    return found


def test_every_option_a_message_names_exists_on_some_command():
    """A message may only send a user to an option that exists: every ``--option`` named
    in the code's text is an option of one of the commands (or of Python/pip/Keras tools
    the messages quote by name)."""
    options = set()

    def collect(command: click.Command) -> None:
        for param in command.params:
            options.update(o for o in param.opts + param.secondary_opts if o.startswith("--"))
        for sub in getattr(command, "commands", {}).values():
            collect(sub)

    collect(cli)
    outside = {"--help", "--version", "--increment"}  # h5clear's, quoted in h5recover
    unknown = {
        f"{file}: {name}"
        for file, names in _messages().items()
        for name in names
        if name not in options | outside
    }
    assert not unknown, sorted(unknown)


def ucf_cache(tmp_path):
    """A cache of UCF101-named clips, as extracted from ``tmp_path/UCF101``."""
    videos = {}
    for clip, (key, (label, x)) in enumerate(ordered_videos(per_class=4).items()):
        name = {"up": "ApplyEyeMakeup", "down": "Archery", "peak": "Basketball"}[label]
        group = clip // 3 + 1
        videos[f"{name}/v_{name}_g{group:02d}_c01.avi"] = (name, x)
    cache = write_cache(tmp_path / "f.h5", videos)
    return cache, sorted(videos)


def test_official_ucf101_and_hmdb51_split_files_work_as_they_ship(tmp_path):
    from vidcache.models.split import read_split_file
    from vidcache.pipeline.training.config import TrainConfig
    from vidcache.pipeline.training.fitting import split_examples

    cache, ids = ucf_cache(tmp_path)
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    test_ids = [i for i in ids if "_g04_" in i]
    classes = {name: n for n, name in enumerate(sorted({i.split("/")[0] for i in ids}), 1)}
    (lists / "trainlist01.txt").write_text(
        "".join(f"{i} {classes[i.split('/')[0]]}\r\n" for i in ids if i not in test_ids)
    )
    (lists / "testlist01.txt").write_text("".join(f"{i}\r\n" for i in test_ids))
    assigned = read_split_file(lists / "testlist01.txt")
    assert assigned == read_split_file(lists / "trainlist01.txt")
    assert sorted(k for k, v in assigned.items() if v == "test") == test_ids
    run = tmp_path / "ucf"
    result = invoke("train-rnn", cache, "-o", run, "--split-file", lists / "trainlist01.txt",
                    "--units", "4", "--epochs", "1", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    split = json.loads((run / "config.json").read_text())["split"]
    assert sorted(split["val"]) == test_ids
    # HMDB51: one file per class, bare file names, 0 (unused), 1 (train), 2 (test).
    hmdb = tmp_path / "testTrainMulti_7030_splits"
    hmdb.mkdir()
    for name in classes:
        rows = [f"{i.split('/')[1]} {2 if i in test_ids else 1}" for i in ids if i.startswith(name)]
        (hmdb / f"{name}_test_split1.txt").write_text("\n".join(rows + ["unused.avi 0"]) + "\n")
    examples = [type("E", (), {"video_id": i, "label": i.split("/")[0]})() for i in ids]
    config = TrainConfig(split_file=str(hmdb / "Archery_test_split1.txt"))
    parts = split_examples(examples, config, {i: str(tmp_path / "videos" / i) for i in ids})
    assert [ids[i] for i in parts["test"]] == test_ids
    assert len(parts["train"]) == len(ids) - len(test_ids)


def test_a_split_csv_names_videos_as_labels_does(tmp_path):
    """Ids, paths relative to the CSV, absolute paths and bare file names all match; rows
    that match nothing are counted in the message, with what an id looks like."""
    from vidcache.features.cache import CacheReader

    cache, ids = ucf_cache(tmp_path)
    with CacheReader(cache) as reader:
        paths = {v: e.path for v, e in reader.entries().items()}
    rows = ["path,split"]
    for n, video_id in enumerate(ids):
        split = "val" if "_g04_" in video_id else "train"
        form = n % 3
        name = video_id if form == 0 else paths[video_id] if form == 1 else video_id.split("/")[1]
        rows.append(f"{name},{split}")
    split_file = tmp_path / "split.csv"
    split_file.write_text("\n".join(rows) + "\n")
    run = tmp_path / "r"
    result = invoke("train-rnn", cache, "-o", run, "--split-file", split_file,
                    "--units", "4", "--epochs", "1", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    split = json.loads((run / "config.json").read_text())["split"]
    assert sorted(split["val"]) == [i for i in ids if "_g04_" in i]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("path,split\nnothing/here.avi,train\nelse.avi,val\n")
    result = invoke("train-rnn", cache, "-o", tmp_path / "w", "--split-file", wrong, "-q")
    assert result.exit_code == 1, result.output
    assert "matched 0 of its 2 rows" in result.output and "ApplyEyeMakeup/v_" in result.output


def test_a_class_in_one_group_trains_with_a_note_and_an_empty_regex_groups_nothing(tmp_path):
    cache, ids = ucf_cache(tmp_path)
    result = invoke("train-rnn", cache, "-o", tmp_path / "r", "--group-regex", "_c(01)",
                    "--units", "4", "--epochs", "1", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Note: class(es)" in result.output and "--split-file" in result.output
    from vidcache.models.split import group_of

    assert [group_of(i, i.split("/")[0], "") for i in ids] == ids  # '' groups nothing


def test_evaluate_checks_what_the_run_needs_before_any_extraction(tmp_path, dataset):
    """Unlabelled videos for a classifier, or no references for a caption run: refused
    before the CNN runs, naming options evaluate has."""
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=3))
    run = tmp_path / "run"
    assert (
        invoke("train-rnn", cache, "-o", run, "--units", "4", "--epochs", "1", "-q").exit_code == 0
    )
    loose = tmp_path / "loose"
    loose.mkdir()
    for clip in dataset.rglob("*.mkv"):
        (loose / clip.name).write_bytes(clip.read_bytes())
    result = invoke("evaluate", run, loose)
    assert result.exit_code == 1 and "has a label to score against" in result.output
    assert "--labels" not in result.output and not (run / "eval-loose").exists()
    config = json.loads((run / "config.json").read_text())
    config["task"] = "caption"
    (run / "config.json").write_text(json.dumps(config))
    result = invoke("evaluate", run, loose)
    assert result.exit_code == 2 and "give the references with --captions CSV" in result.output


def test_small_things_a_newcomer_notices(tmp_path, dataset):
    """No empty cache after a run that extracted nothing; a class folder given alone is
    said to give no labels; two backbones' caches suggest --fuse; a cache given to
    predict points to evaluate; top-5 is not reported with three classes."""
    fast = ["--weights", "random", "--image-size", "75", "-q"]
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.mp4").write_bytes(b"junk" * 10)
    result = invoke("extract", junk, "-o", tmp_path / "none.h5", *fast)
    assert result.exit_code == 1 and not (tmp_path / "none.h5").exists()
    assert "no cache was made" in result.output
    result = invoke("extract", dataset / "left", "-o", tmp_path / "left.h5", *fast)
    assert result.exit_code == 0 and "Note: the videos have no labels" in result.output
    assert "'left'" in result.output
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=3))
    from test_train import SETTINGS

    other = write_cache(tmp_path / "g.h5", ordered_videos(per_class=3, seed=1),
                        settings=SETTINGS.__class__(**{**SETTINGS.__dict__,
                                                       "backbone": "ResNet50"}))  # fmt: skip
    result = invoke("train-rnn", cache, other, "-o", tmp_path / "m")
    assert result.exit_code == 1 and "--fuse" in result.output
    run = tmp_path / "run"
    result = invoke("train-rnn", cache, "-o", run, "--units", "4", "--epochs", "1", "-q")
    assert result.exit_code == 0 and "top-5" not in result.output, result.output
    result = invoke("predict", run, cache)
    assert result.exit_code == 2 and f"vidcache evaluate {run} {cache}" in result.output


def test_progress_without_a_terminal_starts_early_and_counts_from_the_model(monkeypatch):
    """A batch log gets a line when the model is built and a first progress line after a
    few seconds of work, not only after 30; rates count from the model's end."""
    import io

    from vidcache.pipeline.extraction import report
    from vidcache.pipeline.extraction.outcomes import EXTRACTED, VideoOutcome

    clock = [100.0]
    monkeypatch.setattr(report.time, "monotonic", lambda: clock[0])
    log = io.StringIO()
    reporter = report.ProgressReporter(stream=log)  # StringIO: not a terminal
    reporter.begin(3)
    clock[0] += 20.0  # the model takes 20 s to build
    reporter.ready(20.0)
    assert log.getvalue() == "model built in 20.0 s; extracting 3 video(s)\n"
    clock[0] += 4.0
    reporter.frames(40)
    reporter.video(VideoOutcome("a.mp4", "a.mp4", EXTRACTED, frames=40))
    assert "progress" not in log.getvalue()
    clock[0] += 1.5
    reporter.frames(40)
    assert log.getvalue().splitlines()[-1] == (
        "progress: 1/3 videos, 80 frames, 14.5 frames/s"  # 80 frames in 5.5 s of work
    )
    reporter.end()
