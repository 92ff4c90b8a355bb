"""Rank-based ROC AUC in numpy (the Mann-Whitney U statistic, ties counted half)."""

from __future__ import annotations

import numpy as np


def roc_auc(scores, positive) -> float:
    """Probability that a random positive scores above a random negative.

    Parameters
    ----------
    scores : array-like of float
    positive : array-like of bool

    Raises
    ------
    ValueError
        When there are no positives or no negatives.
    """
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs positives and negatives (got {n_pos} and {n_neg})")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # average ranks (1-based) over runs of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
