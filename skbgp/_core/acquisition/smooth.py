"""Smooth approximations with fat tails, each value beside its derivative.

The log variants of expected improvement replace the ReLU of the
improvement, the maximum over the ``q`` points and the step of a constraint
by smooth functions whose tails decay like a power instead of exponentially
(BoTorch's ``utils/safe_math.py``: ``log_fatplus``, ``fatmax``, ``fatmoid``,
``logmeanexp``; Ament et al., "Unexpected improvements to expected
improvement for Bayesian optimization", NeurIPS 2023). Their logarithms, and
so the acquisition's gradient, stay well scaled where the improvement is
negligible.

Every ``f_and_grad`` returns the same value as ``f`` (the same arithmetic,
from one set of intermediate terms) with its derivative; the Monte-Carlo
acquisitions use them to write their backward pass out.

Shape glossary: these functions are elementwise or reduce one dimension
``dim``; ``...`` is any leading shape.
"""

import math

import torch

__all__ = [
    "log_fatplus",
    "log_fatplus_and_grad",
    "fatmax",
    "fatmax_and_grad",
    "fatmoid",
    "fatmoid_and_grad",
    "logmeanexp",
    "logmeanexp_and_grad",
]

_FATMOID_SHIFT = 1.0 / math.sqrt(3.0)  # where the two Cauchy branches of fatmoid meet


def _cauchy(x):
    """``1 / (1 + x^2)``, elementwise."""
    return 1.0 / (1.0 + x * x)


# ------------------------------------------------------------------- fatplus
def _fatplus(u):
    """``softplus(u) + 0.1 cauchy(u)``: a smooth ReLU with a fat left tail, elementwise."""
    return torch.nn.functional.softplus(u) + 0.1 * _cauchy(u)


def log_fatplus(x, tau):
    """``log(tau fatplus(x / tau))``: the log of a smooth ReLU (BoTorch's ``log_fatplus``).

    .. math:: \\log\\bigl(\\tau\\,(\\mathrm{softplus}(x / \\tau)
              + 0.1 / (1 + (x / \\tau)^2))\\bigr)

    Far below zero it decays like ``(x / tau)^-2`` instead of exponentially.

    Parameters
    ----------
    x : Tensor of shape (...)
    tau : float
        Temperature.

    Returns
    -------
    Tensor of shape (...)
    """
    return _fatplus(x / tau).log() + math.log(tau)


def log_fatplus_and_grad(x, tau):
    """:func:`log_fatplus` and its derivative with respect to ``x``.

    ``fatplus'(u) = sigmoid(u) - 0.2 u cauchy(u)^2`` and ``du / dx = 1 / tau``.

    Returns
    -------
    value : Tensor of shape (...)
    grad : Tensor of shape (...)
    """
    u = x / tau
    h = _fatplus(u)
    cu = _cauchy(u)
    return h.log() + math.log(tau), (torch.sigmoid(u) - 0.2 * u * cu * cu) / (h * tau)


# -------------------------------------------------------------------- fatmax
def _fatmax_terms(x, tau, dim):
    """The maximum ``M``, ``1 + y``, ``pareto(y)`` and their sum, with ``y = (M - x) / tau``."""
    M = x.amax(dim, keepdim=True)
    y1 = 1.0 + (M - x) / tau
    p = 2.0 / (1.0 + y1 * y1)  # pareto(y) with alpha = 2
    return M, y1, p, p.sum(dim, keepdim=True)


def fatmax(x, tau, dim=-1):
    """Smooth maximum over ``dim`` with a fat tail (BoTorch's ``fatmax``, ``alpha = 2``).

    .. math:: M + \\tau \\log \\sum_j \\frac{2}{1 + (1 + (M - x_j) / \\tau)^2},
              \\qquad M = \\max_j x_j

    Exactly the maximum for one element.

    Parameters
    ----------
    x : Tensor of shape (...)
    tau : float
        Temperature.
    dim : int

    Returns
    -------
    Tensor
        ``x``'s shape without ``dim``.
    """
    M, _, _, S = _fatmax_terms(x, tau, dim)
    return (M + tau * S.log()).squeeze(dim)


def fatmax_and_grad(x, tau, dim=-1):
    """:func:`fatmax` and its gradient with respect to ``x``.

    ``d fatmax / d x_j = (1 + y_j) pareto_j^2 / S``, plus ``1`` minus their
    sum through the maximum ``M`` (shared among tied maxima).

    Returns
    -------
    value : Tensor
        ``x``'s shape without ``dim``.
    grad : Tensor of ``x``'s shape
    """
    M, y1, p, S = _fatmax_terms(x, tau, dim)
    dv = y1 * p * p / S
    at_max = (x == M).to(dv.dtype)
    dv = dv + (1.0 - dv.sum(dim, keepdim=True)) * at_max / at_max.sum(dim, keepdim=True)
    return (M + tau * S.log()).squeeze(dim), dv


# ------------------------------------------------------------------- fatmoid
def _fatmoid_terms(z):
    """Which branch, the shifted argument ``t``, ``cauchy(t)`` and the fat sigmoid itself."""
    low = z < -_FATMOID_SHIFT
    t = torch.where(low, z - _FATMOID_SHIFT, z + _FATMOID_SHIFT)
    ct = _cauchy(t)
    return low, t, ct, torch.where(low, 2.0 / 3.0 * ct, 1.0 - 2.0 / 3.0 * ct)


def fatmoid(z):
    """A sigmoid with a fat left tail, elementwise.

    ``2/3 cauchy(z - 1/sqrt 3)`` below ``-1/sqrt 3`` and
    ``1 - 2/3 cauchy(z + 1/sqrt 3)`` above, decaying like ``z^-2`` far into
    the infeasible region. BoTorch's ``fatmoid`` has the same branches but
    switches at ``z = 0``, where both are 1/2; switching at ``-1/sqrt 3``
    makes this one jump from 2/7 to 1/3 there (kept: the acquisition's
    numbers depend on it).

    Parameters
    ----------
    z : Tensor of shape (...)

    Returns
    -------
    Tensor of shape (...)
    """
    return _fatmoid_terms(z)[-1]


def fatmoid_and_grad(z):
    """:func:`fatmoid` and its derivative ``-/+ 4/3 t cauchy(t)^2`` (below / above).

    Returns
    -------
    value : Tensor of shape (...)
    grad : Tensor of shape (...)
    """
    low, t, ct, fat = _fatmoid_terms(z)
    slope = 4.0 / 3.0 * t * ct * ct
    return fat, torch.where(low, -slope, slope)


# ---------------------------------------------------------------- logmeanexp
def logmeanexp(x, dim):
    """``log(mean(exp(x)))`` over ``dim``, computed stably.

    Parameters
    ----------
    x : Tensor of shape (...)
    dim : int

    Returns
    -------
    Tensor
        ``x``'s shape without ``dim``.
    """
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def logmeanexp_and_grad(x, dim):
    """:func:`logmeanexp` and its gradient, the softmax ``exp(x - logsumexp(x))``.

    Returns
    -------
    value : Tensor
        ``x``'s shape without ``dim``.
    grad : Tensor of ``x``'s shape
    """
    lse = torch.logsumexp(x, dim=dim, keepdim=True)
    return (lse - math.log(x.shape[dim])).squeeze(dim), torch.exp(x - lse)


# --------------------------------------------------------------------- log EI
def _log_ei_helper(u):
    """``log(phi(u) + u Phi(u))``, accurate for very negative ``u`` (Ament et al., 2023).

    The derivative is left to autograd (the analytic acquisitions).

    Parameters
    ----------
    u : Tensor of shape (...)

    Returns
    -------
    Tensor of shape (...)
    """
    bound = -1.0
    u_up = u.clamp_min(bound)
    upper = torch.log(torch.exp(-0.5 * u_up * u_up) / math.sqrt(2 * math.pi)
                      + u_up * torch.special.ndtr(u_up))
    neg_inv_sqrt_eps = -1.0 / math.sqrt(torch.finfo(u.dtype).eps)
    u_low = u.clamp_max(bound)
    u_eps = u_low.clamp_min(neg_inv_sqrt_eps)
    # log(|u| Phi(u) / phi(u)) = log(erfcx(-u / sqrt 2) |u|) + log(pi / 2) / 2
    w = (torch.log(torch.special.erfcx(-u_eps / math.sqrt(2)) * u_eps.abs())
         + 0.5 * math.log(math.pi / 2))
    log_phi = -0.5 * u_low * u_low - 0.5 * math.log(2 * math.pi)
    # log(1 - exp(w)), stable for w near 0 and very negative w
    log1mexp = torch.where(w > -math.log(2.0), torch.log(-torch.expm1(w)),
                           torch.log1p(-torch.exp(w)))
    lower = log_phi + torch.where(u_low > neg_inv_sqrt_eps, log1mexp, -2.0 * u_low.abs().log())
    return torch.where(u > bound, upper, lower)
