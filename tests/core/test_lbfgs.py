"""The per-member L-BFGS against scipy's L-BFGS-B and against itself looped."""

import numpy as np
import pytest
import scipy.optimize
import torch
from numpy.testing import assert_allclose

from skbgp._core.lbfgs import LBFGSOptions, minimize_lbfgs


def rosenbrock(x, idx, scale):
    """Scaled Rosenbrock per member; ``scale`` (b,) makes members differ."""
    a = scale[idx]
    f = a * (x[:, 1] - x[:, 0] ** 2) ** 2 + (1 - x[:, 0]) ** 2 + (x[:, 2] - 0.5) ** 2
    g = torch.stack([
        -4 * a * x[:, 0] * (x[:, 1] - x[:, 0] ** 2) - 2 * (1 - x[:, 0]),
        2 * a * (x[:, 1] - x[:, 0] ** 2),
        2 * (x[:, 2] - 0.5),
    ], dim=-1)
    return f, g


def _scipy(x0, a, lower, upper):
    fun = lambda x: tuple(t.numpy()[0] if t.dim() > 1 else t.item() for t in  # noqa: E731
                          rosenbrock(torch.tensor(x)[None], torch.tensor([0]), torch.tensor([a])))
    return scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=list(zip(lower, upper)))


def test_reaches_scipy_minimum_on_unbounded_problems():
    scale = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)
    x0 = torch.tensor([[-1.2, 1.0, 3.0], [0.0, 0.0, 0.0], [2.0, -1.0, -2.0]], dtype=torch.float64)
    big = torch.full_like(x0, 1e6)
    res = minimize_lbfgs(lambda x, i: rosenbrock(x, i, scale), x0, (-big, big),
                         options=LBFGSOptions(max_iter=2000, ftol=1e-14, gtol=1e-9))
    assert res.converged.all()
    assert_allclose(res.x.numpy(), np.tile([1.0, 1.0, 0.5], (3, 1)), atol=1e-5)


def test_box_constrained_solution_matches_scipy():
    scale = torch.tensor([1.0, 30.0], dtype=torch.float64)
    x0 = torch.tensor([[0.1, 0.1, 0.1], [-0.5, 0.3, 0.9]], dtype=torch.float64)
    lower = torch.tensor([[-2.0, -2.0, 0.8], [-2.0, -2.0, -2.0]], dtype=torch.float64)
    upper = torch.tensor([[0.7, 2.0, 2.0], [2.0, 0.2, 2.0]], dtype=torch.float64)
    res = minimize_lbfgs(lambda x, i: rosenbrock(x, i, scale), x0, (lower, upper),
                         options=LBFGSOptions(max_iter=1000, ftol=1e-15, gtol=1e-10))
    for b in range(2):
        ref = _scipy(x0[b].numpy(), scale[b].item(), lower[b].numpy(), upper[b].numpy())
        assert_allclose(res.x[b].numpy(), ref.x, atol=1e-5)
        assert res.fun[b].item() <= ref.fun + 1e-10
    assert torch.all(res.x >= lower) and torch.all(res.x <= upper)


@pytest.mark.slow
def test_batched_equals_looped_and_members_stop_on_their_own():
    scale = torch.tensor([1.0, 5.0, 50.0, 200.0], dtype=torch.float64)
    x0 = torch.tensor([[-1.2, 1.0, 0.0], [0.5, 0.5, 0.5], [1.5, 2.0, -1.0], [-0.5, -0.5, 2.0]],
                      dtype=torch.float64)
    big = torch.full_like(x0, 10.0)
    fun = lambda x, i: rosenbrock(x, i, scale)  # noqa: E731
    res = minimize_lbfgs(fun, x0, (-big, big))
    for b in range(4):
        alone = minimize_lbfgs(lambda x, i: rosenbrock(x, i, scale[b:b + 1]), x0[b:b + 1],
                               (-big[:1], big[:1]))
        torch.testing.assert_close(res.x[b:b + 1], alone.x, rtol=1e-12, atol=1e-12)
        assert res.n_iter[b] == alone.n_iter[0]
    # members converge after different numbers of iterations
    assert len(set(res.n_iter.tolist())) > 1


def test_fixed_variables_do_not_move_and_max_iter_reports_not_converged():
    scale = torch.tensor([100.0], dtype=torch.float64)
    x0 = torch.tensor([[-1.2, 1.0, 3.0]], dtype=torch.float64)
    big = torch.full_like(x0, 10.0)
    free = torch.tensor([[True, True, False]])
    res = minimize_lbfgs(lambda x, i: rosenbrock(x, i, scale), x0, (-big, big), free=free)
    assert res.x[0, 2] == 3.0
    short = minimize_lbfgs(lambda x, i: rosenbrock(x, i, scale), x0, (-big, big), options=LBFGSOptions(max_iter=3))
    assert not short.converged[0] and short.n_iter[0] == 3


def test_undefined_start_is_reported_not_converged():
    def fun(x, idx):
        f = (x ** 2).sum(-1)
        f = torch.where(idx == 0, torch.full_like(f, float("inf")), f)
        return f, 2 * x

    x0 = torch.ones(2, 2, dtype=torch.float64)
    res = minimize_lbfgs(fun, x0, (-10 * x0, 10 * x0))
    assert not res.converged[0] and res.converged[1]
    assert_allclose(res.x[1].numpy(), 0.0, atol=1e-6)


# --------------------------------------------------------------------------- starting curvature
def _spd(b, P, seed):
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(b, P, P, dtype=torch.float64, generator=gen)
    return A @ A.mT + 0.1 * torch.eye(P, dtype=torch.float64)


def test_hessian_pairs_make_the_two_loop_apply_the_inverse_hessian():
    from skbgp._core.lbfgs import _two_loop, hessian_pairs

    H = _spd(4, 6, 0)
    S, Y = hessian_pairs(H)
    g = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    # padded into a longer history, as minimize_lbfgs keeps it
    Sp = torch.cat([torch.zeros_like(S), S], dim=1)
    Yp = torch.cat([torch.zeros_like(Y), Y], dim=1)
    valid = (Sp * Yp).sum(-1) > 0
    expected = torch.linalg.solve(H, g.unsqueeze(-1)).squeeze(-1)  # closed form
    assert_allclose(_two_loop(g, Sp, Yp, valid).numpy(), expected.numpy(), rtol=1e-10, atol=1e-12)


def test_hessian_pairs_of_an_indefinite_matrix_are_positive_and_fixed_columns_decouple():
    from skbgp._core.lbfgs import hessian_pairs

    H = torch.diag(torch.tensor([[4.0, -1.0, 2.0]], dtype=torch.float64)[0]).unsqueeze(0)
    H[0, 0, 2] = H[0, 2, 0] = 0.5
    S, Y = hessian_pairs(H, free=torch.tensor([True, True, False]))
    assert bool(((S * Y).sum(-1) > 0).all())
    # the fixed third variable: a unit pair along its axis, no coupling to the others
    axis = S[0].abs().argmax(-1) == 2
    assert int(axis.sum()) == 1
    assert_allclose(Y[0][axis].numpy(), S[0][axis].numpy(), atol=1e-15)


def test_memory_of_the_exact_hessian_solves_a_quadratic_in_one_step():
    from skbgp._core.lbfgs import hessian_pairs

    b, P = 3, 5
    A = _spd(b, P, 2)
    c = torch.randn(b, P, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def quad(x, idx):
        Ax = (A[idx] @ x.unsqueeze(-1)).squeeze(-1)
        return 0.5 * (x * Ax).sum(-1) - (c[idx] * x).sum(-1), Ax - c[idx]

    big = torch.full((b, P), 1e6, dtype=torch.float64)
    x0 = torch.zeros(b, P, dtype=torch.float64)
    cold = minimize_lbfgs(quad, x0, (-big, big), options=LBFGSOptions(gtol=1e-10, ftol=0.0, history_size=10))
    warm = minimize_lbfgs(quad, x0, (-big, big),
                          options=LBFGSOptions(gtol=1e-10, ftol=0.0, history_size=10),
                          memory=hessian_pairs(A))
    solution = torch.linalg.solve(A, c.unsqueeze(-1)).squeeze(-1)  # closed form
    assert_allclose(warm.x.numpy(), solution.numpy(), rtol=1e-9, atol=1e-10)
    assert_allclose(cold.x.numpy(), solution.numpy(), rtol=1e-7, atol=1e-8)
    assert bool((warm.n_iter <= 2).all()) and bool((cold.n_iter > warm.n_iter).all())


def test_memory_with_unusable_pairs_in_the_middle_still_uses_the_others():
    from skbgp._core.lbfgs import hessian_pairs

    A = _spd(2, 4, 5)
    c = torch.ones(2, 4, dtype=torch.float64)
    S, Y = hessian_pairs(A)
    # an unusable pair (s^T y < 0) between the good ones
    bad = torch.zeros(2, 1, 4, dtype=torch.float64)
    bad[:, 0, 0] = 1.0
    S5 = torch.cat([S[:, :2], bad, S[:, 2:]], dim=1)
    Y5 = torch.cat([Y[:, :2], -bad, Y[:, 2:]], dim=1)

    def quad(x, idx):
        Ax = (A[idx] @ x.unsqueeze(-1)).squeeze(-1)
        return 0.5 * (x * Ax).sum(-1) - (c[idx] * x).sum(-1), Ax - c[idx]

    big = torch.full((2, 4), 1e6, dtype=torch.float64)
    res = minimize_lbfgs(quad, torch.zeros(2, 4, dtype=torch.float64), (-big, big),
                         options=LBFGSOptions(gtol=1e-10, ftol=0.0), memory=(S5, Y5))
    solution = torch.linalg.solve(A, c.unsqueeze(-1)).squeeze(-1)
    assert_allclose(res.x.numpy(), solution.numpy(), rtol=1e-9, atol=1e-10)
    assert bool((res.n_iter <= 2).all())


def test_trial_points_that_the_box_leaves_unchanged_are_not_evaluated_again():
    """A huge quasi-Newton step clipped to a worse corner: every backtracking
    trial that still lands on that corner is rejected from the known value,
    and the member still reaches the bounded minimum (closed form: the clipped
    minimiser of a separable quadratic)."""
    c = torch.tensor([[0.5, -0.2], [0.3, 0.4]], dtype=torch.float64)
    seen = []

    def fun(x, idx):
        for xi, i in zip(x.tolist(), idx.tolist()):
            seen.append((i, tuple(xi)))
        r = x - c[idx]
        return (r * r).sum(-1), 2.0 * r

    x0 = torch.zeros(2, 2, dtype=torch.float64)
    lower, upper = -torch.ones_like(x0), torch.ones_like(x0)
    # curvature pairs of an almost flat model: its first step is ~1e6 long
    S = torch.eye(2, dtype=torch.float64).expand(2, 2, 2).clone()
    res = minimize_lbfgs(fun, x0, (lower, upper), options=LBFGSOptions(gtol=1e-9), memory=(S, 1e-6 * S))
    assert len(seen) == len(set(seen)), "a member was evaluated twice at the same point"
    assert res.converged.all()
    assert_allclose(res.x.numpy(), c.numpy(), atol=1e-6)
