"""Batched hyperparameter fitting: batched equals looped, restarts race per target."""

import numpy as np
import torch

from skbgp._core.fit import fit_hyperparameters
from skbgp._core.kernels import StationaryKernel, squared_differences


def test_fit_batched_equals_looped_with_restarts(rng):
    n, d, m, r = 30, 2, 6, 3
    X = torch.tensor(rng.uniform(size=(n, d)))
    D2 = squared_differences(X, X)
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
    batched = fit_hyperparameters(core, D2, Y, mask, alpha, theta0, lower, upper, free)
    for t in range(m):
        alone = fit_hyperparameters(core, D2, Y[t:t + 1], mask[t:t + 1], alpha, theta0[:, t:t + 1],
                                    lower[t:t + 1], upper[t:t + 1], free)
        torch.testing.assert_close(batched.theta[t:t + 1], alone.theta, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(batched.neg_lml[t:t + 1], alone.neg_lml, rtol=1e-10, atol=1e-10)
        assert batched.best_start[t] == alone.best_start[0]
