"""Train/validation splits that are stratified by label and never split a group.

UCF101 cuts each source video into several clips named ``v_<Class>_g<group>_c<clip>``;
clips of one group look alike, so a group on both sides of a split leaks. The default group
pattern takes ``g<group>`` from such names; videos whose name does not match are their own
group. ``--group-regex`` changes the pattern (its first capture group, or the whole match).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from vidcache.features.errors import VidcacheError

UCF101_GROUP = r"_g(\d+)_c\d+"
SPLITS = ("train", "val", "test")


class SplitError(VidcacheError):
    """The data cannot be split as asked."""


def group_of(video_id: str, label: str, pattern: str = UCF101_GROUP) -> str:
    """The group key of a video: ``label/<group>`` when the pattern matches, else its id.
    An empty pattern groups nothing: every video is its own group."""
    if not pattern:
        return video_id
    match = re.search(pattern, video_id)
    if not match:
        return video_id
    return f"{label}/{match.group(1) if match.groups() else match.group(0)}"


def stratified_group_split(
    labels: list[str],
    groups: list[str],
    val_fraction: float,
    seed: int,
    notes: list[str] | None = None,
) -> tuple[list[int], list[int]]:
    """Indices of train and validation examples.

    For each label, whole groups are moved to validation (in a seeded random order) until
    it holds ``val_fraction`` of that label's examples; every label keeps at least one
    group on each side. A label whose clips all share one group (a small set cut from one
    source video) is split clip by clip instead, with a note in ``notes``: a run with a
    warned, leakier split is worth more to a user than no run.

    Raises:
        SplitError: a label has a single clip (it cannot be on both sides).
    """
    if not 0 < val_fraction < 1:
        raise SplitError(f"--val-split must be between 0 and 1. Received: {val_fraction}")
    rng = np.random.default_rng(seed)
    by_label: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, (label, group) in enumerate(zip(labels, groups)):
        by_label[label][group].append(index)
    train, val = [], []
    ungrouped = []
    for label in sorted(by_label):
        members = by_label[label]
        names = sorted(members)
        if len(names) < 2:
            clips = [i for group in members.values() for i in group]
            if len(clips) < 2:
                raise SplitError(
                    f"class {label!r} has a single clip; a validation split needs two per "
                    "class (drop it with --label-map, or assign it with --split-file)"
                )
            members = {str(i): [i] for i in clips}  # every clip its own group
            names = sorted(members)
            ungrouped.append(f"{label!r} ({len(clips)} clips)")
        order = [names[i] for i in rng.permutation(len(names))]
        total = sum(len(members[g]) for g in names)
        taken = 0
        for position, name in enumerate(order):
            remaining_groups = len(order) - position
            if taken == 0 or (taken < val_fraction * total and remaining_groups > 1):
                val.extend(members[name])
                taken += len(members[name])
            else:
                train.extend(members[name])
    if ungrouped and notes is not None:
        notes.append(
            f"class(es) {', '.join(ungrouped[:5])}{' and more' if len(ungrouped) > 5 else ''} "
            "have all their clips in one group (one source video): split clip by clip, so "
            "their validation clips resemble their training ones; change what a group is "
            "with --group-regex, or choose the split with --split-file"
        )
    return sorted(train), sorted(val)


def read_split_file(path: Path) -> dict[str, str]:
    """The split a file assigns to each video it names: ``{name as written: split}``.

    Three formats, told apart by the file's name:

    - a CSV with the columns ``path,split`` (``train``, ``val`` or ``test``);
    - UCF101's official lists as they ship (``ucfTrainTestlist/trainlistNN.txt``,
      ``testlistNN.txt``: one ``Class/v_..._gNN_cNN.avi [label]`` per line): either file
      of split NN names both, read from the same folder (train and test);
    - HMDB51's official lists as they ship (``testTrainMulti_7030_splits/
      <class>_test_splitN.txt``: ``<video>.avi 0|1|2`` per line, 1 train, 2 test, 0 unused):
      any one file of split N names all classes' files of split N in its folder.

    Raises:
        SplitError: unreadable, missing columns, or an unknown split name.
    """
    path = Path(path)
    try:
        if _UCF101_LIST.fullmatch(path.name):
            return _ucf101_lists(path)
        if _HMDB51_LIST.fullmatch(path.name):
            return _hmdb51_lists(path)
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"path", "split"} <= set(reader.fieldnames):
                raise SplitError(
                    f"{path}: a split file needs the columns 'path' and 'split' (or is one "
                    "of UCF101's trainlistNN.txt/testlistNN.txt or HMDB51's "
                    "<class>_test_splitN.txt as they ship)"
                )
            result = {}
            for line, row in enumerate(reader, start=2):
                split = (row["split"] or "").strip().lower()
                if split not in SPLITS:
                    raise SplitError(f"{path}:{line}: split must be one of {SPLITS}, not {split!r}")
                result[(row["path"] or "").strip()] = split
            return result
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SplitError(f"{path}: cannot read split file ({exc})") from None


_UCF101_LIST = re.compile(r"(train|test)list(\d+)\.txt", re.IGNORECASE)
_HMDB51_LIST = re.compile(r"(.+)_test_split(\d+)\.txt", re.IGNORECASE)


def _ucf101_lists(path: Path) -> dict[str, str]:
    number = _UCF101_LIST.fullmatch(path.name).group(2)
    result = {}
    for split in ("train", "test"):
        listed = path.with_name(f"{split}list{number}.txt")
        if not listed.is_file():
            raise SplitError(f"{listed}: missing (UCF101's split {number} needs both lists)")
        for line in listed.read_text(encoding="utf-8-sig").splitlines():
            if line.strip():
                result[line.split()[0]] = split
    return result


def _hmdb51_lists(path: Path) -> dict[str, str]:
    number = _HMDB51_LIST.fullmatch(path.name).group(2)
    result = {}
    for listed in sorted(path.parent.glob(f"*_test_split{number}.txt")):
        for line_number, line in enumerate(listed.read_text(encoding="utf-8-sig").splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            code = fields[1] if len(fields) > 1 else ""
            if code not in ("0", "1", "2"):
                raise SplitError(f"{listed}:{line_number}: expected 'VIDEO 0|1|2', got {line!r}")
            if code != "0":  # 0: in neither part of this split
                result[fields[0]] = "train" if code == "1" else "test"
    return result
