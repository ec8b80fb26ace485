"""What is maximised and what is constrained, on latent values or samples of them.

An :class:`Objective` turns the ``m`` latent values into one quantity to
**maximise** (a weighted sum of targets) and up to ``m`` constraints
``f_t(x) <= threshold``. A constraint enters the Monte-Carlo acquisition
functions as the smooth feasibility weight ``sigmoid((threshold - f_t) / eta)``
per sample (BoTorch's ``compute_smoothed_feasibility_indicator``; the log
variants use the fat-tailed :func:`~skbgp._core.acquisition.smooth.fatmoid`)
and the analytic ones as the probability of feasibility (the GPs are
independent).

Shape glossary: ``m`` targets, ``n`` training points, ``b`` t-batch, ``q'``
points of a candidate set with the pending points appended, ``s`` Monte-Carlo
samples, ``c`` constraints.
"""

from dataclasses import dataclass

import torch

from .model import latent_posterior

__all__ = ["Objective"]


@dataclass(frozen=True)
class Objective:
    """What is maximised and what is constrained.

    Attributes
    ----------
    weights : Tensor of shape (m,)
        The objective is ``sum_t weights[t] * f_t`` (to be maximised; a
        minimised target has a negative weight).
    constraint_targets : Tensor of shape (c,), int64
        Targets that are constrained.
    thresholds : Tensor of shape (c,)
        Feasible where ``f_t <= thresholds`` (in the target's own units).
    eta : Tensor of shape (c,)
        Temperature of each smooth feasibility weight, in the target's units.
    """

    weights: torch.Tensor
    constraint_targets: torch.Tensor
    thresholds: torch.Tensor
    eta: torch.Tensor

    @property
    def has_constraints(self):
        return self.constraint_targets.numel() > 0


def _objective_samples(objective, f):
    """Objective values from latent values: (..., q) from (..., m, q)."""
    return torch.einsum("m,...mq->...q", objective.weights, f)


def _constraint_z(objective, f):
    """Scaled slack ``(threshold - f_t) / eta`` per constraint: (b, c, q', s) from (b, m, q', s)."""
    fc = f[:, objective.constraint_targets]  # (b, c, q', s)
    return (objective.thresholds[:, None, None] - fc) / objective.eta[:, None, None]


def _log_feasibility(objective, f):
    """Sum of the log smooth feasibility weights: (b, q', s) from samples (b, m, q', s)."""
    if not objective.has_constraints:
        return torch.zeros_like(f[:, 0])
    return torch.nn.functional.logsigmoid(_constraint_z(objective, f)).sum(-3)


def _objective_bounds(model, objective):
    """Lower bound of the objective over the training points (mean - 6 std): Tensor of shape ()."""
    mean, cov = latent_posterior(model, model.X_train.unsqueeze(-2))  # (n, m, 1), (n, m, 1, 1)
    w = objective.weights
    mu = mean[..., 0] @ w
    sd = (cov[..., 0, 0].clamp_min(0.0) @ (w * w)).sqrt()
    return (mu - 6.0 * sd).min()
