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
    """The group key of a video: ``label/<group>`` when the pattern matches, else its id."""
    match = re.search(pattern, video_id)
    if not match:
        return video_id
    return f"{label}/{match.group(1) if match.groups() else match.group(0)}"


def stratified_group_split(
    labels: list[str], groups: list[str], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices of train and validation examples.

    For each label, whole groups are moved to validation (in a seeded random order) until
    it holds ``val_fraction`` of that label's examples; every label keeps at least one
    group on each side.

    Raises:
        SplitError: a label has a single group (it cannot be on both sides).
    """
    if not 0 < val_fraction < 1:
        raise SplitError(f"--val-split must be between 0 and 1. Received: {val_fraction}")
    rng = np.random.default_rng(seed)
    by_label: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, (label, group) in enumerate(zip(labels, groups)):
        by_label[label][group].append(index)
    train, val = [], []
    for label in sorted(by_label):
        members = by_label[label]
        names = sorted(members)
        if len(names) < 2:
            raise SplitError(
                f"class {label!r} has {sum(map(len, members.values()))} clip(s) in one group; "
                "a validation split needs at least two groups per class"
            )
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
    return sorted(train), sorted(val)


def read_split_file(path: Path) -> dict[str, str]:
    """Read a CSV with columns ``path,split`` (split: train, val or test) into ``{id: split}``.

    Raises:
        SplitError: unreadable, missing columns, or an unknown split name.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"path", "split"} <= set(reader.fieldnames):
                raise SplitError(f"{path}: a split file needs the columns 'path' and 'split'")
            result = {}
            for line, row in enumerate(reader, start=2):
                split = (row["split"] or "").strip().lower()
                if split not in SPLITS:
                    raise SplitError(f"{path}:{line}: split must be one of {SPLITS}, not {split!r}")
                result[(row["path"] or "").strip()] = split
            return result
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SplitError(f"{path}: cannot read split file ({exc})") from None
