"""The batched likelihood and posterior against scikit-learn and closed forms."""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.gaussian_process import GaussianProcessRegressor

from skbgp._core.gp import Conditioned, cholesky_inverse, factorize, posterior
from skbgp._core.stationary import StationaryKernel, neg_log_marginal_likelihood, training_differences

from ..conftest import KERNEL_IDS, NUS, sklearn_kernel, slow_except

ALPHA = torch.tensor(1e-10, dtype=torch.float64)


def _setup(X, y, mask=None):
    Xt = torch.tensor(X)
    y = np.atleast_2d(y)
    mask = np.ones_like(y) if mask is None else mask.astype(float)
    return Xt, training_differences(Xt), torch.tensor(np.where(mask > 0, y, 0.0)), torch.tensor(mask)


@pytest.mark.parametrize("name", KERNEL_IDS)
@pytest.mark.parametrize("ard", [True, False], ids=["ard", "iso"])
def test_lml_and_gradient_match_sklearn(rng, name, ard, linalg_path, differences):
    X = rng.uniform(size=(30, 3))
    y = np.sin(3 * X[:, 0]) + X[:, 1] + 0.1 * rng.randn(30)
    k = sklearn_kernel(name, [0.4, 0.9, 1.7] if ard else 0.7)
    gpr = GaussianProcessRegressor(k, optimizer=None).fit(X, y)
    expected, expected_grad = gpr.log_marginal_likelihood(k.theta, eval_gradient=True)
    core = StationaryKernel(NUS[name], 3 if ard else 1)
    Xt, D2, yt, m = _setup(X, y)
    assert D2.blocked == (differences == "row-blocks")
    loss, grad = neg_log_marginal_likelihood(core, torch.tensor(k.theta)[None], D2, yt, m, ALPHA)
    assert_allclose(-loss.numpy()[0], expected, rtol=1e-10)
    assert_allclose(-grad.numpy()[0], expected_grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", KERNEL_IDS)
def test_gradient_matches_finite_differences(rng, name, linalg_path, differences):
    X = rng.uniform(size=(25, 2))
    y = np.cos(5 * X[:, 0]) * X[:, 1] + 0.1 * rng.randn(25)
    core = StationaryKernel(NUS[name], 2)
    _, D2, yt, m = _setup(X, y)
    theta = torch.tensor([[0.3, -1.0, -0.2, -3.0]], dtype=torch.float64)
    _, grad = neg_log_marginal_likelihood(core, theta, D2, yt, m, ALPHA)
    eps = 1e-6
    fd = []
    for j in range(4):
        e = torch.zeros_like(theta)
        e[0, j] = eps
        up, _ = neg_log_marginal_likelihood(core, theta + e, D2, yt, m, ALPHA, eval_gradient=False)
        down, _ = neg_log_marginal_likelihood(core, theta - e, D2, yt, m, ALPHA, eval_gradient=False)
        fd.append(((up - down) / (2 * eps)).item())
    assert_allclose(grad.numpy()[0], fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", KERNEL_IDS)
def test_masked_lml_equals_lml_of_observed_subset(rng, name, linalg_path, differences):
    X = rng.uniform(size=(30, 2))
    y = np.sin(4 * X[:, 0]) + 0.1 * rng.randn(30)
    mask = np.ones(30, dtype=bool)
    mask[[0, 3, 4, 17, 29]] = False
    k = sklearn_kernel(name, [0.5, 0.8])
    expected, expected_grad = GaussianProcessRegressor(k, optimizer=None).fit(
        X[mask], y[mask]).log_marginal_likelihood(k.theta, eval_gradient=True)
    core = StationaryKernel(NUS[name], 2)
    y_missing = y.copy()
    y_missing[~mask] = 1e6  # must be ignored
    _, D2, yt, m = _setup(X, y_missing, mask[None])
    loss, grad = neg_log_marginal_likelihood(core, torch.tensor(k.theta)[None], D2, yt, m, ALPHA)
    assert_allclose(-loss.numpy()[0], expected, rtol=1e-10)
    assert_allclose(-grad.numpy()[0], expected_grad, rtol=1e-8, atol=1e-10)


def test_batched_likelihood_equals_looped(rng, linalg_path, differences):
    X = rng.uniform(size=(20, 3))
    Y = rng.randn(5, 20)
    mask = rng.rand(5, 20) > 0.2
    theta = torch.tensor(rng.uniform(-1, 0.5, size=(5, 5)))
    core = StationaryKernel(2.5, 3)
    _, D2, yt, m = _setup(X, Y, mask)
    loss, grad = neg_log_marginal_likelihood(core, theta, D2, yt, m, ALPHA)
    for i in range(5):
        li, gi = neg_log_marginal_likelihood(core, theta[i:i + 1], D2, yt[i:i + 1], m[i:i + 1], ALPHA)
        torch.testing.assert_close(loss[i:i + 1], li, rtol=1e-12, atol=0)
        torch.testing.assert_close(grad[i:i + 1], gi, rtol=1e-10, atol=1e-12)


def test_not_positive_definite_member_is_inf_and_others_unaffected(rng, linalg_path, differences):
    X = np.repeat(rng.uniform(size=(10, 1)), 2, axis=0)  # duplicate rows
    y = rng.randn(2, 20)
    core = StationaryKernel(math.inf, 1, has_noise=True)
    _, D2, yt, m = _setup(X, y)
    theta = torch.tensor([[0.0, 0.0, -40.0], [0.0, 0.0, -2.0]], dtype=torch.float64)
    loss, grad = neg_log_marginal_likelihood(core, theta, D2, yt, m, torch.tensor(0.0, dtype=torch.float64))
    assert math.isinf(loss[0].item()) and torch.all(grad[0] == 0)
    alone, alone_grad = neg_log_marginal_likelihood(core, theta[1:], D2, yt[1:], m[1:],
                                                    torch.tensor(0.0, dtype=torch.float64))
    torch.testing.assert_close(loss[1:], alone)
    torch.testing.assert_close(grad[1:], alone_grad)


def test_factorize_escalates_jitter_only_for_failing_member(rng):
    X = np.repeat(rng.uniform(size=(10, 1)), 2, axis=0)
    y = rng.randn(2, 20)
    core = StationaryKernel(math.inf, 1, has_noise=True)
    _, D2, yt, m = _setup(X, y)
    theta = torch.tensor([[0.0, 0.0, -40.0], [0.0, 0.0, -2.0]], dtype=torch.float64)
    f = factorize(core, theta, D2, yt, m, torch.tensor(0.0, dtype=torch.float64))
    assert f.jitter[0] > 0 and f.jitter[1] == 0
    assert not f.failed.any()
    assert torch.isfinite(f.log_marginal_likelihood).all()


@pytest.mark.parametrize("name", KERNEL_IDS)
def test_posterior_matches_sklearn(rng, name):
    X = rng.uniform(size=(30, 2))
    y = np.sin(4 * X[:, 0]) + X[:, 1] + 0.1 * rng.randn(30)
    Xs = np.vstack([rng.uniform(size=(12, 2)), X[:3]])
    k = sklearn_kernel(name, [0.5, 0.8])
    gpr = GaussianProcessRegressor(k, optimizer=None).fit(X, y)
    mean_e, std_e = gpr.predict(Xs, return_std=True)
    _, cov_e = gpr.predict(Xs, return_cov=True)
    core = StationaryKernel(NUS[name], 2)
    Xt, D2, yt, m = _setup(X, y)
    theta = torch.tensor(k.theta)[None]
    f = factorize(core, theta, D2, yt, m, ALPHA)
    for chunk in (None, 4):
        mean, var = posterior(Conditioned(core, theta, Xt, f.L, f.alpha, m), torch.tensor(Xs),
                              chunk_size=chunk)
        assert_allclose(mean.numpy()[0], mean_e, rtol=1e-8, atol=1e-12)
        assert_allclose(var.sqrt().numpy()[0], std_e, rtol=1e-8, atol=1e-12)
    _, cov = posterior(Conditioned(core, theta, Xt, f.L, f.alpha, m), torch.tensor(Xs), full_cov=True)
    assert_allclose(cov.numpy()[0], cov_e, rtol=1e-8, atol=1e-12)


def test_variance_never_negative_at_duplicated_noise_free_points(rng):
    X = np.repeat(rng.uniform(size=(15, 2)), 3, axis=0)
    y = np.sin(X[:, 0])
    core = StationaryKernel(math.inf, 2, has_noise=False)
    Xt, D2, yt, m = _setup(X, y)
    theta = torch.tensor([[0.0, -1.0, -1.0]], dtype=torch.float64)
    f = factorize(core, theta, D2, yt, m, torch.tensor(1e-10, dtype=torch.float64))
    _, var = posterior(Conditioned(core, theta, Xt, f.L, f.alpha, m), Xt)
    assert torch.all(var >= 0)


@pytest.mark.parametrize("n", slow_except([30, 300], 30))
@pytest.mark.parametrize("threads", [1, 2])
def test_inverse_from_the_factor_equals_the_inverse_on_each_of_its_paths(rng, n, threads):
    """potri (single-threaded, or n >= 256) and the solve-and-product path (else)."""

    A = torch.tensor(rng.randn(3, n, n))
    K = A @ A.mT / n + torch.eye(n, dtype=torch.float64)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        Kinv = cholesky_inverse(torch.linalg.cholesky(K, upper=True))
    finally:
        torch.set_num_threads(saved)
    assert Kinv.is_contiguous()
    # numpy's inverse: torch's batched LU is unreliable after torch.set_num_threads
    # with several threads (pytorch/pytorch#141358)
    assert_allclose(Kinv.numpy(), np.linalg.inv(K.numpy()), rtol=1e-9, atol=1e-11)
