"""Multi-label video metrics, as YouTube-8M's starter code defines them.

Source: ``eval_util.py``, ``average_precision_calculator.py`` and
``mean_average_precision_calculator.py`` of https://github.com/google/youtube-8m:

- **AP** of a ranked list: non-interpolated, ``sum over positives at rank i of
  (positives up to i) / i``, divided by the number of positives. Equal scores are ranked in
  the order the reference gives them (its accumulator's heap, a shuffle seeded with 0,
  then a stable sort), so ties give the reference's figure too.
- **GAP@k** (``calculate_gap``, k = 20): each video's k highest scores (class, score,
  label) are pooled into one list, ranked by score, and its AP is taken with the number of
  positives of *all* labels (so a positive outside a video's top k counts as missed).
- **hit@1** (``calculate_hit_at_one``): the fraction of videos whose top class is one of
  their labels.
- **mAP**: the AP of each class over all videos' scores, averaged over the classes with a
  positive (``filter_empty_classes``). The reference's evaluation loop feeds it only each
  video's top-k scores; this one ranks every video for every class (Charades' way), which
  is the same when k >= the number of classes.
"""

from __future__ import annotations

import heapq
import random

import numpy as np


def _accumulated(scores, actuals) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, actuals)`` in the order of the reference accumulator's heap."""
    heap: list = []
    for pair in zip(scores, actuals):
        heapq.heappush(heap, pair)
    if not heap:
        return np.zeros(0), np.zeros(0)
    s, a = zip(*heap)
    return np.array(s, np.float64), np.array(a)


def average_precision(scores: np.ndarray, actuals: np.ndarray, positives: int | None = None):
    """Non-interpolated AP of ``scores`` against 0/1 ``actuals`` (``positives``: the
    number of positives to divide by; those in ``actuals`` by default). 0 without one."""
    scores = np.asarray(scores, np.float64)
    actuals = np.asarray(actuals)
    positives = int((actuals > 0).sum()) if positives is None else int(positives)
    if positives == 0 or len(scores) == 0:
        return 0.0
    rng = random.Random(0)  # the reference's random.seed(0); random.sample(...)
    order = rng.sample(range(len(scores)), len(scores))
    scores, actuals = scores[order], actuals[order]
    ranked = sorted(range(len(scores)), key=lambda k: scores[k], reverse=True)
    hits = (actuals[ranked] > 0).astype(np.float64)
    precision_at_hits = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at_hits * hits).sum() / positives)


def gap(scores: np.ndarray, labels: np.ndarray, top_k: int = 20) -> float:
    """Global average precision of each video's ``top_k`` scores (``scores``, ``labels``:
    ``(videos, classes)``, labels 0/1)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    k = min(top_k, scores.shape[1])
    pooled: list[list[tuple[float, float]]] = [[] for _ in range(scores.shape[1])]
    for row, truth in zip(scores, labels):
        for c in np.argpartition(row, -k)[-k:]:
            pooled[c].append((row[c], truth[c]))
    flat = [pair for per_class in pooled for pair in per_class]  # by class, then video
    if not flat:
        return 0.0
    s, a = _accumulated(*zip(*flat))
    return average_precision(s, a, positives=int((labels > 0).sum()))


def hit_at_one(scores: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of videos whose highest-scored class is one of their labels."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if len(scores) == 0:
        return 0.0
    return float(labels[np.arange(len(scores)), scores.argmax(1)].mean())


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes with a positive of each class's AP over all videos."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    aps = [
        average_precision(*_accumulated(scores[:, c].tolist(), labels[:, c].tolist()))
        for c in range(scores.shape[1])
        if labels[:, c].any()
    ]
    return float(np.mean(aps)) if aps else 0.0


def multilabel_metrics(scores: np.ndarray, labels: np.ndarray, top_k: int = 20) -> dict:
    """``map``, ``gap@K``, ``hit@1`` and ``videos`` of ``(videos, classes)`` scores."""
    return {
        "map": mean_average_precision(scores, labels),
        f"gap@{top_k}": gap(scores, labels, top_k),
        "hit@1": hit_at_one(scores, labels),
        "videos": int(len(scores)),
    }
