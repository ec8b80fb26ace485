"""The fitted GPs as an acquisition function sees them: a differentiable latent posterior.

The model is a set of ``m`` independent exact GPs sharing the training inputs.
Acquisition works on the **latent** functions (no observation noise), in each
target's own units. Every function takes candidates of shape ``b x q x d``
(BoTorch's t-batch / q-batch convention; :func:`lift_t_batch` makes a plain
``q x d`` input a t-batch of one).

Monte-Carlo acquisition functions draw joint posterior samples with the
reparameterisation trick, ``f = mu(X) + chol(Sigma(X)) z``, from a **fixed**
set of quasi-random normal base samples ``z`` (:func:`normal_base_samples`:
scrambled Sobol points pushed through the normal quantile function), so that
the acquisition surface is a deterministic, differentiable function of ``X``
for a gradient optimiser.

Shape glossary: ``m`` targets, ``n`` training points, ``b`` t-batch, ``q``
points of a candidate set, ``s`` Monte-Carlo samples, ``d`` features, ``k``
baseline points.
"""

import math
from dataclasses import dataclass

import torch
from torch.quasirandom import SobolEngine

from ..sobol import sobol_points
from ..stationary import StationaryKernel
from ..kernels import correlation

__all__ = ["GPModel", "make_model", "lift_t_batch", "latent_posterior", "normal_base_samples"]



@dataclass(frozen=True)
class GPModel:
    """The fitted independent GPs, as needed for a differentiable posterior.

    Attributes
    ----------
    kernel : StationaryKernel
    theta : Tensor of shape (m, P)
        Log hyperparameters of every target.
    X_train : Tensor of shape (n, d)
    L_inv : Tensor of shape (m, n, n)
        Inverse of every target's lower Cholesky factor of the training
        covariance (identity rows and columns at its missing observations).
    alpha : Tensor of shape (m, n)
        ``K^-1 y`` in standardised units (0 where missing).
    maskf : Tensor of shape (m, n)
        1.0 where observed.
    y_mean, y_std : Tensor of shape (m,)
        The latent function of target ``t`` in its own units is
        ``y_mean[t] + y_std[t] * f_t`` with ``f_t`` the standardised GP.
    """

    kernel: StationaryKernel
    theta: torch.Tensor
    X_train: torch.Tensor
    L_inv: torch.Tensor
    alpha: torch.Tensor
    maskf: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor

    @property
    def n_targets(self):
        return self.theta.shape[0]


def make_model(kernel, theta, X_train, L, alpha, maskf, y_mean, y_std):
    """Build a :class:`GPModel` from a fitted factorisation.

    Parameters
    ----------
    kernel : StationaryKernel
    theta : Tensor of shape (m, P)
    X_train : Tensor of shape (n, d)
    L : Tensor of shape (m, n, n)
        Lower Cholesky factors (as in :class:`~skbgp._core.gp.Factor`).
    alpha : Tensor of shape (m, n)
    maskf : Tensor of shape (m, n)
    y_mean, y_std : Tensor of shape (m,)

    Returns
    -------
    GPModel
    """
    eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device).expand(L.shape)
    L_inv = torch.linalg.solve_triangular(L, eye, upper=False)
    return GPModel(kernel, theta, X_train, L_inv, alpha, maskf, y_mean, y_std)


def lift_t_batch(X):
    """``b x q x d`` candidates from a ``q x d`` or ``b x q x d`` tensor.

    Parameters
    ----------
    X : Tensor of shape (q, d) or (b, q, d)

    Returns
    -------
    Tensor of shape (b, q, d)
        A ``q x d`` input becomes a t-batch of one.
    """
    if X.dim() == 2:
        return X.unsqueeze(0)
    if X.dim() != 3:
        raise ValueError(f"Candidates must have shape (q, d) or (b, q, d); got {tuple(X.shape)}.")
    return X


def _correlation(nu, r2, slope=False):
    """:func:`~skbgp._core.kernels.correlation` and, with ``slope``, ``d rho / d r2``.

    With ``r2`` clamped at 1e-30 (a zero gradient at zero distance) and no
    exponent floor: the acquisition's numbers, which the fit's floors would
    change below 1e-150 and, for nu = 1/2, at zero distance by 1e-15.
    """
    return correlation(nu, r2, slope, r2_floor=1e-30, exp_floor=-math.inf)


def _scaled(model, X):
    """Inputs divided by every target's length scales: (..., m, q, d) from (..., q, d)."""
    ls = model.kernel.lengthscale(model.theta)  # (m, d) or (m, 1)
    return X.unsqueeze(-3) / ls.unsqueeze(-2)


def _cross_covariance(model, Xs, Zs):
    """``sigma^2 rho`` between scaled sets: (..., m, q, k) from (..., m, q, d), (m, k, d)."""
    # |x - z|^2 = |x|^2 + |z|^2 - 2 x.z, one matrix product per member
    r2 = Xs.square().sum(-1).unsqueeze(-1) + Zs.square().sum(-1).unsqueeze(-2) - 2.0 * Xs @ Zs.mT
    s = model.kernel.outputscale(model.theta)[:, None, None]
    return s * _correlation(model.kernel.nu, r2.clamp_min(0.0))[0]


def _self_covariance(model, Xs):
    """``sigma^2 rho`` within a scaled set, from exact differences: (..., m, q, q)."""
    r2 = (Xs.unsqueeze(-2) - Xs.unsqueeze(-3)).square().sum(-1)
    s = model.kernel.outputscale(model.theta)[:, None, None]
    return s * _correlation(model.kernel.nu, r2)[0]


def _train_terms(model, Xs):
    """Mean (standardised) and ``V = L^-1 k(X_train, X)``, transposed.

    Returns
    -------
    mean : Tensor of shape (..., m, q)
    Vt : Tensor of shape (..., m, q, n)
    """
    Ts = _scaled(model, model.X_train)  # (m, n, d)
    Ks = _cross_covariance(model, Xs, Ts) * model.maskf.unsqueeze(-2)  # (..., m, q, n)
    mean = (Ks @ model.alpha.unsqueeze(-1)).squeeze(-1)
    return mean, Ks @ model.L_inv.mT


def latent_posterior(model, X):
    """Joint posterior of every target's latent function at each candidate set.

    R&W Alg. 2.1 lines 4-6 with ``L^-1`` cached, written with out-of-place
    operations so that gradients with respect to ``X`` flow through it.

    Parameters
    ----------
    model : GPModel
    X : Tensor of shape (b, q, d)

    Returns
    -------
    mean : Tensor of shape (b, m, q)
        In each target's own units.
    cov : Tensor of shape (b, m, q, q)
        Joint covariance of the latent function (no observation noise), in
        each target's own units.
    """
    Xs = _scaled(model, X)  # (b, m, q, d)
    mean, Vt = _train_terms(model, Xs)
    cov = _self_covariance(model, Xs) - Vt @ Vt.mT
    std = model.y_std[:, None]
    return model.y_mean[:, None] + std * mean, cov * (std * std).unsqueeze(-1)


def normal_base_samples(n_samples, dim, seed, dtype, device):
    """Quasi-random standard normal samples: scrambled Sobol points through the normal quantile.

    Parameters
    ----------
    n_samples : int
    dim : int
        At most 21201 (the Sobol engine's limit).
    seed : int
    dtype : torch.dtype
    device : torch.device

    Returns
    -------
    Tensor of shape (n_samples, dim)
    """
    if dim > SobolEngine.MAXDIM:
        raise ValueError(
            f"{dim} quasi-random dimensions are needed (targets x points), more than "
            f"the Sobol engine's {SobolEngine.MAXDIM}; use fewer targets or points."
        )
    u = sobol_points(n_samples, dim, seed)
    eps = 1e-10
    return torch.special.ndtri(u.clamp(eps, 1.0 - eps)).to(dtype=dtype, device=device)
