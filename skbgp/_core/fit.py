"""Fitting the hyperparameters of many independent GPs as one batch.

Restarts are an extra leading batch dimension: ``r`` starting points for each
of ``m`` targets are flattened into ``r * m`` members, optimised together by
the per-member L-BFGS, and the best restart of every target is kept.

Shape glossary: ``r`` starts, ``m`` targets, ``n`` points, ``d`` features,
``P`` hyperparameters.
"""

from dataclasses import dataclass

import torch

from .exact import neg_log_marginal_likelihood
from .lbfgs import minimize_lbfgs
from .priors import log_prior

__all__ = ["FitResult", "fit_hyperparameters", "make_objective", "finite_difference_hessian"]

_HISTORY = 20  # L-BFGS curvature pairs per member


@dataclass(frozen=True)
class FitResult:
    """Best hyperparameters of every target.

    Attributes
    ----------
    theta : Tensor of shape (m, P)
        Log hyperparameters of the best start.
    neg_lml : Tensor of shape (m,)
        Objective there (``inf`` if every start failed): the negative log
        marginal likelihood, or the negative log posterior (up to a constant)
        with priors.
    n_iter : Tensor of shape (m,), int64
        Iterations of the best start.
    converged : Tensor of shape (m,), bool
        Whether the best start met a stopping rule.
    best_start : Tensor of shape (m,), int64
        Index of the start that won (0 is the given initial value).
    neg_lml_all : Tensor of shape (r, m)
        Objective of every start when the race ended (final for the winners).
    n_evaluations : int
        Number of batched objective evaluations.
    """

    theta: torch.Tensor
    neg_lml: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    best_start: torch.Tensor
    neg_lml_all: torch.Tensor
    n_evaluations: int


def fit_hyperparameters(kernel, D2, y, maskf, alpha, theta0, lower, upper, free,
                        max_iter=500, gtol=1e-5, ftol=2.220446049250313e-09, race_iter=2,
                        callback=None, nlml=None, priors=(), objective=None, memory=None):
    """Maximise the log marginal likelihood (or posterior) of every (start, target) pair.

    With ``priors``, the objective is the negative log posterior
    ``-log p(y | theta) - log p(theta)`` (MAP; see :mod:`.priors`).

    Parameters
    ----------
    kernel : StationaryKernel or CompositeKernel
    D2 : Tensor of shape (d, n, n), or Geometry
        Squared differences of the shared training inputs (the training
        :class:`~skbgp._core.composite.Geometry` for a composite kernel): the
        data argument of ``nlml``.
    y : Tensor of shape (m, n)
        Targets, missing entries set to 0.
    maskf : Tensor of shape (m, n)
        1.0 where observed.
    alpha : Tensor of shape (n,) or ()
    theta0 : Tensor of shape (r, m, P)
        Starting points in log space.
    lower, upper : Tensor of shape (m, P)
        Bounds in log space.
    free : Tensor of shape (P,), bool
        Hyperparameters to optimise.
    max_iter, gtol, ftol : see :func:`minimize_lbfgs`.
    race_iter : int
        With several starts, all of them first run ``race_iter`` iterations
        together; then only the best start of each target continues (for the
        remaining ``max_iter - race_iter`` iterations). Starts that are clearly
        worse after a few iterations almost never win, and racing makes extra
        starts cost little more than ``race_iter`` iterations each. (On the
        benchmark's data 2 iterations instead of 3 saved 7% of the
        evaluations and changed the total LML of 128 targets by 5e-4.)
    callback : callable, optional
        Passed to :func:`minimize_lbfgs`.
    nlml : callable, optional
        ``nlml(kernel, theta, D2, y, maskf, alpha) -> (loss, grad)``; by default
        :func:`skbgp._core.exact.neg_log_marginal_likelihood`; the
        composite kernel's is :func:`skbgp._core.composite.neg_log_marginal_likelihood`.
    priors : sequence of PriorTerm, default=()
        Priors on the hyperparameters (MAP when not empty).
    objective : callable, optional
        ``objective(theta, targets) -> (loss, grad)``: the negative log
        marginal likelihood and its gradient of the targets ``targets``
        (Tensor of shape (k,), int64) at ``theta`` (Tensor of shape (k, P)),
        for targets whose inputs differ (cross-validation folds with their own
        transformed inputs, :mod:`skbgp._core.folds`). When given, it replaces
        the likelihood built from ``kernel``, ``D2``, ``y``, ``maskf`` and
        ``alpha``, which are then not used. ``priors`` still apply, indexed by
        member.
    memory : tuple of Tensor, optional
        ``(S, Y)`` of shape (m, k, P): curvature pairs every start of a target
        begins with (:func:`~skbgp._core.lbfgs.hessian_pairs` of a Hessian
        near its optimum, as cross-validation's warm start uses).

    Returns
    -------
    FitResult
    """
    r, m, P = theta0.shape
    cols = torch.arange(m, device=theta0.device)
    fun = make_objective(kernel, D2, y, maskf, alpha, nlml=nlml, priors=priors, objective=objective)
    # 20 curvature pairs rather than scipy's 10: on the benchmark's data (three
    # seeds; n, d, targets = (200, 4, 128), (500, 5, 16), (100, 2, 64)) fits
    # took 4-10% fewer iterations and reached the same or a higher total LML;
    # 30 pairs gained nothing more
    history = _HISTORY if memory is None else max(_HISTORY, 2 * memory[0].shape[1])

    def run(x0, targets, iterations, mem, initial=None):
        return minimize_lbfgs(
            lambda x, idx: fun(x, targets[idx]), x0, lower[targets], upper[targets],
            free=free.expand(x0.shape[0], P), max_iter=iterations, ftol=ftol, gtol=gtol,
            callback=callback, history_size=history, memory=mem, initial=initial,
        )

    # members are (start, target) pairs flattened to r * m; member i is target i % m
    members = cols.repeat(r)
    mem = None if memory is None else (memory[0][members], memory[1][members])
    race = run(theta0.reshape(r * m, P), members, min(race_iter, max_iter) if r > 1 else max_iter, mem)
    fval = race.fun.reshape(r, m)
    fval = torch.where(torch.isnan(fval), torch.full_like(fval, float("inf")), fval)
    best = fval.argmin(0)  # (m,)
    pick = best * m + cols
    theta, n_iter, converged = race.x[pick], race.n_iter[pick], race.converged[pick]
    n_evals = race.n_evaluations
    # the same budget for every target, whatever shares its batch
    remaining = max_iter - min(race_iter, max_iter) if r > 1 else 0
    go_on = ~converged & torch.isfinite(race.fun[pick])
    if remaining > 0 and bool(go_on.any()):
        # only each target's best start continues
        idx = go_on.nonzero().squeeze(-1)
        # (from a fresh history: continuing with the race's curvature pairs saved
        # 2.5% of the evaluations at (200, 4, 128) and lost 2.9 of total LML)
        # (the race's last objective and gradient there are not evaluated again)
        rest = run(theta[idx], idx, remaining,
                   None if memory is None else (memory[0][idx], memory[1][idx]),
                   initial=(race.fun[pick[idx]], race.grad[pick[idx]]))
        theta[idx], converged[idx] = rest.x, rest.converged
        n_iter[idx] += rest.n_iter
        fval[best[idx], idx] = rest.fun
        n_evals += rest.n_evaluations
    return FitResult(
        theta=theta,
        neg_lml=fval[best, cols],
        n_iter=n_iter,
        converged=converged,
        best_start=best,
        neg_lml_all=fval,
        n_evaluations=n_evals,
    )


def make_objective(kernel, D2, y, maskf, alpha, nlml=None, priors=(), objective=None):
    """The objective :func:`fit_hyperparameters` minimises, as ``fun(theta, targets)``.

    Parameters are those of :func:`fit_hyperparameters`.

    Returns
    -------
    callable
        ``fun(theta, targets) -> (loss, grad)``: ``theta`` of shape (k, P),
        ``targets`` of shape (k,), int64; the negative log marginal likelihood
        (minus the log prior) of those targets and its gradient.
    """
    def fun(x, tgt):
        if objective is not None:
            loss, grad = objective(x, tgt)
        else:
            loss, grad = (nlml or neg_log_marginal_likelihood)(
                kernel, x, D2, y[tgt], maskf[tgt], alpha)
        if not priors:
            return loss, grad
        lp, lp_grad = log_prior(priors, x, tgt)
        return loss - lp, grad - lp_grad

    return fun


def finite_difference_hessian(fun, theta, targets, upper, free, step=1e-4):
    """Hessian of ``fun`` by forward differences of its gradient, in one batched call.

    Parameters
    ----------
    fun : callable
        ``fun(theta, targets) -> (loss, grad)`` (:func:`make_objective`).
    theta : Tensor of shape (m, P)
    targets : Tensor of shape (m,), int64
    upper : Tensor of shape (m, P)
        A step that would leave the box goes backwards instead.
    free : Tensor of shape (P,), bool
        Columns differentiated; the others are zero.
    step : float

    Returns
    -------
    Tensor of shape (m, P, P)
        Not symmetrised; rows of a member whose gradient is not finite are
        those of the identity.
    """
    m, P = theta.shape
    cols = free.nonzero().squeeze(-1).tolist()
    H = torch.zeros(m, P, P, dtype=theta.dtype, device=theta.device)
    if not cols or m == 0:
        return H + torch.eye(P, dtype=theta.dtype, device=theta.device)
    h = torch.where(theta[:, cols] + step <= upper[:, cols], step, -step)  # (m, k)
    X = theta.unsqueeze(0).repeat(len(cols) + 1, 1, 1)  # (k + 1, m, P)
    for i, c in enumerate(cols):
        X[i + 1, :, c] += h[:, i]
    _, g = fun(X.reshape(-1, P), targets.repeat(len(cols) + 1))
    g = g.reshape(len(cols) + 1, m, P)
    for i, c in enumerate(cols):
        H[:, :, c] = (g[i + 1] - g[0]) / h[:, i:i + 1]
    bad = ~torch.isfinite(H).all(-1).all(-1)
    H[bad] = torch.eye(P, dtype=theta.dtype, device=theta.device)
    return H
