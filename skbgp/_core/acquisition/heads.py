"""The Monte-Carlo acquisitions, one small unit each: a head on joint posterior samples.

A head turns latent samples of a candidate set (pending points appended) into
one value per candidate set. With objective samples ``o^(i)_j`` and smooth
feasibility weights ``w^(i)_j`` (1 without constraints):

* qEI ``= mean_i max_j relu(o_j - best_f) w_j``; qNEI the same with
  ``best_f`` replaced by the best feasible objective over the baseline
  points *in the same joint sample* (noisy EI);
* qLogEI / qLogNEI: ``log`` of the same with the ReLU, the max and the
  feasibility weight smoothed by fat-tailed functions (``log_fatplus`` with
  temperature ``TAU_RELU``, ``fatmax`` with ``TAU_MAX``, ``fatmoid``) and the
  mean taken in log space, as BoTorch's ``qLogExpectedImprovement`` /
  ``qLogNoisyExpectedImprovement`` (with their default ``fat=True``);
* qPI ``= mean_i max_j sigmoid((o_j - best_f) / TAU_PI) w_j``;
* qUCB ``= mean_i max_j (mu_j + sqrt(beta pi / 2) |o_j - mu_j|)``;
* qSimpleRegret ``= mean_i max_j o_j``;

for qUCB and qSimpleRegret, constraints enter as BoTorch's
``apply_constraints``: ``(v + M) w - M`` with ``M = infeasible_cost``.

Every unit has ``value(f, mean, params)`` and ``value_and_grad(f, mean,
params)``, the latter giving the gradient with respect to the samples and the
means: written out for the log variants (from :mod:`.smooth`), by autograd on
the head alone for the others. :data:`MONTE_CARLO_HEADS` maps every name to
its unit.

Shape glossary: ``m`` targets, ``b`` t-batch, ``q'`` points of a candidate set
with the pending points appended, ``s`` Monte-Carlo samples, ``c``
constraints.
"""

import math
from dataclasses import dataclass

import torch

from .objective import Objective, _constraint_z, _log_feasibility
from .smooth import (
    fatmax,
    fatmax_and_grad,
    fatmoid,
    fatmoid_and_grad,
    log_fatplus,
    log_fatplus_and_grad,
    logmeanexp,
    logmeanexp_and_grad,
)

__all__ = [
    "HeadParameters",
    "QExpectedImprovement",
    "QLogExpectedImprovement",
    "QProbabilityOfImprovement",
    "QUpperConfidenceBound",
    "QSimpleRegret",
    "MONTE_CARLO_HEADS",
    "MONTE_CARLO",
]

TAU_RELU = 1e-6  # smoothing of the improvement's ReLU in the log variants (BoTorch's default)
TAU_MAX = 1e-2  # smoothing of the max over the q points in the log variants (BoTorch's default)
TAU_PI = 1e-3  # temperature of the sigmoid in qPI (BoTorch's default)


@dataclass(frozen=True)
class HeadParameters:
    """What a head reads besides the samples, fixed for one suggestion.

    Attributes
    ----------
    objective : Objective
    best : Tensor of shape () or (s,)
        The incumbent: ``best_f``, or the baseline's best feasible objective
        in every sample (qNEI, qLogNEI).
    beta : float
        qUCB's exploration weight.
    infeasible_cost : Tensor of shape ()
        ``M`` of qUCB's and qSimpleRegret's constraints.
    """

    objective: Objective
    best: torch.Tensor
    beta: float
    infeasible_cost: torch.Tensor


def _objective_values(objective, f):
    """Objective samples (b, q', s) from latent samples (b, m, q', s)."""
    return torch.einsum("m,bmjs->bjs", objective.weights, f)


def _autograd_head(head, f, mean, params):
    """A head's values (b,) and, by autograd, their gradients w.r.t. ``f`` and ``mean``.

    Returns
    -------
    value : Tensor of shape (b,)
    G : Tensor of shape (b, m, q', s)
    g_mean : Tensor of shape (b, m, q') or None
        ``None`` when the head does not read the means.
    """
    with torch.enable_grad():
        f = f.detach().requires_grad_(True)
        mean = mean.detach().requires_grad_(True)
        value = head.value(f, mean, params)
        G, g_mean = torch.autograd.grad(value.sum(), (f, mean), allow_unused=True)
    return value.detach(), G, g_mean


def _apply_constraints(v, f, params):
    """BoTorch's ``apply_constraints``, ``(v + M) w - M``: (b, q', s) from (b, q', s)."""
    if not params.objective.has_constraints:
        return v
    M = params.infeasible_cost
    return (v + M) * _log_feasibility(params.objective, f).exp() - M


@dataclass(frozen=True)
class QExpectedImprovement:
    """qEI, or qNEI with ``needs="X_baseline"`` (``best`` then varies per sample).

    Attributes
    ----------
    needs : {"best_f", "X_baseline"}
        What :func:`~skbgp._core.acquisition.monte_carlo.make_mc_acquisition`
        must be given.
    """

    needs: str = "best_f"

    def value(self, f, mean, params):
        """Values (b,) from samples (b, m, q', s) and means (b, m, q')."""
        imp = torch.relu(_objective_values(params.objective, f) - params.best)
        imp = imp * _log_feasibility(params.objective, f).exp()  # (b, q', s)
        return imp.amax(-2).mean(-1)

    def value_and_grad(self, f, mean, params):
        """Values (b,) and their gradients w.r.t. ``f`` (b, m, q', s) and ``mean``."""
        return _autograd_head(self, f, mean, params)


@dataclass(frozen=True)
class QLogExpectedImprovement:
    """qLogEI, or qLogNEI with ``needs="X_baseline"``; its gradient written out.

    Attributes
    ----------
    needs : {"best_f", "X_baseline"}
    """

    needs: str = "best_f"

    def value(self, f, mean, params):
        """Values (b,) from samples (b, m, q', s) and means (b, m, q')."""
        objective = params.objective
        x = _objective_values(objective, f) - params.best  # (b, q', s)
        log_imp = log_fatplus(x, TAU_RELU)
        if objective.has_constraints:
            log_imp = log_imp + fatmoid(_constraint_z(objective, f)).log().sum(-3)
        return logmeanexp(fatmax(log_imp, TAU_MAX, dim=-2), dim=-1)

    def value_and_grad(self, f, mean, params):
        """Values (b,), their gradients w.r.t. ``f`` (b, m, q', s), and ``None`` for ``mean``."""
        objective = params.objective
        x = _objective_values(objective, f) - params.best  # (b, q', s)
        log_imp, dlog_imp = log_fatplus_and_grad(x, TAU_RELU)  # d / d objective
        if objective.has_constraints:
            fat, dfat = fatmoid_and_grad(_constraint_z(objective, f))  # (b, c, q', s)
            # d log fatmoid(z) / d f_c, with z = (threshold - f_c) / eta
            dlog_fat = -dfat / (fat * objective.eta[:, None, None])
            log_imp = log_imp + fat.log().sum(-3)
        v, dv = fatmax_and_grad(log_imp, TAU_MAX, dim=-2)  # (b, s), (b, q', s)
        value, dvalue = logmeanexp_and_grad(v, dim=-1)  # (b,), (b, s)
        dx = dvalue.unsqueeze(-2) * dv  # d value / d log_imp, (b, q', s)
        G = objective.weights[:, None, None] * (dx * dlog_imp).unsqueeze(-3)  # (b, m, q', s)
        if objective.has_constraints:
            G.index_add_(-3, objective.constraint_targets, dx.unsqueeze(-3) * dlog_fat)
        return value, G, None


@dataclass(frozen=True)
class QProbabilityOfImprovement:
    """qPI: a sigmoid of temperature ``TAU_PI`` in place of the step.

    Attributes
    ----------
    needs : {"best_f"}
    """

    needs: str = "best_f"

    def value(self, f, mean, params):
        """Values (b,) from samples (b, m, q', s) and means (b, m, q')."""
        obj = _objective_values(params.objective, f)
        v = torch.sigmoid((obj - params.best) / TAU_PI)
        v = v * _log_feasibility(params.objective, f).exp()  # (b, q', s)
        return v.amax(-2).mean(-1)

    def value_and_grad(self, f, mean, params):
        """Values (b,) and their gradients w.r.t. ``f`` (b, m, q', s) and ``mean``."""
        return _autograd_head(self, f, mean, params)


@dataclass(frozen=True)
class QUpperConfidenceBound:
    """qUCB, BoTorch's ``qUpperConfidenceBound`` (the only head that reads the means).

    Attributes
    ----------
    needs : None
    """

    needs: str | None = None

    def value(self, f, mean, params):
        """Values (b,) from samples (b, m, q', s) and means (b, m, q')."""
        obj = _objective_values(params.objective, f)
        mu = torch.einsum("m,bmj->bj", params.objective.weights, mean).unsqueeze(-1)  # (b, q', 1)
        v = mu + math.sqrt(params.beta * math.pi / 2.0) * (obj - mu).abs()
        return _apply_constraints(v, f, params).amax(-2).mean(-1)

    def value_and_grad(self, f, mean, params):
        """Values (b,) and their gradients w.r.t. ``f`` (b, m, q', s) and ``mean``."""
        return _autograd_head(self, f, mean, params)


@dataclass(frozen=True)
class QSimpleRegret:
    """qSimpleRegret: the expected best objective of the candidate set.

    Attributes
    ----------
    needs : None
    """

    needs: str | None = None

    def value(self, f, mean, params):
        """Values (b,) from samples (b, m, q', s) and means (b, m, q')."""
        v = _objective_values(params.objective, f)
        return _apply_constraints(v, f, params).amax(-2).mean(-1)

    def value_and_grad(self, f, mean, params):
        """Values (b,) and their gradients w.r.t. ``f`` (b, m, q', s) and ``mean``."""
        return _autograd_head(self, f, mean, params)


MONTE_CARLO_HEADS = {
    "qEI": QExpectedImprovement(),
    "qLogEI": QLogExpectedImprovement(),
    "qNEI": QExpectedImprovement(needs="X_baseline"),
    "qLogNEI": QLogExpectedImprovement(needs="X_baseline"),
    "qUCB": QUpperConfidenceBound(),
    "qPI": QProbabilityOfImprovement(),
    "qSimpleRegret": QSimpleRegret(),
}
MONTE_CARLO = tuple(MONTE_CARLO_HEADS)
