"""Temporal action segmentation metrics, as MS-TCN's evaluation code defines them.

Source: ``eval.py`` of https://github.com/yabufarha/ms-tcn (Farha & Gall, CVPR 2019),
itself adapted from Lea et al.'s TemporalConvolutionalNetworks ``metrics.py``:

- **frame accuracy**: correct frames over all frames of all videos (pooled, not averaged
  per video).
- **segments**: maximal runs of one label; runs of the background label are not segments
  (``bg_class=["background"]``).
- **Edit**: ``1 - levenshtein(predicted segment labels, true segment labels) / max(their
  lengths)``, averaged over videos.
- **F1@k**: each predicted segment, in order, is matched to the true segment of the same
  label with the highest IoU; a true positive when that IoU >= k and the true segment was
  not matched before, a false positive otherwise; unmatched true segments are false
  negatives. TP/FP/FN are summed over all videos, then ``F1 = 2PR / (P + R)``.

The reference reports percentages; these functions return fractions (0..1), as every
other vidcache metric does: multiply by 100 for the papers' tables. Cases the reference
does not define (it raises or divides by zero) are defined here: a video with no frames
has no segments; Edit of two empty segment lists is 1 (they are equal); a predicted
segment when there is no true segment is a false positive; F1 with no segment anywhere
is 0 (the reference's ``nan_to_num`` of 0/0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OVERLAPS = (0.10, 0.25, 0.50)


def segments(labels: Sequence, background: frozenset | set = frozenset()) -> list[tuple]:
    """``(label, start, end)`` of each maximal run of one label (``end`` exclusive),
    runs of a ``background`` label left out."""
    found = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            if labels[start] not in background:
                found.append((labels[start], start, i))
            start = i
    return found


def levenshtein(a: Sequence, b: Sequence) -> int:
    """The edit distance between two sequences (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def edit_score(predicted: Sequence, truth: Sequence, background=frozenset()) -> float:
    """Segmental Edit score of one video (1 when the segment label sequences agree)."""
    p = [s[0] for s in segments(predicted, background)]
    y = [s[0] for s in segments(truth, background)]
    if not p and not y:
        return 1.0
    return 1.0 - levenshtein(p, y) / max(len(p), len(y))


def f_counts(predicted: Sequence, truth: Sequence, overlap: float, background=frozenset()):
    """``(tp, fp, fn)`` of one video's segments at IoU threshold ``overlap``."""
    p = segments(predicted, background)
    y = segments(truth, background)
    hits = np.zeros(len(y), bool)
    tp = fp = 0
    for label, start, end in p:
        iou = np.array(
            [
                (min(end, ye) - max(start, ys)) / (max(end, ye) - min(start, ys)) * (yl == label)
                for yl, ys, ye in y
            ]
        )
        best = int(iou.argmax()) if len(iou) else -1
        if best >= 0 and iou[best] >= overlap and not hits[best]:
            tp += 1
            hits[best] = True
        else:
            fp += 1
    return tp, fp, len(y) - int(hits.sum())


def segmentation_metrics(
    predicted: Sequence[Sequence],
    truth: Sequence[Sequence],
    background=frozenset(),
    overlaps: Sequence[float] = OVERLAPS,
) -> dict:
    """Frame accuracy, Edit and F1@k over videos (one label sequence each, equal lengths).

    Returns:
        ``frame_accuracy``, ``edit``, ``f1@10``, ``f1@25``, ``f1@50`` (by ``overlaps``),
        ``videos``, ``frames`` and ``segments`` (true segments counted).
    """
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted videos for {len(truth)} true ones")
    correct = frames = 0
    edits = []
    counts = np.zeros((len(overlaps), 3))
    true_segments = 0
    for p, y in zip(predicted, truth):
        if len(p) != len(y):
            raise ValueError(f"{len(p)} predicted frames for {len(y)} true ones")
        correct += sum(a == b for a, b in zip(p, y))
        frames += len(y)
        edits.append(edit_score(p, y, background))
        true_segments += len(segments(y, background))
        for k, overlap in enumerate(overlaps):
            counts[k] += f_counts(p, y, overlap, background)
    out = {
        "frame_accuracy": correct / frames if frames else 0.0,
        "edit": float(np.mean(edits)) if edits else 0.0,
    }
    for overlap, (tp, fp, fn) in zip(overlaps, counts):
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[f"f1@{round(overlap * 100)}"] = f1
    out.update(videos=len(truth), frames=frames, segments=true_segments)
    return out
