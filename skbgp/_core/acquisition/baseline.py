"""Noisy EI's baseline: the joint posterior at the points evaluated so far, sampled once.

qNEI and qLogNEI measure improvement over the best feasible objective among
the baseline points *in the same joint sample* as the candidates. The
baseline's samples, factors and per-sample incumbent are fixed for one
suggestion; :class:`~skbgp._core.acquisition.monte_carlo.MCAcquisition`
extends its Cholesky factor to the candidates (see its cache).

Shape glossary: ``m`` targets, ``n`` training points, ``k`` baseline points,
``s`` Monte-Carlo samples, ``d`` features.
"""

from dataclasses import dataclass

import torch

from ..gp import posterior_cholesky
from .model import _scaled, _self_covariance, _train_terms, normal_base_samples
from .objective import _objective_samples

__all__ = ["Baseline", "make_baseline"]


@dataclass(frozen=True)
class Baseline:
    """qNEI's cached joint posterior at the baseline (previously evaluated) points.

    Attributes
    ----------
    X : Tensor of shape (k, d)
    Vt : Tensor of shape (m, k, n)
        ``(L^-1 k(X_train, X_baseline))^T`` per target (standardised units).
    L_inv : Tensor of shape (m, k, k)
        Inverse Cholesky factor of the baseline's posterior covariance
        (standardised units, with the base jitter).
    z : Tensor of shape (s, m, k)
        The base samples that drew the baseline.
    best : Tensor of shape (s,)
        Best feasible objective over the baseline in every sample.
    """

    X: torch.Tensor
    Vt: torch.Tensor
    L_inv: torch.Tensor
    z: torch.Tensor
    best: torch.Tensor


def _baseline_samples(model, X_base, z):
    """Joint latent samples at the baseline points and their cached factors.

    Parameters
    ----------
    model : GPModel
    X_base : Tensor of shape (k, d)
    z : Tensor of shape (s, m, k)

    Returns
    -------
    f : Tensor of shape (s, m, k)
        In each target's own units.
    Vt : Tensor of shape (m, k, n)
    L : Tensor of shape (m, k, k)
        Standardised units.
    """
    Xs = _scaled(model, X_base)  # (m, k, d)
    mean, Vt = _train_terms(model, Xs)
    cov = _self_covariance(model, Xs) - Vt @ Vt.mT
    L, _ = posterior_cholesky(cov, model.kernel.outputscale(model.theta))
    f = mean + torch.einsum("mij,smj->smi", L, z)
    return model.y_mean[:, None] + model.y_std[:, None] * f, Vt, L


def _best_feasible(objective, f, lower):
    """Best feasible objective in every sample (``lower`` when none is feasible).

    Parameters
    ----------
    objective : Objective
    f : Tensor of shape (s, m, k)
    lower : Tensor of shape ()

    Returns
    -------
    best : Tensor of shape (s,)
    obj : Tensor of shape (s, k)
        The objective with infeasible points set to ``lower``.
    """
    obj = _objective_samples(objective, f)
    if objective.has_constraints:
        fc = f[:, objective.constraint_targets, :]
        feasible = (fc <= objective.thresholds[:, None]).all(-2)
        obj = torch.where(feasible, obj, lower)
    return obj.amax(-1), obj


def _prune(model, objective, X_base, z, lower):
    """Baseline points that are the best feasible one in at least one sample: (k', d)."""
    f, _, _ = _baseline_samples(model, X_base, z)
    _, obj = _best_feasible(objective, f, lower)
    winners = torch.unique(obj.argmax(-1))
    return X_base[winners]


def make_baseline(model, objective, X_baseline, mc_samples, seed, lower, prune):
    """Sample the baseline once and cache what the candidates' samples need.

    Parameters
    ----------
    model : GPModel
    objective : Objective
    X_baseline : Tensor of shape (k, d)
        Usually the training inputs.
    mc_samples : int
        Number of Monte-Carlo samples ``s``.
    seed : int
        Seed of the baseline's scrambled Sobol base samples.
    lower : Tensor of shape ()
        The incumbent of a sample with no feasible baseline point.
    prune : bool
        Keep only the baseline points that are the best feasible one in at
        least one sample (BoTorch's ``prune_baseline``), and draw their base
        samples afresh from the same seed.

    Returns
    -------
    Baseline
    """
    dtype, device = model.theta.dtype, model.theta.device
    m, k = model.n_targets, X_baseline.shape[0]
    z = normal_base_samples(mc_samples, m * k, seed, dtype, device).view(mc_samples, m, k)
    if prune and k > 1:
        X_baseline = _prune(model, objective, X_baseline, z, lower)
        k = X_baseline.shape[0]
        z = normal_base_samples(mc_samples, m * k, seed, dtype, device).view(mc_samples, m, k)
    f, Vt, L = _baseline_samples(model, X_baseline, z)
    best, _ = _best_feasible(objective, f, lower)
    eye = torch.eye(k, dtype=dtype, device=device).expand(L.shape)
    L_inv = torch.linalg.solve_triangular(L, eye, upper=False)
    return Baseline(X_baseline, Vt, L_inv, z, best)
