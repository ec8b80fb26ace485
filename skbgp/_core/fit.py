"""Fitting the hyperparameters of many independent GPs as one batch.

Restarts are an extra leading batch dimension: ``r`` starting points for each
of ``m`` targets are flattened into ``r * m`` members, optimised together by
the per-member L-BFGS, and the best restart of every target is kept.

Shape glossary: ``r`` starts, ``m`` targets, ``n`` points, ``d`` features,
``P`` hyperparameters.
"""

from dataclasses import dataclass

import torch

from .gp import member_rows
from .lbfgs import LBFGSOptions, minimize_lbfgs
from .priors import log_prior

__all__ = ["Box", "OptimiseResult", "fit_hyperparameters", "training_objective", "with_priors",
           "finite_difference_hessian"]

_HISTORY = 20  # L-BFGS curvature pairs per member


# Iterations every start runs before only the record-setting starts continue
# (see fit_hyperparameters). On the real data of benchmarks/bench_quality.py
# (8 splits), 5 iterations gave the held-out scores of running every start to
# convergence; 2 lost up to 0.04 in NLPD on some targets.
RACE_ITER = 5


@dataclass(frozen=True)
class Box:
    """Starting points and bounds of the members of one optimisation.

    Attributes
    ----------
    starts : Tensor of shape (r, b, P)
        Log hyperparameters every member starts from (the first: its initial value).
    lower, upper : Tensor of shape (b, P)
        Log bounds.
    free : Tensor of shape (P,), bool
        Hyperparameters that are optimised.
    """

    starts: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    free: torch.Tensor


@dataclass(frozen=True)
class OptimiseResult:
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
        Objective of every start when it stopped (after the race for the
        starts that did not continue).
    n_evaluations : int
        Number of batched objective evaluations.
    member_evaluations : Tensor of shape (m,), int64
        Objective evaluations spent on every target, all its starts together.
    """

    theta: torch.Tensor
    neg_lml: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    best_start: torch.Tensor
    neg_lml_all: torch.Tensor
    n_evaluations: int
    member_evaluations: torch.Tensor


def fit_hyperparameters(objective, box, max_iter=500, gtol=1e-5, ftol=2.220446049250313e-09,
                        race_iter=RACE_ITER, callback=None, memory=None):
    """Minimise the objective of every (start, target) pair.

    The objective is the negative log marginal likelihood of every target
    (:func:`training_objective`, or :func:`skbgp._core.folds.fold_objective`
    for folds with their own inputs), minus the log prior with priors
    (:func:`with_priors`, MAP).

    **Restarts.** All starts of all targets first run ``race_iter``
    iterations together. Then a start continues (for the remaining
    ``max_iter - race_iter`` iterations, from a fresh curvature history) if
    its objective is lower than that of every start before it: start 0
    always continues, start ``j`` only if it sets a record. The others stop
    where they are; the best final objective of each target wins. A start's
    fate thus depends on itself and the starts before it only, and every
    start's path on its own target only, so the starts with ``r`` given
    include those with fewer and **a target's final objective never gets
    worse as starts are added**. The starts that continue are few (about
    ``1 + 1/2 + ... + 1/r`` in expectation for starts in random order), so
    an extra start costs about ``race_iter`` iterations. A single start runs
    the same two phases, so that it ends where it would among others.

    Parameters
    ----------
    objective : callable
        ``objective(theta, targets) -> (loss, grad)``: ``theta`` a Tensor of
        shape (k, P), ``targets`` of shape (k,), int64, indexing the ``m``
        targets; ``loss`` of shape (k,), ``grad`` of shape (k, P).
    box : Box
        ``r`` starting points of each of ``m`` targets (``starts`` of shape
        (r, m, P), log space), their bounds and the free hyperparameters.
    max_iter, gtol, ftol : see :func:`minimize_lbfgs`.
    race_iter : int
        Iterations of every start before only the record-setting starts go on.
    callback : callable, optional
        Passed to :func:`minimize_lbfgs`.
    memory : tuple of Tensor, optional
        ``(S, Y)`` of shape (m, k, P): curvature pairs every start of a target
        begins with (:func:`~skbgp._core.lbfgs.hessian_pairs` of a Hessian
        near its optimum, as cross-validation's warm start uses).

    Returns
    -------
    OptimiseResult
    """
    theta0, lower, upper, free = box.starts, box.lower, box.upper, box.free
    r, m, P = theta0.shape
    cols = torch.arange(m, device=theta0.device)
    evaluations = torch.zeros(m, dtype=torch.long, device=theta0.device)
    # 20 curvature pairs rather than scipy's 10: 4-10% fewer iterations and the
    # same or a higher LML (doc/benchmarks.rst)
    history = _HISTORY if memory is None else max(_HISTORY, 2 * memory[0].shape[1])

    def counted(x, tgt):
        evaluations.index_add_(0, tgt, torch.ones_like(tgt))
        return objective(x, tgt)

    def run(x0, targets, iterations, mem, initial=None):
        return minimize_lbfgs(
            lambda x, idx: counted(x, targets[idx]), x0, (lower[targets], upper[targets]),
            free=free.expand(x0.shape[0], P),
            options=LBFGSOptions(max_iter=iterations, ftol=ftol, gtol=gtol, history_size=history),
            callback=callback, memory=mem, initial=initial,
        )

    # members are (start, target) pairs flattened to r * m; member i is target i % m
    members = cols.repeat(r)
    first = min(race_iter, max_iter)
    race = run(theta0.reshape(r * m, P), members, first,
               None if memory is None else (memory[0][members], memory[1][members]))
    fval = _nan_to_inf(race.fun.reshape(r, m))  # a failed start never wins
    # record setters: lower than every earlier start of the same target
    before = torch.cat([torch.full_like(fval[:1], float("inf")), fval[:-1].cummin(0).values])
    record = fval < before
    record[0] = True
    x, n_iter, converged = race.x.clone(), race.n_iter.clone(), race.converged.clone()
    go_on = record.reshape(-1) & ~converged & torch.isfinite(race.fun)
    if max_iter > first and bool(go_on.any()):
        idx = go_on.nonzero().squeeze(-1)
        # from a fresh history (the race's pairs lost LML, doc/benchmarks.rst),
        # without evaluating the race's last point again
        rest = run(x[idx], members[idx], max_iter - first,
                   None if memory is None else (memory[0][members[idx]], memory[1][members[idx]]),
                   initial=(race.fun[idx], race.grad[idx]))
        x[idx], converged[idx] = rest.x, rest.converged
        n_iter[idx] += rest.n_iter
        flat = fval.reshape(-1)
        flat[idx] = _nan_to_inf(rest.fun)
        n_evals = race.n_evaluations + rest.n_evaluations
    else:
        n_evals = race.n_evaluations
    best = fval.argmin(0)  # (m,): the first of equal values
    pick = best * m + cols
    return OptimiseResult(
        theta=x[pick],
        neg_lml=fval[best, cols],
        n_iter=n_iter[pick],
        converged=converged[pick],
        best_start=best,
        neg_lml_all=fval,
        n_evaluations=n_evals,
        member_evaluations=evaluations,
    )


def _nan_to_inf(t):
    """``t`` with NaN replaced by ``inf`` (infinities kept)."""
    return torch.where(torch.isnan(t), torch.full_like(t, float("inf")), t)


def training_objective(kernel, data, y, maskf, alpha):
    """The negative log marginal likelihood of targets that share their inputs.

    Parameters
    ----------
    kernel : StationaryKernel or CompositeKernel
    data : object
        ``kernel.training_data(X)`` of the shared training inputs.
    y : Tensor of shape (m, n)
        Targets, missing entries set to 0.
    maskf : Tensor of shape (m, n)
        1.0 where observed.
    alpha : Tensor of shape (n,), () or (m, n)

    Returns
    -------
    callable
        ``objective(theta, targets) -> (loss, grad)``, as
        :func:`fit_hyperparameters` takes it.
    """
    def objective(theta, targets):
        return kernel.nlml(theta, data, y[targets], maskf[targets], member_rows(alpha, targets))

    return objective


def with_priors(objective, priors):
    """``objective`` minus the log prior density of every member (MAP).

    Parameters
    ----------
    objective : callable
        ``objective(theta, targets) -> (loss, grad)``.
    priors : sequence of PriorTerm
        Indexed by ``targets``; empty returns ``objective`` itself.
    """
    if not priors:
        return objective

    def fun(theta, targets):
        loss, grad = objective(theta, targets)
        lp, lp_grad = log_prior(priors, theta, targets)
        return loss - lp, grad - lp_grad

    return fun


def finite_difference_hessian(fun, theta, targets, upper, free, step=1e-4):
    """Hessian of ``fun`` by forward differences of its gradient, in one batched call.

    Parameters
    ----------
    fun : callable
        ``fun(theta, targets) -> (loss, grad)`` (:func:`training_objective`, :func:`with_priors`).
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
