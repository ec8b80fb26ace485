"""The fitted-GP object: cached factors == recomputed factors == scikit-learn, budget, pickles."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

from skbgp import BatchedGaussianProcessRegressor, batched_cross_validate, loo_predictive
from skbgp._core import gp
from skbgp._fitted import FittedGPs


def _data(n=40, m=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(0, 3, size=(n, 3))
    Y = np.column_stack([np.sin((1 + t) * X[:, 0]) + X[:, 1] * t + 0.1 * rng.randn(n)
                         for t in range(m)])
    Y[::6, 1] = np.nan
    return X, Y


def _fit(X, Y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return BatchedGaussianProcessRegressor(random_state=0, **params).fit(X, Y)


def _sklearn_at(model, X, Y, t):
    """scikit-learn's GPR at target t's fitted hyperparameters, on its observed rows."""
    rows = ~np.isnan(Y[:, t])
    return GaussianProcessRegressor(model.kernels_[t], optimizer=None, normalize_y=True).fit(
        X[rows], Y[rows, t])


@pytest.mark.parametrize(
    "kernel", [None, ConstantKernel() * Matern(np.ones(3), nu=1.5) + WhiteKernel()],
    ids=["default", "sklearn-matern"])
@pytest.mark.slow
def test_cached_factors_equal_recomputed_ones_and_sklearns_predictions(kernel):
    X, Y = _data()
    Xq = np.random.RandomState(1).uniform(0, 3, size=(7, 3))
    cached = _fit(X, Y, kernel=kernel, normalize_y=True)
    uncached = _fit(X, Y, kernel=kernel, normalize_y=True, cache_size=0)
    assert cached.gps_.cached and not uncached.gps_.cached
    assert_allclose(cached.L_, uncached.L_, rtol=1e-10, atol=1e-14)
    assert_allclose(cached.predict(Xq), uncached.predict(Xq), rtol=1e-10)
    for call in (dict(return_std=True), dict(return_cov=True)):
        for a, b in zip(cached.predict(Xq, **call), uncached.predict(Xq, **call)):
            assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    mean, std = cached.predict(Xq, return_std=True)
    for t in range(Y.shape[1]):
        ref_mean, ref_std = _sklearn_at(cached, X, Y, t).predict(Xq, return_std=True)
        assert_allclose(mean[:, t], ref_mean, rtol=1e-10, atol=1e-10)
        assert_allclose(std[:, t], ref_std, rtol=1e-8, atol=1e-10)


def test_the_fit_seeds_the_cache_with_its_own_factors(monkeypatch):
    X, Y = _data()
    model = _fit(X, Y)
    assert model.gps_.cached

    def refactorize(*args, **kwargs):
        raise AssertionError("the factors were recomputed")

    monkeypatch.setattr(gp, "refactorize", refactorize)
    model.predict(X[:3], return_std=True)
    model.sample_y(X[:3], 2)
    loo_predictive(model)


def test_mean_prediction_needs_no_factorisation(monkeypatch):
    X, Y = _data()
    model = _fit(X, Y, cache_size=0)
    expected = _fit(X, Y).predict(X[:4])

    def refactorize(*args, **kwargs):
        raise AssertionError("the mean factorised a covariance")

    monkeypatch.setattr(gp, "refactorize", refactorize)
    assert_allclose(model.predict(X[:4]), expected, rtol=1e-12)


@pytest.mark.slow
def test_a_model_above_the_budget_holds_no_factors():
    X, Y = _data(n=40, m=5)
    factor_mib = 5 * 40**2 * 8 / 2**20
    below = _fit(X, Y, cache_size=0.99 * factor_mib)
    above = _fit(X, Y, cache_size=1.01 * factor_mib)
    for model in (below, above):
        model.predict(X[:3], return_std=True)
        model.sample_y(X[:3])
    assert not below.gps_.cached and above.gps_.cached
    assert_allclose(below.predict(X, return_std=True)[1], above.predict(X, return_std=True)[1],
                    rtol=1e-10)
    # a budget lowered after the fit drops the factors on the next use
    above.set_params(cache_size=0).predict(X[:2], return_std=True)
    assert not above.gps_.cached


def test_predict_leaves_the_estimators_dict_unchanged():
    X, Y = _data()
    model = _fit(X, Y, cache_size=0)
    before = dict(model.__dict__)
    model.predict(X[:3], return_std=True)
    model.predict(X[:3], return_cov=True)
    assert model.__dict__.keys() == before.keys()
    assert all(model.__dict__[k] is before[k] for k in before)


def test_an_unpickled_model_holds_no_factors_and_predicts_like_the_original():
    X, Y = _data(n=60)
    model = _fit(X, Y)
    mean, std = model.predict(X[:5], return_std=True)
    state = pickle.dumps(model)
    assert model.gps_.cached
    # the pickle holds no n_targets * n**2 numbers of factors
    assert len(state) < Y.shape[1] * 60**2 * 8 / 2
    again = pickle.loads(state)
    assert not again.gps_.cached
    again_mean, again_std = again.predict(X[:5], return_std=True)
    assert again.gps_.cached
    assert_allclose(again_mean, mean, rtol=1e-12)
    assert_allclose(again_std, std, rtol=1e-12)
    assert_allclose(again.L_, model.L_, rtol=1e-12, atol=1e-15)


def test_factors_of_a_subset_equal_those_of_all_targets():
    X, Y = _data()
    for cache_size in (0, 1024):
        model = _fit(X, Y, cache_size=cache_size)
        L = model.L_
        assert_allclose(model.gps_.factors([3, 1]).numpy(), L[[3, 1]], rtol=1e-12, atol=1e-15)


@pytest.mark.slow
def test_fitted_gps_has_the_regressors_fitted_values():
    X, Y = _data()
    model = _fit(X, Y, kernel=ConstantKernel() * RBF(np.ones(3)) + WhiteKernel())
    gps = model.gps_
    assert isinstance(gps, FittedGPs)
    assert gps.n_targets == Y.shape[1] and gps.n_samples == X.shape[0]
    assert_allclose(gps.theta, model.theta_)  # every hyperparameter of this kernel is free
    assert_allclose(gps.dual.T, model.alpha_)
    assert (gps.observed == ~np.isnan(Y)).all()


@pytest.mark.slow
def test_batched_cv_scores_use_the_fits_factors(monkeypatch):
    X, Y = _data()
    est = BatchedGaussianProcessRegressor(random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        expected = batched_cross_validate(est, X, Y[:, [0, 2]], cv=3, scoring="r2")["test_score"]

        def refactorize(*args, **kwargs):
            raise AssertionError("scoring recomputed the factors")

        monkeypatch.setattr(gp, "refactorize", refactorize)
        got = batched_cross_validate(est, X, Y[:, [0, 2]], cv=3, scoring="r2")["test_score"]
    assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("cache_size", [-1, True, "1024", np.nan])
def test_a_bad_cache_size_is_a_clear_error(cache_size):
    X, Y = _data()
    with pytest.raises(ValueError, match="cache_size must be a number of MiB >= 0"):
        BatchedGaussianProcessRegressor(cache_size=cache_size).fit(X, Y)


@pytest.mark.slow
def test_predictions_do_not_depend_on_the_blocks(monkeypatch):
    """Pieces of targets, chunks of factors and blocks of query points give the same numbers."""
    from skbgp import _fitted

    X, Y = _data(n=40, m=6)
    Xq = np.random.RandomState(2).uniform(0, 3, size=(11, 3))
    expected = [_fit(X, Y, cache_size=c).predict(Xq, return_std=True) for c in (1024, 0)]
    monkeypatch.setattr(_fitted, "_FACTOR_BLOCK", 1)  # every factor its own chunk, pieces of 4
    monkeypatch.setattr(_fitted, "_PREDICT_BLOCK", 3 * 40)  # a few query points per block
    for cache_size, (mean, std) in zip((1024, 0), expected):
        model = _fit(X, Y, cache_size=cache_size)
        got_mean, got_std = model.predict(Xq, return_std=True)
        # other blocks round differently (a triangular solve's columns), by round-off only
        assert_allclose(got_mean, mean, rtol=1e-10, atol=1e-14)
        assert_allclose(got_std, std, rtol=1e-10, atol=1e-14)
        assert_allclose(model.predict(Xq, return_cov=True)[1].diagonal().T, std**2, rtol=1e-8)
