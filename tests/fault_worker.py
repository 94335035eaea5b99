"""Runs every vidcache command on damaged copies of a cache, in one process (TensorFlow
imported once), for the flip and truncation tests of ``test_integrity.py``.

Usage: python fault_worker.py SPEC.json FIRST

SPEC holds ``good`` (the undamaged cache), ``work`` (a scratch folder), ``videos`` (the
videos the cache was made from), ``run`` (a run trained on them) and ``copies``, a list of
``[name, path]`` of damaged files. From copy FIRST on, for each copy and each command it
prints one JSON line: ``{"copy", "command", "exit", "output", "traceback", "verdict"}``,
then ``{"copy", "done": true}``. The parent bounds each line in time (a hang is a finding)
and restarts the worker after the copy that hung.

Verdicts: ``ok`` (a correct result or one clear error line), or a sentence starting with
``SILENT`` (a changed id, label, tombstone, video count or feature row went unreported) or
``BAD`` (a traceback, an unclear error, a lost video).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from click.testing import CliRunner  # noqa: E402

from vidcache.features.cache import CacheReader  # noqa: E402
from vidcache.features.errors import CacheFormatError  # noqa: E402
from vidcache.pipeline.cli import cli  # noqa: E402


def snapshot(path: Path) -> dict:
    """What a cache says: every live video's record and rows (``nan`` made comparable)."""
    with CacheReader(path) as reader:
        out = {}
        for video_id, entry in reader.entries().items():
            record = entry.to_attrs()
            record["duration"] = (
                repr(record["duration"]) if math.isnan(entry.duration) else entry.duration
            )
            rows = reader.rows(video_id)
            out[video_id] = (record, rows.features.tobytes(), rows.timestamps.tobytes())
        return out


def differences(found: dict, good: dict, subset: bool = False) -> str:
    """'' when ``found`` equals ``good`` (or, with ``subset``, holds some of its videos
    unchanged), else the first difference."""
    extra = set(found) - set(good)
    if extra:
        return f"a video that is not in the cache appeared: {sorted(extra)[0]!r}"
    if not subset and set(found) != set(good):
        return f"videos went missing: {sorted(set(good) - set(found))[:3]}"
    for video_id, (record, features, stamps) in found.items():
        if record != good[video_id][0]:
            changed = [k for k in record if record[k] != good[video_id][0][k]]
            return f"the record of {video_id!r} changed ({', '.join(changed)})"
        if (features, stamps) != good[video_id][1:]:
            return f"the rows of {video_id!r} changed"
    return ""


def one_error_line(result, names: tuple[str, ...]) -> str:
    """'' when a failed command said exactly one 'Error: ...' line naming the file."""
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    if len(errors) != 1:
        return f"BAD: {len(errors)} error lines"
    if not any(name in errors[0] for name in names):
        return f"BAD: the error line does not name the file: {errors[0]!r}"
    return ""


def judge(command: str, result, target: Path, good: dict, source: Path) -> str:
    """The verdict on one command's result (``target``: the file it worked on, made from
    the damaged ``source``)."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "BAD: traceback " + "".join(traceback.format_exception(result.exception))[-600:]
    if "Traceback" in result.output:
        return "BAD: traceback in the output"
    if result.exit_code not in (0, 1):
        return f"BAD: exit code {result.exit_code}"
    if command == "verify" and result.exit_code == 1 and "damaged: " in result.output:
        return ""
    if result.exit_code == 1 and not (command == "extract" and "skipped" in result.output):
        problem = one_error_line(result, (target.name, source.name))
        if problem:
            return problem
    if (
        command in ("compact", "extract", "repair", "migrate", "merge", "predict")
        and target.exists()
    ):
        try:
            found = snapshot(target)
        except CacheFormatError as exc:
            if result.exit_code == 0 and command != "extract":
                return f"BAD: exit 0 left a cache that does not open ({exc})"
            return ""
        difference = differences(found, good, subset=(command == "repair"))
        if difference:
            return f"SILENT: after {command} (exit {result.exit_code}): {difference}"
    return ""


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    first = int(sys.argv[2])
    good = snapshot(Path(spec["good"]))
    work, videos, run = Path(spec["work"]), spec["videos"], spec["run"]
    runner = CliRunner()
    for number, (name, damaged) in enumerate(spec["copies"]):
        if number < first:
            continue
        damaged = Path(damaged)
        here = work / f"copy-{number}"
        shutil.rmtree(here, ignore_errors=True)
        here.mkdir(parents=True)

        def fresh(file_name: str) -> Path:
            path = here / file_name
            shutil.copyfile(damaged, path)
            return path

        def emit(command: str, result, target: Path, verdict: str = "") -> None:
            verdict = verdict or judge(command, result, target, good, damaged) or "ok"
            line = {"copy": number, "name": name, "command": command, "exit": result.exit_code}
            line.update(output=result.output[-800:], verdict=verdict)
            print(json.dumps(line), flush=True)

        # the library's own answer: refused, or exactly the good cache
        refused = 0
        try:
            found = snapshot(damaged)
        except CacheFormatError as exc:
            refused = 1
            verdict = "ok" if str(damaged) in str(exc) else f"BAD: unnamed error: {exc}"
        except Exception as exc:  # noqa: BLE001 - a finding, reported
            verdict = "BAD: reader traceback " + "".join(traceback.format_exception(exc))[-600:]
        else:
            difference = differences(found, good)
            verdict = f"SILENT: reader: {difference}" if difference else "ok"
        print(json.dumps({"copy": number, "name": name, "command": "reader", "exit": refused,
                          "output": "", "verdict": verdict}), flush=True)  # fmt: skip

        target = fresh("c.h5")
        for command, args in (
            ("inspect", ["inspect", target]),
            ("verify", ["verify", target]),
            ("train-rnn", ["train-rnn", target, "-o", here / "run", "--epochs", "1",
                           "--units", "4", "-q"]),
            ("evaluate", ["evaluate", run, target]),
        ):  # fmt: skip
            emit(command, runner.invoke(cli, [str(a) for a in args]), target)
        for command, args, target in (
            ("migrate", ["migrate", damaged, "-o", here / "migrated.h5"], here / "migrated.h5"),
            ("merge", ["merge", damaged, "-o", here / "merged.h5"], here / "merged.h5"),
        ):
            emit(command, runner.invoke(cli, [str(a) for a in args]), target)
        target = fresh("compact.h5")
        emit("compact", runner.invoke(cli, ["compact", str(target), "-q"]), target)
        target = fresh("repair.h5")
        emit("repair", runner.invoke(cli, ["verify", "--repair", str(target)]), target)
        target = fresh("extract.h5")
        args = ["extract", videos, "-o", target, "--weights", "random", "--seed", "0"]
        args += ["--image-size", "75", "--fps", "0", "-q"]
        emit("extract", runner.invoke(cli, [str(a) for a in args]), target)
        target = fresh("predict.h5")
        args = ["predict", run, videos, "--cache", target]
        emit("predict", runner.invoke(cli, [str(a) for a in args]), target)
        print(json.dumps({"copy": number, "done": True}), flush=True)
        shutil.rmtree(here, ignore_errors=True)


if __name__ == "__main__":
    main()
