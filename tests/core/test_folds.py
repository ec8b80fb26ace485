"""Folds packed into one batch against each fold evaluated alone; closed-form LOO
against the Gaussian conditional computed by numpy."""


import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy.stats import norm

from skbgp._core import folds as folds_module
from skbgp._core.gp import factorize, loo_from_factor
from skbgp._core.stationary import StationaryKernel, neg_log_marginal_likelihood
from skbgp._core.folds import fold_objective, pack_folds
from skbgp._core.stationary import training_differences
from skbgp._core.threads import on_member_threads

from ..conftest import slow_except


@pytest.mark.parametrize("nu", [np.inf, 1.5], ids=["rbf", "matern15"])
@pytest.mark.parametrize("way", slow_except(["cached", "rebuilt", "member-threads"],
                                             "member-threads"))
def test_fold_objective_equals_each_fold_alone(rng, nu, way, monkeypatch, request):
    kernel = StationaryKernel(nu, 2)
    X = rng.uniform(size=(23, 2))
    Y = np.column_stack([np.sin(4 * X[:, 0]), X[:, 1] ** 2]) + 0.1 * rng.randn(23, 2)
    folds = [np.arange(0, 15), np.arange(5, 23), np.arange(0, 23, 2)]  # 15, 18, 12 rows
    masks = [np.ones((2, len(f))) for f in folds]
    masks[1][0, 3] = 0.0  # one missing observation
    alphas = [torch.tensor(1e-3 * (1 + X[f, 0])) for f in folds]
    inputs = [torch.tensor(X[f]) for f in folds]
    targets = [torch.tensor(np.where(mk > 0, Y[f].T, 0.0)) for f, mk in zip(folds, masks)]
    batch = pack_folds(inputs, targets, [torch.tensor(mk) for mk in masks], alphas)
    assert batch.X.shape == (3, 18, 2) and batch.y.shape == (6, 18)
    theta = torch.tensor(rng.uniform(-1, 0.5, size=(6, 4)))
    members = torch.tensor([5, 0, 3, 2])  # any subset, any order
    if way == "rebuilt":  # folds' data too large to keep: built at every call
        monkeypatch.setattr(folds_module, "_CACHE_BYTES", 0)
    if way == "member-threads":
        # blocks of all folds spread over the threads together (one member each)
        request.getfixturevalue("two_threads")
        monkeypatch.setattr(folds_module, "member_blocks",
                            lambda b, n, device=None: [slice(i, i + 1) for i in range(b)])
    objective = fold_objective(kernel, batch)
    def twice():  # the second call reuses (or rebuilds) the folds' data
        objective(theta[members], members)
        return objective(theta[members], members)

    loss, grad = on_member_threads(batch.X.device, twice) if way == "member-threads" else twice()
    for i, member in enumerate(members.tolist()):
        f, t = divmod(member, 2)
        D2 = training_differences(inputs[f])
        l_ref, g_ref = neg_log_marginal_likelihood(
            kernel, theta[member][None], D2, targets[f][t][None], torch.tensor(masks[f][t])[None],
            alphas[f])
        assert_allclose(loss[i].item(), l_ref.item(), rtol=1e-12)
        assert_allclose(grad[i].numpy(), g_ref[0].numpy(), rtol=1e-10, atol=1e-12)


def test_loo_from_factor_equals_gaussian_conditionals(rng):
    kernel = StationaryKernel(np.inf, 2)
    X = rng.uniform(size=(12, 2))
    y = np.sin(3 * X[:, 0]) + 0.1 * rng.randn(12)
    mask = np.ones(12)
    mask[4] = 0.0
    theta = torch.tensor([[0.2, -1.0, -0.5, -3.0]], dtype=torch.float64)
    Xt = torch.tensor(X)
    yt = torch.tensor(np.where(mask > 0, y, 0.0))[None]
    alpha = torch.tensor(1e-6, dtype=torch.float64)
    maskf = torch.tensor(mask)[None]
    factor = factorize(kernel, theta, training_differences(Xt), yt, maskf, alpha)
    mean, var, logp = (a[0].numpy() for a in loo_from_factor(factor.L, factor.alpha, yt,
                                                               torch.tensor(mask)[None]))
    # dense covariance of the observed points, built in numpy
    s, ls, noise = np.exp(0.2), np.exp([-1.0, -0.5]), np.exp(-3.0)
    obs = np.flatnonzero(mask)
    Z = X[obs] / ls
    K = s * np.exp(-0.5 * ((Z[:, None] - Z[None]) ** 2).sum(-1)) + (noise + 1e-6) * np.eye(len(obs))
    for j, i in enumerate(obs):
        rest = np.delete(np.arange(len(obs)), j)
        w = np.linalg.solve(K[np.ix_(rest, rest)], K[rest, j])
        m_ref = w @ y[obs][rest]
        v_ref = K[j, j] - K[rest, j] @ w
        assert_allclose(mean[i], m_ref, rtol=1e-9, atol=1e-12)
        assert_allclose(var[i], v_ref, rtol=1e-9)
        assert_allclose(logp[i], norm.logpdf(y[i], m_ref, np.sqrt(v_ref)), rtol=1e-9)
    assert np.isnan(mean[4]) and np.isnan(var[4]) and np.isnan(logp[4])
