"""Closed-form acquisition functions of one point: EI, LogEI, PI and UCB.

With the objective's posterior mean ``mu`` and standard deviation ``sigma``
at a point (independent targets: ``mu = w . mu_t``, ``sigma^2 = w^2 .
sigma_t^2``) and ``z = (mu - best_f) / sigma``:

* ``EI = sigma (phi(z) + z Phi(z))``, ``LogEI = log EI`` (computed stably),
* ``PI = Phi(z)``,
* ``UCB = mu + sqrt(beta) sigma``.

With constraints, EI and PI are multiplied by the probability of
feasibility ``prod_c Phi((threshold_c - mu_c) / sigma_c)`` (LogEI adds its
logarithm); UCB takes no constraints. Each is one head function of
``(mu, sigma, best_f, log_feasibility, beta)`` in the table
:data:`ANALYTIC_HEADS`.

Shape glossary: ``m`` targets, ``b`` t-batch, ``q`` points of a candidate set
(here 1), ``d`` features, ``c`` constraints.
"""

import math
from dataclasses import dataclass

import torch

from .model import GPModel, latent_posterior, lift_t_batch
from .objective import Objective
from .smooth import _log_ei_helper

__all__ = ["ANALYTIC", "ANALYTIC_HEADS", "AnalyticAcquisition", "make_analytic_acquisition"]


def _log_ei(mu, sigma, best_f, log_feasibility, beta):
    """``log(sigma (phi(z) + z Phi(z)))`` plus the log probability of feasibility: (b,)."""
    z = (mu - best_f) / sigma
    return _log_ei_helper(z) + sigma.log() + log_feasibility


def _ei(mu, sigma, best_f, log_feasibility, beta):
    """Expected improvement times the probability of feasibility, through its log: (b,)."""
    return _log_ei(mu, sigma, best_f, log_feasibility, beta).exp()


def _pi(mu, sigma, best_f, log_feasibility, beta):
    """``Phi(z)`` times the probability of feasibility: (b,)."""
    z = (mu - best_f) / sigma
    return torch.exp(torch.special.log_ndtr(z) + log_feasibility)


def _ucb(mu, sigma, best_f, log_feasibility, beta):
    """``mu + sqrt(beta) sigma``: (b,)."""
    return mu + math.sqrt(beta) * sigma


# name -> head(mu, sigma, best_f, log_feasibility, beta), every argument of shape (b,) but
# best_f (a Tensor of shape ()) and beta (a float)
ANALYTIC_HEADS = {"EI": _ei, "LogEI": _log_ei, "UCB": _ucb, "PI": _pi}
ANALYTIC = tuple(ANALYTIC_HEADS)


@dataclass(frozen=True)
class AnalyticAcquisition:
    """A closed-form acquisition function of one point (``q = 1``).

    See the module's docstring for the formulas.

    Attributes
    ----------
    name : {"EI", "LogEI", "UCB", "PI"}
    model : GPModel
    objective : Objective
    best_f : Tensor of shape ()
        Best objective value so far (in the objective's units).
    beta : float
        UCB's exploration weight.
    """

    name: str
    model: GPModel
    objective: Objective
    best_f: torch.Tensor
    beta: float = 0.2

    def __call__(self, X):
        """Acquisition values.

        Parameters
        ----------
        X : Tensor of shape (b, 1, d) or (1, d)

        Returns
        -------
        Tensor of shape (b,)
        """
        X = lift_t_batch(X)
        if X.shape[-2] != 1:
            raise ValueError(
                f"The analytic acquisition {self.name} takes one point per candidate set "
                f"(q = 1); got q = {X.shape[-2]}. Use its Monte-Carlo version (q{self.name})."
            )
        mean, cov = latent_posterior(self.model, X)
        mu_t, var_t = mean[..., 0], cov[..., 0, 0].clamp_min(1e-30)  # (b, m)
        w = self.objective.weights
        mu = mu_t @ w
        sigma = (var_t @ (w * w)).clamp_min(1e-30).sqrt()
        log_feasibility = torch.zeros_like(mu)
        if self.objective.has_constraints:
            ct = self.objective.constraint_targets
            zc = (self.objective.thresholds - mu_t[..., ct]) / var_t[..., ct].sqrt()  # (b, c)
            log_feasibility = torch.special.log_ndtr(zc).sum(-1)
        return ANALYTIC_HEADS[self.name](mu, sigma, self.best_f, log_feasibility, self.beta)


def make_analytic_acquisition(name, model, objective, best_f, beta=0.2):
    """Build an analytic acquisition function.

    Parameters
    ----------
    name : {"EI", "LogEI", "UCB", "PI"}
    model : GPModel
    objective : Objective
    best_f : float or Tensor of shape ()
    beta : float

    Returns
    -------
    AnalyticAcquisition
    """
    if name not in ANALYTIC_HEADS:
        raise ValueError(f"Unknown analytic acquisition {name!r}; use one of {ANALYTIC}.")
    if name == "UCB" and objective.has_constraints:
        raise ValueError(
            "UCB does not take constraints; use EI, LogEI or a Monte-Carlo acquisition."
        )
    best_f = torch.as_tensor(best_f, dtype=model.theta.dtype, device=model.theta.device)
    return AnalyticAcquisition(name, model, objective, best_f, float(beta))
