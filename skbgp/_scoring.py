"""Scores of several targets with missing values and targets that could not be fitted."""

import warnings

import numpy as np
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_array

from ._fitted import format_targets
from ._validation import check_sample_weight

__all__ = ["observed_r2_score", "per_target_r2"]


def per_target_r2(y_true, y_pred, sample_weight=None):
    """R^2 of every target on the rows where it is observed (not NaN).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_targets)
        NaN marks a missing value.
    y_pred : array-like of the same shape
        NaN in a column (a target that could not be fitted) gives that
        target a NaN score.
    sample_weight : array-like of shape (n_samples,), default=None

    Returns
    -------
    scores : ndarray of shape (n_targets,)
        scikit-learn's ``r2_score`` of each target on its observed rows; NaN
        for a target without an observed row or with a NaN prediction there.
    unfitted : ndarray of int
        The targets with a NaN prediction at an observed row.
    observed : ndarray of shape (n_targets,), bool
        The targets with at least one observed row.
    """
    Y = check_array(y_true, ensure_2d=False, ensure_all_finite="allow-nan", input_name="y")
    P = np.asarray(y_pred, dtype=float)
    # (n, 1) against (n,): a single target's predictions are 1-D, as scikit-learn's
    Y, P = Y.reshape(Y.shape[0], -1), P.reshape(P.shape[0], -1)
    if P.shape != Y.shape:
        raise ValueError(f"y has shape {Y.shape} but the predictions have shape {P.shape}.")
    if sample_weight is not None:
        sample_weight = check_sample_weight(sample_weight, Y)
    scores = np.full(Y.shape[1], np.nan)
    unfitted = []
    observed = ~np.isnan(Y).all(axis=0)
    for t in np.flatnonzero(observed):
        rows = ~np.isnan(Y[:, t])
        if np.isnan(P[rows, t]).any():
            unfitted.append(t)
            continue
        weight = None if sample_weight is None else sample_weight[rows]
        scores[t] = r2_score(Y[rows, t], P[rows, t], sample_weight=weight)
    return scores, np.asarray(unfitted, dtype=int), observed


def observed_r2_score(y_true, y_pred, sample_weight=None):
    """R^2 of every target on the rows where it is observed (not NaN), averaged over targets.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_targets)
        NaN marks a missing value.
    y_pred : array-like of the same shape
        NaN in a column marks a target that could not be fitted.
    sample_weight : array-like of shape (n_samples,), default=None

    Returns
    -------
    float
        ``r2_score`` of each target on its observed rows, uniformly averaged
        over the targets that have a score (as scikit-learn's
        ``multioutput="uniform_average"`` over those columns). A target with
        no observed row is left out silently; a target whose prediction is
        NaN (one that could not be fitted) is left out with a
        ``UserWarning`` naming it. NaN when no target has a score (with that
        warning); a ``y`` with no observed value is an error.
    """
    scores, unfitted, observed = per_target_r2(y_true, y_pred, sample_weight)
    if not observed.any():
        raise ValueError("y has no observed value (all NaN); there is nothing to score.")
    scored = scores[observed & ~np.isin(np.arange(scores.size), unfitted)]
    if unfitted.size:
        warnings.warn(
            f"Target(s) {format_targets(unfitted)} could not be fitted (their predictions are "
            f"NaN): their R^2 is NaN, and the score is the mean R^2 of the {scored.size} "
            "other target(s) with observed values.",
            UserWarning,
        )
    return float(np.mean(scored)) if scored.size else float("nan")
