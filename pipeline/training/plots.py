"""The run's figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import csv
from pathlib import Path

from vidcache.features.untrusted import plain_text


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(history_csv: Path, out: Path, metric: str = "accuracy") -> None:
    """Loss and ``metric`` per epoch, training and validation side by side."""
    plt = _pyplot()
    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", metric)):
        for prefix, style in (("", "-"), ("val_", "--")):
            key = prefix + metric
            if rows and key in rows[0]:
                ax.plot(
                    epochs,
                    [float(r[key]) for r in rows],
                    style,
                    marker="o",
                    markersize=3,
                    label="validation" if prefix else "training",
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _shown(label: str) -> str:
    """A label as plain text on a plot: no control characters (no glyph for them), and
    ``$`` escaped (matplotlib reads ``$...$`` as mathematics and fails on an odd one)."""
    return plain_text(label).replace("$", r"\$")


def plot_confusion(metrics: dict, out: Path, title: str) -> None:
    """The confusion matrix with counts in the cells (rows: true class, columns: predicted)."""
    plt = _pyplot()
    classes, matrix = [_shown(c) for c in metrics["classes"]], metrics["confusion"]
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: top-1 {metrics['top1']:.1%} on {metrics['examples']} videos")
    if len(classes) <= 30:
        peak = max(max(row) for row in matrix) or 1
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(
                    j,
                    i,
                    str(value),
                    ha="center",
                    va="center",
                    color="white" if value > peak / 2 else "black",
                    fontsize=8,
                )
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_segments(videos: list[tuple[str, list, list]], classes: list[str], out: Path,
                  title: str, limit: int = 12) -> None:  # fmt: skip
    """True against predicted segments of up to ``limit`` videos: two bars a video, each
    frame coloured by its class (one colour per class, the legend names them).
    ``videos``: ``(name, true class indices, predicted class indices)`` per video (a true
    index of -1, a label the run does not know, is drawn grey)."""
    import numpy as np

    plt = _pyplot()
    shown = videos[:limit]
    colours = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(10, 0.9 * len(shown) + 1.2))
    for row, (_, truth, predicted) in enumerate(shown):
        for offset, labels in ((0.0, truth), (0.38, predicted)):
            labels = np.asarray(labels)
            y = row * 1.0 + offset
            starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
            ends = np.r_[starts[1:], len(labels)]
            for a, b in zip(starts, ends):
                k = int(labels[a])
                colour = colours(k % 20) if k >= 0 else (0.6, 0.6, 0.6, 1.0)
                ax.barh(y, b - a, left=a, height=0.34, color=colour)
    ax.set_yticks(
        [r + offset for r in range(len(shown)) for offset in (0.0, 0.38)],
        [f"{_shown(name)[-28:]} {side}" for name, *_ in shown for side in ("true", "predicted")],
        fontsize=7,
    )
    ax.invert_yaxis()
    ax.set_xlabel("frame (sampled row)")
    ax.set_title(f"{title}: true and predicted segments of {len(shown)} of {len(videos)} videos")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours(k % 20)) for k in range(len(classes))]
    ax.legend(handles, [_shown(c) for c in classes], fontsize=7, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
