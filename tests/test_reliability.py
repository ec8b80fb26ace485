"""Numerical trouble and hostile inputs: clear errors or warnings, never a silent wrong answer."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as sk
from sklearn.metrics import r2_score
from torch.distributions import Uniform

from skbgp import BatchedGaussianProcessRegressor, kernels


def _quiet(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def test_a_lone_uniform_prior_is_the_maximum_likelihood_fit_within_its_support():
    # the seed problem's variance prior, alone in its kernel: its density is flat,
    # so the MAP fit is the maximum-likelihood fit within [10, 150]
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(30, 2))
    y = 50.0 * np.sin(3.0 * X[:, 0]) + 60.0 + rng.randn(30)
    prior = (kernels.ConstantKernel(20.0, constant_value_prior=Uniform(10.0, 150.0))
             * kernels.RBF([1.0, 1.0]) + kernels.WhiteKernel(1.0))
    bounded = (sk.ConstantKernel(20.0, constant_value_bounds=(10.0, 150.0))
               * sk.RBF([1.0, 1.0]) + sk.WhiteKernel(1.0))
    ours = _quiet(BatchedGaussianProcessRegressor(prior, random_state=0), X, y)
    ref = _quiet(BatchedGaussianProcessRegressor(bounded, random_state=0), X, y)
    assert_allclose(ours.log_prior_value_, -np.log(140.0), rtol=1e-12)
    assert_allclose(ours.theta_, ref.theta_, rtol=1e-6, atol=1e-8)
    fixed = GaussianProcessRegressor(ours.kernels_[0], optimizer=None).fit(X, y)
    assert_allclose(ours.log_marginal_likelihood_value_, fixed.log_marginal_likelihood_value_, rtol=1e-9)


def test_tiny_targets_are_fitted_when_standardised_and_warned_about_when_alpha_swamps_them():
    rng = np.random.RandomState(1)
    X = rng.uniform(size=(40, 1))
    y = 1e-12 * np.sin(6.0 * X[:, 0])
    # the default kernel standardises: alpha is small against the standardised target
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ours = _quiet(BatchedGaussianProcessRegressor(random_state=0), X, y)
    assert r2_score(y, ours.predict(X)) > 0.99
    # unstandardised (a user's kernel, scikit-learn's semantics): alpha = 1e-10 swamps a
    # target of power 5e-25, which sklearn fits silently as noise; skbgp says so
    kernel = sk.ConstantKernel(1e-24, (1e-30, 1.0)) * sk.RBF(0.3) + sk.WhiteKernel(1e-26, (1e-30, 1.0))
    with pytest.warns(UserWarning, match=r"alpha \(up to 1e-10.*target\(s\) \[0\].*normalize_y=True"):
        _quiet(BatchedGaussianProcessRegressor(kernel, random_state=0), X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _quiet(BatchedGaussianProcessRegressor(kernel, random_state=0, alpha=1e-40), X, y)


def test_predict_escalates_jitter_in_another_dtype_and_names_the_targets():
    # near-duplicate inputs and tiny noise: float64 factorises without jitter,
    # float32 does not; predict used the identity and reported std 0 silently
    rng = np.random.RandomState(0)
    X = np.repeat(rng.uniform(size=(15, 1)), 4, axis=0) + 1e-9 * rng.randn(60, 1)
    y = np.column_stack([np.sin(4 * X[:, 0]), np.cos(3 * X[:, 0])])
    kernel = sk.ConstantKernel(1.0) * sk.RBF(0.5) + sk.WhiteKernel(1e-9, "fixed")
    est = BatchedGaussianProcessRegressor(kernel, optimizer=None, alpha=1e-12).fit(X, y)
    assert np.all(est.jitter_ == 0)
    ref = est.predict(X[:5] + 0.01)
    est.set_params(dtype="float32")
    with pytest.warns(ConvergenceWarning, match=r"target\(s\) \[0, 1\] needed more jitter"):
        mean, std = est.predict(X[:5] + 0.01, return_std=True)
    assert np.isfinite(mean).all() and np.isfinite(std).all()
    # float32 on a covariance of condition number ~1e9: a few 1e-3 of the float64 mean
    assert_allclose(mean, ref, atol=1e-2)


# --------------------------------------------------------------------------- user mistakes
def _small():
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(20, 2))
    return X, np.sin(3.0 * X[:, 0])


@pytest.mark.parametrize("device", ["mps", "meta", "xla"])
def test_unsupported_devices_are_a_clear_value_error(device):
    X, y = _small()
    with pytest.raises(ValueError, match=r"skbgp runs on 'cpu' or 'cuda'|not a valid torch device"):
        BatchedGaussianProcessRegressor(device=device).fit(X, y)


def test_tensors_that_require_grad_are_a_clear_type_error():
    import torch

    X, y = _small()
    est = BatchedGaussianProcessRegressor(random_state=0)
    with pytest.raises(TypeError, match=r"X is a torch tensor that requires grad; pass X.detach\(\)"):
        est.fit(torch.tensor(X, requires_grad=True), y)
    est.fit(torch.tensor(X), torch.tensor(y))  # plain tensors are arrays like any other
    with pytest.raises(TypeError, match=r"X is a torch tensor that requires grad"):
        est.predict(torch.tensor(X, requires_grad=True))


def test_infinite_bounds_with_restarts_are_scikit_learns_error():
    X, y = _small()
    kernel = sk.ConstantKernel(1.0, (1e-5, np.inf)) * sk.RBF(1.0)
    message = "requires that all bounds are finite"
    with pytest.raises(ValueError, match=message):
        GaussianProcessRegressor(kernel, n_restarts_optimizer=2).fit(X, y)  # the oracle
    with pytest.raises(ValueError, match=message):
        BatchedGaussianProcessRegressor(kernel, n_restarts_optimizer=2).fit(X, y)
    _quiet(BatchedGaussianProcessRegressor(kernel, n_restarts_optimizer=0), X, y)  # no draws: fine


def test_a_discrete_prior_on_a_continuous_hyperparameter_is_refused():
    from torch.distributions import Bernoulli, Poisson

    X, y = _small()
    for prior in (Poisson(3.0), Bernoulli(0.5)):
        kernel = kernels.ConstantKernel(1.0, constant_value_prior=prior) * kernels.RBF(1.0)
        with pytest.raises(ValueError, match=r"discrete values.*use a continuous prior"):
            BatchedGaussianProcessRegressor(kernel).fit(X, y)


def test_a_failed_or_interrupted_fit_leaves_the_previous_model_intact(monkeypatch):
    X, y = _small()
    est = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
    reference = est.predict(X[:3])
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in est.__dict__.items()}
    with pytest.raises(ValueError, match="no observed value"):
        est.fit(np.random.RandomState(1).uniform(size=(20, 3)), np.full(20, np.nan))
    import skbgp._engine as engine

    class Interrupt(BaseException):  # as KeyboardInterrupt, which pytest itself would catch
        pass

    def interrupted(*args, **kwargs):
        raise Interrupt

    monkeypatch.setattr(engine, "fit_chunk", interrupted)
    with pytest.raises(Interrupt):
        est.fit(np.random.RandomState(2).uniform(size=(25, 3)), np.ones(25))
    assert est.__dict__.keys() == before.keys()
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(est.__dict__[key], value)
    assert est.n_features_in_ == 2 and est.X_train_.shape == (20, 2)
    assert_allclose(est.predict(X[:3]), reference, rtol=1e-12)


def test_non_finite_predictions_are_warned_about_naming_the_targets():
    X, y = _small()
    est = _quiet(BatchedGaussianProcessRegressor(sk.DotProduct() ** 8, n_restarts_optimizer=0), X, y)
    with pytest.warns(ConvergenceWarning, match=r"predictions of target\(s\) \[0\] are not finite"):
        mean, std = est.predict(np.full((1, 2), 1e40), return_std=True)
    assert not np.isfinite(mean).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.predict(X[:3], return_std=True)  # near the data: finite, nothing to say


@pytest.mark.parametrize("kernel", [sk.ConstantKernel(1.7) * sk.Matern([0.4, 0.9], nu=nu)
                                    + sk.WhiteKernel(0.01) for nu in (0.5, 1.5, 2.5)]
                         + [sk.ConstantKernel(1.7) * sk.RBF([0.4, 0.9]) + sk.WhiteKernel(0.01),
                            sk.ConstantKernel(1.7) * sk.Matern(0.4, nu=1.5)
                            + sk.ConstantKernel(0.5) * sk.RBF(2.0) + sk.WhiteKernel(0.01)],
                         ids=["matern0.5", "matern1.5", "matern2.5", "rbf", "composite"])
@pytest.mark.parametrize("x", [1e155, -1e300], ids=["1e155", "-1e300"])
def test_a_query_far_from_the_data_gets_the_prior(kernel, x):
    # issue 23, item 9: squared distances overflow to inf there; the answer is the prior,
    # mean 0 and variance outputscale(s) + noise (scikit-learn's GPR gives NaN for Matern)
    X, y = _small()
    est = BatchedGaussianProcessRegressor(kernel, optimizer=None, normalize_y=False).fit(X, y)
    Xq = np.array([[x, 0.5], [0.5, x], [0.3, 0.6]])
    mean, std = est.predict(Xq, return_std=True)
    _, cov = est.predict(Xq, return_cov=True)
    prior_var = kernel(Xq[:1])[0, 0]  # outputscale(s) plus the white noise
    assert_allclose(mean[:2], 0.0, atol=1e-100)
    assert_allclose(std[:2], np.sqrt(prior_var), rtol=1e-12)
    assert np.isfinite(cov).all()
    assert_allclose(cov[:2, :2], np.diag([prior_var] * 2), atol=1e-100)


def test_suggester_refuses_integer_bounds_without_an_integer_and_unobserved_constraints():
    from skbgp import QBatchSuggester

    X, _ = _small()
    y = np.column_stack([X.sum(axis=1), np.full(len(X), np.nan)])
    params = dict(q=1, raw_samples=16, num_restarts=2, random_state=0)
    with pytest.raises(ValueError, match=r"Integer feature\(s\) \[0\] have bounds that hold no integer"):
        QBatchSuggester(bounds=np.array([(0.2, 0.8), (0.0, 1.0)]), integer_features=[0],
                        **params).fit(X, y[:, 0])
    with pytest.raises(ValueError, match=r"Target\(s\) \[1\] enter the objective or a constraint"):
        QBatchSuggester(bounds=np.array([(0.0, 1.0), (0.0, 1.0)]), constraints={1: 0.5},
                        **params).fit(X, y)


@pytest.mark.slow
def test_a_scorer_that_needs_return_std_works_in_batched_cross_validate():
    from sklearn.model_selection import KFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skbgp import batched_cross_validate

    rng = np.random.RandomState(0)
    X = rng.uniform(size=(30, 2))
    y = np.column_stack([np.sin(3 * X[:, 0]), X[:, 1] ** 2]) + 0.05 * rng.randn(30, 2)

    def log_density(est, Xt, yt):
        m, s = est.predict(Xt, return_std=True)
        return float(np.mean(-0.5 * np.log(2 * np.pi * s**2) - 0.5 * (yt - m) ** 2 / s**2))

    for est in (BatchedGaussianProcessRegressor(random_state=0),
                make_pipeline(StandardScaler(), BatchedGaussianProcessRegressor(random_state=0))):
        cv = KFold(3)
        ours = batched_cross_validate(est, X, y, cv=cv, scoring={"lpd": log_density, "r2": "r2"},
                                      return_estimator=True)
        ref = cross_validate(est, X, y, cv=cv, scoring={"lpd": log_density, "r2": "r2"})
        assert_allclose(ours["test_lpd"], ref["test_lpd"], rtol=1e-10)
        for f, (fitted, (_, test)) in enumerate(zip(ours["estimator"], cv.split(X))):
            m, s = fitted.predict(X[test], return_std=True)
            expected = np.mean(-0.5 * np.log(2 * np.pi * s**2) - 0.5 * (y[test] - m) ** 2 / s**2, axis=0)
            assert_allclose(ours["test_lpd_per_target"][f], expected, rtol=1e-12)


@pytest.mark.slow
def test_tell_takes_one_point_with_a_scalar_y_like_the_same_point_as_arrays():
    from skbgp import QBatchSuggester

    X, y = _small()
    params = dict(bounds=np.array([(0.0, 1.0), (0.0, 1.0)]), q=1, raw_samples=16, num_restarts=2,
                  random_state=0)
    a = QBatchSuggester(**params).fit(X, y).tell(np.array([0.5, 0.25]), 0.3)
    b = QBatchSuggester(**params).fit(X, y).tell(np.array([[0.5, 0.25]]), np.array([0.3]))
    np.testing.assert_array_equal(a.X_, b.X_)
    np.testing.assert_array_equal(a.y_, b.y_)
    with pytest.raises(ValueError, match="y must have shape"):
        QBatchSuggester(**params).fit(X, y).tell(np.array([0.5, 0.25]), [0.3, 0.4])


@pytest.mark.parametrize("n", [5, 9])
@pytest.mark.parametrize("kernel", [
    pytest.param(sk.ConstantKernel() * sk.RBF([1.0, 1.0]) + sk.WhiteKernel(), id="C*RBF(ARD)+White"),
    pytest.param(None, id="default"),
    pytest.param(sk.ConstantKernel() * sk.Matern([1.0, 1.0], nu=2.5) + sk.WhiteKernel(), id="matern"),
    pytest.param(sk.ConstantKernel() * sk.RationalQuadratic() + sk.WhiteKernel(), id="composite"),
])
def test_identical_targets_get_bitwise_identical_hyperparameters(kernel, n):
    # issue 23, item 3: with n^2 odd, every other member of a block started off MKL's
    # alignment and rounded differently (|dtheta| up to 3e-5 at n = 5)
    rng = np.random.RandomState(1)
    for _ in range(3):  # a few data sets of each size: the difference showed on some
        X = rng.uniform(size=(n, 2))
        y = np.sin(3.0 * X[:, 0]) + 0.1 * rng.randn(n)
        batch = _quiet(BatchedGaussianProcessRegressor(kernel, random_state=0), X,
                       np.column_stack([y] * 7))
        alone = _quiet(BatchedGaussianProcessRegressor(kernel, random_state=0), X, y)
        np.testing.assert_array_equal(batch.theta_, np.repeat(alone.theta_, 7, axis=0))
        # the factorisation at the optimum is not aligned: equal to rounding (doc/design.rst)
        assert_allclose(batch.log_marginal_likelihood_value_,
                        np.repeat(alone.log_marginal_likelihood_value_, 7), rtol=1e-14)
