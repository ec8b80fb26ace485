"""Cross-validation of many independent GPs with all folds fitted as one batch.

The members of the batch are (fold, target) pairs. Every fold gets a clone of
the estimator; its transformers (for a :class:`~sklearn.pipeline.Pipeline`),
its target normalisation, its data-driven initial kernel and its restart points
are set up exactly as a standalone ``fit`` on the fold's training rows would
set them up; then the hyperparameters of all folds and all targets are
optimised together by the batched L-BFGS (one line search and one convergence
test per member, so a member's path does not depend on its batch-mates), and
every clone is finished (factorised) on its own fold. The clones are then
ordinary fitted estimators, scored and used for prediction as in
:func:`sklearn.model_selection.cross_validate`.
"""

import numbers
import time
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import FitFailedWarning
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.pipeline import Pipeline
from sklearn.utils import indexable
from sklearn.utils.validation import check_is_fitted

from ._core.gp import loo_from_factor
from ._engine import Engine
from ._regressor import BatchedGaussianProcessRegressor
from ._scoring import observed_r2_score
from ._validation import (
    num_samples,
    safe_indexing,
    to_numpy,
    to_tensor,
)

__all__ = ["batched_cross_validate", "batched_cross_val_predict", "loo_predictive"]

# fit parameters of BatchedGaussianProcessRegressor that CV splits by sample
_FIT_PARAMS = ("noise_variance",)


class _TargetView(RegressorMixin, BaseEstimator):
    """One target of a fitted estimator, as a single-output regressor (per-target scores).

    ``predict(X, **params)`` (``return_std``, ``return_cov``...) predicts all
    targets once per set of params (``cache``, shared by the views of one
    estimator) and returns target ``target``'s column of every output.
    """

    def __init__(self, estimator=None, target=0, cache=None):
        self.estimator = estimator
        self.target = target
        self.cache = cache

    def predict(self, X, **params):
        key = tuple(sorted(params.items()))
        if key not in self.cache:
            self.cache[key] = self.estimator.predict(X, **params)
        out = self.cache[key]
        column = lambda a: np.asarray(a)[..., self.target]  # noqa: E731 - (n, m) or (n, n, m)
        return tuple(column(a) for a in out) if isinstance(out, tuple) else column(out)

    def score(self, X, y, sample_weight=None):
        """R^2 on the rows where ``y`` is observed (the estimator's own score)."""
        return observed_r2_score(y, self.predict(X), sample_weight)


def _final_regressor(estimator):
    """The estimator's BatchedGaussianProcessRegressor (itself or the last step)."""
    last = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    if isinstance(last, BatchedGaussianProcessRegressor):
        _refuse_sparse(last, "The batched cross-validation", "sklearn.model_selection.cross_validate")
        return last
    raise TypeError(
        "estimator must be a BatchedGaussianProcessRegressor or a Pipeline whose last step "
        f"is one; got {type(estimator).__name__}. Use sklearn.model_selection.cross_validate "
        "for other estimators."
    )


def _refuse_sparse(estimator, what, instead):
    """TypeError for a sparse model: ``what`` reads the exact GPs' factors and folds."""
    if not estimator._exact:
        raise TypeError(
            f"{what} takes exact models (BatchedGaussianProcessRegressor); got "
            f"{type(estimator).__name__}. Use {instead} with it instead."
        )


def _check_params(params, n_samples):
    params = {} if params is None else dict(params)
    unknown = sorted(set(params) - set(_FIT_PARAMS))
    if unknown:
        raise ValueError(
            f"Unknown fit parameter(s) {unknown}; the batched cross-validation passes only "
            f"{list(_FIT_PARAMS)} to the regressor's fit (transformers get none)."
        )
    for key, value in params.items():
        if value is not None and num_samples(value) != n_samples:
            raise ValueError(
                f"Fit parameter {key!r} has {num_samples(value)} entries but X has "
                f"{n_samples} samples; pass one value per sample."
            )
    return params


def _split_params(params, indices):
    return {k: (None if v is None else safe_indexing(v, indices)) for k, v in params.items()}


def _fit_transformers(estimator, X, y):
    """Fit the transformers of a Pipeline clone in place; the transformed X."""
    if not isinstance(estimator, Pipeline):
        return X
    for _, step in estimator.steps[:-1]:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        X = step.fit_transform(X, y)
    return X


def _resolve_splits(estimator, X, y, groups, cv):
    X, y, groups = indexable(X, y, groups)
    cv = check_cv(cv, y, classifier=False)
    splits = list(cv.split(X, y, groups))
    if not splits:
        raise ValueError("The cross-validation splitter produced no split.")
    return X, y, splits


_MODES = ("exact", "warm_start", "full_data")


def _check_mode(mode):
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}; got {mode!r}.")
    return mode


def _check_error_score(error_score):
    if isinstance(error_score, str) and error_score == "raise":
        return error_score
    if isinstance(error_score, numbers.Real) and not isinstance(error_score, bool):
        return float(error_score)
    raise ValueError(
        f"error_score must be the string 'raise' or a numeric value; got {error_score!r}."
    )


def _batched_fit(estimator, X, y, splits, params, mode, error_score="raise", n_jobs=None):
    """Fit a clone of ``estimator`` on the training rows of every split, as one batch.

    Returns
    -------
    fitted : list of estimators
        One clone per split, fitted unless ``errors`` says why not.
    fit_times : ndarray of shape (n_splits,)
        Each clone's own preparation and finishing time plus an equal share of
        the batched optimisation (and of the full-data fit in the modes
        ``"warm_start"`` and ``"full_data"``).
    errors : list of Exception or None
        Why each failed fit failed (only with a numeric ``error_score``; with
        ``"raise"`` the first failure is raised).
    """
    reg = _final_regressor(estimator)
    params = _check_params(params, num_samples(X))
    k = len(splits)
    t_shared = 0.0
    warm = full_problem = None
    if mode == "warm_start" and callable(reg.optimizer):
        raise ValueError(
            "mode='warm_start' starts the batched L-BFGS from the full-data optimum; with a "
            "callable optimizer use mode='exact' (the callable in every fold) or 'full_data'."
        )
    if mode != "exact" and reg.optimizer is not None:
        # one fit on all rows; its optimum starts (or is) every fold's
        t0 = time.perf_counter()
        full = clone(estimator)
        Xt_full = _fit_transformers(full, X, y)
        full_reg = _final_regressor(full).fit(Xt_full, y, **params)
        warm = full_reg.gps_.theta
        if mode == "warm_start":
            full_problem = full_reg.prepare_fit(Xt_full, y, **params)
        t_shared += time.perf_counter() - t0

    clones, problems, errors, times = [None] * k, [None] * k, [None] * k, np.zeros(k)

    def guarded(f, step):
        t0 = time.perf_counter()
        try:
            return step()
        except Exception as exc:
            if error_score == "raise":
                raise
            errors[f] = exc
        finally:
            times[f] += time.perf_counter() - t0

    for f, (train, _) in enumerate(splits):
        clones[f] = clone(estimator)  # returned even when its fit fails, as cross_validate does

        def prepare(est=clones[f], train=train):
            y_tr = safe_indexing(y, train)
            Xt_tr = _fit_transformers(est, safe_indexing(X, train), y_tr)
            return _final_regressor(est).prepare_fit(Xt_tr, y_tr, **_split_params(params, train))

        problems[f] = guarded(f, prepare)
    _raise_if_all_failed(errors)
    live = [f for f in range(k) if errors[f] is None]

    t0 = time.perf_counter()
    _check_same_kernel([problems[f] for f in live])
    optima = Engine.of(reg, n_jobs).optimise_folds([problems[f] for f in live], mode, warm,
                                                   full_problem)
    t_shared += time.perf_counter() - t0
    for f, optimum in zip(live, optima):
        guarded(f, lambda f=f, optimum=optimum: _final_regressor(clones[f]).finish_fit(
            problems[f], optimum))
    _raise_if_all_failed(errors)
    return clones, times + t_shared / k, errors


def _raise_if_all_failed(errors):
    if all(e is not None for e in errors):
        raise ValueError(
            f"All the {len(errors)} fits failed; the first failure: {errors[0]!r}. Set "
            "error_score='raise' to see its traceback."
        ) from errors[0]


def _check_same_kernel(problems):
    """Raise unless every fold's problem has the same kernel on the same number of features."""
    shapes = sorted({(p.Xt.shape[1], p.plan.kernel) for p in problems}, key=str)
    if len(shapes) > 1:
        raise ValueError(
            "The folds' transformed inputs differ in their number of features "
            f"({sorted({s[0] for s in shapes})}): the transformers of the pipeline keep "
            "different columns in different folds. The batched cross-validation needs the same "
            "kernel in every fold; use sklearn.model_selection.cross_validate instead."
        )


def _as_score_dict(value):
    return value if isinstance(value, dict) else {"score": value}


def _scores(scorer, est, X, y):
    """Aggregate scores (dict name -> float) and per-target scores (name -> list)."""
    aggregate = _as_score_dict(scorer(est, X, y))
    per_target = {}
    y = np.asarray(y)
    if y.ndim == 2:
        cache = {}
        failed = set(_final_regressor(est).failed_targets_.tolist())
        # a target without an observed test row, or not fitted in this fold (no
        # observed training row), has no score (NaN), not the fold's error
        columns = [_as_score_dict(scorer(_TargetView(est, j, cache), X, y[:, j]))
                   if j not in failed and not np.isnan(np.asarray(y[:, j], dtype=float)).all()
                   else dict.fromkeys(aggregate, np.nan) for j in range(y.shape[1])]
        per_target = {name: [c[name] for c in columns] for name in aggregate}
    return aggregate, per_target


def _metric_names(scoring):
    """The names of ``scoring``'s scores, as ``cross_validate`` names its keys."""
    if isinstance(scoring, dict):
        return list(scoring)
    if isinstance(scoring, (list, tuple, set)):
        return list(scoring)
    return ["score"]


def batched_cross_validate(estimator, X, y, *, groups=None, scoring=None, cv=5, params=None,
                           return_train_score=False, return_estimator=False,
                           return_indices=False, mode="exact", n_jobs=None, error_score=np.nan):
    """Evaluate independent GPs by cross-validation, fitting all folds as one batch.

    The counterpart of :func:`sklearn.model_selection.cross_validate` for a
    :class:`BatchedGaussianProcessRegressor` or a
    :class:`~sklearn.pipeline.Pipeline` ending in one: a clone per fold is
    set up as a standalone fit would set it up (transformers fitted on the
    fold's training rows, the target normalisation, the default kernel's
    data-driven start and the restart points of that fold), then the
    hyperparameters of every (fold, target) pair are optimised as one batch,
    and every clone is scored on its test rows. In the default ``mode="exact"``
    the scores equal those of ``cross_validate`` on the same estimator, fold by
    fold (up to floating-point round-off).

    Parameters
    ----------
    estimator : BatchedGaussianProcessRegressor or Pipeline
        The regressor, or a pipeline of transformers ending in it. Not
        modified.
    X : array-like of shape (n_samples, n_features)
        Inputs.
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Targets; NaN marks a missing observation (skipped in fitting; a scorer
        that rejects NaN fails on a test fold that holds one). A target
        without an observed training row in a fold is not fitted there: its
        per-target scores in that fold are NaN, and the default score (the
        estimator's ``score``) averages the other targets' R^2, with a
        warning naming it; a scorer that rejects NaN predictions fails on
        that fold (``error_score``).
    groups : array-like of shape (n_samples,), default=None
        Group labels for a group splitter such as
        :class:`~sklearn.model_selection.GroupKFold`.
    scoring : str, callable, list, tuple, dict or None, default=None
        As in ``cross_validate``; ``None`` uses the estimator's ``score``
        (:math:`R^2` averaged over the targets).
    cv : int, cross-validation generator or iterable, default=5
        Any scikit-learn splitter (KFold, ShuffleSplit, GroupKFold,
        TimeSeriesSplit, LeaveOneOut, RepeatedKFold, ...) or an iterable of
        (train, test) index arrays; an int means ``KFold(cv)``. Folds may have
        different sizes.
    params : dict, default=None
        Fit parameters of the regressor, split by sample for every fold; only
        ``noise_variance`` (array of shape (n_samples,) or (n_samples, n_targets))
        exists. Pipeline transformers receive no fit parameters.
    return_train_score : bool, default=False
        Also score every clone on its training rows.
    return_estimator : bool, default=False
        Return the fitted clone of every fold.
    return_indices : bool, default=False
        Return the train and test indices of every split.
    mode : {"exact", "warm_start", "full_data"}, default="exact"
        How the hyperparameters of every fold are found.

        - ``"exact"``: every fold starts where a standalone fit on its
          training rows would start, restarts included, and is optimised to
          convergence; the results equal ``cross_validate``'s.
        - ``"warm_start"``: one fit on all rows first, then every fold is
          optimised to convergence from those hyperparameters, without
          restarts, its L-BFGS starting with the full-data Hessian there as
          curvature. Fewer iterations; a fold can end in another local optimum
          than a cold start, and its starting point has seen the test rows.
        - ``"full_data"``: one fit on all rows, and every fold keeps those
          hyperparameters (no optimisation per fold; the fold's model is
          conditioned on its training rows only). Cheapest; the
          hyperparameters were chosen with the test rows, so the scores are
          optimistic, as in closed-form leave-one-out (:func:`loo_predictive`).

        See the "Cross-validation" page of the documentation for measured
        speed and scores.
    n_jobs : int or None, default=None
        As in ``cross_validate``: joblib workers that share the work. The
        (fold, target) pairs are split by target, every worker optimising all
        folds of its targets, with the same results; a batch of fewer than
        ``2**29`` numbers (pairs x starts x n_samples**2) stays in this
        process, as in the regressor's ``fit``, since one process already
        uses every core.
    error_score : "raise" or numeric, default=np.nan
        As in ``cross_validate``: the score of a split whose fit (or scoring)
        fails, with a :class:`~sklearn.exceptions.FitFailedWarning` (a
        ``UserWarning`` for scoring) that says why; ``"raise"`` raises the
        error instead. If every fit fails, a ``ValueError`` says so.

    Returns
    -------
    scores : dict of ndarray
        As ``cross_validate``: ``fit_time``, ``score_time`` and
        ``test_<name>`` (``test_score`` for a single metric) of shape
        (n_splits,); ``train_<name>`` with ``return_train_score``;
        ``estimator`` and ``indices`` on request. For a 2-D ``y`` also
        ``test_<name>_per_target`` (and ``train_<name>_per_target``) of shape
        (n_splits, n_targets): the scorer applied to each target column
        (through a stand-in regressor whose ``predict`` returns that column
        of the fold's predictions, so scorers must use ``predict``). The
        fit time of a fold is its own set-up and factorisation time plus an
        equal share of the batched optimisation.

    See Also
    --------
    batched_cross_val_predict : Cross-validated predictions.
    loo_predictive : Closed-form leave-one-out with fixed hyperparameters.
    sklearn.model_selection.cross_validate : One fit per fold.

    Examples
    --------
    >>> import numpy as np
    >>> from skbgp import BatchedGaussianProcessRegressor, batched_cross_validate
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(0, 5, size=(40, 2))
    >>> y = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1])])
    >>> cv = batched_cross_validate(BatchedGaussianProcessRegressor(random_state=0), X, y, cv=4)
    >>> cv["test_score"].shape, cv["test_score_per_target"].shape
    ((4,), (4, 2))
    """
    mode = _check_mode(mode)
    error_score = _check_error_score(error_score)
    X, y, splits = _resolve_splits(estimator, X, y, groups, cv)
    scorer = check_scoring(estimator, scoring)
    fitted, fit_times, errors = _batched_fit(estimator, X, y, splits, params, mode, error_score,
                                             n_jobs)

    k = len(splits)
    results = {"fit_time": fit_times, "score_time": np.zeros(k)}
    collected = {}  # name -> {fold: score}
    for f, ((train, test), est) in enumerate(zip(splits, fitted)):
        if errors[f] is not None:
            continue
        t0 = time.perf_counter()
        parts = [("test", test)] + ([("train", train)] if return_train_score else [])
        for prefix, rows in parts:
            try:
                agg, per_target = _scores(scorer, est, safe_indexing(X, rows),
                                          safe_indexing(y, rows))
            except Exception as exc:
                if error_score == "raise":
                    raise
                warnings.warn(
                    f"Scoring failed on split {f} ({exc!r}); its {prefix} scores are set to "
                    f"{error_score}. Set error_score='raise' to see the traceback.", UserWarning)
                continue
            for name, value in agg.items():
                collected.setdefault(f"{prefix}_{name}", {})[f] = value
            for name, value in per_target.items():
                collected.setdefault(f"{prefix}_{name}_per_target", {})[f] = value
            if prefix == "test":
                results["score_time"][f] = time.perf_counter() - t0
    n_targets = y.shape[1] if np.ndim(y) == 2 else 0
    for prefix in ["test"] + (["train"] if return_train_score else []):
        # every key exists even when no split could be scored: all error_score
        for name in _metric_names(scoring):
            collected.setdefault(f"{prefix}_{name}", {})
            if n_targets:
                collected.setdefault(f"{prefix}_{name}_per_target", {})
    for key, values in collected.items():
        missing = np.full(n_targets, error_score) if key.endswith("_per_target") else error_score
        results[key] = np.asarray([values.get(f, missing) for f in range(k)], dtype=float)
    failed = [f for f in range(k) if errors[f] is not None]
    if failed:
        details = "\n".join(f"split {f}: {errors[f]!r}" for f in failed)
        warnings.warn(
            f"{len(failed)} fits failed out of a total of {k}. The score on these train-test "
            f"partitions is set to {error_score}. If these failures are not expected, set "
            f"error_score='raise' to see them.\n{details}", FitFailedWarning)
    if return_estimator:
        results["estimator"] = fitted
    if return_indices:
        results["indices"] = {"train": [s[0] for s in splits], "test": [s[1] for s in splits]}
    return results


def batched_cross_val_predict(estimator, X, y, *, groups=None, cv=5, params=None,
                              return_std=False, mode="exact", n_jobs=None):
    """Cross-validated predictions of independent GPs, all folds fitted as one batch.

    The counterpart of :func:`sklearn.model_selection.cross_val_predict`:
    every sample is predicted by the clone fitted on the folds that do not
    contain it. The clones are fitted as in :func:`batched_cross_validate`.

    Parameters
    ----------
    estimator : BatchedGaussianProcessRegressor or Pipeline
        The regressor, or a pipeline of transformers ending in it.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
    groups : array-like of shape (n_samples,), default=None
        Group labels for a group splitter.
    cv : int, cross-validation generator or iterable, default=5
        A splitter whose test sets partition the samples (KFold, GroupKFold,
        LeaveOneOut, ...); an int means ``KFold(cv)``.
    params : dict, default=None
        Fit parameters of the regressor (``noise_variance``), split by sample.
    return_std : bool, default=False
        Also return the predictive standard deviation of every prediction.
    mode : {"exact", "warm_start", "full_data"}, default="exact"
        How the folds' hyperparameters are found; see
        :func:`batched_cross_validate`.
    n_jobs : int or None, default=None
        Workers that share the batch; see :func:`batched_cross_validate`.

    Returns
    -------
    predictions : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Shaped like the estimator's ``predict`` output.
    std : ndarray, same shape as ``predictions``
        Only with ``return_std=True``.

    Raises
    ------
    ValueError
        When the test sets do not partition the samples (ShuffleSplit,
        RepeatedKFold, TimeSeriesSplit); use :func:`batched_cross_validate`.

    Examples
    --------
    >>> import numpy as np
    >>> from skbgp import BatchedGaussianProcessRegressor, batched_cross_val_predict
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(0, 5, size=(40, 2))
    >>> y = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1])])
    >>> gpr = BatchedGaussianProcessRegressor(random_state=0)
    >>> pred, std = batched_cross_val_predict(gpr, X, y, cv=4, return_std=True)
    >>> pred.shape, std.shape
    ((40, 2), (40, 2))
    """
    mode = _check_mode(mode)
    X, y, splits = _resolve_splits(estimator, X, y, groups, cv)
    n_samples = num_samples(X)
    test_rows = np.concatenate([test for _, test in splits])
    partition = np.array_equal(np.sort(test_rows), np.arange(n_samples))
    if not partition:
        raise ValueError(
            "batched_cross_val_predict only works for partitions: every sample must be in "
            "exactly one test set (use KFold, GroupKFold or LeaveOneOut, or "
            "batched_cross_validate for other splitters)."
        )
    fitted, _, _ = _batched_fit(estimator, X, y, splits, params, mode, n_jobs=n_jobs)
    mean = std = None
    for (_, test), est in zip(splits, fitted):
        out = est.predict(safe_indexing(X, test), return_std=return_std)
        mu, sd = out if return_std else (out, None)
        if mean is None:
            mean = np.empty((n_samples,) + mu.shape[1:])
            std = np.empty_like(mean) if return_std else None
        mean[test] = mu
        if return_std:
            std[test] = sd
    return (mean, std) if return_std else mean


def loo_predictive(estimator):
    """Closed-form leave-one-out predictions of a fitted regressor, every target.

    With the fitted hyperparameters held fixed, the prediction of every
    training point from all the others follows from one factorisation per
    target (Rasmussen & Williams, section 5.4.2): no refit. For an observed
    point, the mean and variance are those of the held-out *observation*
    (the variance includes the noise level and ``alpha``) and the log density
    is that of the observed value under them. For a missing observation of a
    target, the mean and variance are the ordinary prediction from all of that
    target's observations (the variance again including noise and ``alpha``)
    and the log density is NaN; its known noise is the ``noise_variance``
    given to ``fit`` at that entry, per sample or per sample and target alike
    (none where that entry is NaN). With ``normalize_y=True`` the normalisation
    fitted on all points is held fixed as well.

    Parameters
    ----------
    estimator : BatchedGaussianProcessRegressor
        A fitted regressor.

    Returns
    -------
    mean : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Leave-one-out predictive mean of every training point.
    variance : ndarray, same shape as ``mean``
        Leave-one-out predictive variance.
    log_density : ndarray, same shape as ``mean``
        Log predictive density of every observed value (NaN where missing).
        Its sum over the samples is the leave-one-out log pseudo-likelihood
        (R&W eq. 5.11).

    References
    ----------
    .. [RW2006] C. E. Rasmussen and C. K. I. Williams, "Gaussian Processes for
       Machine Learning", MIT Press, 2006, section 5.4.2.

    Examples
    --------
    >>> import numpy as np
    >>> from skbgp import BatchedGaussianProcessRegressor, loo_predictive
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(0, 5, size=(30, 2))
    >>> y = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1])])
    >>> gpr = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
    >>> mean, variance, log_density = loo_predictive(gpr)
    >>> mean.shape, float(log_density.sum()) > 0
    ((30, 2), True)
    """
    if not isinstance(estimator, BatchedGaussianProcessRegressor):
        raise TypeError(
            "loo_predictive needs a fitted BatchedGaussianProcessRegressor; for a Pipeline "
            f"pass its last step. Got {type(estimator).__name__}."
        )
    _refuse_sparse(estimator, "loo_predictive", "sklearn.model_selection.cross_val_predict")
    check_is_fitted(estimator, "gps_")
    gps = estimator.gps_
    observed, std_y, mean_y = gps.observed, gps.y_std, gps.y_mean
    y_n = gps.standardize(np.asarray(estimator.y_train_).reshape(observed.shape))
    t = gps.tensors()
    with torch.no_grad():
        y = to_tensor(y_n.T, t.X.dtype, t.X.device)
        mu, var, logp = loo_from_factor(gps.factors(), t.dual, y, t.mask)
    mean = to_numpy(mu).T * std_y + mean_y  # (n_samples, n_targets)
    variance = to_numpy(var).T * std_y**2
    log_density = to_numpy(logp).T - np.log(std_y)
    rows = np.flatnonzero(~observed.all(axis=1))
    if rows.size:
        # missing observations: the ordinary prediction from all observed points
        pm, ps = estimator.predict(estimator.X_train_[rows], return_std=True)
        pm, ps = pm.reshape(rows.size, -1), ps.reshape(rows.size, -1)
        # a new observation's alpha and known noise, also where the entry is missing
        alpha = np.asarray(gps.alpha_everywhere, dtype=float)
        if alpha.ndim == 1:
            alpha = alpha[:, None]  # per sample: the same for every target
        alpha = np.broadcast_to(alpha, observed.shape)[rows]
        miss = ~observed[rows]
        mean[rows] = np.where(miss, pm, mean[rows])
        variance[rows] = np.where(miss, ps**2 + alpha * std_y**2, variance[rows])
    if np.ndim(estimator.y_train_) == 1 or observed.shape[1] == 1:
        return mean[:, 0], variance[:, 0], log_density[:, 0]
    return mean, variance, log_density
