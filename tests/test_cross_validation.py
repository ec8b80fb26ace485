"""Batched cross-validation against scikit-learn's cross_validate / cross_val_predict,
closed-form LOO against explicit refits, per-sample noise against sklearn's alpha array."""

import warnings

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal
from scipy.stats import norm
from sklearn.base import clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning, NotFittedError
from sklearn.feature_selection import VarianceThreshold
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    LeaveOneOut,
    RepeatedKFold,
    ShuffleSplit,
    TimeSeriesSplit,
    cross_val_predict,
    cross_validate,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import skbgp._engine
from skbgp import (
    BatchedGaussianProcessRegressor,
    batched_cross_val_predict,
    batched_cross_validate,
    loo_predictive,
)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data(n=43, seed=1):
    """X (n, 3) on unequal scales, y (n, 3); n=43 makes 5 folds unequal."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(0, 1, size=(n, 3)) * np.array([1.0, 3.0, 0.5])
    y = np.column_stack([
        np.sin(4 * X[:, 0]) + 0.1 * rng.randn(n),
        np.cos(X[:, 1]) * X[:, 2] + 0.05 * rng.randn(n),
        10 * (X[:, 0] ** 2 - X[:, 2]) + 0.2 * rng.randn(n) + 3.0,
    ])
    return X, y


def _assert_same_predictions(actual, desired, y):
    """rtol 1e-8, and atol 1e-10 in units of each target's spread (for values near 0).

    Every fold of the batch is evaluated on its own rows with the arithmetic
    of a fit on that fold alone, so both fits take the same path: the
    tolerance is for rounding, not for two stopping points of one optimum.
    """
    scale = np.nanstd(y, axis=0)
    assert_allclose(actual / scale, desired / scale, rtol=1e-8, atol=1e-10)


def _assert_same_optimum(ours, ref):
    """Both fits reach the same optimum of their objective per target (rtol 1e-8).

    The objective is the log marginal likelihood plus the log prior (the
    default kernel's length-scale prior): at a MAP estimate the likelihood
    alone is not stationary, so it moves at first order with the stopping point.
    """
    a, b = (e[-1] if isinstance(e, Pipeline) else e for e in (ours, ref))
    assert_allclose(a.log_marginal_likelihood_value_ + a.log_prior_value_,
                    b.log_marginal_likelihood_value_ + b.log_prior_value_, rtol=1e-8)


def _plain():
    return BatchedGaussianProcessRegressor(random_state=0)


def _pipeline():
    gpr = BatchedGaussianProcessRegressor(random_state=0, normalize_y=True)
    return make_pipeline(StandardScaler(), gpr)


def _sklearn_kernel():
    return BatchedGaussianProcessRegressor(
        ConstantKernel(1.0) * Matern(np.ones(3), nu=2.5) + WhiteKernel(0.1), random_state=3,
        n_restarts_optimizer=1,
    )


ESTIMATORS = {"plain": _plain, "pipeline": _pipeline, "sklearn_kernel": _sklearn_kernel}
GROUPS = np.arange(43) % 7


def _splitters():
    return {
        "kfold_equal": (KFold(5), 40, None),
        "kfold_unequal": (KFold(5), 43, None),
        "kfold_shuffled": (KFold(4, shuffle=True, random_state=0), 43, None),
        "group_kfold": (GroupKFold(4), 43, GROUPS),
    }


# --------------------------------------------------------------------------- oracle: cross_validate
@pytest.mark.parametrize("est_name", list(ESTIMATORS))
@pytest.mark.parametrize("split_name", list(_splitters()))
@pytest.mark.slow
def test_equals_sklearn_cross_validate_fold_by_fold(est_name, split_name):
    cv, n, groups = _splitters()[split_name]
    X, y = _data(n)
    est = ESTIMATORS[est_name]()
    ours = batched_cross_validate(est, X, y, cv=cv, groups=groups, return_train_score=True,
                                  return_estimator=True)
    ref = cross_validate(est, X, y, cv=cv, groups=groups, return_train_score=True,
                         return_estimator=True, return_indices=True)
    assert_allclose(ours["test_score"], ref["test_score"], rtol=1e-10)
    assert_allclose(ours["train_score"], ref["train_score"], rtol=1e-10)
    assert ours["fit_time"].shape == ours["score_time"].shape == ref["test_score"].shape
    for f, (e_ours, e_ref, test) in enumerate(zip(ours["estimator"], ref["estimator"],
                                                 ref["indices"]["test"])):
        per_target = r2_score(y[test], e_ref.predict(X[test]), multioutput="raw_values")
        assert_allclose(ours["test_score_per_target"][f], per_target, rtol=1e-6)
        _assert_same_optimum(e_ours, e_ref)
        _assert_same_predictions(e_ours.predict(X[test]), e_ref.predict(X[test]), y)
    # the estimator passed in is left unfitted (its predict would use the prior)
    reg = est.steps[-1][1] if isinstance(est, Pipeline) else est
    assert not hasattr(reg, "gps_") and not hasattr(reg, "n_features_in_")
    with pytest.raises(NotFittedError):
        reg.L_


@pytest.mark.parametrize("cv", [ShuffleSplit(4, test_size=0.3, random_state=0), TimeSeriesSplit(4),
                                LeaveOneOut(),
                                RepeatedKFold(n_splits=3, n_repeats=2, random_state=0)],
                         ids=["shuffle_split", "time_series", "leave_one_out", "repeated_kfold"])
@pytest.mark.slow
def test_other_splitters_equal_cross_validate(cv):
    X, y = _data(18)
    est = BatchedGaussianProcessRegressor(n_restarts_optimizer=1, random_state=0)
    scoring = "neg_mean_squared_error"  # R^2 is undefined on one test point
    ours = batched_cross_validate(est, X, y, cv=cv, scoring=scoring)
    ref = cross_validate(est, X, y, cv=cv, scoring=scoring)
    assert_allclose(ours["test_score"], ref["test_score"], rtol=1e-6)


@pytest.mark.slow
def test_fixed_hyperparameters_equal_cross_validate():
    X, y = _data(43)
    kernel = ConstantKernel(1.5) * RBF([0.5, 1.0, 0.3]) + WhiteKernel(0.01)
    est = BatchedGaussianProcessRegressor(kernel, optimizer=None, normalize_y=True)
    for mode in ("exact", "warm_start", "full_data"):  # nothing to optimise: all the same
        ours = batched_cross_validate(est, X, y, cv=KFold(5), mode=mode)
        ref = cross_validate(est, X, y, cv=KFold(5))
        assert_allclose(ours["test_score"], ref["test_score"], rtol=1e-10)


@pytest.mark.slow
def test_iterable_of_index_pairs_and_multimetric_scoring():
    X, y = _data(30)
    splits = [(np.arange(0, 20), np.arange(20, 30)), (np.arange(5, 30), np.arange(0, 5)),
              (np.arange(0, 30, 2), np.arange(1, 30, 2))]
    scoring = {"r2": "r2", "mse": "neg_mean_squared_error"}
    ours = batched_cross_validate(_plain(), X, y, cv=splits, scoring=scoring, return_indices=True)
    ref = cross_validate(_plain(), X, y, cv=splits, scoring=scoring)
    for key in ("test_r2", "test_mse"):
        assert_allclose(ours[key], ref[key], rtol=1e-6)
    assert ours["test_mse_per_target"].shape == (3, 3)
    assert_allclose(ours["test_mse_per_target"].mean(axis=1), ours["test_mse"], rtol=1e-10)
    assert_allclose(ours["indices"]["test"][1], np.arange(0, 5))


@pytest.mark.slow
def test_single_target_has_no_per_target_scores():
    X, y = _data(30)
    ours = batched_cross_validate(_plain(), X, y[:, 0], cv=3)
    ref = cross_validate(_plain(), X, y[:, 0], cv=3)
    assert_allclose(ours["test_score"], ref["test_score"], rtol=1e-6)
    assert "test_score_per_target" not in ours


@pytest.mark.slow
def test_missing_values_are_masked_per_fold():
    X, y = _data(40)
    y[::6, 1] = np.nan
    y[3::9, 0] = np.nan
    splits = list(KFold(4).split(X))
    est = _plain()
    pred = batched_cross_val_predict(est, X, y, cv=splits)
    for train, test in splits:
        # oracle: the same estimator fitted on the fold's training rows alone
        ref = BatchedGaussianProcessRegressor(random_state=0).fit(X[train], y[train])
        _assert_same_predictions(pred[test], ref.predict(X[test]), y)


def _r2_on_observed(y, pred):
    """numpy's R^2 of every column on its non-NaN rows, averaged: the oracle of NaN-aware scores."""
    scores = []
    for t in range(y.shape[1]):
        rows = ~np.isnan(y[:, t])
        resid = np.sum((y[rows, t] - pred[rows, t]) ** 2)
        scores.append(1.0 - resid / np.sum((y[rows, t] - y[rows, t].mean()) ** 2))
    return np.mean(scores), scores


@pytest.mark.slow
def test_targets_with_missing_values_are_scored_on_their_observed_rows():
    X, y = _data(45)
    y[::4, 1] = np.nan
    y[1::7, 2] = np.nan
    splits = list(KFold(3).split(X))
    est = BatchedGaussianProcessRegressor(random_state=0, n_restarts_optimizer=0)
    batched = batched_cross_validate(est, X, y, cv=splits)
    looped = cross_validate(est, X, y, cv=splits)
    search = GridSearchCV(est, {"alpha": [1e-10]}, cv=splits).fit(X, y)
    for f, (train, test) in enumerate(splits):
        pred = clone(est).fit(X[train], y[train]).predict(X[test])
        mean, per_target = _r2_on_observed(y[test], pred)
        assert_allclose(batched["test_score"][f], mean, rtol=1e-6)
        assert_allclose(batched["test_score_per_target"][f], per_target, rtol=1e-6)
        assert_allclose(looped["test_score"][f], mean, rtol=1e-6)
        assert_allclose(search.cv_results_[f"split{f}_test_score"][0], mean, rtol=1e-6)


@pytest.mark.parametrize("mode", ["exact", "warm_start"])
@pytest.mark.slow
def test_workers_split_the_targets_and_change_nothing(mode, monkeypatch):
    monkeypatch.setattr(skbgp._engine, "MIN_WORKER_WORK", 0)  # workers even for this small batch
    X, y = _data(40)
    est = BatchedGaussianProcessRegressor(random_state=0, n_restarts_optimizer=1)
    one = batched_cross_validate(est, X, y, cv=KFold(4), mode=mode, return_estimator=True)
    two = batched_cross_validate(est, X, y, cv=KFold(4), mode=mode, return_estimator=True,
                                 n_jobs=2)
    assert_allclose(two["test_score_per_target"], one["test_score_per_target"], rtol=1e-8)
    for a, b in zip(two["estimator"], one["estimator"]):
        _assert_same_optimum(a, b)
        assert_allclose(a.theta_, b.theta_, rtol=1e-6, atol=1e-8)
    pred = batched_cross_val_predict(est, X, y, cv=KFold(4), mode=mode, n_jobs=2)
    assert_allclose(pred, batched_cross_val_predict(est, X, y, cv=KFold(4), mode=mode), rtol=1e-8)


def _fails_on(n_rows):
    """A transformer whose fit fails on exactly ``n_rows`` rows (one fold's training set)."""

    def check(X):
        if X.shape[0] == n_rows:
            raise ValueError("this fold cannot be fitted")
        return X

    return FunctionTransformer(check)


@pytest.mark.slow
def test_a_failed_fold_gets_error_score_as_in_cross_validate():
    X, y = _data(31)  # KFold(3): training sets of 20, 21 and 21 rows
    est = make_pipeline(_fails_on(20), BatchedGaussianProcessRegressor(random_state=0))
    with pytest.warns(FitFailedWarning, match="1 fits failed out of a total of 3"):
        ours = batched_cross_validate(est, X, y, cv=KFold(3), error_score=-7.0,
                                      return_estimator=True)
    assert not hasattr(ours["estimator"][0][-1], "gps_")  # the failed fold's clone, unfitted
    assert hasattr(ours["estimator"][1][-1], "gps_")
    with pytest.warns(FitFailedWarning):
        ref = cross_validate(est, X, y, cv=KFold(3), error_score=-7.0)
    assert_allclose(ours["test_score"], ref["test_score"], rtol=1e-6)
    assert ours["test_score"][0] == -7.0
    assert_array_equal(ours["test_score_per_target"][0], [-7.0] * 3)
    with pytest.raises(ValueError, match="this fold cannot be fitted"):
        batched_cross_validate(est, X, y, cv=KFold(3), error_score="raise")
    with pytest.raises(ValueError, match="All the 3 fits failed"):
        batched_cross_validate(make_pipeline(_fails_on(20), _fails_on(21), _plain()), X, y,
                               cv=KFold(3))
    with pytest.raises(ValueError, match="error_score must be"):
        batched_cross_validate(est, X, y, cv=KFold(3), error_score="nan")

    def failing(obj_func, initial_theta, bounds):
        raise RuntimeError("no optimum here")

    with pytest.raises(ValueError, match="All the 3 fits failed"):  # failing in finish_fit
        batched_cross_validate(BatchedGaussianProcessRegressor(optimizer=failing), X, y, cv=KFold(3))

    def broken_scorer(estimator, X, y):
        raise RuntimeError("cannot score")

    with pytest.warns(UserWarning, match="Scoring failed"):
        scores = batched_cross_validate(_plain(), X, y, cv=KFold(3), scoring=broken_scorer,
                                        error_score=-1.0)
    assert_array_equal(scores["test_score"], [-1.0] * 3)  # the keys exist, every split failed
    assert_array_equal(scores["test_score_per_target"], -np.ones((3, 3)))


def test_a_target_without_observed_test_rows_has_no_score_but_the_fold_has():
    X, y = _data(30)
    y[:10, 1] = np.nan  # target 1 has no observed row in the first fold's test rows
    splits = list(KFold(3).split(X))
    scores = batched_cross_validate(_plain(), X, y, cv=splits, return_estimator=True)
    train, test = splits[0]
    assert np.isnan(scores["test_score_per_target"][0, 1])
    assert np.isfinite(scores["test_score_per_target"][0, [0, 2]]).all()
    mean, _ = _r2_on_observed(y[test][:, [0, 2]], scores["estimator"][0].predict(X[test])[:, [0, 2]])
    assert_allclose(scores["test_score"][0], mean, rtol=1e-10)


# ------------------------------------------------------------------ oracle: cross_val_predict
@pytest.mark.parametrize("est_name", ["plain", "pipeline"])
@pytest.mark.parametrize("split_name", ["kfold_equal", "kfold_unequal", "group_kfold"])
@pytest.mark.slow
def test_equals_sklearn_cross_val_predict(est_name, split_name):
    cv, n, groups = _splitters()[split_name]
    X, y = _data(n)
    est = ESTIMATORS[est_name]()
    ours, std = batched_cross_val_predict(est, X, y, cv=cv, groups=groups, return_std=True)
    ref = cross_val_predict(est, X, y, cv=cv, groups=groups)
    _assert_same_predictions(ours, ref, y)
    ref_std = np.empty_like(ref)
    for train, test in cv.split(X, y, groups):
        fitted = ESTIMATORS[est_name]().fit(X[train], y[train])
        ref_std[test] = fitted.predict(X[test], return_std=True)[1]
    _assert_same_predictions(std, ref_std, y)
    assert_allclose(batched_cross_val_predict(est, X, y, cv=cv, groups=groups), ours, rtol=1e-12)


def test_cross_val_predict_needs_a_partition():
    X, y = _data(20)
    with pytest.raises(ValueError, match="only works for partitions"):
        batched_cross_val_predict(_plain(), X, y, cv=ShuffleSplit(3, random_state=0))


# --------------------------------------------------------------------------- warm start
@pytest.mark.slow
def test_warm_start_folds_are_optima_at_least_as_good_as_standalone_fits_from_there():
    X, y = _data(43)
    est = _sklearn_kernel()
    full = clone(est).fit(X, y)
    ours = batched_cross_validate(est, X, y, cv=KFold(5), mode="warm_start", return_estimator=True)
    bounds = est.kernel.bounds  # log-transformed, as theta
    for f, (train, test) in enumerate(KFold(5).split(X)):
        fold = ours["estimator"][f]
        for t in range(y.shape[1]):
            theta = fold.theta_[t]
            # oracle 1: sklearn's likelihood gradient on the fold at the fold's values
            # vanishes (projected on the bounds); the optimiser may stop by scipy's
            # relative-decrease rule (ftol), which leaves gradients of order 1e-4
            # along flat directions (length scales of irrelevant features)
            ref = GaussianProcessRegressor(est.kernel.clone_with_theta(theta), optimizer=None)
            ref.fit(X[train], y[train, t])
            lml, grad = ref.log_marginal_likelihood(theta, eval_gradient=True)
            step = np.clip(theta + grad, bounds[:, 0], bounds[:, 1]) - theta
            assert np.abs(step).max() <= 1e-3
            assert_allclose(fold.log_marginal_likelihood_value_[t], lml, rtol=1e-9)
            # oracle 2: a standalone fit from the full-data values (no restarts) ends
            # no higher (it may end in the same optimum or a worse one)
            kernel = est.kernel.clone_with_theta(full.theta_[t])
            alone = BatchedGaussianProcessRegressor(kernel, n_restarts_optimizer=0).fit(
                X[train], y[train, t])
            assert lml >= alone.log_marginal_likelihood_value_ - 1e-6 * abs(lml)
            # the score is sklearn's prediction with the fold's values
            assert_allclose(ours["test_score_per_target"][f, t],
                            r2_score(y[test, t], ref.predict(X[test])), rtol=1e-8)


@pytest.mark.slow
def test_warm_start_scores_close_to_exact():
    X, y = _data(43)
    exact = batched_cross_validate(_plain(), X, y, cv=5)
    warm = batched_cross_validate(_plain(), X, y, cv=5, mode="warm_start")
    assert_allclose(warm["test_score"].mean(), exact["test_score"].mean(), atol=0.05)


@pytest.mark.slow
def test_full_data_mode_equals_sklearn_gpr_with_the_full_data_hyperparameters_fixed():
    X, y = _data(43)
    est = _sklearn_kernel()
    full = clone(est).fit(X, y)
    pred, std = batched_cross_val_predict(est, X, y, cv=KFold(5), mode="full_data", return_std=True)
    for train, test in KFold(5).split(X):
        for t in range(y.shape[1]):
            # oracle: sklearn's GPR on the fold with the full-data kernel, not optimised
            kernel = est.kernel.clone_with_theta(full.theta_[t])
            ref = GaussianProcessRegressor(kernel, optimizer=None).fit(X[train], y[train, t])
            m_ref, s_ref = ref.predict(X[test], return_std=True)
            assert_allclose(pred[test, t], m_ref, rtol=1e-8, atol=1e-10)
            assert_allclose(std[test, t], s_ref, rtol=1e-8)


# --------------------------------------------------------------------------- per-sample noise
@pytest.mark.slow
def test_noise_variance_equals_sklearn_alpha_array():
    X, y = _data(30)
    noise = np.linspace(1e-3, 0.2, 30)
    kernel = ConstantKernel(1.5) * RBF([0.5, 1.0, 0.3]) + WhiteKernel(0.01)
    ours = BatchedGaussianProcessRegressor(kernel, optimizer=None, alpha=0.0).fit(
        X, y, noise_variance=noise)
    for t in range(3):
        ref = GaussianProcessRegressor(kernel, optimizer=None, alpha=noise).fit(X, y[:, t])
        m, s = ours.predict(X[:7], return_std=True)
        m_ref, s_ref = ref.predict(X[:7], return_std=True)
        assert_allclose(m[:, t], m_ref, rtol=1e-8, atol=1e-12)
        assert_allclose(s[:, t], s_ref, rtol=1e-8, atol=1e-12)
        assert_allclose(ours.log_marginal_likelihood(ours.theta_)[t],
                        ref.log_marginal_likelihood(kernel.theta), rtol=1e-8)
    # optimised on standardised targets: the noise in y's units is alpha / std^2
    for t in range(3):
        a = BatchedGaussianProcessRegressor(random_state=0).fit(X, y[:, t], noise_variance=noise)
        scale = a.gps_.y_std[0] ** 2
        b = BatchedGaussianProcessRegressor(random_state=0, alpha=1e-10 + noise / scale).fit(
            X, y[:, t])
        assert_allclose(a.theta_, b.theta_, rtol=1e-10)
        # and the model does not depend on the units of y
        c = BatchedGaussianProcessRegressor(random_state=0).fit(X, 100 * y[:, t],
                                                                noise_variance=1e4 * noise)
        assert_allclose(c.theta_, a.theta_, rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_noise_variance_is_split_by_routed_cross_validate_and_by_batched_cv():
    X, y = _data(40)
    noise = np.random.RandomState(0).uniform(1e-3, 0.1, size=40)
    cv = KFold(4)
    oracle = []
    for train, test in cv.split(X):  # a standalone fit on the fold's rows and their noise
        fitted = _plain().fit(X[train], y[train], noise_variance=noise[train])
        oracle.append(fitted.score(X[test], y[test]))
    with sklearn.config_context(enable_metadata_routing=True):
        est = _plain().set_fit_request(noise_variance=True)
        routed = cross_validate(est, X, y, cv=cv, params={"noise_variance": noise})
    assert not sklearn.get_config()["enable_metadata_routing"]
    assert_allclose(routed["test_score"], oracle, rtol=1e-6)
    ours = batched_cross_validate(_plain(), X, y, cv=cv, params={"noise_variance": noise})
    assert_allclose(ours["test_score"], oracle, rtol=1e-6)
    pipe = make_pipeline(StandardScaler(), _plain())
    ours_pipe = batched_cross_val_predict(pipe, X, y, cv=cv, params={"noise_variance": noise})
    for train, test in cv.split(X):
        ref = make_pipeline(StandardScaler(), _plain()).fit(
            X[train], y[train], batchedgaussianprocessregressor__noise_variance=noise[train])
        _assert_same_predictions(ours_pipe[test], ref.predict(X[test]), y)


def _per_target_noise(y, seed=0):
    """Noise variances of shape (n, m), different per target, NaN where y is missing."""
    noise = np.random.RandomState(seed).uniform(1e-3, 0.2, size=y.shape) * np.arange(1, 4)
    return np.where(np.isnan(y), np.nan, noise)


@pytest.mark.slow
def test_noise_per_sample_and_target_equals_each_target_fitted_alone_with_its_column():
    X, y = _data(36)
    y[::5, 1] = np.nan
    noise = _per_target_noise(y)
    kernel = ConstantKernel(1.5) * RBF([0.5, 1.0, 0.3]) + WhiteKernel(0.01)
    fixed = BatchedGaussianProcessRegressor(kernel, optimizer=None, alpha=0.0).fit(
        X, y, noise_variance=noise)
    m, s = fixed.predict(X[:7], return_std=True)
    for t in range(3):  # oracle: scikit-learn's GPR with alpha = that column, observed rows
        rows = ~np.isnan(y[:, t])
        ref = GaussianProcessRegressor(kernel, optimizer=None, alpha=noise[rows, t]).fit(
            X[rows], y[rows, t])
        m_ref, s_ref = ref.predict(X[:7], return_std=True)
        assert_allclose(m[:, t], m_ref, rtol=1e-8, atol=1e-12)
        assert_allclose(s[:, t], s_ref, rtol=1e-8, atol=1e-12)
    # optimised, chunked: batched == each target alone with its own column
    batched = BatchedGaussianProcessRegressor(random_state=0, batch_size=2).fit(
        X, y, noise_variance=noise)
    Xq = X[:5] + 0.01
    for t in range(3):
        alone = BatchedGaussianProcessRegressor(random_state=0).fit(
            X, y[:, t], noise_variance=np.nan_to_num(noise[:, t]))
        assert_allclose(batched.theta_[t], alone.theta_[0], rtol=1e-8, atol=1e-10)
        assert_allclose(batched.predict(Xq, return_std=True)[1][:, t],
                        alone.predict(Xq, return_std=True)[1], rtol=1e-8)
        assert_allclose(batched.L_[t], alone.L_, rtol=1e-10, atol=1e-14)  # refactorised
    # the batched CV splits it by rows, as a standalone fit on each fold sees it
    splits = list(KFold(3).split(X))
    pred = batched_cross_val_predict(_plain(), X, y, cv=splits, params={"noise_variance": noise})
    for train, test in splits:
        ref = _plain().fit(X[train], y[train], noise_variance=noise[train])
        _assert_same_predictions(pred[test], ref.predict(X[test]), y)
    # and so does scikit-learn's metadata routing
    with sklearn.config_context(enable_metadata_routing=True):
        routed = cross_validate(_plain().set_fit_request(noise_variance=True), X, y, cv=splits,
                                params={"noise_variance": noise})
    ours = batched_cross_validate(_plain(), X, y, cv=splits, params={"noise_variance": noise})
    assert_allclose(ours["test_score"], routed["test_score"], rtol=1e-6)
    # loo_predictive at a missing entry is the ordinary prediction (its noise is unused: 0)
    _, var, _ = loo_predictive(fixed)
    missing = np.isnan(y[:, 1])
    assert_allclose(var[missing, 1], fixed.predict(X[missing], return_std=True)[1][:, 1] ** 2,
                    rtol=1e-10)


@pytest.mark.parametrize("noise, match", [(np.ones(5), r"shape \(30,\).*\(30, 3\)"),
                                          (np.ones((30, 2)), r"got shape \(30, 2\)"),
                                          (-np.ones(30), "non-negative"),
                                          (np.full((30, 3), np.nan), "NaN is allowed only where y")],
                         ids=["wrong_length", "wrong_targets", "negative", "nan_where_observed"])
def test_bad_noise_variance_is_a_clear_error(noise, match):
    X, y = _data(30)
    with pytest.raises(ValueError, match=match):
        _plain().fit(X, y, noise_variance=noise)


# --------------------------------------------------------------------------- closed-form LOO
@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
def test_loo_equals_explicit_refits_with_fixed_hyperparameters(missing):
    X, y = _data(25)
    if missing:
        y[::4, 1] = np.nan
    alpha = np.linspace(1e-4, 1e-2, 25)
    # unnormalised: sklearn's refits below would standardise every subset anew
    fitted = BatchedGaussianProcessRegressor(random_state=0, alpha=alpha, normalize_y=False).fit(X, y)
    mean, var, logp = loo_predictive(fitted)
    assert mean.shape == var.shape == logp.shape == (25, 3)
    for t in range(3):
        # the fitted hyperparameters as a fixed sklearn kernel
        s, ls, noise = fitted.outputscales_[t], fitted.length_scales_[t], fitted.noise_levels_[t]
        kernel = ConstantKernel(s) * RBF(ls) + WhiteKernel(noise)
        obs = np.flatnonzero(~np.isnan(y[:, t]))
        for i in range(25):
            keep = obs[obs != i]
            ref = GaussianProcessRegressor(kernel, optimizer=None, alpha=alpha[keep]).fit(
                X[keep], y[keep, t])
            m_ref, s_ref = ref.predict(X[i:i + 1], return_std=True)
            v_ref = s_ref[0] ** 2 + alpha[i]  # the held-out observation's variance
            assert_allclose(mean[i, t], m_ref[0], rtol=1e-8, atol=1e-10)
            assert_allclose(var[i, t], v_ref, rtol=1e-8)
            if i in obs:
                expected = norm.logpdf(y[i, t], m_ref[0], np.sqrt(v_ref))
                assert_allclose(logp[i, t], expected, rtol=1e-8)
            else:
                assert np.isnan(logp[i, t])


def test_loo_with_normalize_y_and_single_target():
    X, y = _data(20)
    fitted = BatchedGaussianProcessRegressor(random_state=0, normalize_y=True).fit(X, y[:, 2])
    mean, var, logp = loo_predictive(fitted)
    assert mean.shape == (20,)
    mu, sd = y[:, 2].mean(), y[:, 2].std()  # the standardisation of all points
    kernel = (ConstantKernel(fitted.outputscales_[0]) * RBF(fitted.length_scales_[0])
              + WhiteKernel(fitted.noise_levels_[0]))
    for i in range(20):
        keep = np.arange(20) != i
        # the normalisation of all points, held fixed
        ref = GaussianProcessRegressor(kernel, optimizer=None).fit(X[keep], (y[keep, 2] - mu) / sd)
        m_ref, s_ref = ref.predict(X[i:i + 1], return_std=True)
        v = s_ref[0] ** 2 + 1e-10
        assert_allclose(mean[i], m_ref[0] * sd + mu, rtol=1e-8)
        assert_allclose(var[i], v * sd**2, rtol=1e-8)
        expected = norm.logpdf(y[i, 2], m_ref[0] * sd + mu, np.sqrt(v) * sd)
        assert_allclose(logp[i], expected, rtol=1e-8)


def test_loo_errors():
    with pytest.raises(NotFittedError):
        loo_predictive(_plain())
    with pytest.raises(TypeError, match="BatchedGaussianProcessRegressor"):
        loo_predictive(_pipeline())


# -------------------------------------------------------------------- sklearn meta-estimators
@pytest.mark.slow
def test_grid_search_picks_the_same_parameters_as_over_sklearn_gpr():
    X, y = _data(40)
    y = y[:, 0]
    kernels = [ConstantKernel(1.0) * RBF(np.ones(3)) + WhiteKernel(0.1),
               ConstantKernel(1.0) * Matern(np.ones(3), nu=1.5) + WhiteKernel(0.1),
               ConstantKernel(1.0) * Matern(1.0, nu=0.5) + WhiteKernel(0.1)]
    grid = {"kernel": kernels, "alpha": [1e-10, 0.3]}
    ours = GridSearchCV(BatchedGaussianProcessRegressor(n_restarts_optimizer=0), grid, cv=4)
    ours.fit(X, y)
    ref = GridSearchCV(GaussianProcessRegressor(), grid, cv=4).fit(X, y)
    assert ours.best_params_["alpha"] == ref.best_params_["alpha"]
    assert repr(ours.best_params_["kernel"]) == repr(ref.best_params_["kernel"])
    assert ours.best_index_ == ref.best_index_
    # the mean scores agree closely but not exactly: in a fold the batched L-BFGS and
    # scipy's may end in different local optima (here ours reaches the better one)
    assert_allclose(ours.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"],
                    atol=0.01)


def test_transformed_target_regressor_matches_manual_scaling():
    X, y = _data(30)
    kernel = ConstantKernel(1.5) * RBF([0.5, 1.0, 0.3]) + WhiteKernel(0.01)
    gpr = BatchedGaussianProcessRegressor(kernel, optimizer=None)
    ttr = TransformedTargetRegressor(regressor=gpr, transformer=StandardScaler()).fit(X, y)
    scaler = StandardScaler().fit(y)
    ref = GaussianProcessRegressor(kernel, optimizer=None)
    for t in range(3):
        ref.fit(X, scaler.transform(y)[:, t])
        expected = ref.predict(X[:5]) * scaler.scale_[t] + scaler.mean_[t]
        assert_allclose(ttr.predict(X[:5])[:, t], expected, rtol=1e-8)


# --------------------------------------------------------------------------- bad input
def test_bad_arguments_are_clear_errors():
    X, y = _data(20)
    with pytest.raises(TypeError, match="Pipeline whose last step"):
        batched_cross_validate(Ridge(), X, y)
    with pytest.raises(TypeError, match="Pipeline whose last step"):
        batched_cross_val_predict(make_pipeline(StandardScaler(), Ridge()), X, y)
    with pytest.raises(ValueError, match="Unknown fit parameter"):
        batched_cross_validate(_plain(), X, y, params={"sample_weight": np.ones(20)})
    with pytest.raises(ValueError, match="one value per sample"):
        batched_cross_validate(_plain(), X, y, params={"noise_variance": np.ones(3)})
    X_const = X.copy()
    X_const[:10, 0] = 1.0  # constant in the training rows of the first fold only
    pipe = make_pipeline(VarianceThreshold(), _plain())
    with pytest.raises(ValueError, match="differ in their number of features"):
        batched_cross_validate(pipe, X_const, y, cv=[(np.arange(10), np.arange(10, 20)),
                                                     (np.arange(10, 20), np.arange(10))])
    with pytest.raises(ValueError, match="mode must be one of"):
        batched_cross_validate(_plain(), X, y, mode="warm")


def test_a_fold_without_training_values_of_one_target_scores_the_others():
    # issue 23, item 2: the fold's test_score and every per-target score were NaN
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(30, 2))
    Y = np.column_stack([np.sin(3 * X[:, 0]), X[:, 1] ** 2, np.cos(2 * X[:, 0])])
    Y[10:, 1] = np.nan  # target 1 observed only in the first fold's test rows
    cv = KFold(3)
    est = BatchedGaussianProcessRegressor(random_state=0)
    with pytest.warns(UserWarning, match=r"Target\(s\) \[1\] could not be fitted"):
        res = batched_cross_validate(est, X, Y, cv=cv)
    # oracle: targets are independent, so the others score as without target 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = batched_cross_validate(est, X, Y[:, [0, 2]], cv=cv)
    per = res["test_score_per_target"]
    assert np.isnan(per[:, 1]).all()  # fold 0: not fitted; folds 1, 2: no observed test row
    assert_allclose(per[:, [0, 2]], ref["test_score_per_target"], rtol=1e-12)
    assert_allclose(res["test_score"], ref["test_score"], rtol=1e-12)


def test_loo_at_a_missing_entry_counts_its_known_noise_given_per_sample_or_per_target():
    # issue 23, item 8: noise of shape (n, m) was zeroed where y is missing (0.03221 vs 0.03321)
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(20, 2))
    Y = np.column_stack([np.sin(3 * X[:, 0]), np.cos(2 * X[:, 1])]) + 0.05 * rng.randn(20, 2)
    Y[4, 1] = np.nan
    noise = rng.uniform(0.001, 0.01, size=20)
    est = BatchedGaussianProcessRegressor(ConstantKernel() * RBF([1.0, 1.0]), optimizer=None)
    per_sample = est.fit(X, Y, noise_variance=noise)
    mean1, var1, logp1 = loo_predictive(per_sample)
    per_target = clone(est).fit(X, Y, noise_variance=np.column_stack([noise, noise]))
    mean2, var2, logp2 = loo_predictive(per_target)
    assert_allclose(mean2, mean1, rtol=1e-12)
    assert_allclose(var2, var1, rtol=1e-12)
    assert_array_equal(np.isnan(logp2), np.isnan(logp1))
    # closed form at the missing entry: the prediction's latent variance plus the noise there
    _, std = per_sample.predict(X[4:5], return_std=True)
    assert_allclose(var2[4, 1], std[0, 1] ** 2 + noise[4] + 1e-10, rtol=1e-12)
