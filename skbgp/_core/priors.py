r"""Priors on hyperparameters, for maximum a posteriori (MAP) fits.

A prior is a univariate ``torch.distributions`` object on a hyperparameter's
natural value (a length scale, a variance), while the optimiser works on its
log, :math:`\theta = \log v`. The log prior of a member is

.. math::

    \log p(\theta) = \sum_{\text{terms}} \sum_{j} \log p_j\!\left(e^{\theta_j}\right)

**without** the log-Jacobian :math:`\sum_j \theta_j` of the change of
variables. The MAP estimate is then the mode of the posterior density of the
natural values (the quantity the prior was written for), whatever the
parameterisation used to reach it: a stationary point in :math:`\theta` is
one in :math:`v`, because :math:`\partial / \partial\theta = v\, \partial /
\partial v`. GPyTorch and BoTorch do the same.

Shape glossary: ``k`` members, ``m`` targets, ``P`` hyperparameters.
"""

import math
from dataclasses import dataclass

import torch
from torch.distributions import Gamma, LogNormal, Uniform

__all__ = ["PriorTerm", "log_prior", "rebuild_distribution", "concatenate_terms"]


def rebuild_distribution(distribution, transform):
    """A distribution of the same family with every parameter transformed.

    Parameters
    ----------
    distribution : torch.distributions.Distribution
        A family whose constructor takes its ``arg_constraints`` parameters by
        name (Gamma, Normal, LogNormal, Uniform, HalfCauchy, ...).
    transform : callable
        Applied to each parameter tensor (e.g. a dtype cast, or indexing by
        target).

    Returns
    -------
    torch.distributions.Distribution
        Built with ``validate_args=False``.

    Raises
    ------
    ValueError
        If the family cannot be rebuilt from its parameters.
    """
    names = list(distribution.arg_constraints)
    try:
        values = [getattr(distribution, name) for name in names]
        # on the parameters' own device, not on torch's default one (set_default_device)
        device = next((v.device for v in values if isinstance(v, torch.Tensor)), "cpu")
        shape = distribution.batch_shape
        params = {name: transform(torch.as_tensor(v, device=device).expand(shape))
                  for name, v in zip(names, values)}
        return type(distribution)(**params, validate_args=False)
    except (TypeError, ValueError, AttributeError, NotImplementedError) as exc:
        raise ValueError(
            f"The prior {distribution!r} cannot be used: skbgp rebuilds priors from "
            f"their parameters {names} (to change dtype and device, and to select "
            "targets), which failed for this family. Use a univariate family such as "
            "Gamma, LogNormal, Normal, HalfCauchy or Uniform."
        ) from exc


@dataclass(frozen=True)
class PriorTerm:
    """A prior on some columns of ``theta``.

    Attributes
    ----------
    index : tuple of int
        Columns of ``theta`` (length ``q``) whose natural values ``exp(theta)``
        the distribution scores.
    distribution : torch.distributions.Distribution
        In the compute dtype and device, with ``event_shape ()`` and batch
        shape ``()``, ``(q,)`` or, if ``per_target``, ``(m, q)``.
    per_target : bool
        Whether the first batch dimension indexes the targets.
    """

    index: tuple
    distribution: torch.distributions.Distribution
    per_target: bool


def log_prior(terms, theta, targets, eval_gradient=True):
    """Log prior of every member and its gradient with respect to ``theta``.

    Parameters
    ----------
    terms : sequence of PriorTerm
    theta : Tensor of shape (k, P)
        Log hyperparameters.
    targets : Tensor of shape (k,), int64
        Target of every member (selects per-target priors).
    eval_gradient : bool

    Returns
    -------
    lp : Tensor of shape (k,)
    grad : Tensor of shape (k, P) or None
    """
    k = theta.shape[0]
    if terms and all(type(term.distribution) in _CLOSED_FORM for term in terms):
        return _closed_form_prior(terms, theta, targets, eval_gradient)
    with torch.enable_grad():
        th = theta.detach().requires_grad_(eval_gradient)
        lp = th.new_zeros(k)
        for term in terms:
            dist = term.distribution
            if term.per_target:
                dist = rebuild_distribution(dist, lambda p: p[targets])  # batch (k, q)
            value = th[:, list(term.index)].exp()  # (k, q)
            lp = lp + dist.log_prob(value).expand(k, len(term.index)).sum(-1)
        if not eval_gradient or not terms:
            return lp.detach(), (torch.zeros_like(theta) if eval_gradient else None)
        if not lp.requires_grad:  # a prior whose density does not depend on the value
            return lp.detach(), torch.zeros_like(theta)
        # members are independent; a term flat in its value has no gradient
        (grad,) = torch.autograd.grad(lp.sum(), th, allow_unused=True)
    return lp.detach(), (torch.zeros_like(theta) if grad is None else grad)


def _log_normal(dist, th, targets):
    """LogNormal at ``v = exp(th)``: log density and its derivative in ``th``."""
    mu, sigma = dist.loc, dist.scale
    if targets is not None:
        mu, sigma = mu[targets], sigma[targets]
    z = (th - mu) / sigma
    return -th - sigma.log() - 0.5 * math.log(2 * math.pi) - 0.5 * z.square(), -1.0 - z / sigma


def _gamma(dist, th, targets):
    """Gamma at ``v = exp(th)``: log density and its derivative in ``th``."""
    a, b = dist.concentration, dist.rate
    if targets is not None:
        a, b = a[targets], b[targets]
    v = th.exp()
    return a * b.log() - torch.lgamma(a) + (a - 1.0) * th - b * v, (a - 1.0) - b * v


def _uniform(dist, th, targets):
    """Uniform: a constant log density inside its support (the fit's bounds) and no slope."""
    low, high = dist.low, dist.high
    if targets is not None:
        low, high = low[targets], high[targets]
    part = -(high - low).log().expand(th.shape)
    return part, torch.zeros_like(th)


_CLOSED_FORM = {LogNormal: _log_normal, Gamma: _gamma, Uniform: _uniform}


def _closed_form_prior(terms, theta, targets, eval_gradient):
    """:func:`log_prior` of LogNormal, Gamma and Uniform terms in closed form (no autograd).

    With ``theta = log v`` these are the default kernel's priors, evaluated
    at every step of a fit: LogNormal ``log p = -theta - log sigma - log(2 pi) / 2
    - (theta - mu)^2 / (2 sigma^2)``, Gamma ``log p = a log b - log Gamma(a)
    + (a - 1) theta - b e^theta``, Uniform ``log p = -log(high - low)`` (its
    support bounds the fit).
    """
    k = theta.shape[0]
    lp = theta.new_zeros(k)
    grad = torch.zeros_like(theta) if eval_gradient else None
    for term in terms:
        cols = list(term.index)
        part, slope = _CLOSED_FORM[type(term.distribution)](
            term.distribution, theta[:, cols], targets if term.per_target else None)
        lp = lp + part.expand(k, len(cols)).sum(-1)
        if eval_gradient:
            grad[:, cols] += slope.expand(k, len(cols))
    return lp, grad


def concatenate_terms(groups, counts):
    """The priors of several groups of members as per-member priors of all of them.

    Cross-validation fits the members of every fold in one batch; a prior
    built from each fold's own data (the default kernel's length-scale prior)
    differs between folds.

    Parameters
    ----------
    groups : sequence of sequence of PriorTerm
        The terms of every group, term ``i`` of every group on the same
        columns and of the same family.
    counts : sequence of int
        Members of every group (a per-target term of a group has that many rows).

    Returns
    -------
    tuple of PriorTerm
        Per-target terms with ``sum(counts)`` rows, group after group.
    """
    out = []
    for terms in zip(*groups):
        q = len(terms[0].index)
        parts = [
            rebuild_distribution(t.distribution, (lambda p: p) if t.per_target
                                 else (lambda p, c=c: p.expand(c, q)))
            for t, c in zip(terms, counts)
        ]
        names = list(parts[0].arg_constraints)
        params = {name: torch.cat([getattr(part, name) for part in parts]) for name in names}
        dist = type(parts[0])(**params, validate_args=False)
        out.append(PriorTerm(index=terms[0].index, distribution=dist, per_target=True))
    return tuple(out)
