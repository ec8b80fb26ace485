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

from dataclasses import dataclass

import torch

__all__ = ["PriorTerm", "log_prior", "rebuild_distribution"]


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
        params = {name: transform(torch.as_tensor(getattr(distribution, name))
                                  .expand(distribution.batch_shape)) for name in names}
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
        (grad,) = torch.autograd.grad(lp.sum(), th)  # members are independent
    return lp.detach(), grad
