"""Classification and regression metrics (plain numpy)."""

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


def regression_metrics(
    predictions: list[np.ndarray],
    targets: list[np.ndarray],
    weights: list[np.ndarray] | None,
    baseline: np.ndarray,
    names: list[str],
) -> dict:
    """MSE, MAE and RMSE overall and per output, with the same errors for a constant
    ``baseline`` prediction (the training targets' mean) and R^2 = 1 - MSE / baseline MSE.

    Args:
        predictions: per video, ``(K,)`` or per frame ``(T, K)``.
        targets: the same shapes.
        weights: per video ``(T,)`` frame weights (0: frame has no target), or None.
        baseline: ``(K,)`` constant prediction.
        names: the ``K`` output names.
    """
    pred = np.concatenate([np.reshape(p, (-1, len(names))) for p in predictions])
    true = np.concatenate([np.reshape(t, (-1, len(names))) for t in targets])
    if weights is not None:
        keep = np.concatenate([np.reshape(w, -1) for w in weights]) > 0
        pred, true = pred[keep], true[keep]
    errors = pred.astype(np.float64) - true
    base = np.asarray(baseline, np.float64)[None, :] - true
    mse, mae = (errors**2).mean(0), np.abs(errors).mean(0)
    base_mse, base_mae = (base**2).mean(0), np.abs(base).mean(0)
    result = {
        "mse": float(mse.mean()),
        "mae": float(mae.mean()),
        "rmse": float(np.sqrt(mse.mean())),
        "r2": float(1 - mse.mean() / base_mse.mean()) if base_mse.mean() > 0 else None,
        "baseline_mean": {"mse": float(base_mse.mean()), "mae": float(base_mae.mean())},
        "per_output": {
            name: {
                "mse": float(mse[k]),
                "mae": float(mae[k]),
                "baseline_mse": float(base_mse[k]),
                "baseline_mae": float(base_mae[k]),
            }
            for k, name in enumerate(names)
        },
        "videos": len(predictions),
    }
    if weights is not None:
        result["frames"] = int(len(pred))
    return result
