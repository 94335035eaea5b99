"""Classification metrics from predicted probabilities (plain numpy)."""

from __future__ import annotations

import numpy as np


def classification_metrics(
    probabilities: np.ndarray, targets: np.ndarray, classes: list[str]
) -> dict:
    """Top-1, top-5 (top-C when there are fewer than 5 classes), per-class precision, recall,
    F1 and support, and the confusion matrix.

    Args:
        probabilities: ``(N, C)``.
        targets: ``(N,)`` class indices.
        classes: the ``C`` class names.

    Returns:
        A JSON-ready dict; ``confusion[i][j]`` counts true class ``i`` predicted as ``j``.
    """
    probabilities = np.asarray(probabilities)
    targets = np.asarray(targets, int)
    n, c = probabilities.shape
    predicted = probabilities.argmax(1)
    k = min(5, c)
    top_k = np.argsort(-probabilities, axis=1)[:, :k]
    confusion = np.zeros((c, c), int)
    np.add.at(confusion, (targets, predicted), 1)
    per_class = {}
    for i, name in enumerate(classes):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i].sum() if confusion[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": round(float(precision), 6),
            "recall": round(float(recall), 6),
            "f1": round(float(f1), 6),
            "support": int(confusion[i].sum()),
        }
    return {
        "examples": int(n),
        "top1": round(float((predicted == targets).mean()), 6) if n else 0.0,
        "top5": round(float((top_k == targets[:, None]).any(1).mean()), 6) if n else 0.0,
        "macro_f1": round(float(np.mean([m["f1"] for m in per_class.values()])), 6),
        "per_class": per_class,
        "classes": list(classes),
        "confusion": confusion.tolist(),
    }
