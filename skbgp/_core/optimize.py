"""Batched random-restart maximisation of an acquisition function.

1. ``raw_samples`` candidate sets of ``q`` points are drawn quasi-randomly
   (scrambled Sobol points in the ``q * d``-dimensional unit cube) and scored
   in one batched call (in chunks of ``batch_limit``).
2. ``num_restarts`` of them are picked as starting points by Boltzmann
   sampling without replacement, with probability proportional to
   ``exp(eta * z)`` where ``z`` is the standardised score (BoTorch's
   ``initialize_q_batch``): high values are favoured while the starts stay
   diverse; the best raw candidate is always kept.
3. All ``r x q x d`` starts are optimised together by the per-member
   projected L-BFGS of :mod:`skbgp._core.lbfgs`: each restart keeps its own
   curvature history, line search and convergence test, and the restarts that
   have converged are no longer evaluated. (BoTorch 0.18's
   ``gen_candidates_scipy`` likewise keeps one scipy L-BFGS-B state per
   restart when scipy is 1.13-1.17 and there are no parameter constraints,
   stepping them in Python with a round trip through numpy between batched
   evaluations; otherwise it runs L-BFGS-B on the *sum* of the restarts,
   sharing one line search and one stopping test.) After ``race_iter`` iterations only the leading restart may
   continue, if it has not converged.
4. The best restart is returned.

All of it happens in the unit cube ``[0, 1]^d``; the caller maps to and from
its own bounds.

Shape glossary: ``r`` restarts, ``q`` points per candidate set, ``d``
features, ``b`` t-batch.
"""

from dataclasses import dataclass

import torch
from .lbfgs import LBFGSOptions, minimize_lbfgs
from .sobol import sobol_points
from .threads import check_cancelled

__all__ = [
    "OptimizeOptions",
    "OptimizeResult",
    "raw_candidates",
    "initial_conditions",
    "maximize_acquisition",
]


@dataclass(frozen=True)
class OptimizeOptions:
    """Settings of :func:`maximize_acquisition`: the restarts and when they stop.

    Attributes
    ----------
    num_restarts : int
        Number of starting points optimised together.
    raw_samples : int
        Number of quasi-random candidate sets scored to choose the starts.
    max_iter : int
        L-BFGS iterations per restart.
    gtol : float
        Stop a restart when its projected gradient's infinity norm is below.
    ftol : float
        Stop a restart when its relative decrease is below (see
        :func:`~skbgp._core.lbfgs.minimize_lbfgs`).
    race_iter : int
        All restarts run at most ``race_iter`` iterations; then, if the best
        of them has not converged, it alone continues up to ``max_iter``.
        Restarts still crawling after ``race_iter`` iterations are on flat
        ridges (often with two of the ``q`` points merged), and one such
        restart used to cost as much as all the others together.
    batch_limit : int
        Candidate sets scored per call while choosing the starts.
    """

    num_restarts: int = 10
    raw_samples: int = 512
    max_iter: int = 200
    gtol: float = 1e-5
    ftol: float = 1e-7
    race_iter: int = 50
    batch_limit: int = 256


@dataclass(frozen=True)
class OptimizeResult:
    """Outcome of :func:`maximize_acquisition`.

    Attributes
    ----------
    X : Tensor of shape (q, d)
        The best candidate set, in the unit cube.
    value : Tensor of shape ()
        Its acquisition value.
    X_restarts : Tensor of shape (r, q, d)
        Every restart's final point.
    values : Tensor of shape (r,)
        Every restart's final value.
    n_evaluations : int
        Batched acquisition evaluations made by the optimiser.
    """

    X: torch.Tensor
    value: torch.Tensor
    X_restarts: torch.Tensor
    values: torch.Tensor
    n_evaluations: int


def _seed(generator):
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))


def raw_candidates(raw_samples, q, d, generator, dtype, device):
    """Quasi-random candidate sets in the unit cube.

    Parameters
    ----------
    raw_samples : int
    q, d : int
    generator : torch.Generator
        Seeds the scrambled Sobol sequence.
    dtype : torch.dtype
    device : torch.device

    Returns
    -------
    Tensor of shape (raw_samples, q, d)
    """
    U = sobol_points(raw_samples, q * d, _seed(generator)).to(dtype=dtype, device=device)
    return U.view(raw_samples, q, d)


def _evaluate(acquisition, X, batch_limit):
    """Acquisition values of many candidate sets, without gradients: (b,) from (b, q, d)."""
    chunks = []
    with torch.no_grad():
        for i in range(0, X.shape[0], batch_limit):
            check_cancelled()  # an interrupted caller stops the work here
            chunks.append(acquisition(X[i:i + batch_limit]))
        return torch.cat(chunks)


def initial_conditions(X, values, num_restarts, generator, eta=1.0):
    """Pick diverse, promising starting points by Boltzmann sampling.

    Parameters
    ----------
    X : Tensor of shape (b, q, d)
        Scored candidate sets.
    values : Tensor of shape (b,)
        Their acquisition values (``nan`` counts as ``-inf``).
    num_restarts : int
    generator : torch.Generator
    eta : float
        Temperature: larger favours high values more.

    Returns
    -------
    Tensor of shape (min(num_restarts, b), q, d)
        Always contains the best candidate set.
    """
    b = X.shape[0]
    r = min(num_restarts, b)
    values = torch.nan_to_num(values, nan=-torch.inf)
    finite = torch.isfinite(values)
    if r == b:
        return X
    best = int(values.argmax())
    if int(finite.sum()) > 1 and float(values[finite].std()) > 0:
        v = values[finite]
        z = (values - v.mean()) / v.std()
        logits = torch.where(finite, eta * z, -torch.inf)
        weights = torch.exp(logits - logits.max()).to(torch.float64)
        n_positive = int((weights > 0).sum())
        if n_positive >= r:
            idx = torch.multinomial(weights.cpu(), r, replacement=False, generator=generator)
        else:
            rest = torch.randperm(b, generator=generator, device=generator.device)
            rest = rest[weights.cpu()[rest] == 0][: r - n_positive]
            idx = torch.cat([weights.cpu().nonzero().squeeze(-1), rest])
    else:
        idx = torch.randperm(b, generator=generator, device=generator.device)[:r]
    idx = idx.to(X.device)
    if not bool((idx == best).any()):
        idx[0] = best
    return X[idx]


def maximize_acquisition(acquisition, q, d, options=OptimizeOptions(), *, generator,
                         dtype=torch.float64, device=None):
    """Maximise an acquisition function over ``q`` points in the unit cube.

    Parameters
    ----------
    acquisition : callable
        Maps a Tensor of shape (b, q, d) to a Tensor of shape (b,), larger is
        better, differentiable with respect to its input. If it has a
        ``value_and_grad`` method (as :class:`~skbgp._core.acquisition.MCAcquisition`),
        that gives the values and gradients instead of autograd.
    q, d : int
    options : OptimizeOptions
        Restarts, raw samples, iterations and stopping tolerances.
    generator : torch.Generator
        Seeds the Sobol candidates and the choice of starts (the caller's
        ``random_state`` made local; the global generator is never used).
        Keyword-only and required.
    dtype : torch.dtype
    device : torch.device or None

    Returns
    -------
    OptimizeResult
    """
    device = torch.device("cpu") if device is None else device
    X_raw = raw_candidates(options.raw_samples, q, d, generator, dtype, device)
    values = _evaluate(acquisition, X_raw, options.batch_limit)
    X0 = initial_conditions(X_raw, values, options.num_restarts, generator)
    r = X0.shape[0]
    P = q * d

    value_and_grad = getattr(acquisition, "value_and_grad", None)

    def fun(x, idx):
        check_cancelled()  # an interrupted caller stops the optimiser here
        if value_and_grad is not None:
            val, grad = value_and_grad(x.detach().view(-1, q, d))
        else:
            with torch.enable_grad():
                X = x.detach().view(-1, q, d).requires_grad_(True)
                val = acquisition(X)
                (grad,) = torch.autograd.grad(val.sum(), X)
            val = val.detach()
        bad = ~torch.isfinite(val)
        # minimise the negative; an undefined value makes the line search backtrack
        f = torch.where(bad, torch.inf, -val)
        g = torch.where(bad[:, None], 0.0, -grad.reshape(-1, P))
        return f, torch.nan_to_num(g)

    lower = torch.zeros(r, P, dtype=dtype, device=device)
    upper = torch.ones(r, P, dtype=dtype, device=device)
    max_iter, gtol, ftol = options.max_iter, options.gtol, options.ftol
    first = min(options.race_iter, max_iter)
    result = minimize_lbfgs(fun, X0.reshape(r, P), (lower, upper),
                            options=LBFGSOptions(max_iter=first, gtol=gtol, ftol=ftol))
    x, f, n_evals = result.x.clone(), result.fun.clone(), result.n_evaluations
    f = torch.where(torch.isfinite(f), f, torch.inf)
    lead = int(f.argmin())
    if max_iter > first and not bool(result.converged[lead]) and bool(torch.isfinite(f[lead])):
        # only the leading restart, still improving, continues (the others are
        # converged or trail it after race_iter iterations)
        more = minimize_lbfgs(fun, x[lead:lead + 1], (lower[:1], upper[:1]),
                              options=LBFGSOptions(max_iter=max_iter - first, gtol=gtol, ftol=ftol))
        if bool(more.fun[0] <= f[lead]):
            x[lead], f[lead] = more.x[0], more.fun[0]
        n_evals += more.n_evaluations
    X_all = x.view(r, q, d)
    vals = torch.where(torch.isfinite(f), -f, -torch.inf)
    best = int(vals.argmax())
    return OptimizeResult(X=X_all[best].clone(), value=vals[best], X_restarts=X_all, values=vals,
                          n_evaluations=n_evals)
