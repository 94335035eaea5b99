"""Segmentation metrics (MS-TCN's eval.py) and multi-label metrics (YouTube-8M's
eval_util.py), on hand-computed cases and against transcriptions of the reference code."""

from __future__ import annotations

import heapq
import random

import numpy as np
import pytest

from vidcache.models.rankmetrics import gap, hit_at_one, mean_average_precision, multilabel_metrics
from vidcache.models.segmetrics import edit_score, f_counts, segmentation_metrics, segments

BG = {"background"}


# -- the references, transcribed (Python 3; np.float -> float) -----------------------------


def ref_segments(frame_wise_labels, bg_class=("background",)):
    """ms-tcn eval.py get_labels_start_end_time."""
    labels, starts, ends = [], [], []
    last_label = frame_wise_labels[0]
    if frame_wise_labels[0] not in bg_class:
        labels.append(frame_wise_labels[0])
        starts.append(0)
    for i in range(len(frame_wise_labels)):
        if frame_wise_labels[i] != last_label:
            if frame_wise_labels[i] not in bg_class:
                labels.append(frame_wise_labels[i])
                starts.append(i)
            if last_label not in bg_class:
                ends.append(i)
            last_label = frame_wise_labels[i]
    if last_label not in bg_class:
        ends.append(i + 1)
    return labels, starts, ends


def ref_edit(recognized, ground_truth, bg_class=("background",)):
    p, _, _ = ref_segments(recognized, bg_class)
    y, _, _ = ref_segments(ground_truth, bg_class)
    d = np.zeros([len(p) + 1, len(y) + 1], float)
    d[:, 0] = np.arange(len(p) + 1)
    d[0, :] = np.arange(len(y) + 1)
    for j in range(1, len(y) + 1):
        for i in range(1, len(p) + 1):
            if y[j - 1] == p[i - 1]:
                d[i, j] = d[i - 1, j - 1]
            else:
                d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + 1)
    return (1 - d[-1, -1] / max(len(p), len(y))) * 100


def ref_f_score(recognized, ground_truth, overlap, bg_class=("background",)):
    p_label, p_start, p_end = ref_segments(recognized, bg_class)
    y_label, y_start, y_end = ref_segments(ground_truth, bg_class)
    tp = fp = 0
    hits = np.zeros(len(y_label))
    for j in range(len(p_label)):
        intersection = np.minimum(p_end[j], y_end) - np.maximum(p_start[j], y_start)
        union = np.maximum(p_end[j], y_end) - np.minimum(p_start[j], y_start)
        iou = (1.0 * intersection / union) * (
            [p_label[j] == y_label[x] for x in range(len(y_label))]
        )
        idx = np.array(iou).argmax()
        if iou[idx] >= overlap and not hits[idx]:
            tp += 1
            hits[idx] = 1
        else:
            fp += 1
    return float(tp), float(fp), float(len(y_label) - sum(hits))


def ref_ap_at_n(predictions, actuals, total_num_positives):
    """youtube-8m average_precision_calculator.ap_at_n with n=None."""
    predictions, actuals = np.array(predictions), np.array(actuals)
    random.seed(0)
    idx = random.sample(range(len(predictions)), len(predictions))
    predictions, actuals = predictions[idx], actuals[idx]
    sortidx = sorted(range(len(predictions)), key=lambda k: predictions[k], reverse=True)
    if total_num_positives == 0:
        return 0
    ap, poscount = 0.0, 0.0
    for i in range(len(sortidx)):
        if actuals[sortidx[i]] > 0:
            poscount += 1
            ap += poscount / (i + 1) / total_num_positives
    return ap


def ref_heap(predictions, actuals):
    heap = []
    for pair in zip(predictions, actuals):
        heapq.heappush(heap, pair)
    return [p for p, _ in heap], [a for _, a in heap]


def ref_gap(predictions, actuals, top_k=20):
    """youtube-8m eval_util.calculate_gap (top_k_by_class, then one accumulator)."""
    k = min(top_k, predictions.shape[1])
    triplets = []
    for v in range(predictions.shape[0]):
        indices = np.argpartition(predictions[v], -k)[-k:]
        triplets.extend((i, predictions[v][i], actuals[v][i]) for i in indices)
    out_p = [[] for _ in range(predictions.shape[1])]
    out_l = [[] for _ in range(predictions.shape[1])]
    for c, p, a in triplets:
        out_p[c].append(p)
        out_l[c].append(a)
    flat_p = [x for sub in out_p for x in sub]
    flat_l = [x for sub in out_l for x in sub]
    return ref_ap_at_n(*ref_heap(flat_p, flat_l), int(actuals.sum()))


# -- segmentation ------------------------------------------------------------------------


def test_segments_edit_and_f1_on_hand_made_cases():
    truth = list("AAABBBBCC")
    assert segments(truth) == [("A", 0, 3), ("B", 3, 7), ("C", 7, 9)]
    assert segments(["background", "A", "A", "background"], BG) == [("A", 1, 3)]
    assert segments([]) == []
    # One substitution of a whole segment: [A, C] against [A, B, C].
    assert edit_score(list("AAACCCCCC"), truth) == pytest.approx(1 - 1 / 3)
    # Over-segmentation: A B A B ... costs Edit but F1 at 10% still finds the long ones.
    assert edit_score(list("AAABBBBCC"), truth) == 1.0
    # IoU of predicted B (2..7) with true B (3..7): 4/5 = 0.8 -> a hit at 50, none above 0.8.
    predicted = list("AABBBBBCC")
    assert f_counts(predicted, truth, 0.5) == (3, 0, 0)
    assert f_counts(predicted, truth, 0.85) == (1, 2, 2)  # only C (7..9) is exact
    # A second prediction of an already matched segment is a false positive (as is B).
    assert f_counts(list("AABAAAACC"), list("AAAAAAACC"), 0.1) == (2, 2, 0)
    m = segmentation_metrics([predicted, list("AAAA")], [truth, list("AAAA")])
    assert m["frame_accuracy"] == pytest.approx(12 / 13)
    assert m["edit"] == 1.0 and m["f1@50"] == 1.0
    assert m["f1@10"] == 1.0 and (m["videos"], m["frames"], m["segments"]) == (2, 13, 4)


def test_segmentation_edges_the_reference_leaves_undefined():
    # An empty video, an all-background one: no segments, Edit 1 (equal), nothing counted.
    m = segmentation_metrics([[], ["background"] * 3], [[], ["background"] * 3], BG)
    assert m["frame_accuracy"] == 1.0 and m["edit"] == 1.0 and m["f1@50"] == 0.0
    # Predicted segments where there is none: all false positives.
    assert f_counts(list("AAB"), ["background"] * 3, 0.1, BG) == (0, 2, 0)
    # One segment, predicted exactly / missed entirely.
    assert segmentation_metrics([list("BBBB")], [list("AAAA")])["f1@10"] == 0.0
    one = segmentation_metrics([list("AAAA")], [list("AAAA")])
    assert one["edit"] == one["f1@50"] == one["frame_accuracy"] == 1.0
    with pytest.raises(ValueError, match="3 predicted frames for 2"):
        segmentation_metrics([list("AAA")], [list("AA")])


def test_segmentation_metrics_equal_ms_tcn_eval_on_random_videos():
    rng = np.random.default_rng(0)
    labels = np.array(["background", "cut", "mix", "pour"])
    predicted, truth = [], []
    for _ in range(40):
        n = int(rng.integers(1, 60))
        y = np.repeat(labels[rng.integers(0, 4, 8)], rng.integers(1, 12, 8))[:n]
        y[-1] = "cut"  # a segment in every video: the reference divides by zero without one
        p = y.copy()
        flip = rng.random(len(p)) < 0.15
        p[flip] = labels[rng.integers(0, 4, flip.sum())]
        predicted.append(list(p))
        truth.append(list(y))
    mine = segmentation_metrics(predicted, truth, BG)
    edits = [ref_edit(p, y) for p, y in zip(predicted, truth)]
    assert mine["edit"] * 100 == pytest.approx(np.mean(edits))
    for overlap in (0.1, 0.25, 0.5):
        tp, fp, fn = np.sum([ref_f_score(p, y, overlap) for p, y in zip(predicted, truth)], 0)
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        f1 = 2 * precision * recall / (precision + recall)
        assert mine[f"f1@{round(overlap * 100)}"] == pytest.approx(f1)
    correct = sum(a == b for p, y in zip(predicted, truth) for a, b in zip(p, y))
    assert mine["frame_accuracy"] == pytest.approx(correct / sum(map(len, truth)))


# -- multi-label ---------------------------------------------------------------------------


def test_gap_hit_and_map_on_a_hand_made_case():
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.7, 0.6]])
    labels = np.array([[1, 0, 0], [0, 0, 1]])
    # Top 2 per video pooled and ranked: 0.9(+) 0.8(-) 0.7(-) 0.6(+); 2 positives.
    assert gap(scores, labels, top_k=2) == pytest.approx((1 / 1 + 2 / 4) / 2)
    # Top 1: 0.9(+) 0.7(-); the second positive is outside every top 1: AP = 1/2.
    assert gap(scores, labels, top_k=1) == pytest.approx(0.5)
    assert hit_at_one(scores, labels) == 0.5
    # Class 0: 0.9(+) 0.2(-): 1; class 2: 0.6(+) 0.1(-): 1; class 1 has no positive.
    assert mean_average_precision(scores, labels) == 1.0
    assert multilabel_metrics(scores, labels, 20) == {
        "map": 1.0, "gap@20": pytest.approx(0.75), "hit@1": 0.5, "videos": 2,
    }  # fmt: skip
    assert gap(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0  # no positive anywhere


def test_gap_and_map_equal_youtube_8m_eval_util_with_ties():
    rng = np.random.default_rng(1)
    scores = np.round(rng.random((30, 25)), 1)  # rounded: many ties
    labels = (rng.random((30, 25)) < 0.12).astype(int)
    for k in (1, 5, 20):
        assert gap(scores, labels, k) == pytest.approx(ref_gap(scores, labels, k), abs=1e-12)
    aps = [ref_ap_at_n(*ref_heap(scores[:, c].tolist(), labels[:, c].tolist()), labels[:, c].sum())
           for c in range(25) if labels[:, c].any()]  # fmt: skip
    assert mean_average_precision(scores, labels) == pytest.approx(np.mean(aps), abs=1e-12)
