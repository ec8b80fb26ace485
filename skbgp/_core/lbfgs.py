"""A batched, box-constrained L-BFGS with one line search per member.

Every member of the batch is its own optimisation problem: it keeps its own
curvature pairs, takes its own step length and meets its own convergence test.
Members that have converged are frozen and are no longer evaluated; the
members still searching share one batched objective evaluation per line-search
trial. A member's path therefore does not depend on the other members.

Bounds are handled by projection (a projected quasi-Newton method): variables
at a bound whose gradient points outwards are held for the iteration, and every
trial point is clipped into the box. The stopping rules mirror scipy's
L-BFGS-B: relative decrease of the objective below ``ftol`` or infinity norm of
the projected gradient below ``gtol``.

Shape glossary: ``b`` members, ``P`` variables per member, ``M`` history.
"""

from dataclasses import dataclass, replace

import torch

__all__ = ["LBFGSOptions", "LBFGSResult", "minimize_lbfgs", "hessian_pairs"]

_C1 = 1e-4  # Armijo sufficient-decrease constant


@dataclass(frozen=True)
class LBFGSResult:
    """Outcome of :func:`minimize_lbfgs`, one entry per member.

    Attributes
    ----------
    x : Tensor of shape (b, P)
    fun : Tensor of shape (b,)
    grad : Tensor of shape (b, P)
    n_iter : Tensor of shape (b,), int64
    converged : Tensor of shape (b,), bool
        True where a stopping rule (``ftol`` or ``gtol``) was met, False where
        the member ran out of iterations, its line search failed, or its
        objective could not be evaluated at the starting point.
    n_evaluations : int
        Number of batched objective evaluations (all members together).
    """

    x: torch.Tensor
    fun: torch.Tensor
    grad: torch.Tensor
    n_iter: torch.Tensor
    converged: torch.Tensor
    n_evaluations: int


def _projected_gradient(x, g, lower, upper):
    """``P(x - g) - x``: the step to the box along the negative gradient."""
    return torch.minimum(torch.maximum(x - g, lower), upper) - x


def _two_loop(g, S, Y, valid):
    """``H g`` for every member, the L-BFGS inverse Hessian approximation times ``g``.

    The two-loop recursion's result from the compact representation of
    Byrd, Nocedal & Schnabel (1994, eq. 3.1), a handful of batched products
    instead of a loop over the history: with ``a = S g``, ``c = Y g``,
    ``R = triu(S Y^T)``, ``D = diag(S Y^T)`` and ``gamma = s^T y / y^T y``
    of the newest pair,
    ``H g = gamma g + S^T w - gamma Y^T p``, ``p = R^-1 a``,
    ``w = R^-T ((D + gamma Y Y^T) p - gamma c)``.
    Unused pairs are zeroed (with a unit diagonal in ``R``), so they drop out.

    Parameters
    ----------
    g : Tensor of shape (b, P)
    S, Y : Tensor of shape (b, M, P)
        Curvature pairs, newest last.
    valid : Tensor of shape (b, M), bool

    Returns
    -------
    Tensor of shape (b, P)
    """
    if not bool(valid.any()):
        return g.clone()
    # all M positions, used or not: trimming those no member of the batch uses
    # would make a member's sums (and its rounding) depend on the others
    v = valid
    vf = v.to(g.dtype).unsqueeze(-1)
    S, Y = S * vf, Y * vf
    # products written as broadcast sums: a batched matrix product's kernel,
    # and so its rounding, depends on the batch size (a member alone would
    # differ from the same member among others)
    SY = (S.unsqueeze(2) * Y.unsqueeze(1)).sum(-1)  # (b, M, M): s_i^T y_j
    YY = (Y.unsqueeze(2) * Y.unsqueeze(1)).sum(-1)
    sy = SY.diagonal(dim1=-2, dim2=-1)
    yy = YY[:, -1, -1]
    gamma = torch.where(v[:, -1], sy[:, -1] / torch.where(v[:, -1], yy, torch.ones_like(yy)),
                        torch.ones_like(yy))
    eye = torch.diag_embed((~v).to(g.dtype))  # unit diagonal where unused
    R = SY.triu() + eye
    a = (S * g.unsqueeze(1)).sum(-1, keepdim=True)  # (b, M, 1)
    c = (Y * g.unsqueeze(1)).sum(-1, keepdim=True)
    p = torch.linalg.solve_triangular(R, a, upper=True)
    rhs = sy.unsqueeze(-1) * p + gamma[:, None, None] * ((YY * p.mT).sum(-1, keepdim=True) - c)
    w = torch.linalg.solve_triangular(R.mT, rhs, upper=False)
    return gamma.unsqueeze(-1) * (g - (Y * p).sum(1)) + (S * w).sum(1)


@dataclass(frozen=True)
class LBFGSOptions:
    """Settings of :func:`minimize_lbfgs`.

    Attributes
    ----------
    max_iter : int
        Maximum number of iterations per member.
    ftol : float
        Stop when ``(f_k - f_{k+1}) <= ftol * max(|f_k|, |f_{k+1}|, 1)`` (scipy's default).
    gtol : float
        Stop when the infinity norm of the projected gradient is ``<= gtol``.
    history_size : int
        Number of curvature pairs kept per member.
    max_linesearch : int
        Maximum number of backtracking trials per iteration.
    """

    max_iter: int = 500
    ftol: float = 2.220446049250313e-09
    gtol: float = 1e-5
    history_size: int = 10
    max_linesearch: int = 30


def minimize_lbfgs(fun, x0, bounds, free=None, options=LBFGSOptions(), callback=None, memory=None,
                   initial=None):
    """Minimise ``b`` independent functions with per-member L-BFGS.

    Parameters
    ----------
    fun : callable
        ``fun(x, idx) -> (f, g)`` evaluates the members ``idx`` (Tensor of
        shape (k,), int64) at ``x`` (Tensor of shape (k, P)) and returns
        ``f`` of shape (k,) and ``g`` of shape (k, P). ``f`` may be ``inf``
        where the objective is undefined (the line search then backtracks).
    x0 : Tensor of shape (b, P)
        Starting points, inside the bounds.
    bounds : tuple of Tensor
        ``(lower, upper)``, each of shape (b, P): box bounds (equal bounds
        hold a variable fixed).
    free : Tensor of shape (b, P), bool, optional
        Variables to optimise; the others stay at ``x0``.
    options : LBFGSOptions
    callback : callable, optional
        ``callback(iteration, n_active)`` after each iteration.
    memory : tuple of Tensor, optional
        ``(S, Y)`` of shape (b, k, P), ``k <= history_size``: curvature pairs
        to start from (newest last), e.g. from a related problem's Hessian
        (:func:`hessian_pairs`). Pairs with ``s^T y <= 0`` are ignored. With
        pairs, the first step is a quasi-Newton step of length 1 instead of a
        short steepest-descent step.
    initial : tuple of Tensor, optional
        ``(f, g)`` of shapes (b,) and (b, P): the objective and its gradient
        at ``x0``, already known (a continued run); saves the first
        evaluation. ``x0`` must then lie inside the bounds.

    Returns
    -------
    LBFGSResult
    """
    b = x0.shape[0]
    device = x0.device
    lower, upper = bounds
    if free is None:
        free = torch.ones_like(x0, dtype=torch.bool)
    free = free & (upper > lower)
    x = torch.minimum(torch.maximum(x0, lower), upper).clone()
    if initial is None:
        f, g = fun(x, torch.arange(b, device=device))
        n_evals = 1
    else:
        f, g = initial[0].clone(), initial[1].clone()
        n_evals = 0
    g = g * free
    S, Y, valid = _initial_history(x0, options.history_size, memory)
    n_iter = torch.zeros(b, dtype=torch.long, device=device)
    converged = _projected_gradient(x, g, lower, upper).abs().amax(-1) <= options.gtol
    out = LBFGSResult(x=x, fun=f, grad=g, n_iter=n_iter, converged=converged, n_evaluations=0)
    act = _Active(out, lower, upper, free, (S, Y, valid))
    for iteration in range(options.max_iter):
        if act.pos.numel() == 0:
            break
        n_evals += _iterate(fun, act, options)
        if callback is not None:
            callback(iteration, int(act.pos.numel()))
    act.stop(torch.ones_like(act.pos, dtype=torch.bool), None)  # ran out of iterations
    return replace(out, n_evaluations=n_evals)


def _initial_history(x0, history_size, memory):
    """``(S, Y, valid)`` of shapes (b, M, P), (b, M, P), (b, M): empty, or ``memory``'s pairs last."""
    b, P = x0.shape
    S = torch.zeros(b, history_size, P, dtype=x0.dtype, device=x0.device)
    Y = torch.zeros_like(S)
    valid = torch.zeros(b, history_size, dtype=torch.bool, device=x0.device)
    if memory is None:
        return S, Y, valid
    S0, Y0 = memory
    k = S0.shape[1]
    if k > history_size:
        raise ValueError(f"memory holds {k} pairs, more than history_size={history_size}.")
    if k:
        # the valid pairs must form a suffix of the history (see _two_loop):
        # a stable sort moves unusable pairs to the front, keeping the order
        ok = (S0 * Y0).sum(-1) > 0
        order = torch.sort(ok.to(torch.int8), dim=-1, stable=True).indices
        S[:, -k:] = S0.gather(1, order.unsqueeze(-1).expand_as(S0))
        Y[:, -k:] = Y0.gather(1, order.unsqueeze(-1).expand_as(Y0))
        valid[:, -k:] = ok.gather(1, order)
    return S, Y, valid


class _Active:
    """The members still searching, compacted: their rows of the state, and ``pos``, their indices.

    A member that stops is written back to the result and dropped, so an
    iteration gathers nothing and scatters nothing unless some member stopped
    in it (this bookkeeping on small tensors cost more than half a millisecond
    per iteration when it was done for every member).
    """

    def __init__(self, out, lower, upper, free, history):
        self.out = out
        self.pos = (torch.isfinite(out.fun) & ~out.converged).nonzero().squeeze(-1)
        pos = self.pos
        self.x, self.f, self.g = out.x[pos], out.fun[pos], out.grad[pos]
        self.lo, self.hi, self.fr = lower[pos], upper[pos], free[pos]
        S, Y, valid = history
        self.S, self.Y, self.v = S[pos], Y[pos], valid[pos]
        self.n = out.n_iter[pos]

    def stop(self, rows, converged):
        """Write the members ``rows`` (a bool mask of the active ones) back to the result, with
        ``converged`` (their stopping rule met; None leaves the result's), and drop them."""
        out, ended = self.out, self.pos[rows]
        out.x[ended], out.fun[ended], out.grad[ended] = self.x[rows], self.f[rows], self.g[rows]
        out.n_iter[ended] = self.n[rows]
        if converged is not None:
            out.converged[ended] = converged
        rows = ~rows
        self.pos = self.pos[rows]
        self.x, self.f, self.g = self.x[rows], self.f[rows], self.g[rows]
        self.lo, self.hi, self.fr = self.lo[rows], self.hi[rows], self.fr[rows]
        self.S, self.Y, self.v, self.n = self.S[rows], self.Y[rows], self.v[rows], self.n[rows]


@dataclass(frozen=True)
class _Step:
    """One iteration's search direction ``d`` (k, P), first trial length ``t`` (k,), ``slope`` (k,)
    (``g^T d``), the variables ``held`` at a bound (k, P) and the members with ``no_history`` (k,)."""

    d: torch.Tensor
    t: torch.Tensor
    slope: torch.Tensor
    held: torch.Tensor
    no_history: torch.Tensor


def _direction(act):
    """The quasi-Newton step of every active member (steepest descent where it is no descent)."""
    # hold variables at a bound whose gradient points out of the box, and
    # take the quasi-Newton step in the subspace of the others
    held = ~act.fr | ((act.x <= act.lo) & (act.g > 0)) | ((act.x >= act.hi) & (act.g < 0))
    d = -_two_loop(act.g.masked_fill(held, 0.0), act.S, act.Y, act.v)
    d = d.masked_fill(held, 0.0)
    gd = (act.g * d).sum(-1)
    steepest = ~(gd < 0)
    if bool(steepest.any()):
        # not a descent direction: forget the history, use the projected gradient
        pga = _projected_gradient(act.x, act.g, act.lo, act.hi)
        d = torch.where(steepest[:, None], pga, d)
        act.v = act.v & ~steepest[:, None]
    no_history = ~act.v.any(-1)
    dnorm = d.abs().amax(-1)
    t = torch.where(no_history, torch.clamp(1.0 / dnorm.clamp_min(1e-300), max=1.0),
                    torch.ones_like(dnorm))
    return _Step(d=d, t=t, slope=(act.g * d).sum(-1), held=held, no_history=no_history)


def _iterate(fun, act, options):
    """One L-BFGS iteration of every active member; returns the number of batched evaluations."""
    step = _direction(act)
    x_new, f_new, g_new, searching, n_evals = _line_search(fun, act, step, options.max_linesearch)
    # None: every member moved
    moved = None if searching is None else ~searching
    _update_history(act, x_new - act.x, g_new - act.g, moved)
    rel_decrease = (act.f - f_new) <= options.ftol * torch.maximum(
        torch.maximum(act.f.abs(), f_new.abs()), torch.ones_like(act.f))
    pg_small = _projected_gradient(x_new, g_new, act.lo, act.hi).abs().amax(-1) <= options.gtol
    # With a variable held at a bound, a small decrease from a quasi-Newton
    # step can come from a poor direction (curvature pairs from before the
    # bound became active): forget the history and try a projected-gradient
    # step before accepting it. Interior members stop as scipy's would.
    at_bound = (step.held & act.fr).any(-1)
    retry = rel_decrease & ~pg_small & ~step.no_history & at_bound
    done = pg_small | (rel_decrease & ~retry)
    keep_pairs = ~retry
    if moved is not None:
        done &= moved
        keep_pairs &= moved
    act.x, act.f, act.g = x_new, f_new, g_new
    act.n = act.n + 1
    # a failed or stalled search with history retries from steepest descent
    act.v = act.v & keep_pairs[:, None]
    # a failed line search with an empty history is a dead end
    stop = done if moved is None else done | (~moved & step.no_history)
    if bool(stop.any()):
        act.stop(stop, done[stop])
    return n_evals


def _update_history(act, s_vec, y_vec, moved):
    """Append the curvature pair of every member that moved and keeps ``s^T y > 0``."""
    sy = (s_vec * y_vec).sum(-1)
    good_pair = (sy > 1e-10 * (y_vec * y_vec).sum(-1)) & (sy > 0)
    if moved is not None:
        good_pair &= moved
    if bool(good_pair.any()):
        gp = good_pair[:, None, None]
        act.S = torch.where(gp, torch.cat([act.S[:, 1:], s_vec[:, None]], dim=1), act.S)
        act.Y = torch.where(gp, torch.cat([act.Y[:, 1:], y_vec[:, None]], dim=1), act.Y)
        act.v = torch.where(good_pair[:, None],
                            torch.cat([act.v[:, 1:], torch.ones_like(act.v[:, :1])], dim=1), act.v)


def _line_search(fun, act, step, max_linesearch):
    """Backtracking line search along the projected path, all active members at once.

    ``searching`` stays None while no member has been rejected (the usual
    case: the first trial is accepted by every member, and the step lengths
    of the rejected ones are only then computed).

    Returns
    -------
    x_new, f_new, g_new : Tensor of shapes (k, P), (k,), (k, P)
        The accepted points (the current ones where the search failed).
    searching : Tensor of shape (k,), bool, or None
        Members whose search failed; None when every first trial was accepted.
    n_evals : int
        Batched evaluations.
    """
    xa, fa, ga, lo, hi, fr, pos = act.x, act.f, act.g, act.lo, act.hi, act.fr, act.pos
    d, slope, t = step.d, step.slope, step.t
    n_evals = 0
    searching = None
    last_x = last_f = None  # each member's last rejected trial
    for trial in range(max_linesearch):
        if trial == 0:
            sidx = None  # every member: no gathers
            xs, fs, gs, ds, ls, hs, ps, ts = xa, fa, ga, d, lo, hi, slope, t
            ids = pos
        else:
            sidx = searching.nonzero().squeeze(-1)
            if sidx.numel() == 0:
                break
            xs, fs, gs, ds = xa[sidx], fa[sidx], ga[sidx], d[sidx]
            ls, hs, ps, ts = lo[sidx], hi[sidx], slope[sidx], t[sidx]
            ids = pos[sidx]
        xt = torch.minimum(torch.maximum(xs + ts[:, None] * ds, ls), hs)
        if sidx is None:
            ft, gt = fun(xt, ids)
            n_evals += 1
        else:
            # where the projection onto the box leaves a shorter step at the
            # point already rejected, the objective there is known: it is
            # rejected again without an evaluation (a member far outside
            # the box spent 8 evaluations at one corner, 30 times the cost
            # of others' evaluations there, before this)
            fresh = ~(xt == last_x[sidx]).all(-1)
            if bool(fresh.all()):
                ft, gt = fun(xt, ids)
                n_evals += 1
            else:
                ft, gt = last_f[sidx], torch.zeros_like(xt)
                if bool(fresh.any()):
                    ft = ft.clone()
                    ft[fresh], gt[fresh] = fun(xt[fresh], ids[fresh])
                    n_evals += 1
        decrease = (gs * (xt - xs)).sum(-1)
        ok = torch.isfinite(ft) & (ft <= fs + _C1 * decrease)
        if sidx is None:
            if bool(ok.all()):
                return xt, ft, gt * fr, None, n_evals
            okc = ok[:, None]
            x_new = torch.where(okc, xt, xa)
            f_new = torch.where(ok, ft, fa)
            g_new = torch.where(okc, gt * fr, ga)
            searching = ~ok
            last_x, last_f = xt.clone(), ft.clone()  # the rejected trials
        else:
            acc = sidx[ok]
            x_new[acc], f_new[acc], g_new[acc] = xt[ok], ft[ok], gt[ok] * fr[acc]
            searching[acc] = False
        # shrink the rejected steps by safeguarded quadratic interpolation,
        # or by 10 where the objective was undefined
        rej = ~ok
        rej_ids = rej.nonzero().squeeze(-1) if sidx is None else sidx[rej]
        if sidx is not None:
            last_x[rej_ids], last_f[rej_ids] = xt[rej], ft[rej]
        ft, ps, ts, fs = ft[rej], ps[rej], ts[rej], fs[rej]
        denom = 2.0 * (ft - fs - ps * ts)
        t_quad = -ps * ts * ts / torch.where(denom > 0, denom, torch.ones_like(denom))
        t_next = torch.where(
            torch.isfinite(ft) & (denom > 0),
            torch.minimum(torch.maximum(t_quad, 0.1 * ts), 0.5 * ts),
            0.1 * ts,
        )
        t[rej_ids] = t_next
    return x_new, f_new, g_new, searching, n_evals


def hessian_pairs(H, free=None, floor=1e-8):
    """Curvature pairs that make the L-BFGS matrix ``H^-1``.

    The pairs are the eigenvectors ``v_i`` of ``H`` and ``H v_i = lambda_i v_i``:
    they are ``H``-conjugate and span the space, and the BFGS updates of any
    initial matrix by ``H``-conjugate pairs that span the space give ``H^-1``
    exactly. Eigenvalues are floored at ``floor`` times the largest (and at
    ``floor``), so an indefinite or singular ``H`` still gives positive pairs.

    Parameters
    ----------
    H : Tensor of shape (b, P, P)
        Symmetric (symmetrised here).
    free : Tensor of shape (b, P) or (P,), bool, optional
        Variables not optimised get a unit eigenvalue and no coupling.
    floor : float

    Returns
    -------
    S, Y : Tensor of shape (b, P, P)
        ``P`` pairs per member, for ``minimize_lbfgs(memory=(S, Y))``.
    """
    H = 0.5 * (H + H.mT)
    if free is not None:
        keep = free.to(H.dtype).expand(H.shape[:-1])
        both = keep.unsqueeze(-1) * keep.unsqueeze(-2)
        H = H * both + torch.diag_embed(1.0 - keep)
    evals, evecs = torch.linalg.eigh(H)
    top = evals.abs().amax(-1, keepdim=True).clamp_min(1.0)
    evals = torch.maximum(evals, floor * top)
    S = evecs.mT  # (b, P, P): row i is v_i
    return S, evals.unsqueeze(-1) * S
