"""SparseBatchedGaussianProcessRegressor and the collapsed bound, against exact GPs and themselves."""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, Matern, WhiteKernel
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skbgp._engine as engine
from skbgp import (BatchedGaussianProcessRegressor, QBatchSuggester,
                   SparseBatchedGaussianProcessRegressor, batched_cross_validate, loo_predictive)
from skbgp._core.sparse import InducingKernel, greedy_inducing, sparse_factorize, sparse_nlml
from skbgp._core.stationary import StationaryKernel

from .conftest import KERNEL_IDS, NUS, sklearn_kernel, slow_except

T = dict(dtype=torch.float64)


def _data(n=40, d=2, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, **T) * 3
    y = torch.randn(b, n, generator=g, **T)
    mask = torch.ones(b, n, **T)
    mask[1, ::5] = 0.0
    return X, y * mask, mask


def _theta(b, d, seed=1):
    g = torch.Generator().manual_seed(seed)
    # log outputscale, log length scales, log noise: moderate values
    return torch.cat([0.3 * torch.randn(b, 1, generator=g, **T),
                      -0.3 + 0.3 * torch.randn(b, d, generator=g, **T),
                      -2.0 + 0.5 * torch.randn(b, 1, generator=g, **T)], -1)


def _alphas(b, n):
    return {"scalar": torch.tensor(1e-10, **T), "per_row": torch.linspace(0.0, 0.05, n, **T),
            "per_target": torch.rand(b, n, generator=torch.Generator().manual_seed(3), **T) * 0.05}


# --------------------------------------------------------------------------- the bound, closed forms
@pytest.mark.parametrize("name", KERNEL_IDS)
@pytest.mark.parametrize("alpha", ["scalar", "per_row", "per_target"])
def test_bound_with_every_input_inducing_is_the_exact_lml(name, alpha):
    X, y, mask = _data()
    b, n = y.shape
    base = StationaryKernel(NUS[name], X.shape[1])
    kernel = InducingKernel(base, jitter=1e-12, center=X.mean(0))
    theta = _theta(b, X.shape[1])
    a = _alphas(b, n)[alpha]
    Z = X.expand(b, n, X.shape[1]).clone()
    loss, grad = sparse_nlml(kernel, theta, Z, torch.ones(b, n, **T), X, y, mask, a)
    exact, exact_grad = base.nlml(theta, base.training_data(X), y, mask, a)
    assert_allclose(loss, exact, rtol=1e-6)
    assert_allclose(grad, exact_grad, rtol=1e-6, atol=1e-6 * exact_grad.abs().max().item())


@pytest.mark.parametrize("name", KERNEL_IDS)
@pytest.mark.parametrize("alpha", ["scalar", "per_target"])
def test_bound_gradient_matches_finite_differences_and_stays_below_the_lml(name, alpha):
    X, y, mask = _data(n=60)
    b, n = y.shape
    base = StationaryKernel(NUS[name], X.shape[1])
    kernel = InducingKernel(base, jitter=1e-6, center=X.mean(0))
    theta = _theta(b, X.shape[1])
    a = _alphas(b, n)[alpha]
    index, zmask = greedy_inducing(kernel, theta, X, 12)
    Z = X[index]
    loss, grad = sparse_nlml(kernel, theta, Z, zmask, X, y, mask, a)
    h = 1e-6
    fd = torch.zeros_like(theta)
    for j in range(theta.shape[1]):
        e = torch.zeros_like(theta)
        e[:, j] = h
        up = sparse_nlml(kernel, theta + e, Z, zmask, X, y, mask, a, eval_gradient=False)[0]
        down = sparse_nlml(kernel, theta - e, Z, zmask, X, y, mask, a, eval_gradient=False)[0]
        fd[:, j] = (up - down) / (2 * h)
    assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)
    exact, _ = base.nlml(theta, base.training_data(X), y, mask, a, eval_gradient=False)
    assert (loss >= exact).all()  # -bound >= -lml
    # more inducing points never loosen the bound (the greedy choices are nested)
    index2, zmask2 = greedy_inducing(kernel, theta, X, 24)
    assert_array_equal(index2[:, :12], index)
    loss2, _ = sparse_nlml(kernel, theta, X[index2], zmask2, X, y, mask, a, eval_gradient=False)
    assert (loss2 <= loss + 1e-9).all()


def test_isotropic_kernel_without_outputscale_or_noise_has_the_exact_gradient():
    X, y, mask = _data(n=30)
    b, n = y.shape
    base = StationaryKernel(2.5, 1, has_outputscale=False, has_noise=False)
    kernel = InducingKernel(base, jitter=1e-12, center=X.mean(0))
    theta = torch.tensor([[-0.5], [-0.2], [0.1]], **T)
    a = torch.tensor(0.05, **T)
    Z = X.expand(b, n, X.shape[1]).clone()
    loss, grad = sparse_nlml(kernel, theta, Z, torch.ones(b, n, **T), X, y, mask, a)
    exact, exact_grad = base.nlml(theta, base.training_data(X), y, mask, a)
    assert_allclose(loss, exact, rtol=1e-6)
    assert_allclose(grad, exact_grad, rtol=1e-6)


def test_bound_is_the_same_in_any_row_blocks(monkeypatch):
    import skbgp._core.sparse as sparse

    X, y, mask = _data(n=50)
    b = y.shape[0]
    base = StationaryKernel(math.inf, 2)
    kernel = InducingKernel(base, center=X.mean(0))
    theta = _theta(b, 2)
    index, zmask = greedy_inducing(kernel, theta, X, 10)
    args = (kernel, theta, X[index], zmask, X, y, mask, torch.tensor(1e-4, **T))
    loss, grad = sparse_nlml(*args)
    monkeypatch.setattr(sparse, "row_block", lambda m: 7)  # 8 blocks, the last short
    loss7, grad7 = sparse_nlml(*args)
    assert_allclose(loss7, loss, rtol=1e-12)
    assert_allclose(grad7, grad, rtol=1e-10, atol=1e-10)


def test_greedy_selection_picks_the_largest_conditional_variance():
    """Oracle: the conditional variances written out with numpy, step by step."""
    X, _, _ = _data(n=25)
    base = StationaryKernel(math.inf, 2)
    kernel = InducingKernel(base, center=X.mean(0))
    theta = _theta(1, 2)
    index, zmask = greedy_inducing(kernel, theta, X, 6)
    K = kernel.cross(theta, X, X.unsqueeze(0))[0].numpy()
    chosen = []
    for _ in range(6):
        if chosen:
            Kc = K[np.ix_(chosen, chosen)]
            var = np.diag(K) - np.einsum("ij,ji->i", K[:, chosen], np.linalg.solve(Kc, K[chosen]))
        else:
            var = np.diag(K).copy()
        var[chosen] = -np.inf
        chosen.append(int(np.argmax(var)))
    assert index[0].tolist() == chosen
    assert zmask.all()


# --------------------------------------------------------------------------- the estimator vs the exact one
def _problem(n=60, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(0, 3, size=(n, 2))
    Y = np.column_stack([np.sin(2 * X[:, 0]) + 0.1 * rng.randn(n),
                         np.cos(X[:, 1]) * X[:, 0] + 0.05 * rng.randn(n),
                         X[:, 1] ** 2 + 0.2 * rng.randn(n)])
    return X, Y


@pytest.mark.parametrize("name", slow_except(KERNEL_IDS, "rbf", "matern05"))
def test_every_row_inducing_gives_the_exact_estimator(name):
    X, Y = _problem()
    Y[::6, 1] = np.nan
    Xs = np.random.RandomState(4).uniform(0, 3, size=(7, 2))
    kernel = sklearn_kernel(name, [0.7, 1.2])
    exact = BatchedGaussianProcessRegressor(kernel, optimizer=None).fit(X, Y)
    sparse = SparseBatchedGaussianProcessRegressor(kernel, optimizer=None, n_inducing=100,
                                                   jitter=1e-12).fit(X, Y)
    assert_array_equal(sparse.n_inducing_, [60, 60, 60])
    assert_allclose(sparse.log_marginal_likelihood_value_, exact.log_marginal_likelihood_value_,
                    rtol=1e-6)
    for kw in ({"return_std": True}, {"return_cov": True}):
        for ours, theirs in zip(sparse.predict(Xs, **kw), exact.predict(Xs, **kw)):
            # rtol 1e-6 of the largest entry: a covariance's small entries are differences
            assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * np.abs(theirs).max())
    mean, std = sparse.predict(Xs, return_std=True, observation_noise=False)
    emean, estd = exact.predict(Xs, return_std=True, observation_noise=False)
    assert_allclose(std, estd, rtol=1e-5)
    theta = exact.theta_ + 0.1
    bound, grad = sparse.log_marginal_likelihood(theta, eval_gradient=True)
    lml, lml_grad = exact.log_marginal_likelihood(theta, eval_gradient=True)
    assert_allclose(bound, lml, rtol=1e-6)
    assert_allclose(grad, lml_grad, rtol=1e-5, atol=1e-6)


def test_fewer_inducing_points_bound_the_exact_lml_from_below():
    X, Y = _problem(n=80)
    kernel = sklearn_kernel("matern25", [0.7, 1.2])
    exact = BatchedGaussianProcessRegressor(kernel, optimizer=None).fit(X, Y)
    bounds = [SparseBatchedGaussianProcessRegressor(kernel, optimizer=None, n_inducing=m)
              .fit(X, Y).log_marginal_likelihood_value_ for m in (5, 10, 20)]
    assert (np.diff(bounds, axis=0) >= -1e-9).all()
    assert (bounds[-1] <= exact.log_marginal_likelihood_value_ + 1e-9).all()


def _dense_bound(gpr, theta):
    """Oracle: Titsias' bound written densely (Q = K_nm K_mm^-1 K_mn), per target, by autograd."""
    gps = gpr.gps_
    t = gps.tensors()
    kernel, Z, zmask, _, _ = t.sparse
    Y = torch.tensor(gps.standardize(gpr._y_train_2d()).T)
    full = torch.tensor(gpr._full_theta(theta)).requires_grad_(True)
    values = []
    for b in range(Y.shape[0]):
        th = full[b:b + 1]
        use = zmask[b] > 0
        Knm = kernel.cross(th, t.X, Z[b:b + 1, use])[0]
        Kmm = kernel.inducing_covariance(th, Z[b:b + 1, use], zmask[b:b + 1, use])[0]
        Q = Knm @ torch.cholesky_solve(Knm.mT, torch.linalg.cholesky(Kmm))
        obs = t.mask[b] > 0
        lam = kernel.base.noise(th)[0] + (t.alpha if t.alpha.dim() == 0 else t.alpha[obs])
        Qo = Q[obs][:, obs]
        dist = torch.distributions.MultivariateNormal(
            torch.zeros(int(obs.sum()), **T), Qo + torch.diag(lam.expand(int(obs.sum()))))
        trace = ((kernel.base.outputscale(th)[0] - Qo.diagonal()) / lam).sum()
        values.append(dist.log_prob(Y[b, obs]) - 0.5 * trace)
    F = torch.stack(values)
    (grad,) = torch.autograd.grad(F.sum(), full)
    return F.detach().numpy(), grad.numpy()[:, gpr._free]


def test_fitted_bound_and_gradient_at_theta():
    X, Y = _problem(n=120)
    Y[::5, 1] = np.nan
    gpr = SparseBatchedGaussianProcessRegressor(n_inducing=20, random_state=0, init_subset_size=50,
                                                bound_max_iter=500).fit(X, Y)
    assert (gpr.n_iter_ > 0).all()
    assert_allclose(gpr.log_marginal_likelihood(gpr.theta_), gpr.log_marginal_likelihood_value_,
                    rtol=1e-10)
    for theta in (gpr.theta_, gpr.theta_ + 0.05):
        bound, grad = gpr.log_marginal_likelihood(theta, eval_gradient=True)
        dense, dense_grad = _dense_bound(gpr, theta)
        # the two orders of operations round apart by ~1e-9 of the bound's scale here (K_mm
        # near its jitter at long length scales)
        assert_allclose(bound, dense, rtol=1e-7)
        assert_allclose(grad, dense_grad, rtol=1e-4, atol=1e-4 * np.abs(dense_grad).max())
    # the fit maximises bound + log prior: no small step improves it
    best = gpr.log_marginal_likelihood_value_ + gpr.log_prior_value_
    for j in range(gpr.theta_.shape[1]):
        for step in (-0.02, 0.02):
            moved = gpr.theta_.copy()
            moved[:, j] += step
            assert (gpr.log_marginal_likelihood(moved) + gpr.log_prior(moved) <= best + 1e-6).all()


def test_optimised_fit_beats_its_exact_start_on_held_out_data():
    """Oracle: an exact fit on the subset the sparse fit starts from; the sparse one sees all rows."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(1500, 2))
    f = lambda X: np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1])  # noqa: E731
    y = f(X) + 0.1 * rng.randn(1500)
    Xt = rng.uniform(-1, 1, size=(500, 2))
    sparse = SparseBatchedGaussianProcessRegressor(n_inducing=64, init_subset_size=100,
                                                   random_state=0).fit(X, y)
    subset = BatchedGaussianProcessRegressor(random_state=0).fit(X[:100], y[:100])
    err_sparse = np.mean((sparse.predict(Xt) - f(Xt)) ** 2)
    err_subset = np.mean((subset.predict(Xt) - f(Xt)) ** 2)
    assert err_sparse < 0.5 * err_subset
    mean, std = sparse.predict(Xt, return_std=True)
    z = (f(Xt) + 0.1 * rng.randn(500) - mean) / std
    assert 0.9 < np.mean(np.abs(z) < 1.96) < 0.99  # calibrated predictive intervals


# --------------------------------------------------------------------------- batched == alone
def test_batched_equals_alone_in_any_chunk_and_on_workers(monkeypatch):
    X, Y = _problem(n=150)
    Y[::9, 2] = np.nan
    params = dict(n_inducing=24, init_subset_size=60, bound_max_iter=30, random_state=0)
    together = SparseBatchedGaussianProcessRegressor(**params).fit(X, Y)
    Xs = np.random.RandomState(2).uniform(0, 3, size=(5, 2))
    mean, std = together.predict(Xs, return_std=True)
    for t in range(Y.shape[1]):
        alone = SparseBatchedGaussianProcessRegressor(**params).fit(X, Y[:, [t]])
        assert_array_equal(alone.theta_[0], together.theta_[t])
        assert_array_equal(alone.inducing_points_[0], together.inducing_points_[t])
        m1, s1 = alone.predict(Xs, return_std=True)  # one column: 1-D, as scikit-learn's
        assert_allclose(m1, mean[:, t], rtol=1e-12)
        assert_allclose(s1, std[:, t], rtol=1e-12)
    chunked = SparseBatchedGaussianProcessRegressor(batch_size=1, **params).fit(X, Y)
    assert_array_equal(chunked.theta_, together.theta_)
    monkeypatch.setattr(engine, "MIN_WORKER_WORK", 0)
    workers = SparseBatchedGaussianProcessRegressor(batch_size=1, n_jobs=2, **params).fit(X, Y)
    assert_array_equal(workers.theta_, together.theta_)
    assert_allclose(workers.predict(Xs), mean, rtol=1e-12)


def test_missing_rows_are_the_target_fitted_on_its_observed_rows():
    """With every row inducing, a target with NaN is the exact GP of its observed rows."""
    X, Y = _problem()
    kernel = sklearn_kernel("matern15", [0.7, 1.2])
    Y[::4, 0] = np.nan
    keep = ~np.isnan(Y[:, 0])
    sparse = SparseBatchedGaussianProcessRegressor(kernel, optimizer=None, jitter=1e-12,
                                                   n_inducing=200).fit(X, Y)
    exact = BatchedGaussianProcessRegressor(kernel, optimizer=None).fit(X[keep], Y[keep, 0])
    Xs = X[~keep][:4]
    m, s = sparse.predict(Xs, return_std=True)
    em, es = exact.predict(Xs, return_std=True)
    assert_allclose(m[:, 0], em, rtol=1e-6)
    assert_allclose(s[:, 0], es, rtol=1e-6)


# --------------------------------------------------------------------------- the scikit-learn contract
def test_pipeline_grid_search_clone_and_pickle():
    X, Y = _problem(n=100)
    pipe = make_pipeline(StandardScaler(),
                         SparseBatchedGaussianProcessRegressor(n_inducing=16, random_state=0,
                                                               init_subset_size=40))
    search = GridSearchCV(pipe, {"sparsebatchedgaussianprocessregressor__n_inducing": [8, 16]},
                          cv=2).fit(X, Y)
    assert search.best_params_["sparsebatchedgaussianprocessregressor__n_inducing"] in (8, 16)
    gpr = search.best_estimator_[-1]
    again = pickle.loads(pickle.dumps(gpr))
    Xs = StandardScaler().fit(X).transform(X[:5])
    assert_array_equal(again.predict(Xs, return_std=True)[1], gpr.predict(Xs, return_std=True)[1])
    twin = clone(gpr)
    assert twin.get_params() == gpr.get_params() and not hasattr(twin, "gps_")
    samples = gpr.sample_y(Xs, n_samples=4000, random_state=1)
    assert samples.shape == (5, 3, 4000)
    mean, cov = gpr.predict(Xs, return_cov=True)
    assert_allclose(samples.mean(-1), mean, atol=5 * np.sqrt(cov.diagonal().T.max()) / np.sqrt(4000))
    assert np.isnan(gpr.score(Xs, Y[:5])) is np.False_


def test_kernels_and_summaries_are_those_of_the_exact_estimator():
    X, Y = _problem(n=100)
    kernel = ConstantKernel(1.0) * Matern([1.0, 1.0], nu=2.5) + WhiteKernel(0.1)
    gpr = SparseBatchedGaussianProcessRegressor(kernel, n_inducing=16, random_state=0).fit(X, Y)
    assert len(gpr.kernels_) == 3 and gpr.length_scales_.shape == (3, 2)
    assert_allclose(gpr.kernels_[1].k2.noise_level, gpr.noise_levels_[1])
    assert gpr.hyperparameter_names_ == BatchedGaussianProcessRegressor(kernel).fit(
        X, Y).hyperparameter_names_
    assert gpr.inducing_points_.shape == (3, 16, 2)
    used = gpr.inducing_points_[0][: gpr.n_inducing_[0]]
    assert all((X == z).all(1).any() for z in used)  # rows of X
    with pytest.raises(AttributeError, match="inducing points"):
        gpr.L_
    with pytest.raises(AttributeError, match="inducing points"):
        gpr.alpha_


@pytest.mark.parametrize("kernel, match", [
    (ConstantKernel() * RBF() + DotProduct(), "supports kernel=None"),
    (RBF() + RBF(), "supports kernel=None"),
])
def test_unsupported_kernels_are_a_clear_error(kernel, match):
    X, Y = _problem(n=30)
    with pytest.raises(ValueError, match=match):
        SparseBatchedGaussianProcessRegressor(kernel).fit(X, Y)


@pytest.mark.parametrize("params, match", [
    ({"n_inducing": 0}, "n_inducing must be an integer >= 1"),
    ({"init_subset_size": 1.5}, "init_subset_size must be an integer"),
    ({"jitter": -1.0}, "jitter must be a number"),
    ({"optimizer": lambda f, x, bounds: (x, f(x)[0])}, "does not take a callable"),
])
def test_bad_parameters_are_a_clear_error(params, match):
    X, Y = _problem(n=30)
    with pytest.raises(ValueError, match=match):
        SparseBatchedGaussianProcessRegressor(**params).fit(X, Y)


def test_exact_only_tools_refuse_a_sparse_model():
    X, Y = _problem(n=40)
    gpr = SparseBatchedGaussianProcessRegressor(n_inducing=8, random_state=0).fit(X, Y)
    with pytest.raises(TypeError, match="exact"):
        loo_predictive(gpr)
    with pytest.raises(TypeError, match="exact"):
        batched_cross_validate(SparseBatchedGaussianProcessRegressor(n_inducing=8), X, Y, cv=2)
    with pytest.raises(TypeError, match="exact"):
        QBatchSuggester(gpr, bounds=[(0.0, 3.0), (0.0, 3.0)]).tell(X, Y[:, 0])


def test_noise_free_data_are_interpolated_at_the_inducing_rows():
    """Oracle: interpolation. Without noise the posterior mean goes through the inducing rows."""
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 1, size=(200, 2))
    y = np.sin(5 * X).sum(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the noise at its lower bound
        gpr = SparseBatchedGaussianProcessRegressor(n_inducing=40, random_state=0).fit(X, y)
    Z = gpr.inducing_points_[0]
    # up to the jitter on K_mm (1e-6 of the outputscale, 25 here), a noise of its own
    error = np.abs(gpr.predict(Z) - np.sin(5 * Z).sum(1))
    assert error.max() < 1e-2 and error.mean() < 2e-3


def test_b_gets_jitter_where_its_rounding_is_indefinite():
    X, y, mask = _data(n=60)
    base = StationaryKernel(math.inf, 2)
    kernel = InducingKernel(base, jitter=1e-6, center=X.mean(0))
    theta = _theta(3, 2)
    theta[:, -1] = math.log(1e-12)  # almost no noise: B's entries ~ 1e12
    index, zmask = greedy_inducing(kernel, theta, X, 30)
    factor = sparse_factorize(kernel, theta, X[index], zmask, X, y, mask, torch.tensor(0.0, **T))
    assert not factor.failed.any()
    assert (factor.jitter >= 0).all() and torch.isfinite(factor.dual).all()


def test_the_subset_fit_is_the_exact_estimator_on_those_rows():
    """Without bound iterations the hyperparameters are the exact estimator's on the subset."""
    X, Y = _problem(n=200)
    Y[::7, 2] = np.nan
    gpr = SparseBatchedGaussianProcessRegressor(n_inducing=16, init_subset_size=50,
                                                random_state=0).fit(X, Y)
    rows = np.sort(np.random.RandomState(0).choice(200, 50, replace=False))
    exact = BatchedGaussianProcessRegressor(random_state=0).fit(X[rows], Y[rows])
    assert_array_equal(gpr.length_scales_, exact.length_scales_)
    # variances are relative to each target's variance: the subset's there, all rows' here
    ratio = np.nanvar(Y[rows], axis=0) / np.nanvar(Y, axis=0)
    assert_allclose(gpr.outputscales_, exact.outputscales_ * ratio, rtol=1e-10)
    assert_allclose(gpr.noise_levels_, exact.noise_levels_ * ratio, rtol=1e-10)
    assert_array_equal(gpr.n_iter_, exact.n_iter_)


def test_a_target_without_observations_is_failed_and_the_others_fit():
    X, Y = _problem(n=60)
    Y[:, 1] = np.nan
    with pytest.warns(UserWarning, match="no observed value"):
        gpr = SparseBatchedGaussianProcessRegressor(n_inducing=8, random_state=0).fit(X, Y)
    assert_array_equal(gpr.failed_targets_, [1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mean = gpr.predict(X[:3])
    assert np.isnan(mean[:, 1]).all() and np.isfinite(mean[:, [0, 2]]).all()


def test_single_target_bound_has_the_exact_estimators_shapes():
    # a 1-D y: the bound is a float and its gradient (n_free,), as the exact estimator's
    # (and scikit-learn's log_marginal_likelihood)
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 3, size=(60, 2))
    Y = np.sin(X) + 0.1 * rng.randn(60, 2)
    kernel = ConstantKernel() * RBF([1.0, 1.0]) + WhiteKernel(0.1)
    for y in (Y[:, 0], Y[:, :1]):
        sparse = SparseBatchedGaussianProcessRegressor(kernel, n_inducing=60, random_state=0).fit(X, y)
        exact = BatchedGaussianProcessRegressor(kernel, random_state=0).fit(X, y)
        theta = sparse.theta_[0]
        pairs = [(sparse.log_marginal_likelihood_value_, exact.log_marginal_likelihood_value_),
                 (sparse.log_marginal_likelihood(theta), exact.log_marginal_likelihood(theta)),
                 (sparse.log_marginal_likelihood(), exact.log_marginal_likelihood())]
        pairs += list(zip(sparse.log_marginal_likelihood(theta, eval_gradient=True),
                          exact.log_marginal_likelihood(theta, eval_gradient=True)))
        for ours, theirs in pairs:
            assert np.shape(ours) == np.shape(theirs)
            assert isinstance(ours, float) == isinstance(theirs, float)
