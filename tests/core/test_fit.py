"""Batched hyperparameter fitting: batched equals looped, restarts race per target, MAP."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from torch.distributions import Gamma, LogNormal

from skbgp._core import composite
from skbgp._core.stationary import StationaryKernel
from skbgp._core.fit import Box, fit_hyperparameters, training_objective, with_priors
from skbgp._core.stationary import training_differences
from skbgp._core.priors import PriorTerm, log_prior


@pytest.mark.slow
def test_fit_batched_equals_looped_with_restarts(rng):
    n, d, m, r = 30, 2, 6, 3
    X = torch.tensor(rng.uniform(size=(n, d)))
    D2 = training_differences(X)
    Y = torch.tensor(np.stack([np.sin((2 + j) * X[:, 0].numpy()) + 0.1 * rng.randn(n) for j in range(m)]))
    mask = torch.ones(m, n, dtype=torch.float64)
    mask[1, :5] = 0
    Y = Y * mask
    core = StationaryKernel(2.5, d)
    theta0 = torch.tensor(rng.uniform(-2, 1, size=(r, m, d + 2)))
    lower = torch.full((m, d + 2), -6.0, dtype=torch.float64)
    upper = torch.full((m, d + 2), 4.0, dtype=torch.float64)
    free = torch.ones(d + 2, dtype=torch.bool)
    alpha = torch.tensor(1e-10, dtype=torch.float64)
    batched = fit_hyperparameters(training_objective(core, D2, Y, mask, alpha),
                                  Box(theta0, lower, upper, free))
    for t in range(m):
        alone = fit_hyperparameters(training_objective(core, D2, Y[t:t + 1], mask[t:t + 1], alpha),
                                    Box(theta0[:, t:t + 1], lower[t:t + 1], upper[t:t + 1], free))
        torch.testing.assert_close(batched.theta[t:t + 1], alone.theta, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(batched.neg_lml[t:t + 1], alone.neg_lml, rtol=1e-10, atol=1e-10)
        assert batched.best_start[t] == alone.best_start[0]


@pytest.mark.slow
def test_map_fit_batched_equals_looped_and_is_a_stationary_point_of_the_log_posterior(rng):
    n, d, m = 30, 2, 3
    X = torch.tensor(rng.uniform(size=(n, d)))
    geom = composite.geometry(X)
    Y = torch.tensor(np.stack([np.sin((2 + j) * X[:, 0].numpy()) + 0.1 * rng.randn(n) for j in range(m)]))
    mask = torch.ones(m, n, dtype=torch.float64)
    # constant * RQ(alpha, ARD length scales) + white: theta = [c, alpha, l1, l2, noise]
    root = composite.SumNode(composite.ProductNode(composite.ConstantNode(0),
                                                   composite.RationalQuadraticNode(1, d)),
                             composite.WhiteNode(4))
    kernel = composite.CompositeKernel(root, 5)
    f64 = dict(dtype=torch.float64)
    priors = (
        PriorTerm((2, 3), Gamma(torch.tensor([[2.0, 3.0], [4.0, 2.0], [3.0, 3.0]], **f64),
                                torch.tensor([[4.0, 1.0], [2.0, 2.0], [1.0, 5.0]], **f64)), True),
        PriorTerm((0,), LogNormal(torch.tensor(0.0, **f64), torch.tensor(1.0, **f64)), False),
        PriorTerm((1,), Gamma(torch.tensor(2.0, **f64), torch.tensor(1.0, **f64)), False),
    )
    theta0 = torch.tensor(rng.uniform(-1, 0.5, size=(2, m, 5)))
    lower = torch.full((m, 5), -8.0, **f64)
    upper = torch.full((m, 5), 5.0, **f64)
    free = torch.ones(5, dtype=torch.bool)
    alpha = torch.tensor(1e-10, **f64)
    batched = fit_hyperparameters(with_priors(training_objective(kernel, geom, Y, mask, alpha), priors),
                                  Box(theta0, lower, upper, free))
    targets = torch.arange(m)

    def objective(theta):
        loss, _ = composite.neg_log_marginal_likelihood(kernel, theta, geom, Y, mask, alpha, False)
        return loss - log_prior(priors, theta, targets, False)[0]

    # finite differences of the log posterior vanish at the MAP estimate
    eps = 1e-5
    for j in range(5):
        e = torch.zeros(m, 5, **f64)
        e[:, j] = eps
        fd = (objective(batched.theta + e) - objective(batched.theta - e)) / (2 * eps)
        assert torch.all(fd.abs() < 1e-3), (j, fd)
    torch.testing.assert_close(batched.neg_lml, objective(batched.theta), rtol=1e-12, atol=1e-12)
    for t in range(m):
        one = tuple(PriorTerm(p.index, Gamma(p.distribution.concentration[t], p.distribution.rate[t]), False)
                    if p.per_target else p for p in priors)
        alone = fit_hyperparameters(
            with_priors(training_objective(kernel, geom, Y[t:t + 1], mask[t:t + 1], alpha), one),
            Box(theta0[:, t:t + 1], lower[t:t + 1], upper[t:t + 1], free))
        torch.testing.assert_close(batched.theta[t:t + 1], alone.theta, rtol=1e-6, atol=1e-8)


def test_finite_difference_hessian_matches_the_closed_form():
    from skbgp._core.fit import finite_difference_hessian

    # f(x) = sum_i exp(a_i x_i) + x_0 x_1 x_2: Hessian in closed form
    a = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)

    def fun(x, targets):
        f = torch.exp(a * x).sum(-1) + x[:, 0] * x[:, 1] * x[:, 2]
        g = a * torch.exp(a * x) + torch.stack(
            [x[:, 1] * x[:, 2], x[:, 0] * x[:, 2], x[:, 0] * x[:, 1]], dim=-1)
        return f, g

    x = torch.tensor([[0.1, -0.3, 0.2], [1.0, 0.5, -0.4]], dtype=torch.float64)
    upper = torch.tensor([[5.0, 5.0, 5.0], [5.0, 0.50005, 5.0]], dtype=torch.float64)  # one backward step
    free = torch.tensor([True, True, True])
    H = finite_difference_hessian(fun, x, torch.arange(2), upper, free, step=1e-6)
    exact = torch.diag_embed(a**2 * torch.exp(a * x))
    exact[:, 0, 1] = exact[:, 1, 0] = x[:, 2]
    exact[:, 0, 2] = exact[:, 2, 0] = x[:, 1]
    exact[:, 1, 2] = exact[:, 2, 1] = x[:, 0]
    assert_allclose(H.numpy(), exact.numpy(), atol=1e-5)
    # a fixed column is not differentiated
    Hf = finite_difference_hessian(fun, x, torch.arange(2), upper, torch.tensor([True, False, True]))
    assert bool((Hf[:, :, 1] == 0).all())
