"""BatchedGaussianProcessRegressor against scikit-learn's GPR and against itself looped."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.optimize
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_linnerud, make_friedman2
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbgp import BatchedGaussianProcessRegressor, batched_cross_validate, loo_predictive
from skbgp._engine import Optimum

from .conftest import KERNEL_IDS, sklearn_kernel, slow_except


def _sklearn_fit(kernel, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianProcessRegressor(kernel, **kwargs).fit(X, y)


# --------------------------------------------------------------------------- oracle: sklearn, fixed theta
@pytest.mark.parametrize("name", slow_except(KERNEL_IDS, "rbf"))
@pytest.mark.parametrize("normalize_y", slow_except([False, True], True), ids=["raw", "normalized"])
def test_fixed_hyperparameters_match_sklearn_per_target(multi_target_data, name, normalize_y):
    X, y = multi_target_data
    Xs = np.random.RandomState(5).uniform(0, 1, size=(9, 3))
    kernel = sklearn_kernel(name, [0.5, 1.0, 0.3])
    ours = BatchedGaussianProcessRegressor(kernel, optimizer=None, normalize_y=normalize_y).fit(X, y)
    mean, std = ours.predict(Xs, return_std=True)
    _, cov = ours.predict(Xs, return_cov=True)
    assert mean.shape == std.shape == (9, 4) and cov.shape == (9, 9, 4)
    for t in range(4):
        ref = GaussianProcessRegressor(kernel, optimizer=None, normalize_y=normalize_y).fit(X, y[:, t])
        m_ref, s_ref = ref.predict(Xs, return_std=True)
        _, c_ref = ref.predict(Xs, return_cov=True)
        assert_allclose(mean[:, t], m_ref, rtol=1e-8, atol=1e-12)
        assert_allclose(std[:, t], s_ref, rtol=1e-8, atol=1e-12)
        assert_allclose(cov[:, :, t], c_ref, rtol=1e-8, atol=1e-12)
        assert_allclose(ours.log_marginal_likelihood_value_[t], ref.log_marginal_likelihood_value_, rtol=1e-8)
        lml, grad = ours.log_marginal_likelihood(ours.theta_, eval_gradient=True)
        lml_ref, grad_ref = ref.log_marginal_likelihood(kernel.theta, eval_gradient=True)
        assert_allclose(lml[t], lml_ref, rtol=1e-8)
        assert_allclose(grad[t], grad_ref, rtol=1e-7, atol=1e-9)


def test_isotropic_kernel_and_alpha_array_match_sklearn(multi_target_data):
    X, y = multi_target_data
    alpha = np.linspace(1e-3, 1e-1, X.shape[0])
    kernel = ConstantKernel(2.0) * RBF(0.7)
    ours = BatchedGaussianProcessRegressor(kernel, optimizer=None, alpha=alpha).fit(X, y)
    ref = GaussianProcessRegressor(kernel, optimizer=None, alpha=alpha).fit(X, y)
    # with fixed hyperparameters, sklearn's shared fit equals every independent one
    mean, std = ours.predict(X[:7], return_std=True)
    m_ref, s_ref = ref.predict(X[:7], return_std=True)
    assert_allclose(mean, m_ref, rtol=1e-8, atol=1e-12)
    assert_allclose(std, s_ref, rtol=1e-8, atol=1e-12)
    assert ours.length_scales_.shape == (4, 3)


def test_single_target_shapes_follow_sklearn(multi_target_data):
    # issue 23, item 12: every output of a single target has scikit-learn's shape and type
    X, y = multi_target_data
    kernel = ConstantKernel() * RBF([1.0, 1.0, 1.0])
    for y_in in (y[:, 0], y[:, :1]):
        ours = BatchedGaussianProcessRegressor(kernel, random_state=0).fit(X, y_in)
        ref = _sklearn_fit(kernel, X, y_in, random_state=0)
        outputs = {
            "predict": (ours.predict(X[:5]), ref.predict(X[:5])),
            "predict std": (ours.predict(X[:5], return_std=True)[1],
                            ref.predict(X[:5], return_std=True)[1]),
            "predict cov": (ours.predict(X[:5], return_cov=True)[1],
                            ref.predict(X[:5], return_cov=True)[1]),
            "sample_y": (ours.sample_y(X[:5], n_samples=3), ref.sample_y(X[:5], n_samples=3)),
            "sample_y one": (ours.sample_y(X[:5]), ref.sample_y(X[:5])),
            "y_train_": (ours.y_train_, ref.y_train_),
            "X_train_": (ours.X_train_, ref.X_train_),
            "alpha_": (ours.alpha_, ref.alpha_),
            "L_": (ours.L_, ref.L_),
            "lml value": (ours.log_marginal_likelihood_value_, ref.log_marginal_likelihood_value_),
            "lml(theta)": (ours.log_marginal_likelihood(ours.theta_[0]),
                           ref.log_marginal_likelihood(ref.kernel_.theta)),
            "lml()": (ours.log_marginal_likelihood(), ref.log_marginal_likelihood()),
            "score": (ours.score(X, y_in), ref.score(X, y_in)),
        }
        lml, grad = ours.log_marginal_likelihood(ours.theta_[0], eval_gradient=True)
        ref_lml, ref_grad = ref.log_marginal_likelihood(ref.kernel_.theta, eval_gradient=True)
        outputs["lml gradient"] = (grad, ref_grad)
        outputs["lml with gradient"] = (lml, ref_lml)
        for name, (a, b) in outputs.items():
            assert np.shape(a) == np.shape(b), name
            assert isinstance(a, float) == isinstance(b, float), name
            assert np.asarray(a).dtype == np.asarray(b).dtype, name
        assert f"{ours.log_marginal_likelihood_value_:.2f}"  # the example
        # skbgp's own per-target attributes keep their target axis
        assert ours.length_scales_.shape == (1, 3)


def test_return_std_and_cov_together_is_an_error(multi_target_data):
    X, y = multi_target_data
    ours = BatchedGaussianProcessRegressor(optimizer=None).fit(X, y)
    with pytest.raises(RuntimeError, match="At most one of return_std or return_cov"):
        ours.predict(X, return_std=True, return_cov=True)


# --------------------------------------------------------------------------- batched == looped
@pytest.mark.slow
def test_batched_fit_equals_fitting_each_target_alone():
    rng = np.random.RandomState(3)
    X = rng.uniform(0, 1, size=(35, 2)) * np.array([2.0, 0.5])
    Y = np.column_stack([np.sin((1 + t) * X[:, 0]) + 0.1 * (t + 1) * rng.randn(35) for t in range(8)])
    Y[rng.rand(*Y.shape) < 0.1] = np.nan
    params = dict(n_restarts_optimizer=0, random_state=0)
    batched = BatchedGaussianProcessRegressor(**params).fit(X, Y)
    for t in range(8):
        alone = BatchedGaussianProcessRegressor(**params).fit(X, Y[:, t])
        assert_allclose(batched.theta_[t], alone.theta_[0], rtol=1e-4, atol=1e-6)
        assert_allclose(batched.log_marginal_likelihood_value_[t],
                        alone.log_marginal_likelihood_value_, rtol=1e-8)
        assert batched.n_iter_[t] == alone.n_iter_[0]


def test_prepare_and_finish_fit_are_fit_and_finish_at_given_hyperparameters_like_sklearn():
    rng = np.random.RandomState(4)
    X = rng.uniform(0, 2, size=(30, 2))
    Y = np.column_stack([np.sin(3 * X[:, 0]), X[:, 1] ** 2]) + 0.1 * rng.randn(30, 2)
    Xq = rng.uniform(0, 2, size=(6, 2))
    params = dict(n_restarts_optimizer=1, random_state=0)
    fitted = BatchedGaussianProcessRegressor(**params).fit(X, Y)
    halves = BatchedGaussianProcessRegressor(**params)
    problem = halves.prepare_fit(X, Y)
    assert not hasattr(halves, "gps_")  # preparing changes nothing
    halves.finish_fit(problem)
    assert_allclose(halves.theta_, fitted.theta_, rtol=1e-12)
    assert_array_equal(halves.n_iter_, fitted.n_iter_)
    # finished at hyperparameters found elsewhere: scikit-learn's GPR at them
    record = np.array([7, 9]), np.array([True, False]), np.array([40, 50])
    other = BatchedGaussianProcessRegressor(**params).finish_fit(
        problem, Optimum(fitted.gps_.theta, *record))
    assert_array_equal(other.n_iter_, record[0])
    assert_array_equal(other.converged_, record[1])
    assert_array_equal(other.n_evaluations_, record[2])
    mean, std = other.predict(Xq, return_std=True)
    for t in range(2):
        ref = GaussianProcessRegressor(fitted.kernels_[t], optimizer=None, normalize_y=True)
        ref_mean, ref_std = ref.fit(X, Y[:, t]).predict(Xq, return_std=True)
        assert_allclose(mean[:, t], ref_mean, rtol=1e-10, atol=1e-10)
        assert_allclose(std[:, t], ref_std, rtol=1e-8, atol=1e-10)
    # the caller's arrays are left as they were, and not shared with the model
    theta = fitted.gps_.theta.copy()
    given = theta.copy()
    kept = BatchedGaussianProcessRegressor(**params).finish_fit(problem, Optimum(given))
    given[:] = 0.0
    assert_allclose(kept.gps_.theta, theta, rtol=0)
    # preparing leaves a fitted estimator as it was
    fitted.prepare_fit(np.hstack([X, X]), Y)
    assert fitted.n_features_in_ == 2
    fitted.predict(Xq)
    # nothing optimised: a fresh record (0 iterations, converged)
    plain = BatchedGaussianProcessRegressor(**params).finish_fit(problem, Optimum(fitted.gps_.theta))
    assert_array_equal(plain.n_iter_, [0, 0])
    assert plain.converged_.all()
    assert_allclose(plain.predict(Xq), mean, rtol=1e-12)


def test_score_is_sklearns_r2_and_counts_only_observed_rows(multi_target_data):
    X, y = multi_target_data
    est = BatchedGaussianProcessRegressor(random_state=0, n_restarts_optimizer=0).fit(X, y)
    Xt = X[::-1] * 1.01  # not the training points
    pred = est.predict(Xt)
    weight = np.linspace(0.5, 2.0, X.shape[0])
    assert_allclose(est.score(Xt, y), r2_score(y, pred), rtol=1e-12)
    assert_allclose(est.score(Xt, y, sample_weight=weight), r2_score(y, pred, sample_weight=weight),
                    rtol=1e-12)
    missing = y.copy()
    missing[::3, 1] = np.nan
    missing[1::5, 3] = np.nan
    expected = []
    for t in range(y.shape[1]):  # numpy's R^2 on each target's observed rows
        rows = ~np.isnan(missing[:, t])
        resid = np.sum((y[rows, t] - pred[rows, t]) ** 2)
        expected.append(1.0 - resid / np.sum((y[rows, t] - y[rows, t].mean()) ** 2))
    assert_allclose(est.score(Xt, missing), np.mean(expected), rtol=1e-12)
    with pytest.raises(ValueError, match="no observed value"):
        est.score(Xt, np.full_like(y, np.nan))
    one = BatchedGaussianProcessRegressor(random_state=0, n_restarts_optimizer=0).fit(X, y[:, :1])
    assert_allclose(one.score(Xt, y[:, :1]), r2_score(y[:, 0], one.predict(Xt)), rtol=1e-12)


def test_kernel_is_the_single_targets_fitted_kernel(multi_target_data):
    X, y = multi_target_data
    est = BatchedGaussianProcessRegressor(random_state=0, n_restarts_optimizer=0)
    with pytest.raises(NotFittedError):
        est.kernel_
    for target in (y[:, 0], y[:, :1]):
        est.fit(X, target)
        assert est.kernel_ is est.kernels_[0]
        # scikit-learn's GPR with that kernel fixed predicts what this model predicts
        ref = GaussianProcessRegressor(est.kernel_, optimizer=None, normalize_y=True).fit(X, y[:, 0])
        assert_allclose(np.ravel(est.predict(X[:5])), ref.predict(X[:5]), rtol=1e-10)
    est.fit(X, y)
    assert not hasattr(est, "kernel_")
    with pytest.raises(AttributeError, match="use kernels_"):
        est.kernel_


@pytest.mark.slow
def test_a_callable_optimizer_gets_scikit_learns_objective_per_target_and_start(multi_target_data):
    X, y = multi_target_data
    kernel = ConstantKernel(1.0) * RBF(np.ones(3)) + WhiteKernel(0.1)
    calls = []

    def lbfgs(obj_func, initial_theta, *, bounds):  # scikit-learn's own default; bounds by keyword
        calls.append(initial_theta.copy())
        theta, value, _ = scipy.optimize.fmin_l_bfgs_b(obj_func, initial_theta, bounds=bounds)
        return theta, value

    ours = BatchedGaussianProcessRegressor(kernel, optimizer=lbfgs, n_restarts_optimizer=1,
                                           random_state=0).fit(X, y)
    assert len(calls) == 2 * y.shape[1]  # every start of every target
    for t in range(y.shape[1]):
        # oracle: scikit-learn's GPR with the same callable fits the same optimum
        ref = GaussianProcessRegressor(kernel, optimizer=lbfgs, n_restarts_optimizer=1,
                                       random_state=0).fit(X, y[:, t])
        assert_allclose(ours.log_marginal_likelihood_value_[t],
                        ref.log_marginal_likelihood_value_, rtol=1e-6)
        assert_allclose(ours.theta_[t], ref.kernel_.theta, rtol=1e-3, atol=1e-4)
    # and the batched CV runs it in every fold, as cross_validate does
    cv = KFold(3)
    assert_allclose(batched_cross_validate(ours, X, y, cv=cv)["test_score"],
                    cross_validate(ours, X, y, cv=cv)["test_score"], rtol=1e-8)
    full = batched_cross_validate(ours, X, y, cv=cv, mode="full_data", return_estimator=True)
    for fold in full["estimator"]:  # no optimisation per fold: the full-data optimum
        assert_allclose(fold.theta_, ours.theta_, rtol=1e-12)
    with pytest.raises(ValueError, match="mode='warm_start'.*callable optimizer"):
        batched_cross_validate(ours, X, y, cv=cv, mode="warm_start")


# --------------------------------------------------------------------------- optimisation quality vs sklearn
def _friedman_targets():
    X, y1 = make_friedman2(n_samples=60, noise=0.5, random_state=0)
    y2 = np.sin(X[:, 0] / 30.0) + 0.1 * np.random.RandomState(0).randn(60)
    return X[:, :3], np.column_stack([y1 / y1.std(), y2])


def _synthetic_16():
    rng = np.random.RandomState(7)
    X = rng.uniform(0, 1, size=(50, 3))
    Y = np.column_stack([
        np.sin((2 + t % 5) * X[:, t % 3]) + 0.3 * X[:, (t + 1) % 3] + (0.05 + 0.02 * t) * rng.randn(50)
        for t in range(16)
    ])
    return X, Y


def _linnerud():
    X, Y = load_linnerud(return_X_y=True)
    return X, Y


@pytest.mark.parametrize("dataset",
                         slow_except([_linnerud, _friedman_targets, _synthetic_16], _linnerud),
                         ids=["linnerud", "friedman2", "synthetic16"])
def test_optimised_lml_at_least_sklearn_from_same_start(dataset):
    X, Y = dataset()
    kernel = ConstantKernel(1.0) * RBF(np.ones(X.shape[1])) + WhiteKernel(1.0)
    ours = BatchedGaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, Y)
    for t in range(Y.shape[1]):
        ref = _sklearn_fit(kernel, X, Y[:, t], normalize_y=True).log_marginal_likelihood_value_
        assert ours.log_marginal_likelihood_value_[t] >= ref - 1e-3 * abs(ref), t


@pytest.mark.slow
def test_default_restarts_escape_the_all_noise_optimum():
    # sin(3x) explained as noise is a local optimum; scikit-learn with ten
    # random restarts finds the signal, and so does every default fit: its own
    # objective at its optimum is at least its objective at sklearn's
    X = np.linspace(0, 10, 60)[:, None]
    y = np.sin(3 * X[:, 0])
    kernel = ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(1e-2)
    ref = _sklearn_fit(kernel, X, y, n_restarts_optimizer=10, random_state=0, normalize_y=True)
    for seed in range(3):
        ours = BatchedGaussianProcessRegressor(random_state=seed).fit(X, y)
        at_ref = ours.log_marginal_likelihood(ref.kernel_.theta) + ours.log_prior(ref.kernel_.theta)
        assert ours.log_marginal_likelihood_value_ + ours.log_prior_value_ >= at_ref - 0.1
        assert ours.noise_levels_[0] < 1e-3  # the signal, not noise


# --------------------------------------------------------------------------- missing values
def test_nan_in_y_is_missing_for_that_target_only(multi_target_data):
    X, y = multi_target_data
    y = y.copy()
    missing = [2, 5, 11, 30]
    y[missing, 1] = np.nan
    kernel = sklearn_kernel("matern25", [0.5, 1.0, 0.3])
    ours = BatchedGaussianProcessRegressor(kernel, optimizer=None).fit(X, y)
    keep = np.setdiff1d(np.arange(len(X)), missing)
    ref_1 = GaussianProcessRegressor(kernel, optimizer=None).fit(X[keep], y[keep, 1])
    ref_0 = GaussianProcessRegressor(kernel, optimizer=None).fit(X, y[:, 0])
    mean, std = ours.predict(X[:6], return_std=True)
    assert_allclose(mean[:, 1], ref_1.predict(X[:6]), rtol=1e-8, atol=1e-12)
    assert_allclose(std[:, 1], ref_1.predict(X[:6], return_std=True)[1], rtol=1e-8, atol=1e-12)
    assert_allclose(mean[:, 0], ref_0.predict(X[:6]), rtol=1e-8, atol=1e-12)
    assert_allclose(ours.log_marginal_likelihood_value_[1], ref_1.log_marginal_likelihood_value_, rtol=1e-8)
    assert np.isfinite(ours.alpha_).all() and np.all(ours.alpha_[missing, 1] == 0)


def test_optimised_fit_with_missing_equals_fit_on_observed_rows(multi_target_data):
    X, y = multi_target_data
    y = y[:, :2].copy()
    y[[1, 4, 9], 0] = np.nan
    both = BatchedGaussianProcessRegressor(n_restarts_optimizer=0).fit(X, y)
    keep = ~np.isnan(y[:, 0])
    alone = BatchedGaussianProcessRegressor(n_restarts_optimizer=0).fit(X[keep], y[keep, 0])
    # the default kernel's starting length scales come from X's spread, which
    # differs on the subset; compare likelihood surfaces at alone's optimum
    lml = both.log_marginal_likelihood(np.vstack([alone.theta_[0], both.theta_[1]]))
    assert_allclose(lml[0], alone.log_marginal_likelihood_value_, rtol=1e-10)


# --------------------------------------------------------------------------- sampling
def test_sample_y_moments_match_predictive_distribution(multi_target_data):
    X, y = multi_target_data
    ours = BatchedGaussianProcessRegressor(sklearn_kernel("rbf", [0.5, 1.0, 0.3]), optimizer=None).fit(X, y)
    Xs = X[:4] + 0.05
    mean, cov = ours.predict(Xs, return_cov=True)
    draws = ours.sample_y(Xs, n_samples=20000, random_state=1)
    assert draws.shape == (4, 4, 20000)
    sd = np.sqrt(np.einsum("iit->it", cov))
    # Monte-Carlo error of the mean: sd / sqrt(20000); 5 standard errors
    assert np.all(np.abs(draws.mean(-1) - mean) <= 5 * sd / np.sqrt(20000))
    for t in range(4):
        assert_allclose(np.cov(draws[:, t, :]), cov[:, :, t], atol=0.05 * cov[:, :, t].max())


def test_sample_y_is_reproducible_and_leaves_global_seed_alone(multi_target_data):
    X, y = multi_target_data
    ours = BatchedGaussianProcessRegressor(optimizer=None).fit(X, y)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = ours.sample_y(X[:3], n_samples=2, random_state=7)
    after = torch.rand(1)
    assert_allclose(a, ours.sample_y(X[:3], n_samples=2, random_state=7))
    assert not np.allclose(a, ours.sample_y(X[:3], n_samples=2, random_state=8))
    assert before == after


# --------------------------------------------------------------------------- attributes, warnings, numerics
@pytest.mark.parametrize(
    "kernel",
    slow_except([None, ConstantKernel() * Matern(np.ones(3), nu=2.5) + WhiteKernel()], None),
    ids=["default", "sklearn-matern"])
def test_latent_predictions_leave_the_white_noise_out(multi_target_data, kernel):
    X, y = multi_target_data
    est = BatchedGaussianProcessRegressor(kernel, random_state=0, n_restarts_optimizer=0,
                                          normalize_y=True).fit(X, y)
    Xq = X[:6] + 0.05
    noise = est.noise_levels_ * est.gps_.y_std ** 2  # (n_targets,), in the targets' units
    mean, std = est.predict(Xq, return_std=True)
    latent_mean, latent_std = est.predict(Xq, return_std=True, observation_noise=False)
    assert_allclose(latent_mean, mean, rtol=1e-12)
    assert_allclose(latent_std, np.sqrt(std ** 2 - noise), rtol=1e-8)
    _, cov = est.predict(Xq, return_cov=True)
    _, latent_cov = est.predict(Xq, return_cov=True, observation_noise=False)
    assert_allclose(latent_cov, cov - np.eye(6)[..., None] * noise, rtol=1e-8, atol=1e-12)
    if kernel is not None:
        # oracle: scikit-learn's GPR without the WhiteKernel and with alpha = the noise level,
        # whose std leaves alpha out
        for t in range(y.shape[1]):
            fitted = est.kernels_[t]
            ref = GaussianProcessRegressor(fitted.k1, alpha=fitted.k2.noise_level, optimizer=None,
                                           normalize_y=True).fit(X, y[:, t])
            ref_mean, ref_std = ref.predict(Xq, return_std=True)
            assert_allclose(latent_mean[:, t], ref_mean, rtol=1e-8)
            assert_allclose(latent_std[:, t], ref_std, rtol=1e-7)
    draws = est.sample_y(Xq, n_samples=4000, random_state=1, observation_noise=False)
    for t in range(y.shape[1]):  # the draws' covariance is the latent one
        assert_allclose(np.cov(draws[:, t]), latent_cov[..., t], atol=0.1 * latent_cov[..., t].max())
    prior = BatchedGaussianProcessRegressor(ConstantKernel(2.0) * RBF(1.0) + WhiteKernel(0.3))
    _, prior_std = prior.predict(Xq, return_std=True, observation_noise=False)
    assert_allclose(prior_std, np.sqrt(2.0), rtol=1e-12)


def test_sample_y_of_a_target_is_the_same_alone_and_among_others(multi_target_data):
    X, y = multi_target_data
    kernel = sklearn_kernel("rbf", [0.5, 1.0, 0.3])
    fit = lambda Y: BatchedGaussianProcessRegressor(kernel, optimizer=None).fit(X, Y)  # noqa: E731
    Xq = X[:7] + 0.01
    together = fit(y).sample_y(Xq, n_samples=5, random_state=3)
    assert_allclose(fit(y[:, 0]).sample_y(Xq, n_samples=5, random_state=3), together[:, 0],
                    rtol=1e-10, atol=1e-12)


def test_fitted_attributes_are_per_target(multi_target_data):
    X, y = multi_target_data
    ours = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
    assert ours.length_scales_.shape == (4, 3)
    for name in ("outputscales_", "noise_levels_", "log_marginal_likelihood_value_", "n_iter_",
                 "converged_", "jitter_"):
        assert getattr(ours, name).shape == (4,), name
    assert ours.theta_.shape == (4, 5) and len(ours.hyperparameter_names_) == 5
    assert ours.converged_.all() and (ours.n_iter_ > 0).all()
    assert_allclose(np.exp(ours.theta_[:, 1:4]), ours.length_scales_)
    assert_allclose(np.exp(ours.theta_[:, 0]), ours.outputscales_)
    assert_allclose(np.exp(ours.theta_[:, -1]), ours.noise_levels_)


def test_default_kernel_is_invariant_to_the_scale_and_offset_of_the_data(multi_target_data):
    X, y = multi_target_data
    a = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
    b = BatchedGaussianProcessRegressor(random_state=0).fit(X * 1000.0 - 7.0, y * 50.0 + 3e4)
    # the model is on standardised targets and its prior on length scales
    # relative to each feature's range: the same fit in other units
    assert_allclose(b.log_marginal_likelihood_value_, a.log_marginal_likelihood_value_, rtol=1e-6)
    assert_allclose(b.log_prior_value_ - a.log_prior_value_, -X.shape[1] * np.log(1000.0), rtol=1e-6)
    assert_allclose(b.predict(X[:5] * 1000.0 - 7.0), a.predict(X[:5]) * 50.0 + 3e4, rtol=1e-6)
    assert_allclose(b.length_scales_, a.length_scales_ * 1000.0, rtol=1e-4)


def test_max_iter_reached_warns_with_target_indices(multi_target_data):
    X, y = multi_target_data
    with pytest.warns(ConvergenceWarning, match=r"target\(s\) \[0, 1, 2, 3\].*max_iter=2"):
        ours = BatchedGaussianProcessRegressor(max_iter=2, n_restarts_optimizer=0).fit(X, y)
    assert not ours.converged_.any() and (ours.n_iter_ == 2).all()


def test_singular_target_gets_jitter_and_a_warning_naming_it(rng):
    X = np.repeat(rng.uniform(size=(10, 2)), 2, axis=0)
    y = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1])])
    kernel = RBF([1.0, 1.0])  # no noise: duplicate rows make K singular
    with pytest.warns(ConvergenceWarning, match=r"target\(s\) \[0, 1\].*jitter"):
        ours = BatchedGaussianProcessRegressor(kernel, optimizer=None, alpha=0.0).fit(X, y)
    assert (ours.jitter_ > 0).all()
    mean, std = ours.predict(X, return_std=True)
    assert np.isfinite(mean).all() and (std >= 0).all()


def test_constant_target_and_tiny_samples(rng):
    X = rng.uniform(size=(12, 2))
    y = np.column_stack([np.full(12, 3.0), np.sin(5 * X[:, 0])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = BatchedGaussianProcessRegressor(random_state=0, normalize_y=True).fit(X, y)
        assert_allclose(ours.predict(X)[:, 0], 3.0, atol=1e-6)
        for n in (1, 2):
            small = BatchedGaussianProcessRegressor(random_state=0).fit(X[:n], y[:n])
            mean, std = small.predict(X, return_std=True)
            assert np.isfinite(mean).all() and np.isfinite(std).all() and (std >= 0).all()


def test_integer_and_float32_inputs_give_float64_outputs(multi_target_data):
    X, y = multi_target_data
    Xi = np.round(X * 10).astype(np.int64)
    a = BatchedGaussianProcessRegressor(optimizer=None).fit(Xi, np.round(y * 10).astype(int))
    b = BatchedGaussianProcessRegressor(optimizer=None).fit(Xi.astype(float), np.round(y * 10))
    assert a.predict(Xi).dtype == np.float64
    assert_allclose(a.predict(Xi), b.predict(Xi))
    c = BatchedGaussianProcessRegressor(optimizer=None).fit(X.astype(np.float32), y.astype(np.float32))
    assert c.predict(X.astype(np.float32)).dtype == np.float64


def test_float32_compute_is_close_to_float64(multi_target_data):
    X, y = multi_target_data
    kernel = sklearn_kernel("rbf", [0.5, 1.0, 0.3])
    a = BatchedGaussianProcessRegressor(kernel, optimizer=None).fit(X, y)
    b = BatchedGaussianProcessRegressor(kernel, optimizer=None, dtype="float32").fit(X, y)
    assert b.predict(X).dtype == np.float64
    assert_allclose(b.predict(X), a.predict(X), rtol=1e-3, atol=1e-3)


def test_pandas_dataframe_sets_feature_names(multi_target_data):
    pd = pytest.importorskip("pandas")
    X, y = multi_target_data
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    ours = BatchedGaussianProcessRegressor(optimizer=None).fit(df, y)
    assert list(ours.feature_names_in_) == ["a", "b", "c"]
    assert_allclose(ours.predict(df), BatchedGaussianProcessRegressor(optimizer=None).fit(X, y).predict(X))


def test_pickle_round_trip(multi_target_data):
    X, y = multi_target_data
    ours = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(ours))
    assert_allclose(again.predict(X, return_std=True)[1], ours.predict(X, return_std=True)[1])


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "X, y, error, match",
    [
        (np.array([[np.nan, 1.0]] * 5), np.ones(5), ValueError, "Input X contains NaN"),
        (np.array([[np.inf, 1.0]] * 5), np.ones(5), ValueError, "Input X contains infinity"),
        (np.ones((5, 2)), np.array([1, 2, np.inf, 4, 5.0]), ValueError, "Input y contains infinity"),
        (np.ones((5, 2)) + 1j, np.ones(5), ValueError, "Complex data not supported"),
        (np.empty((0, 2)), np.empty(0), ValueError, "0 sample"),
        (np.empty((5, 0)), np.ones(5), ValueError, "0 feature"),
        (np.ones((5, 2)), np.ones(4), ValueError, "inconsistent numbers of samples"),
        (np.ones((5, 2)), np.full(5, np.nan), ValueError,
         r"Target\(s\) \[0\] have no observed value \(all NaN\); there is nothing to fit"),
        (np.ones(5), np.ones(5), ValueError, "Expected 2D array"),
    ],
    ids=["nan-X", "inf-X", "inf-y", "complex", "empty", "no-features", "length", "all-nan-target", "1d-X"],
)
def test_bad_input_is_a_clear_error(X, y, error, match):
    with pytest.raises(error, match=match):
        BatchedGaussianProcessRegressor().fit(X, y)


@pytest.mark.parametrize("n_targets", [None, 1, 3])
@pytest.mark.parametrize("kernel", [None, ConstantKernel(2.0) * Matern([0.5, 1.0, 2.0], nu=1.5)
                                    + WhiteKernel(0.1)], ids=["default", "matern"])
def test_before_fit_predict_and_sample_y_use_the_prior_as_sklearn(multi_target_data, kernel, n_targets):
    X, _ = multi_target_data
    Xq = X[:6]
    ours = BatchedGaussianProcessRegressor(kernel, n_targets=n_targets)
    ref = GaussianProcessRegressor(kernel, n_targets=n_targets)
    assert_allclose(ours.predict(Xq), ref.predict(Xq), atol=0)
    for call in (dict(return_std=True), dict(return_cov=True)):
        for a, b in zip(ours.predict(Xq, **call), ref.predict(Xq, **call)):
            assert a.shape == b.shape
            assert_allclose(a, b, rtol=1e-12)
    draws = ours.sample_y(Xq, n_samples=4000, random_state=0)
    assert draws.shape == ref.sample_y(Xq, n_samples=4000).shape
    _, cov = ref.predict(Xq, return_cov=True)
    cov = cov.reshape(6, 6, -1)
    flat = draws.reshape(6, -1, 4000)
    for t in range(flat.shape[1]):  # moments of the draws: mean 0, the prior's covariance
        assert_allclose(flat[:, t].mean(-1), 0.0, atol=4 * np.sqrt(cov[..., t].diagonal().max() / 4000))
        assert_allclose(np.cov(flat[:, t]), cov[..., t], atol=0.1 * cov[..., t].max())
    assert not hasattr(ours, "n_features_in_")  # nothing stored before fit


def test_n_targets_must_match_a_2d_y(multi_target_data):
    X, y = multi_target_data
    with pytest.raises(ValueError, match=r"The number of targets seen in `y`.*Got 4 != 2"):
        BatchedGaussianProcessRegressor(n_targets=2).fit(X, y)
    BatchedGaussianProcessRegressor(n_targets=4, optimizer=None).fit(X, y)
    with pytest.raises(ValueError, match=r"Got 1 != 4"):  # a 1-D y is one target
        BatchedGaussianProcessRegressor(n_targets=4).fit(X, y[:, 0])
    with pytest.raises(ValueError, match="n_targets must be None or an integer >= 1"):
        BatchedGaussianProcessRegressor(n_targets=0).predict(X)


def test_predict_errors(multi_target_data):
    X, y = multi_target_data
    unfitted = BatchedGaussianProcessRegressor()
    for read in (lambda: unfitted.L_, lambda: unfitted.alpha_, lambda: unfitted.kernel_,
                 unfitted.log_marginal_likelihood, lambda: loo_predictive(unfitted)):
        with pytest.raises(NotFittedError):
            read()
    ours = BatchedGaussianProcessRegressor(optimizer=None).fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features, but BatchedGaussianProcessRegressor is expecting 3"):
        ours.predict(X[:, :2])
    with pytest.raises(ValueError, match="theta has shape"):
        ours.log_marginal_likelihood(np.zeros(2))


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(kernel="rbf"), TypeError, "kernel must be None, a scikit-learn kernel"),
        (dict(kernel=RBF([1.0, 1.0])), ValueError, r"length_scale of RBF \(length_scale\) has shape \(2,\).*3 features"),
        (dict(optimizer="adam"), ValueError, "optimizer must be"),
        (dict(n_restarts_optimizer=-1), ValueError, "n_restarts_optimizer must be an integer"),
        (dict(max_iter=0), ValueError, "max_iter must be an integer >= 1"),
        (dict(tol=0.0), ValueError, "tol must be a positive"),
        (dict(dtype="float16"), ValueError, "dtype must be 'float64' or 'float32'"),
        (dict(device="tpu"), ValueError, "not a valid torch device"),
        (dict(alpha=np.ones(3)), ValueError, "alpha must be a scalar or an array"),
        (dict(alpha=-1.0), ValueError, "alpha must be finite and non-negative"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_parameters_are_clear_errors(multi_target_data, params, error, match):
    X, y = multi_target_data
    with pytest.raises(error, match=match):
        BatchedGaussianProcessRegressor(**params).fit(X, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_gpu_is_a_clear_error(multi_target_data):
    X, y = multi_target_data
    with pytest.raises(ValueError, match="CUDA is not available"):
        BatchedGaussianProcessRegressor(device="cuda").fit(X, y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fit_matches_cpu_and_pickles_to_numpy(multi_target_data):
    X, y = multi_target_data
    kernel = sklearn_kernel("rbf", [0.5, 1.0, 0.3])
    cpu = BatchedGaussianProcessRegressor(kernel, optimizer=None).fit(X, y)
    gpu = BatchedGaussianProcessRegressor(kernel, optimizer=None, device="cuda").fit(X, y)
    assert_allclose(gpu.predict(X), cpu.predict(X), rtol=1e-8, atol=1e-10)
    state = pickle.loads(pickle.dumps(gpu)).__dict__
    assert not any(isinstance(v, torch.Tensor) for v in state.values())


# --------------------------------------------------------------------------- sklearn ecosystem
def test_cross_validate_and_pipeline_match_sklearn_with_fixed_hyperparameters(multi_target_data):
    X, y = multi_target_data
    kernel = sklearn_kernel("matern15", [0.5, 1.0, 0.3])
    ours = make_pipeline(StandardScaler(), BatchedGaussianProcessRegressor(kernel, optimizer=None))
    ref = make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, optimizer=None))
    cv = KFold(5, shuffle=True, random_state=0)
    a = cross_validate(ours, X, y, cv=cv)["test_score"]
    b = cross_validate(ref, X, y, cv=cv)["test_score"]
    assert_allclose(a, b, rtol=1e-6)


@pytest.mark.slow
def test_grid_search_reaches_nested_kernel_parameters(multi_target_data):
    X, y = multi_target_data
    kernel = ConstantKernel(1.0) * RBF([1.0, 1.0, 1.0]) + WhiteKernel(0.1)
    grid = {"kernel__k1__k2__length_scale": [[0.3, 0.3, 0.3], [1.0, 1.0, 1.0]], "alpha": [1e-10, 1e-2]}
    ours = GridSearchCV(BatchedGaussianProcessRegressor(kernel, optimizer=None), grid, cv=3).fit(X, y)
    ref = GridSearchCV(GaussianProcessRegressor(kernel, optimizer=None), grid, cv=3).fit(X, y)
    assert ours.best_params_ == ref.best_params_
    assert_allclose(ours.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"], rtol=1e-6)


def test_irrelevant_feature_gets_a_long_length_scale_without_warning_for_default_kernel():
    rng = np.random.RandomState(2)
    X = rng.uniform(size=(40, 2))
    y = np.sin(5 * X[:, 0]) + 0.05 * rng.randn(40)  # feature 1 is irrelevant
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
    span = X.max(axis=0) - X.min(axis=0)
    # the likelihood is flat in length_scale[1] beyond the data's range and the
    # prior (median 4 * sqrt(2) ranges) holds it there, where the feature's
    # part of the correlation stays above 0.99
    assert ours.length_scales_[0, 0] < 0.5 * span[0]
    assert ours.length_scales_[0, 1] > 5.0 * span[1]
    # a scikit-learn kernel keeps scikit-learn's warning
    kernel = ConstantKernel() * RBF([1.0, 1.0], length_scale_bounds=(1e-2, 10.0)) + WhiteKernel()
    with pytest.warns(ConvergenceWarning, match=r"dimension 1 of parameter k1__k2__length_scale is "
                                                 r"close to the specified upper bound 10.0\."):
        BatchedGaussianProcessRegressor(kernel, random_state=0).fit(X, y)


def test_score_leaves_a_failed_target_out_with_a_warning_naming_it():
    # issue 23, item 2: one failed target raised "Input contains NaN" for every target
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(25, 2))
    Y = np.column_stack([np.sin(3 * X[:, 0]), X[:, 1] ** 2, np.cos(2 * X[:, 0])])
    Y_train = Y.copy()
    Y_train[:, 1] = np.nan  # target 1 cannot be fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpr = BatchedGaussianProcessRegressor(random_state=0).fit(X, Y_train)
    assert_array_equal(gpr.failed_targets_, [1])
    X_test = rng.uniform(size=(15, 2))
    Y_test = np.column_stack([np.sin(3 * X_test[:, 0]), X_test[:, 1] ** 2, np.cos(2 * X_test[:, 0])])
    with pytest.warns(UserWarning, match=r"Target\(s\) \[1\] could not be fitted") as record:
        score = gpr.score(X_test, Y_test)
    assert len(record) == 1  # warned once, by the score
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = gpr.predict(X_test)
    # scikit-learn's uniform average over the fitted columns
    assert score == pytest.approx(r2_score(Y_test[:, [0, 2]], pred[:, [0, 2]]), rel=1e-12)


def test_a_string_in_y_is_an_error_naming_y_and_its_column():
    # issue 23, item 16: "could not convert string to float: 'a'" said neither
    pd = pytest.importorskip("pandas")
    X = np.random.RandomState(0).uniform(size=(5, 2))
    y = pd.DataFrame({"u": [1.0, 2, 3, 4, 5], "v": ["1", "2", "a", "4", "5"]})
    with pytest.raises(ValueError, match=r"^y column 1 \('v'\) holds a value that is not a number: 'a'"):
        BatchedGaussianProcessRegressor().fit(X, y)
    with pytest.raises(ValueError, match=r"^y holds a value that is not a number: 'b'"):
        BatchedGaussianProcessRegressor().fit(X, ["1", "b", "3", "4", "5"])
    # numeric strings remain accepted, as scikit-learn accepts them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        BatchedGaussianProcessRegressor(random_state=0).fit(X, ["1", "2", "3", "4", "5.5"])


def test_noise_variance_is_the_fitted_noise_in_the_units_of_y():
    # issue 23, item 13: noise_levels_ is relative to the target's variance under
    # standardisation (1.01 for a target of std 24); noise_variance_ is in y's units
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(30, 2))
    Y = np.column_stack([24.0 * np.sin(3 * X[:, 0]), 0.1 * X[:, 1] + 5.0]) + rng.randn(30, 2)
    Y[3, 1] = np.nan
    kernel = ConstantKernel(1.0, "fixed") * RBF([0.5, 0.5], "fixed") + WhiteKernel(0.3, "fixed")
    gpr = BatchedGaussianProcessRegressor(kernel, normalize_y=True).fit(X, Y)
    assert_allclose(gpr.noise_levels_, [0.3, 0.3])
    # by hand: the fixed level times each target's variance over its observed rows
    by_hand = [0.3 * np.var(Y[:, 0]), 0.3 * np.nanvar(Y[:, 1])]
    assert_allclose(gpr.noise_variance_, by_hand, rtol=1e-12)
    # what predict adds to the latent variance, for the default (optimised) model too
    for est in (gpr, BatchedGaussianProcessRegressor(random_state=0).fit(X, Y)):
        _, std = est.predict(X[:4], return_std=True)
        _, latent = est.predict(X[:4], return_std=True, observation_noise=False)
        assert_allclose(std**2 - latent**2, np.broadcast_to(est.noise_variance_, (4, 2)), rtol=1e-8)
    unscaled = BatchedGaussianProcessRegressor(kernel, normalize_y=False).fit(X, Y)
    assert_allclose(unscaled.noise_variance_, [0.3, 0.3])


def test_warnings_are_few_readable_and_only_where_the_user_can_act():
    # issue 23, item 14
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 10, size=(200, 3))
    y = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1]) + X[:, 2], X[:, 2] ** 2])
    y[::7, 1] = np.nan
    # the README's first example: noise-free data, the default model's noise at its
    # lower bound is the right answer, not a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
    # a bound is printed readably
    kernel = ConstantKernel() * RBF(1.0) + WhiteKernel(noise_level_bounds=(4.61009595509e-09, 1.0))
    with pytest.warns(ConvergenceWarning, match=r"lower bound 4\.61e-09\. Decreasing") as record:
        BatchedGaussianProcessRegressor(kernel, random_state=0).fit(X[:40], y[:40, 0])
    assert not any("noise" in str(r.message) and "restarts" in str(r.message) for r in record)
    # one warning per fit, naming the targets: a grid search of 3 x 3 fits and a refit
    kernel = ConstantKernel() * RBF([1.0, 1.0, 1.0], length_scale_bounds=(1e-2, 10.0)) + WhiteKernel()
    Y = np.column_stack([np.sin(X[:30, 0]), np.cos(X[:30, 1]), 2 * np.sin(X[:30, 0])])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        GridSearchCV(BatchedGaussianProcessRegressor(kernel, random_state=0),
                     {"n_restarts_optimizer": [0, 1, 2]}, cv=3).fit(X[:30], Y)
    messages = [str(r.message) for r in record if issubclass(r.category, ConvergenceWarning)]
    assert 0 < len(messages) <= 10  # was 40: one per parameter at a bound, per fit
    assert all("Target(s): [" in m for m in messages)


def test_verbose_progress_moves_within_a_single_chunk(monkeypatch, capsys):
    # issue 23, item 15: one chunk left the bar at 0 until the end of the fit
    import sys
    import types

    from skbgp import _engine

    rng = np.random.RandomState(0)
    X = rng.uniform(size=(30, 2))
    Y = np.column_stack([np.sin(3 * X[:, 0]), np.cos(2 * X[:, 1])])
    # without tqdm: plain lines about the iterations (every line, not every 5 s, here)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setattr(_engine, "_TEXT_EVERY", 0.0, raising=False)
    BatchedGaussianProcessRegressor(random_state=0, verbose=1).fit(X, Y)
    lines = capsys.readouterr().out.splitlines()
    iterations = [ln for ln in lines if ln.startswith("[skbgp] iteration ")]
    assert len(iterations) >= 5 and "member(s) still optimising" in iterations[0]
    assert lines[-1].startswith("[skbgp] chunk 1/1: 2/2 targets fitted")  # then the chunk
    # with tqdm: the iterations in the bar's text while the chunk runs
    states = []

    class FakeBar:
        def __init__(self, **kwargs):
            pass

        def set_postfix_str(self, text, refresh=True):
            states.append(text)

        def set_postfix(self, **kwargs):
            pass

        def update(self, n):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=FakeBar))
    BatchedGaussianProcessRegressor(random_state=0, verbose=1).fit(X, Y)
    assert len(states) >= 5 and all(s.startswith("iteration ") for s in states)
