"""Batched stationary covariance functions.

Every function here works on a batch of ``b`` independent members. Inputs are
given once as per-dimension squared differences ``D2`` so that the distances
are exact (no ``|x|^2 + |z|^2 - 2 x.z`` cancellation) and every member's
scaled distance is one matrix product.

Shape glossary: ``b`` batch members, ``n`` and ``p`` points, ``d`` features.
"""

import math
import torch

__all__ = [
    "squared_differences",
    "augmented_differences",
    "signal_covariance",
    "covariance_coefficients",
    "signal_from_coefficients",
    "correlation",
    "exp_floored",
    "row_product",
    "weighted_sums",
]

SUPPORTED_NU = (0.5, 1.5, 2.5, math.inf)

# Covariance exponents are floored at -_EXP_FLOOR (exp(-345) ~ 1e-150): underflowing
# and subnormal entries at a restart's absurd length scales run on the CPU's slow paths
# (doc/benchmarks.rst, "Constants chosen by measurement"); an entry moves by at most
# 1e-150 times the outputscale, far below the diagonal's round-off.
_EXP_FLOOR = 345.0


# Rows per block of a CPU matrix product below which a row's rounding depends
# on the rows beside it: MKL computes rows in groups of four (AVX-512, measured)
# and the remainder on another path, so a product's rows are padded to a
# multiple of four; then a member's covariance is the same alone and in any batch.
_ROW_GROUP = 4


def row_product(A, B):
    """Tensor of shape (b, N): ``A @ B`` (A of shape (b, k), B of shape (k, N)), each row
    independent of the batch (see ``_ROW_GROUP``)."""
    b = A.shape[0]
    extra = -b % _ROW_GROUP
    if extra == 0 or A.device.type != "cpu":
        return torch.mm(A, B)
    return torch.mm(torch.cat([A, A.new_zeros(extra, A.shape[1])]), B)[:b]


def weighted_sums(W, D2aug):
    """Tensor of shape (b, d + 1): ``W @ D2aug^T``, each row independent of the others.

    Blocks of fewer than ``_ROW_GROUP`` members are padded with zero rows:
    below four rows MKL's product takes a matrix-vector kernel whose sums
    round differently, while on the CPU with single-threaded arithmetic a row
    of a product with at least four rows does not depend on the other rows;
    so every member's sums are the same whatever its block.

    Parameters
    ----------
    W : Tensor of shape (b, n * n)
    D2aug : Tensor of shape (d + 1, n * n)
    """
    b = W.shape[0]
    if b >= _ROW_GROUP or W.device.type != "cpu":
        return torch.mm(W, D2aug.mT)
    # out of place (torch.cat): also the backward of composite._RowProduct, under vmap
    padded = torch.cat([W, W.new_zeros(_ROW_GROUP - b, W.shape[1])])
    return torch.mm(padded, D2aug.mT)[:b]


def exp_floored(x):
    """``exp(max(x, -345))``, out of place (differentiable; zero gradient below)."""
    return torch.exp(x.clamp_min(-_EXP_FLOOR))


def _safe_sqrt(x):
    """``sqrt(x)`` whose gradient is 0, not NaN, where ``x == 0``.

    Where the scaled distance is 0 the squared differences are 0 too, so the
    exact derivative of the kernel with respect to a length scale is 0 there.
    """
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0).sqrt(), 0.0)


def _exp(x, floor):
    """``exp(max(x, floor))``; no clamp for a floor of ``-inf``."""
    return torch.exp(x) if floor == -math.inf else torch.exp(x.clamp_min(floor))


def correlation(nu, r2, slope=False, r2_floor=0.0, exp_floor=-_EXP_FLOOR):
    r"""Stationary correlation from squared scaled distances, and its slope.

    With :math:`a = \sqrt{2 \nu r^2}` (R&W eq. 4.14, 4.16-4.17):

    .. math::

        \rho_\infty = e^{-r^2/2},\quad
        \rho_{1/2} = e^{-a},\quad
        \rho_{3/2} = (1 + a)\, e^{-a},\quad
        \rho_{5/2} = (1 + a + a^2/3)\, e^{-a},

    and their slopes :math:`d\rho / d r^2`

    .. math::

        -\tfrac12 \rho_\infty,\quad
        -\frac{e^{-a}}{2a},\quad
        -\tfrac32 e^{-a},\quad
        -\tfrac56 (1 + a)\, e^{-a}.

    Out of place, so autograd (reverse and forward mode) flows through it;
    :func:`signal_from_coefficients` computes the same forms in place.

    Parameters
    ----------
    nu : float
        One of ``SUPPORTED_NU``; ``math.inf`` for the RBF correlation.
    r2 : Tensor of any shape
        Squared scaled distances :math:`r^2 = \sum_j (x_j - z_j)^2 / \ell_j^2`
        (non-negative).
    slope : bool
        Also return :math:`d\rho / d r^2`.
    r2_floor : float
        Matern only. 0: ``a`` is exactly 0 where ``r2`` is, through a guarded
        square root with zero gradient there. Positive: ``r2`` is clamped at
        it before the root (the acquisition functions pass 1e-30).
    exp_floor : float
        Exponents are floored here (default -345, see ``_EXP_FLOOR``), and
        ``a`` at its negative, so that the covariance stays at its floor
        however far apart the points are; ``-math.inf`` for no floor (the
        correlation is then 0 far apart, also where ``r2`` is infinite).

    Returns
    -------
    rho : Tensor of the shape of ``r2``
    drho : Tensor of the shape of ``r2``, or None
        :math:`d\rho / d r^2` of the formulas above (floors ignored) when
        ``slope`` is True. For :math:`\nu = 1/2` it is infinite at
        :math:`r^2 = 0` and given as 0 where ``r2 <= r2_floor``, as autograd
        through the clamp or the guarded root gives.
    """
    if nu == math.inf:
        rho = _exp(-0.5 * r2, exp_floor)
        return rho, (-0.5 * rho if slope else None)
    if r2_floor > 0:
        a = torch.sqrt(2.0 * nu * r2.clamp_min(r2_floor))
    else:
        a = _safe_sqrt(2.0 * nu * r2)
    # where exp(-a) is floored, so is a: else (1 + a) exp(floor) grows with a; without a
    # floor, a is kept finite so that (1 + a + a^2 / 3) exp(-a) is 0, not NaN, at inf
    a = a.clamp_max(-exp_floor if exp_floor > -math.inf else 1e150)
    E = _exp(-a, exp_floor)
    if nu == 0.5:
        return E, (torch.where(r2 > r2_floor, -0.5 * E / a, 0.0) if slope else None)
    if nu == 1.5:
        return (1.0 + a) * E, (-1.5 * E if slope else None)
    # nu == 2.5
    one_plus_a = 1.0 + a
    return (one_plus_a + a.square() / 3.0) * E, ((-5.0 / 6.0) * (one_plus_a * E) if slope else None)


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


def augmented_differences(D2):
    """Tensor of shape (d + 1, n * p): the squared differences and a row of ones."""
    d, n, p = D2.shape
    return torch.cat([D2.reshape(d, n * p), torch.ones_like(D2[0]).reshape(1, n * p)])


def covariance_coefficients(kernel, theta, d):
    r"""The per-member numbers that :func:`signal_from_coefficients` needs.

    Parameters
    ----------
    kernel : StationaryKernel
    theta : Tensor of shape (b, P)
    d : int
        Number of features.

    Returns
    -------
    coef : Tensor of shape (b, d + 1)
        Weights of the rows of the augmented squared differences: ``coef @
        D2aug`` is :math:`\log k_f = \log \sigma^2 - r^2 / 2` for the RBF
        kernel and :math:`a^2 = 2 \nu r^2` for a Matern kernel.
    s : Tensor of shape (b, 1, 1) or None
        The outputscale (Matern only; the RBF kernel has it in ``coef``).
    """
    b = theta.shape[0]
    inv_ls2 = theta[:, kernel.lengthscale_slice].mul(-2.0).exp_()
    if inv_ls2.shape[-1] != d:
        inv_ls2 = inv_ls2.expand(b, d)
    if kernel.nu == math.inf:
        log_s = theta[:, :1] if kernel.has_outputscale else torch.zeros_like(theta[:, :1])
        return torch.cat([inv_ls2.mul(-0.5), log_s], dim=-1), None
    coef = torch.cat([inv_ls2.mul(2.0 * kernel.nu), torch.zeros_like(theta[:, :1])], dim=-1)
    return coef, kernel.outputscale(theta).view(b, 1, 1)


def signal_from_coefficients(kernel, coef, s, D2aug, n, p):
    """:func:`signal_covariance` from :func:`covariance_coefficients`.

    The forms of :func:`correlation`, written in place for the fit's hot path,
    with ``2 nu`` (or ``-1/2`` and ``log sigma^2``) folded into ``coef``.

    Parameters
    ----------
    kernel : StationaryKernel
    coef : Tensor of shape (b, d + 1)
    s : Tensor of shape (b, 1, 1) or None
    D2aug : Tensor of shape (d + 1, n * p)
    n, p : int

    Returns
    -------
    Kf, sG : as :func:`signal_covariance`.
    """
    b = coef.shape[0]
    if kernel.nu == math.inf:
        # log Kf = log s - r^2 / 2, one (b, d + 1) @ (d + 1, n p) product
        return row_product(coef, D2aug).view(b, n, p).clamp_min_(-_EXP_FLOOR).exp_(), None
    # a = sqrt(2 nu) r, then the Matern closed forms in a
    # a is floored with exp(-a): else (1 + a) exp(-345) grows with a, NaN at an overflowed distance
    a = row_product(coef, D2aug).view(b, n, p).clamp_min_(0.0).sqrt_().clamp_max_(_EXP_FLOOR)
    E = torch.neg(a).clamp_min_(-_EXP_FLOOR).exp_()
    if kernel.nu == 0.5:
        safe = torch.where(a > 0, a, 1.0)
        sG = torch.where(a > 0, E / safe, 0.0).mul_(s)
        return E.mul_(s), sG
    if kernel.nu == 1.5:
        sG = E * (3.0 * s)
        return a.add_(1.0).mul_(E).mul_(s), sG
    # nu == 2.5
    one_plus_a = a + 1.0
    sG = (one_plus_a * E).mul_(s * (5.0 / 3.0))
    Kf = a.square_().div_(3.0).add_(one_plus_a).mul_(E).mul_(s)
    return Kf, sG


def signal_covariance(kernel, theta, D2aug, n, p):
    r"""``sigma^2 rho(r)`` and the gradient factor ``sigma^2 G`` of every member.

    :math:`\rho` is the correlation of :func:`correlation`, and
    :math:`G = -\rho'(r)/r = -2\, d\rho / d r^2` is :math:`\rho_\infty`,
    :math:`e^{-r}/r`, :math:`3 e^{-a}` and :math:`\tfrac53 (1 + a) e^{-a}`
    respectively (:math:`a = \sqrt{2\nu}\, r`), so that
    :math:`\partial k / \partial \log \ell_j = \sigma^2 G\, (x_j - z_j)^2 / \ell_j^2`.

    Parameters
    ----------
    kernel : StationaryKernel
    theta : Tensor of shape (b, P)
    D2aug : Tensor of shape (d + 1, n * p)
        From :func:`augmented_differences`.

    Returns
    -------
    Kf : Tensor of shape (b, n, p)
    sG : Tensor of shape (b, n, p) or None
        ``sigma^2 G`` with ``G = -rho'(r) / r``; ``None`` for the RBF kernel,
        where it equals ``Kf``.
    """
    coef, s = covariance_coefficients(kernel, theta, D2aug.shape[0] - 1)
    return signal_from_coefficients(kernel, coef, s, D2aug, n, p)
