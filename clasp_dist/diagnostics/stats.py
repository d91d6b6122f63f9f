"""Ranking statistics of the diagnostics: ROC-AUC, non-interpolated AP, class-mean AP."""

from __future__ import annotations

import numpy as np


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U); NaN if a side is empty."""
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if positive.size == 0 or negative.size == 0:
        return float("nan")
    scores = np.concatenate([positive, negative])
    order = np.argsort(scores, kind="stable")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based ranks, averaged over ties
    u = ranks[: positive.size].sum() - positive.size * (positive.size + 1) / 2.0
    return float(u / (positive.size * negative.size))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Non-interpolated AP (mean precision at each positive, ranked by score); NaN without positives."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    hits = labels[np.argsort(-scores, kind="stable")]
    precision_at = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision_at[hits].sum() / n_pos)


def class_mean_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes with at least one positive of the AP of scores [N, C] against labels [N, C]."""
    aps = [average_precision(scores[:, c], labels[:, c]) for c in range(labels.shape[1]) if labels[:, c].any()]
    return float(np.mean(aps)) if aps else float("nan")
