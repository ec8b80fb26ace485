"""Analytic and Monte-Carlo acquisition functions on a batch of independent GPs.

Every acquisition function follows BoTorch's t-batch / q-batch convention: it
takes candidates of shape ``b x q x d`` (``b`` independent candidate sets of
``q`` points each) and returns ``b`` values, larger is better. A plain
``q x d`` input is a t-batch of one (a tensor of shape ``(1,)`` comes back).

Modules: :mod:`.model` (the fitted GPs, their differentiable latent posterior,
base samples), :mod:`.objective` (what is maximised and constrained),
:mod:`.smooth` (fat-tailed smooth approximations beside their derivatives),
:mod:`.analytic` (EI, LogEI, PI, UCB), :mod:`.baseline` (noisy EI's
evaluated points), :mod:`.heads` (one unit per Monte-Carlo acquisition) and
:mod:`.monte_carlo` (sampling and the written-out backward pass).

Shape glossary: ``m`` targets, ``n`` training points, ``b`` t-batch, ``q``
points of a candidate set, ``p`` pending points, ``s`` Monte-Carlo samples,
``d`` features, ``c`` constraints, ``k`` baseline points.
"""

from .analytic import ANALYTIC, AnalyticAcquisition, make_analytic_acquisition
from .heads import MONTE_CARLO
from .model import GPModel, latent_posterior, lift_t_batch, make_model, normal_base_samples
from .monte_carlo import MCAcquisition, MCOptions, make_mc_acquisition
from .objective import Objective

__all__ = [
    "GPModel",
    "Objective",
    "make_model",
    "lift_t_batch",
    "latent_posterior",
    "normal_base_samples",
    "AnalyticAcquisition",
    "MCAcquisition",
    "MCOptions",
    "make_analytic_acquisition",
    "make_mc_acquisition",
    "ANALYTIC",
    "MONTE_CARLO",
]
