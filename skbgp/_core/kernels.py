"""Batched stationary covariance functions.

Every function here works on a batch of ``b`` independent members. Inputs are
given once as per-dimension squared differences ``D2`` so that the distances
are exact (no ``|x|^2 + |z|^2 - 2 x.z`` cancellation) and every member's
scaled distance is one matrix product.

Shape glossary: ``b`` batch members, ``n`` and ``p`` points, ``d`` features.
"""

import math
from dataclasses import dataclass

import torch

__all__ = [
    "StationaryKernel",
    "squared_differences",
    "scaled_sq_dist",
    "correlation",
    "correlation_radial_derivative",
]

SUPPORTED_NU = (0.5, 1.5, 2.5, math.inf)


@dataclass(frozen=True)
class StationaryKernel:
    r"""A scaled stationary kernel with optional white noise.

    .. math::

        k(x, z) = \sigma^2 \, \rho\!\left(r\right) + \sigma_n^2 \, [x = z],
        \qquad r^2 = \sum_j (x_j - z_j)^2 / \ell_j^2,

    where :math:`\rho` is the squared-exponential correlation
    (``nu = inf``) or a Matern correlation (``nu`` in 0.5, 1.5, 2.5).
    The noise term only enters the training covariance (scikit-learn's
    ``WhiteKernel`` semantics).

    Hyperparameters of one member are a vector ``theta`` in log space laid out
    as ``[log sigma^2] + [log ell_1, ..., log ell_L] + [log sigma_n^2]``,
    the bracketed entries present only when the kernel has them.

    Parameters
    ----------
    nu : float
        Smoothness; ``math.inf`` for the RBF kernel.
    n_lengthscales : int
        ``d`` for an ARD kernel, ``1`` for an isotropic one.
    has_outputscale : bool
        Whether ``sigma^2`` is a hyperparameter (otherwise it is 1).
    has_noise : bool
        Whether ``sigma_n^2`` is a hyperparameter (otherwise it is 0).
    """

    nu: float
    n_lengthscales: int
    has_outputscale: bool = True
    has_noise: bool = True

    def __post_init__(self):
        if self.nu not in SUPPORTED_NU:
            raise ValueError(f"nu must be one of {SUPPORTED_NU}, got {self.nu}.")
        if self.n_lengthscales < 1:
            raise ValueError("n_lengthscales must be at least 1.")

    @property
    def n_params(self):
        return self.n_lengthscales + int(self.has_outputscale) + int(self.has_noise)

    @property
    def lengthscale_slice(self):
        start = int(self.has_outputscale)
        return slice(start, start + self.n_lengthscales)

    def outputscale(self, theta):
        """Tensor of shape (b,): the outputscale of each member."""
        if self.has_outputscale:
            return theta[..., 0].exp()
        return torch.ones(theta.shape[:-1], dtype=theta.dtype, device=theta.device)

    def lengthscale(self, theta):
        """Tensor of shape (b, n_lengthscales)."""
        return theta[..., self.lengthscale_slice].exp()

    def noise(self, theta):
        """Tensor of shape (b,): the white-noise variance of each member."""
        if self.has_noise:
            return theta[..., -1].exp()
        return torch.zeros(theta.shape[:-1], dtype=theta.dtype, device=theta.device)


def squared_differences(X1, X2):
    """Per-dimension squared differences.

    Parameters
    ----------
    X1 : Tensor of shape (n, d)
    X2 : Tensor of shape (p, d)

    Returns
    -------
    Tensor of shape (d, n, p)
        ``D2[j, i, k] = (X1[i, j] - X2[k, j]) ** 2``.
    """
    diff = X1.mT.unsqueeze(-1) - X2.mT.unsqueeze(-2)  # (d, n, p)
    return diff.square_()


def scaled_sq_dist(inv_ls2, D2):
    """Squared scaled distances of every member.

    Parameters
    ----------
    inv_ls2 : Tensor of shape (b, L)
        Inverse squared lengthscales, ``L`` is 1 (isotropic) or ``d``.
    D2 : Tensor of shape (d, n, p)

    Returns
    -------
    Tensor of shape (b, n, p)
    """
    d, n, p = D2.shape
    if inv_ls2.shape[-1] == 1:
        # isotropic: r2[b] = D2.sum(0) / ell_b^2
        return inv_ls2.unsqueeze(-1) * D2.sum(0)
    # r2[b, i, k] = sum_j inv_ls2[b, j] * D2[j, i, k], one (b, d) @ (d, n p) product
    return (inv_ls2 @ D2.reshape(d, n * p)).view(-1, n, p)


def correlation(r2, nu):
    r"""The correlation :math:`\rho(r)` from squared scaled distances ``r2``."""
    if nu == math.inf:
        return torch.exp(-0.5 * r2)
    r = r2.sqrt()
    if nu == 0.5:
        return torch.exp(-r)
    if nu == 1.5:
        a = math.sqrt(3.0) * r
        return (1.0 + a) * torch.exp(-a)
    a = math.sqrt(5.0) * r  # nu == 2.5
    return (1.0 + a + a * a / 3.0) * torch.exp(-a)


def correlation_radial_derivative(r2, nu):
    r"""The factor :math:`G = -\rho'(r) / r`, elementwise.

    ``d rho / d log ell_j = G * (x_j - z_j)^2 / ell_j^2``, which is how the
    lengthscale gradient is assembled. ``G`` is finite at ``r = 0`` for every
    ``nu`` except 0.5, where the product with the squared difference still
    vanishes; it is set to 0 there.
    """
    if nu == math.inf:
        return torch.exp(-0.5 * r2)
    r = r2.sqrt()
    if nu == 0.5:
        safe_r = torch.where(r > 0, r, torch.ones_like(r))
        return torch.where(r > 0, torch.exp(-r) / safe_r, torch.zeros_like(r))
    if nu == 1.5:
        a = math.sqrt(3.0) * r
        return 3.0 * torch.exp(-a)
    a = math.sqrt(5.0) * r  # nu == 2.5
    return (5.0 / 3.0) * (1.0 + a) * torch.exp(-a)
