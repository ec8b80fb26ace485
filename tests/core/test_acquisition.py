"""Acquisition functions against scikit-learn, closed forms, brute-force Monte Carlo,
finite differences and their own looped evaluation."""

import math

import mpmath
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy.stats import norm
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern

from skbgp._core.acquisition import (
    MONTE_CARLO,
    MCOptions,
    Objective,
    latent_posterior,
    make_analytic_acquisition,
    make_mc_acquisition,
    make_model,
)
from skbgp._core.acquisition.model import normal_base_samples
from skbgp._core.acquisition.smooth import _log_ei_helper
from skbgp._core.gp import factorize
from skbgp._core.stationary import StationaryKernel
from skbgp._core.stationary import training_differences
from skbgp._core.optimize import (
    OptimizeOptions,
    initial_conditions,
    maximize_acquisition,
    raw_candidates,
)
from skbgp._core.sobol import sobol_points

from ..conftest import KERNEL_IDS, NUS, slow_except

ALPHA = 1e-4  # sklearn's alpha: noise in the training covariance only


def _sk_kernel(name, ls):
    base = RBF(ls) if name == "rbf" else Matern(ls, nu=NUS[name])
    return ConstantKernel(1.7) * base


def _fit(name, X, Y, length_scales):
    """sklearn GPRs (normalize_y=True, fixed hyperparameters) and the same GPs as a GPModel."""
    gprs, thetas = [], []
    for t in range(Y.shape[1]):
        k = _sk_kernel(name, length_scales[t])
        gpr = GaussianProcessRegressor(k, alpha=ALPHA, optimizer=None, normalize_y=True)
        gprs.append(gpr.fit(X, Y[:, t]))
        thetas.append(k.theta)
    core = StationaryKernel(NUS[name], X.shape[1], has_noise=False)
    Xt = torch.tensor(X)
    mean, std = Y.mean(0), Y.std(0)
    yt = torch.tensor(((Y - mean) / std).T)
    theta = torch.tensor(np.array(thetas))
    maskf = torch.ones_like(yt)
    f = factorize(core, theta, training_differences(Xt), yt, maskf,
                  torch.tensor(ALPHA, dtype=torch.float64))
    model = make_model(core, theta, Xt, f.L, f.alpha, maskf, torch.tensor(mean), torch.tensor(std))
    return gprs, model


def _data(rng, n=15, d=2, m=2):
    X = rng.uniform(size=(n, d))
    Y = np.column_stack([np.sin(5 * X[:, 0]) + X[:, 1], 3.0 * np.cos(4 * X[:, 1]) - X[:, 0]])
    return X, Y[:, :m] + 10.0


def _objective(weights, constraints=(), thresholds=(), eta=()):
    return Objective(
        torch.tensor(weights, dtype=torch.float64), torch.tensor(constraints, dtype=torch.long),
        torch.tensor(thresholds, dtype=torch.float64), torch.tensor(eta, dtype=torch.float64),
    )


@pytest.mark.parametrize("name", KERNEL_IDS)
def test_latent_posterior_matches_sklearn(rng, name):
    X, Y = _data(rng)
    gprs, model = _fit(name, X, Y, [[0.3, 0.5], [0.6, 0.2]])
    Xq = rng.uniform(size=(3, 4, 2))
    mean, cov = latent_posterior(model, torch.tensor(Xq))
    assert mean.shape == (3, 2, 4) and cov.shape == (3, 2, 4, 4)
    for b in range(3):
        for t, gpr in enumerate(gprs):
            m_e, c_e = gpr.predict(Xq[b], return_cov=True)
            assert_allclose(mean[b, t].numpy(), m_e, rtol=1e-9, atol=1e-9)
            assert_allclose(cov[b, t].numpy(), c_e, rtol=1e-7, atol=1e-9)


def _sk_ei(gpr, x, best, weight=1.0):
    mu, sd = gpr.predict(x, return_std=True)
    mu = weight * mu
    z = (mu - best) / sd
    return sd * (norm.pdf(z) + z * norm.cdf(z)), mu, sd


def test_analytic_ei_pi_ucb_match_closed_form(rng):
    X, Y = _data(rng, m=1)
    gprs, model = _fit("matern25", X, Y, [[0.3, 0.5]])
    x = rng.uniform(size=(6, 2))
    best = -Y[:, 0].min()  # minimise target 0
    obj = _objective([-1.0])
    ei_e, mu, sd = _sk_ei(gprs[0], x, best, weight=-1.0)
    Xt = torch.tensor(x)[:, None, :]
    ei = make_analytic_acquisition("EI", model, obj, best)(Xt)
    log_ei = make_analytic_acquisition("LogEI", model, obj, best)(Xt)
    pi = make_analytic_acquisition("PI", model, obj, best)(Xt)
    ucb = make_analytic_acquisition("UCB", model, obj, best, beta=2.0)(Xt)
    assert_allclose(ei.numpy(), ei_e, rtol=1e-6, atol=1e-12)
    keep = ei_e > 1e-200
    assert_allclose(log_ei.numpy()[keep], np.log(ei_e[keep]), rtol=1e-6)
    assert_allclose(pi.numpy(), norm.cdf((mu - best) / sd), rtol=1e-6, atol=1e-12)
    assert_allclose(ucb.numpy(), mu + math.sqrt(2.0) * sd, rtol=1e-8)


def test_log_ei_helper_matches_high_precision():
    u = torch.tensor([-1e4, -300.0, -40.0, -8.0, -1.5, -1.0, -0.3, 0.0, 2.0, 30.0],
                     dtype=torch.float64)
    mpmath.mp.dps = 50

    def exact(v):
        v = mpmath.mpf(v)
        return float(mpmath.log(mpmath.npdf(v) + v * mpmath.ncdf(v)))

    assert_allclose(_log_ei_helper(u).numpy(), [exact(v) for v in u.tolist()], rtol=1e-9)


def test_constrained_analytic_ei_matches_closed_form(rng):
    X, Y = _data(rng)
    gprs, model = _fit("rbf", X, Y, [[0.3, 0.5], [0.4, 0.4]])
    x = rng.uniform(size=(5, 2))
    thr = float(np.median(Y[:, 1]))
    best = -Y[Y[:, 1] <= thr, 0].min()
    obj = _objective([-1.0, 0.0], [1], [thr], [1e-3])
    ei_e, _, _ = _sk_ei(gprs[0], x, best, weight=-1.0)
    mc, sc = gprs[1].predict(x, return_std=True)
    expected = ei_e * norm.cdf((thr - mc) / sc)
    ei = make_analytic_acquisition("EI", model, obj, best)(torch.tensor(x)[:, None, :])
    assert_allclose(ei.numpy(), expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("log", [False, True], ids=["qEI", "qLogEI"])
def test_mc_ei_at_q1_matches_analytic(rng, log):
    X, Y = _data(rng, m=1)
    gprs, model = _fit("matern25", X, Y, [[0.3, 0.5]])
    obj = _objective([-1.0])
    best = -Y[:, 0].min()
    # points where EI is not negligible, so the Monte-Carlo estimate is meaningful
    cand = rng.uniform(size=(400, 2))
    ei_all, mu, sd = _sk_ei(gprs[0], cand, best, weight=-1.0)
    x = cand[np.argsort(ei_all)[-5:]]
    ei_e, mu, sd = _sk_ei(gprs[0], x, best, weight=-1.0)
    s = 4096
    acq = make_mc_acquisition("qLogEI" if log else "qEI", model, obj, 1, MCOptions(s, seed=3),
                              best_f=best)
    value = acq(torch.tensor(x)[:, None, :]).numpy()
    # Monte-Carlo error: 4 standard errors of a plain (iid) estimate; QMC is more accurate
    # E[I^2] = Phi(z) ((mu - best)^2 + sd^2) + (mu - best) sd phi(z)
    z = (mu - best) / sd
    second = norm.cdf(z) * ((mu - best) ** 2 + sd**2) + (mu - best) * sd * norm.pdf(z)
    se = np.sqrt(np.maximum(second - ei_e**2, 0) / s)
    if log:
        assert_allclose(np.exp(value), ei_e, atol=0, rtol=4 * np.max(se / ei_e))
    else:
        assert np.all(np.abs(value - ei_e) <= 4 * se)


def _brute_force(gprs, X_all, weights, samples, rng):
    """IID joint samples of the latent targets from sklearn's covariance: (samples, m, k)."""
    out = []
    for gpr in gprs:
        mu, cov = gpr.predict(X_all, return_cov=True)
        w, V = np.linalg.eigh(cov)
        root = V * np.sqrt(np.clip(w, 0, None))
        out.append(mu + rng.randn(samples, len(mu)) @ root.T)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("name", slow_except(["qEI", "qNEI", "qPI", "qSimpleRegret", "qUCB"],
                                              "qPI"))
def test_mc_acquisition_matches_brute_force_monte_carlo(rng, name):
    X, Y = _data(rng, n=10)
    gprs, model = _fit("rbf", X, Y, [[0.3, 0.5], [0.4, 0.4]])
    weights = np.array([-1.0, 0.5])
    best = float((Y @ weights).max())
    x = rng.uniform(size=(2, 2))  # one set of q = 2 points
    acq = make_mc_acquisition(name, model, _objective(weights), 2,
                              MCOptions(4096, seed=1, beta=0.5, prune_baseline=False),
                              best_f=best, X_baseline=model.X_train)
    value = float(acq(torch.tensor(x)))
    S = 100_000
    f = _brute_force(gprs, np.vstack([X, x]), weights, S, rng)  # (S, m, n + 2)
    obj = np.einsum("m,smk->sk", weights, f)
    ox = obj[:, -2:]
    if name == "qEI":
        v = np.maximum(ox - best, 0).max(-1)
    elif name == "qNEI":
        v = np.maximum(ox.max(-1) - obj[:, :-2].max(-1), 0)
    elif name == "qPI":
        v = (ox.max(-1) > best).astype(float)
    elif name == "qSimpleRegret":
        v = ox.max(-1)
    else:
        mu = np.array([weights @ np.array([g.predict(x)[j] for g in gprs]) for j in range(2)])
        v = (mu + math.sqrt(0.5 * math.pi / 2) * np.abs(ox - mu)).max(-1)
    # error of the brute force + of the 4096 Sobol samples; qPI's sigmoid (tau 1e-3) is not a step
    tol = 5 * v.std() / math.sqrt(S) + 4 * v.std() / math.sqrt(4096)
    tol += 2e-3 if name == "qPI" else 0.0
    assert abs(value - v.mean()) <= tol


def test_constrained_qei_matches_brute_force_monte_carlo(rng):
    X, Y = _data(rng, n=10)
    gprs, model = _fit("rbf", X, Y, [[0.3, 0.5], [0.4, 0.4]])
    thr = float(np.median(Y[:, 1]))
    best = -float(Y[Y[:, 1] <= thr, 0].min())
    obj = _objective([-1.0, 0.0], [1], [thr], [1e-4])
    x = rng.uniform(size=(2, 2))
    acq = make_mc_acquisition("qEI", model, obj, 2, MCOptions(4096, seed=2), best_f=best)
    value = float(acq(torch.tensor(x)))
    S = 100_000
    f = _brute_force(gprs, x, None, S, rng)  # (S, 2, 2)
    v = (np.maximum(-f[:, 0] - best, 0) * (f[:, 1] <= thr)).max(-1)
    # Monte-Carlo errors, and 1e-3 for the smooth feasibility weight (eta = 1e-4) vs a step
    tol = 5 * v.std() / math.sqrt(S) + 4 * v.std() / math.sqrt(4096) + 1e-3
    assert abs(value - v.mean()) <= tol


@pytest.mark.parametrize("name", slow_except(MONTE_CARLO + ("EI", "LogEI", "PI", "UCB"),
                                              "qLogNEI", "LogEI"))
def test_batched_equals_looped(rng, name):
    X, Y = _data(rng)
    _, model = _fit("matern25", X, Y, [[0.3, 0.5], [0.6, 0.2]])
    obj = _objective([-1.0, 0.0], [1], [float(np.median(Y[:, 1]))], [1e-2]) if name != "UCB" \
        else _objective([-1.0, 0.3])
    best = -float(Y[:, 0].min())
    q = 1 if name in ("EI", "LogEI", "PI", "UCB") else 3
    pending = torch.tensor(rng.uniform(size=(2, 2)))
    if q == 1:
        acq = make_analytic_acquisition(name, model, obj, best)
    else:
        acq = make_mc_acquisition(name, model, obj, q, MCOptions(64, seed=0), X_pending=pending,
                                  best_f=best, X_baseline=model.X_train)
    Xb = torch.tensor(rng.uniform(size=(5, q, 2)))
    batched = acq(Xb)
    assert batched.shape == (5,)
    looped = torch.cat([acq(Xb[i]) for i in range(5)])  # each a q x d input, a t-batch of one
    torch.testing.assert_close(batched, looped, rtol=1e-10, atol=1e-12)


def _central_differences(acq, x, eps=1e-6):
    """Gradient of every candidate set's value with respect to its own points, by central differences."""
    fd = torch.zeros_like(x)
    with torch.no_grad():
        for idx in np.ndindex(*x.shape):
            e = torch.zeros_like(x)
            e[idx] = eps
            fd[idx] = (acq(x + e) - acq(x - e))[idx[0]] / (2 * eps)
    return fd


@pytest.mark.parametrize("name", slow_except(MONTE_CARLO + ("EI", "LogEI", "PI", "UCB"),
                                              "qLogEI", "LogEI"))
def test_gradient_matches_finite_differences(rng, name):
    X, Y = _data(rng)
    _, model = _fit("matern25", X, Y, [[0.3, 0.5], [0.6, 0.2]])
    obj = _objective([-1.0, 0.0], [1], [float(np.median(Y[:, 1]))], [0.3]) if name != "UCB" \
        else _objective([-1.0, 0.3])
    best = -float(Y[:, 0].min()) - 0.5
    q = 1 if name in ("EI", "LogEI", "PI", "UCB") else 2
    if q == 1:
        acq = make_analytic_acquisition(name, model, obj, best)
    else:
        acq = make_mc_acquisition(name, model, obj, q, MCOptions(32, seed=0), best_f=best,
                                  X_baseline=model.X_train)
    x = torch.tensor(rng.uniform(0.1, 0.9, size=(3, q, 2)), requires_grad=True)
    (grad,) = torch.autograd.grad(acq(x).sum(), x)
    torch.testing.assert_close(grad, _central_differences(acq, x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kernel", slow_except(KERNEL_IDS, "rbf"))
@pytest.mark.parametrize("name", slow_except(MONTE_CARLO, "qLogEI"))
def test_value_and_grad_matches_autograd_and_finite_differences(rng, name, kernel):
    # the written-out backward pass against autograd through the forward pass and
    # against central differences of the values, with a constraint and pending points
    X, Y = _data(rng)
    _, model = _fit(kernel, X, Y, [[0.3, 0.5], [0.6, 0.2]])
    obj = _objective([-1.0, 0.0], [1], [float(np.median(Y[:, 1]))], [0.3]) if name != "qUCB" \
        else _objective([-1.0, 0.3])
    best = -float(Y[:, 0].min()) - 0.5
    pending = torch.tensor(rng.uniform(size=(1, 2)))
    # a baseline of 5 of the 15 training points, unpruned
    acq = make_mc_acquisition(name, model, obj, 3, MCOptions(32, seed=0, prune_baseline=False),
                              X_pending=pending, best_f=best, X_baseline=model.X_train[:5])
    x = torch.tensor(rng.uniform(0.05, 0.95, size=(4, 3, 2)), requires_grad=True)
    value, grad = acq.value_and_grad(x)
    auto_value = acq(x)
    (auto_grad,) = torch.autograd.grad(auto_value.sum(), x)
    torch.testing.assert_close(value, auto_value.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, auto_grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(grad, _central_differences(acq, x), rtol=1e-5, atol=1e-7)
    # one candidate set alone gets the same value and gradient as in the batch
    v1, g1 = acq.value_and_grad(x[2])
    torch.testing.assert_close(v1, value[2:3], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g1, grad[2:3], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["qEI", "qLogNEI"])
def test_pending_points_are_part_of_every_candidate_set(rng, name):
    X, Y = _data(rng, m=1)
    _, model = _fit("rbf", X, Y, [[0.3, 0.5]])
    obj = _objective([-1.0])
    best = -float(Y[:, 0].min())
    p = torch.tensor(rng.uniform(size=(1, 2)))
    kw = dict(best_f=best, X_baseline=model.X_train)
    opts = MCOptions(256, seed=0)
    with_pending = make_mc_acquisition(name, model, obj, 1, opts, X_pending=p, **kw)
    joint = make_mc_acquisition(name, model, obj, 2, opts, **kw)
    alone = make_mc_acquisition(name, model, obj, 1, opts, **kw)
    x = torch.tensor(rng.uniform(size=(4, 1, 2)))
    # the same base samples: a pending point is a candidate that is already chosen
    torch.testing.assert_close(with_pending(x), joint(torch.cat([x, p.expand(4, 1, 2)], dim=1)),
                               rtol=1e-12, atol=1e-12)
    # a candidate on the pending point adds nothing to it
    if name == "qEI":
        torch.testing.assert_close(with_pending(p), alone(p), rtol=1e-7, atol=1e-10)


def test_wrong_q_and_analytic_q_raise(rng):
    X, Y = _data(rng, m=1)
    _, model = _fit("rbf", X, Y, [[0.3, 0.5]])
    obj = _objective([1.0])
    acq = make_mc_acquisition("qEI", model, obj, 2, MCOptions(16, seed=0), best_f=0.0)
    with pytest.raises(ValueError, match="built for q = 2"):
        acq(torch.zeros(3, 1, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="q = 1"):
        make_analytic_acquisition("EI", model, obj, 0.0)(torch.zeros(3, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="X_baseline"):
        make_mc_acquisition("qNEI", model, obj, 1, MCOptions(16, seed=0))
    with pytest.raises(ValueError, match="best_f"):
        make_mc_acquisition("qEI", model, obj, 1, MCOptions(16, seed=0))
    with pytest.raises(ValueError, match="Unknown"):
        make_mc_acquisition("qFoo", model, obj, 1, MCOptions(16, seed=0))


# ---------------------------------------------------------------- optimiser
def test_raw_candidates_and_initial_conditions():
    g = torch.Generator().manual_seed(0)
    X = raw_candidates(64, 3, 2, g, torch.float64, torch.device("cpu"))
    assert X.shape == (64, 3, 2) and X.min() >= 0 and X.max() <= 1
    values = -((X - 0.5) ** 2).sum((-1, -2))
    X0 = initial_conditions(X, values, 8, g)
    assert X0.shape == (8, 3, 2)
    best = X[values.argmax()]
    assert any(torch.equal(best, x) for x in X0)
    # distinct rows: sampled without replacement
    assert len({tuple(x.flatten().tolist()) for x in X0}) == 8


def test_maximize_acquisition_finds_box_constrained_optimum():
    # separable concave function with its optimum partly outside the unit cube
    target = torch.tensor([[0.3, 1.4], [-0.2, 0.6]], dtype=torch.float64)

    def acq(X):
        return -((X - target) ** 2).sum((-1, -2))

    res = maximize_acquisition(acq, 2, 2, OptimizeOptions(num_restarts=4, raw_samples=32),
                               generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(res.X, target.clamp(0, 1), rtol=0, atol=1e-6)
    assert res.X_restarts.shape == (4, 2, 2) and res.values.shape == (4,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_sobol_points_do_not_depend_on_torch_default_dtype(dtype):
    # the oracle: torch's own engine under its default dtype (float32), as this process started
    assert torch.get_default_dtype() == torch.float32
    expected = [torch.quasirandom.SobolEngine(d, scramble=True, seed=s).draw(9, dtype=torch.float64)
                for d, s in ((1, 0), (3, 7), (40, 123))]
    base = normal_base_samples(16, 5, 3, torch.float64, "cpu")
    raw = raw_candidates(8, 2, 3, torch.Generator().manual_seed(0), torch.float64, "cpu")
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        got = [sobol_points(9, d, s) for d, s in ((1, 0), (3, 7), (40, 123))]
        base_got = normal_base_samples(16, 5, 3, torch.float64, "cpu")
        raw_got = raw_candidates(8, 2, 3, torch.Generator().manual_seed(0), torch.float64, "cpu")
    finally:
        torch.set_default_dtype(old)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    assert torch.equal(base_got, base) and torch.equal(raw_got, raw)
