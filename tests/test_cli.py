import json
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL

from vidcache.features.cache import CacheLock
from vidcache.pipeline.cli import cli, extract_features_command

FAST = ["--weights", "random", "--image-size", str(SMALL), "--batch-size", "4", "-q"]


def invoke(args, command=cli):
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def all_commands():
    yield cli
    yield from cli.commands.values()


@pytest.mark.parametrize("command", list(all_commands()), ids=lambda c: c.name)
def test_every_command_has_help_with_an_example(command):
    ctx = click.Context(command, info_name=command.name)
    text = command.get_help(ctx)
    assert "Example:" in text


def test_extract_features_script_is_the_extract_command():
    assert extract_features_command is cli.commands["extract"]
    assert invoke(["--help"], extract_features_command).exit_code == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--num-frames", "4", "--fps", "2"], "Error: --num-frames cannot be used with --fps\n"),
        (
            ["--num-frames", "4", "--max-frames", "2"],
            "Error: --num-frames cannot be used with --max-frames\n",
        ),
        (
            ["--weights", "missing.h5"],
            "Error: Invalid value for '--weights': weights file missing.h5 does not exist "
            "(use --weights imagenet, random or a PATH)\n",
        ),
        (
            ["--weights", "randm"],
            "Error: Invalid value for '--weights': weights file randm does not exist "
            "(use --weights imagenet, random or a PATH) (did you mean --weights random?)\n",
        ),
    ],
)
def test_option_errors_are_usage_errors_in_one_line(tmp_path, dataset, extra, message):
    """Found after parsing or not, a usage error exits 2 (README) with one Error: line."""
    result = invoke(["extract", dataset, "-o", tmp_path / "f.h5", *extra])
    assert result.exit_code == 2 and result.output.endswith(message), result.output
    assert sum(line.startswith("Error:") for line in result.output.splitlines()) == 1


def test_missing_input_and_empty_folder(tmp_path):
    result = invoke(["extract", tmp_path / "nope"])
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "empty").mkdir()
    result = invoke(["extract", tmp_path / "empty", "-o", tmp_path / "f.h5", *FAST])
    assert result.exit_code == 1
    assert result.output.endswith(f"Error: no videos found in {tmp_path / 'empty'} (see --glob)\n")


def test_extract_inspect_and_rerun_end_to_end(tmp_path, dataset):
    out = tmp_path / "f.h5"
    result = invoke(["extract", dataset, "-o", out, *FAST])
    assert result.exit_code == 0, result.output
    assert "Warning: --weights random: features come from an UNTRAINED network" in result.output
    assert f"{out}: 4 extracted, 0 already cached, 0 failed\n" in result.output
    assert "12 frames in " in result.output

    result = invoke(["inspect", out, "--json"])
    summary = json.loads(result.output)
    assert summary["videos"] == 4 and summary["frames"] == 12
    assert summary["labels"] == {
        "left": {"videos": 2, "frames": 6},
        "right": {"videos": 2, "frames": 6},
    }
    assert summary["settings"]["weights"] == "random:seed=0"
    text = invoke(["inspect", out]).output
    assert "videos: 4 in 2 label(s), frames: 12" in text and "NOTE: random weights" in text

    result = invoke(["extract", dataset, "-o", out, *FAST])
    assert f"{out}: 0 extracted, 4 already cached, 0 failed\n" in result.output


def test_failures_give_exit_code_1_and_a_summary(tmp_path, dataset):
    (dataset / "left" / "broken.mp4").write_bytes(b"\0" * 100)
    out = tmp_path / "f.h5"
    result = invoke(["extract", dataset, "-o", out, *FAST])
    assert result.exit_code == 1
    bad = dataset.resolve() / "left" / "broken.mp4"
    reason = "not a readable video (Invalid data found when processing input)"
    assert f"skipped {bad}: {reason}\n" in result.output
    assert f"{out}: 4 extracted, 0 already cached, 1 failed\n" in result.output
    assert result.output.count(str(bad)) == 1  # one line per failure, not two
    assert "the 1 failed: the 'skipped' lines above" in result.output


def test_mismatched_settings_are_a_one_line_error(tmp_path, dataset):
    out = tmp_path / "f.h5"
    invoke(["extract", dataset, "-o", out, *FAST])
    result = invoke(["extract", dataset, "-o", out, *FAST, "--resize", "stretch"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {out} holds features made with other settings (resize: 'center-crop' != "
        "'stretch', cached != requested); use --overwrite to replace it, or write to a new file"
    )


def test_a_second_run_on_a_locked_cache_is_refused(tmp_path, dataset):
    out = tmp_path / "f.h5"
    with CacheLock(out):
        result = invoke(["extract", dataset, "-o", out, *FAST])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(
        "Error: f.h5 is being written by another vidcache run (pid "
    )


def test_labels_csv_and_inspect_of_a_non_cache(tmp_path, dataset):
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,split\nleft/left_c0.mkv,walk,train\nghost.mkv,x,y\n")
    out = tmp_path / "f.h5"
    result = invoke(["extract", dataset, "-o", out, "--labels", csv, *FAST])
    assert f"Warning: {csv}: ghost.mkv matches no video\n" in result.output
    labels = json.loads(invoke(["inspect", out, "--json"]).output)["labels"]
    assert labels["walk"] == {"videos": 1, "frames": 3}
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"x")
    result = invoke(["inspect", junk])
    assert result.exit_code == 1 and result.output.startswith(
        f"Error: {junk} is not a readable HDF5 file"
    )


def test_weights_check_without_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    result = invoke(["weights", "--check"])
    assert result.exit_code == 1
    assert result.output.startswith("Not available: ImageNet weights for InceptionV3 are not in ")


def test_make_demo_data_writes_every_kind(tmp_path):
    result = invoke(
        ["make-demo-data", tmp_path / "demo", "--clips-per-class", "6", "--seconds", "1"]
    )
    assert result.exit_code == 0
    assert result.output.startswith(
        f"wrote 18 clips of 3 classes (grow, shrink, pulse) to {tmp_path / 'demo'}, with "
        "captions.csv"
    )
    names = sorted(p.name for p in (tmp_path / "demo" / "grow").iterdir())
    assert names == [
        "grow_c01.mp4",
        "grow_c02.avi",
        "grow_c03.webm",
        "grow_c04.mkv",
        "grow_c05.avi",
        "grow_c06",
    ]
    import csv

    with open(tmp_path / "demo" / "captions.csv", newline="") as handle:
        captions = list(csv.DictReader(handle))
    with open(tmp_path / "demo" / "targets.csv", newline="") as handle:
        targets = list(csv.DictReader(handle))
    assert len(captions) == 18 * 3 and len(targets) == 18 * 5  # 1 s at 5 fps
    assert [r["caption"] for r in captions if r["path"] == "shrink/shrink_c06"] == [
        "a red square shrinks",
        "a red square gets smaller on a grey background",
        "the red square is shrinking",
    ]
    sizes = [float(r["size"]) for r in targets if r["path"] == "pulse/pulse_c02.avi"]
    assert sizes == sorted(sizes[:3]) + sorted(sizes[3:], reverse=True)  # up, then down
    # segments.csv: each frame's label says whether the square grew since the frame before.
    from vidcache.models.segments import frame_labels, read_segments

    segments = read_segments(tmp_path / "demo" / "segments.csv")
    assert len(segments) == 18
    for video, rows in segments.items():
        sizes = np.array([float(r["size"]) for r in targets if r["path"] == video])
        labels = frame_labels(np.arange(len(sizes)) / 5, rows, "background")
        grew = np.diff(sizes) > 0
        assert labels[1:] == ["grows" if g else "shrinks" for g in grew], video
    # tags.csv: several labels a clip, from what was drawn (a pulse grows and shrinks).
    with open(tmp_path / "demo" / "tags.csv", newline="") as handle:
        tags = {r["path"]: r["label"].split(";") for r in csv.DictReader(handle)}
    assert len(tags) == 18
    assert tags["pulse/pulse_c02.avi"][:2] == ["grows", "shrinks"]
    assert tags["shrink/shrink_c06"] == ["shrinks", "red square", "grey background"]


def test_demo_captions_say_what_was_drawn():
    from vidcache.features.synthetic import COLOUR_NAMES, PALETTE, describe_clip, render_clip

    for seed in range(6):
        frame = render_clip("grow", 5, seed=seed)[-1]  # the square fills the centre
        centre, corner = tuple(frame[48, 64]), tuple(frame[0, 0])
        index = [square for _, square in PALETTE].index(centre)
        assert PALETTE[index][0] == corner
        background, square = COLOUR_NAMES[index]
        captions = describe_clip("grow", seed)
        assert captions[0] == f"a {square} square grows"
        assert f"on a {background} background" in captions[1]


def test_progress_lines_without_a_terminal_and_failures_always_shown():
    import io
    from pathlib import Path

    from vidcache.pipeline.extraction.local import EXTRACTED, FAILED, VideoOutcome
    from vidcache.pipeline.extraction.report import ProgressReporter

    stream = io.StringIO()  # not a TTY: no bar, plain lines
    reporter = ProgressReporter(stream=stream, log_every=0)
    reporter.begin(2)
    reporter.frames(5)
    reporter.video(VideoOutcome("a", Path("/v/a.mp4"), EXTRACTED, 5))
    reporter.video(VideoOutcome("b", Path("/v/b.mp4"), FAILED, 0, "file is empty"))
    reporter.end()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("progress: 0/2 videos, 5 frames, ")
    assert "skipped /v/b.mp4: file is empty" in lines
    assert lines[-1].startswith("progress: 2/2 videos, 5 frames, ")

    quiet = io.StringIO()
    reporter = ProgressReporter(quiet=True, stream=quiet, log_every=0)
    reporter.begin(1)
    reporter.frames(3)
    reporter.video(VideoOutcome("b", Path("/v/b.mp4"), FAILED, 0, "file is empty"))
    assert quiet.getvalue() == "skipped /v/b.mp4: file is empty\n"


def test_demo_data_is_byte_for_byte_reproducible(tmp_path):
    from vidcache.features.synthetic import make_demo_dataset

    def digests(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    make_demo_dataset(tmp_path / "a", clips_per_class=6, seconds=1.0)
    make_demo_dataset(tmp_path / "b", clips_per_class=6, seconds=1.0)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_output_folders_that_cannot_be_made_fail_in_one_line_before_any_work(tmp_path, dataset):
    cache = tmp_path / "f.h5"
    assert invoke(["extract", dataset, "-o", cache, *FAST]).exit_code == 0
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (Path("/proc/vidcache-test/x"), blocker / "sub"):
        commands = [
            ["train-rnn", cache, "-o", bad, "-q"],
            ["extract", dataset, "-o", bad / "f.h5", *FAST],
            ["make-demo-data", bad],
            ["migrate", cache, "-o", bad / "new.h5"],
        ]
        for args in commands:
            result = CliRunner().invoke(cli, [str(a) for a in args])
            assert result.exit_code == 1, (args, result.output)
            errors = [line for line in result.output.splitlines() if line.startswith("Error")]
            assert len(errors) == 1 and errors[0].startswith(f"Error: {bad}: cannot create")
            assert "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path), str(cache), "-o", str(blocker)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    from vidcache.pipeline.outputs import OutputError, prepare_output_dir

    with pytest.raises(OutputError, match="file: cannot write the run folder there \\(a file of"):
        prepare_output_dir(blocker)


def test_tensorboard_missing_is_one_line_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    result = CliRunner().invoke(
        cli, ["train-rnn", str(tmp_path / "nowhere.h5"), "-o", str(tmp_path / "r"), "--tensorboard"]
    )
    assert result.exit_code == 1
    assert result.output == (
        "Error: --tensorboard needs TensorBoard, which is not installed; "
        "install it with pip install 'vidcache[tensorboard]'\n"
    )
    assert not (tmp_path / "r").exists()
