"""Scores of several targets with missing values."""

import numpy as np
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_array

from ._validation import check_sample_weight

__all__ = ["observed_r2_score"]


def observed_r2_score(y_true, y_pred, sample_weight=None):
    """R^2 of every target on the rows where it is observed (not NaN), averaged over targets.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_targets)
        NaN marks a missing value.
    y_pred : array-like of the same shape
    sample_weight : array-like of shape (n_samples,), default=None

    Returns
    -------
    float
        ``r2_score`` of each target on its observed rows, uniformly averaged
        over the targets with at least one observed row.
    """
    Y = check_array(y_true, ensure_2d=False, ensure_all_finite="allow-nan", input_name="y")
    P = np.asarray(y_pred, dtype=float)
    # (n, 1) against (n,): a single target's predictions are 1-D, as scikit-learn's
    Y, P = Y.reshape(Y.shape[0], -1), P.reshape(P.shape[0], -1)
    if P.shape != Y.shape:
        raise ValueError(f"y has shape {Y.shape} but the predictions have shape {P.shape}.")
    if sample_weight is not None:
        sample_weight = check_sample_weight(sample_weight, Y)
    scores = []
    for t in range(Y.shape[1]):
        rows = ~np.isnan(Y[:, t])
        if rows.any():
            weight = None if sample_weight is None else sample_weight[rows]
            scores.append(r2_score(Y[rows, t], P[rows, t], sample_weight=weight))
    if not scores:
        raise ValueError("y has no observed value (all NaN); there is nothing to score.")
    return float(np.mean(scores))
