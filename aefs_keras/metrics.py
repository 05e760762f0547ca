"""Exact evaluation metrics on numpy arrays (no streaming approximation).

Keras' `AUC` metric sums a 200-threshold histogram; reports and early
stopping here use these exact values on the held-out rows.
"""

from __future__ import annotations

import numpy as np


def auc_score(labels, scores) -> float:
    """ROC AUC by the rank-sum formula; tied scores get average ranks.

    Example:

    >>> auc_score([0, 1, 0, 1], [0.1, 0.9, 0.4, 0.4])  # (1 + 0.75) / 2
    0.875
    """
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores, dtype="float64").ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"`labels` and `scores` must have the same length. Received: {labels.size} "
                         f"labels, {scores.size} scores")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average ranks over ties
    pos = labels.sum()
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        raise ValueError("AUC needs both classes in `labels`.")
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def log_loss(labels, probabilities, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps].

    Example:

    >>> round(log_loss([1, 0], [0.5, 0.5]), 4)
    0.6931
    """
    y = np.asarray(labels, dtype="float64").ravel()
    p = np.clip(np.asarray(probabilities, dtype="float64").ravel(), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
