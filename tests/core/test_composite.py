"""The composite kernel path against scikit-learn's kernels and GPR, finite differences, itself looped."""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import (
    RBF,
    ConstantKernel,
    DotProduct,
    Exponentiation,
    ExpSineSquared,
    Matern,
    RationalQuadratic,
    WhiteKernel,
)

from skbgp._core import composite, gp
from skbgp._core.composite import covariance_gradient, geometry
from skbgp._sklearn_kernels import plan_from_kernel

ALPHA = torch.tensor(1e-10, dtype=torch.float64)

# every kernel class, isotropic and ARD, alone and combined
KERNELS = {
    "rbf-iso": RBF(0.7),
    "rbf-ard": RBF([0.5, 1.2, 2.0]),
    "matern05-iso": Matern(0.7, nu=0.5),
    "matern05-ard": Matern([0.5, 1.2, 2.0], nu=0.5),
    "matern15-ard": Matern([0.5, 1.2, 2.0], nu=1.5),
    "matern25-iso": Matern(0.9, nu=2.5),
    "matern25-ard": Matern([0.5, 1.2, 2.0], nu=2.5),
    "matern-inf-ard": Matern([0.5, 1.2, 2.0], nu=math.inf),
    "rq": RationalQuadratic(0.7, 1.3),
    "expsine": ExpSineSquared(0.7, 1.9),
    "dot": DotProduct(0.7),
    "constant": ConstantKernel(2.0),
    "white": WhiteKernel(0.3),
    "scaled-rbf+white": ConstantKernel(2.0) * RBF([0.5, 1.2, 2.0]) + WhiteKernel(0.3),
    "constant+rbf": ConstantKernel(0.5) + RBF(0.8),
    "rq+dot-pow": Exponentiation(RationalQuadratic(0.7, 1.3) + DotProduct(0.3), 2.0),
    "rbf+constant-pow": Exponentiation(RBF([0.5, 1.2, 2.0]) + ConstantKernel(0.3), 1.5),
    "periodic*rbf+white": ConstantKernel(1.5) * ExpSineSquared(0.8, 1.1) * RBF([1.0, 2.0, 3.0])
    + WhiteKernel(0.1),
    "fixed-parts": ConstantKernel(2.0, constant_value_bounds="fixed")
    * Matern([0.5, 1.2, 2.0], nu=1.5) + WhiteKernel(0.2, noise_level_bounds="fixed"),
    "white*constant+rbf": WhiteKernel(0.2) * ConstantKernel(3.0) + RBF([0.5, 1.2, 2.0]),
}


def _periodic_safe(name, *arrays):
    """ExpSineSquared of a Euclidean distance in several dimensions is not
    positive definite in general (scikit-learn fails too): vary one feature."""
    if "expsine" in name or "periodic" in name:
        for X in arrays:
            X[:, 1:] = 0.0


def _plan(kernel, n_targets=1):
    return plan_from_kernel(kernel, 3, n_targets, force_composite=True)


@pytest.mark.parametrize("name", list(KERNELS))
def test_covariance_and_gradient_match_sklearn(name):
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 2, size=(12, 3))
    Y = rng.uniform(-1, 2, size=(5, 3))
    kernel = KERNELS[name]
    plan = _plan(kernel)
    theta = torch.tensor(plan.theta0)
    # the layout is scikit-learn's theta, with the fixed hyperparameters kept
    assert_allclose(plan.theta0[0, plan.free], kernel.theta, rtol=1e-15)
    K, dK = covariance_gradient(plan.kernel, theta, geometry(torch.tensor(X)))
    K_ref, dK_ref = kernel(X, eval_gradient=True)
    assert_allclose(K[0].numpy(), K_ref, rtol=1e-10, atol=1e-12)
    assert_allclose(dK[0][..., plan.free].numpy(), dK_ref, rtol=1e-10, atol=1e-12)
    cross = plan.kernel.covariance(theta, geometry(torch.tensor(X), torch.tensor(Y)))
    assert_allclose(cross[0].numpy(), kernel(X, Y), rtol=1e-10, atol=1e-12)
    assert_allclose(plan.kernel.diag(theta, torch.tensor(X))[0].numpy(), kernel.diag(X),
                    rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["rbf-ard", "rq", "expsine", "scaled-rbf+white", "rq+dot-pow",
                                  "periodic*rbf+white", "fixed-parts"])
def test_lml_gradient_and_posterior_match_sklearn(name):
    rng = np.random.RandomState(1)
    X = rng.uniform(0, 2, size=(25, 3))
    Xs = rng.uniform(0, 2, size=(6, 3))
    _periodic_safe(name, X, Xs)
    y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.randn(25)
    kernel = KERNELS[name]
    if "white" not in name:
        kernel = kernel + WhiteKernel(0.5)
    plan = _plan(kernel)
    ref = GaussianProcessRegressor(kernel, optimizer=None).fit(X, y)
    lml_ref, grad_ref = ref.log_marginal_likelihood(kernel.theta, eval_gradient=True)
    Xt = torch.tensor(X)
    geom = geometry(Xt)
    theta = torch.tensor(plan.theta0)
    yt, m = torch.tensor(y)[None], torch.ones(1, 25, dtype=torch.float64)
    loss, grad = composite.neg_log_marginal_likelihood(plan.kernel, theta, geom, yt, m, ALPHA)
    assert_allclose(-loss.numpy()[0], lml_ref, rtol=1e-10)
    assert_allclose(-grad[0, plan.free].numpy(), grad_ref, rtol=1e-8, atol=1e-10)
    f = gp.factorize(plan.kernel, theta, geom, yt, m, ALPHA)
    mean, var = gp.posterior(gp.Conditioned(plan.kernel, theta, Xt, f.L, f.alpha, m), torch.tensor(Xs),
                                    chunk_size=4)
    mean_ref, std_ref = ref.predict(Xs, return_std=True)
    assert_allclose(mean[0].numpy(), mean_ref, rtol=1e-8, atol=1e-12)
    assert_allclose(var[0].sqrt().numpy(), std_ref, rtol=1e-8, atol=1e-12)
    _, cov = gp.posterior(gp.Conditioned(plan.kernel, theta, Xt, f.L, f.alpha, m), torch.tensor(Xs),
                                 full_cov=True)
    assert_allclose(cov[0].numpy(), ref.predict(Xs, return_cov=True)[1], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name", ["rq", "expsine", "periodic*rbf+white", "matern05-ard"])
def test_masked_gradient_matches_finite_differences(name):
    rng = np.random.RandomState(2)
    X = rng.uniform(0, 2, size=(20, 3))
    _periodic_safe(name, X)
    y = np.cos(2 * X[:, 0]) * X[:, 1] + 0.1 * rng.randn(20)
    plan = _plan(KERNELS[name] + WhiteKernel(0.1))
    geom = geometry(torch.tensor(X))
    m = torch.ones(1, 20, dtype=torch.float64)
    m[0, [1, 5, 6]] = 0.0
    yt = torch.tensor(y)[None] * m
    theta = torch.tensor(plan.theta0) + 0.1
    _, grad = composite.neg_log_marginal_likelihood(plan.kernel, theta, geom, yt, m, ALPHA)
    eps = 1e-6
    for j in range(theta.shape[1]):
        e = torch.zeros_like(theta)
        e[0, j] = eps
        up, _ = composite.neg_log_marginal_likelihood(plan.kernel, theta + e, geom, yt, m, ALPHA, False)
        down, _ = composite.neg_log_marginal_likelihood(plan.kernel, theta - e, geom, yt, m, ALPHA, False)
        assert_allclose(grad[0, j].item(), ((up - down) / (2 * eps)).item(), rtol=1e-6, atol=1e-7)


def test_masked_lml_equals_lml_of_observed_subset():
    rng = np.random.RandomState(3)
    X = rng.uniform(0, 2, size=(30, 3))
    _periodic_safe("periodic", X)
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.randn(30)
    keep = np.ones(30, dtype=bool)
    keep[[0, 7, 8, 29]] = False
    kernel = KERNELS["periodic*rbf+white"]
    plan = _plan(kernel)
    lml_ref, grad_ref = GaussianProcessRegressor(kernel, optimizer=None).fit(
        X[keep], y[keep]).log_marginal_likelihood(kernel.theta, eval_gradient=True)
    y_missing = np.where(keep, y, 0.0)
    loss, grad = composite.neg_log_marginal_likelihood(
        plan.kernel, torch.tensor(plan.theta0), geometry(torch.tensor(X)),
        torch.tensor(y_missing)[None], torch.tensor(keep, dtype=torch.float64)[None], ALPHA)
    assert_allclose(-loss.numpy()[0], lml_ref, rtol=1e-10)
    assert_allclose(-grad[0, plan.free].numpy(), grad_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", list(KERNELS))
def test_batched_equals_looped(name):
    rng = np.random.RandomState(4)
    X = rng.uniform(0, 2, size=(15, 3))
    _periodic_safe(name, X)
    kernel = KERNELS[name] + WhiteKernel(0.1)
    plan = _plan(kernel)
    b = 4
    theta = torch.tensor(plan.theta0) + torch.tensor(rng.uniform(-0.3, 0.3, size=(b, plan.theta0.shape[1])))
    Y = torch.tensor(rng.randn(b, 15))
    m = torch.tensor((rng.rand(b, 15) > 0.2).astype(float))
    geom = geometry(torch.tensor(X))
    loss, grad = composite.neg_log_marginal_likelihood(plan.kernel, theta, geom, Y * m, m, ALPHA)
    Xs = torch.tensor(rng.uniform(0, 2, size=(5, 3)))
    f = gp.factorize(plan.kernel, theta, geom, Y * m, m, ALPHA)
    mean, var = gp.posterior(gp.Conditioned(plan.kernel, theta, geom.X1, f.L, f.alpha, m), Xs)
    for i in range(b):
        s = slice(i, i + 1)
        li, gi = composite.neg_log_marginal_likelihood(plan.kernel, theta[s], geom, (Y * m)[s], m[s], ALPHA)
        torch.testing.assert_close(loss[s], li, rtol=1e-12, atol=0)
        torch.testing.assert_close(grad[s], gi, rtol=1e-10, atol=1e-12)
        fi = gp.factorize(plan.kernel, theta[s], geom, (Y * m)[s], m[s], ALPHA)
        mi, vi = gp.posterior(gp.Conditioned(plan.kernel, theta[s], geom.X1, fi.L, fi.alpha, m[s]), Xs)
        torch.testing.assert_close(mean[s], mi, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(var[s], vi, rtol=1e-12, atol=1e-14)


def test_not_positive_definite_member_is_inf_and_others_unaffected():
    rng = np.random.RandomState(5)
    X = np.repeat(rng.uniform(size=(10, 3)), 2, axis=0)  # duplicate rows
    plan = _plan(RationalQuadratic(0.5, 1.0) + WhiteKernel(1.0))
    theta = torch.tensor([[0.0, 0.0, -60.0], [0.0, 0.0, -2.0]], dtype=torch.float64)
    Y = torch.tensor(rng.randn(2, 20))
    m = torch.ones(2, 20, dtype=torch.float64)
    zero = torch.tensor(0.0, dtype=torch.float64)
    geom = geometry(torch.tensor(X))
    loss, grad = composite.neg_log_marginal_likelihood(plan.kernel, theta, geom, Y, m, zero)
    assert math.isinf(loss[0].item()) and torch.all(grad[0] == 0)
    alone, _ = composite.neg_log_marginal_likelihood(plan.kernel, theta[1:], geom, Y[1:], m[1:], zero)
    torch.testing.assert_close(loss[1:], alone)
    f = gp.factorize(plan.kernel, theta, geom, Y, m, zero)
    assert f.jitter[0] > 0 and f.jitter[1] == 0 and not f.failed.any()
