"""Exact Gaussian-process likelihood and posterior for a batch of members.

Missing observations are handled by a mask: the rows and columns of a masked
point become those of the identity matrix and its residual becomes zero, so one
Cholesky factor per member gives the exact log marginal likelihood of that
member's observed subset, and members never mix (R&W Alg. 2.1 on each subset).

Shape glossary: ``b`` members, ``n`` training points, ``p`` query points,
``d`` features, ``P`` hyperparameters per member.
"""

import math
import sys
from dataclasses import dataclass

import torch

from .kernels import (
    SUPPORTED_NU,
    augmented_differences,
    covariance_coefficients,
    signal_covariance,
    signal_from_coefficients,
    squared_differences,
)
from . import lapack
from .threads import run_blocks, split_blocks

__all__ = [
    "member_rows",
    "KernelMaths",
    "StationaryKernel",
    "TrainingDifferences",
    "training_differences",
    "Factor",
    "member_blocks",
    "training_covariance",
    "neg_log_marginal_likelihood",
    "factor_members",
    "factorize",
    "refactorize",
    "posterior",
    "posterior_from",
    "sample_mvn",
]

LOG_2PI = math.log(2.0 * math.pi)


class KernelMaths:
    """The steps of a GP as methods of a core kernel, with one signature for every kind.

    A subclass sets ``_maths`` to the module whose functions
    ``neg_log_marginal_likelihood``, ``factorize``, ``refactorize`` and
    ``posterior`` take it as their first argument (this module for
    :class:`StationaryKernel`, :mod:`.composite` for ``CompositeKernel``) and
    defines ``training_data(X)``, so that callers never ask which kind of
    kernel they hold.
    """

    _maths = None

    def nlml(self, theta, data, y, maskf, alpha, eval_gradient=True):
        """Negative log marginal likelihood of every member and its gradient."""
        return self._maths.neg_log_marginal_likelihood(self, theta, data, y, maskf, alpha,
                                                       eval_gradient)

    def factorize(self, theta, data, y, maskf, alpha, max_tries=6):
        """The :class:`Factor` of every member."""
        return self._maths.factorize(self, theta, data, y, maskf, alpha, max_tries)

    def refactorize(self, theta, data, maskf, alpha, jitter):
        """``(L, jitter, failed)``: the factors ``factorize`` found, from the recorded jitter."""
        return self._maths.refactorize(self, theta, data, maskf, alpha, jitter)

    def posterior(self, theta, X_train, X_test, factor_L, factor_alpha, maskf, full_cov=False,
                  observation_noise=True, chunk_size=None):
        """Posterior mean and variance at ``X_test``; ``factor_L=None`` gives the mean only.

        ``observation_noise=False`` leaves the white noise out (the latent function's).
        """
        return self._maths.posterior(self, theta, X_train, X_test, factor_L, factor_alpha, maskf,
                                     full_cov=full_cov, observation_noise=observation_noise,
                                     chunk_size=chunk_size)


@dataclass(frozen=True)
class StationaryKernel(KernelMaths):
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

    def training_data(self, X):
        """The training data of the likelihood: :func:`training_differences` of ``X`` (n, d)."""
        return training_differences(X)





class TrainingDifferences:
    """The squared differences of the training inputs, built once per fit.

    Parameters
    ----------
    full : Tensor of shape (d + 1, n * n)
        :func:`augmented_differences` of the training inputs.

    Attributes
    ----------
    full : Tensor of shape (d + 1, n * n)
    twice_upper : Tensor of shape (n, n) or None
        2 above the diagonal and 0 elsewhere: the mask of the gradient's sums
        when a matrix holds ``K^-1`` only above its diagonal (the in-place
        LAPACK path, :mod:`.lapack`); None where that path is not used.
    """

    __slots__ = ("full", "twice_upper")

    def __init__(self, full):
        self.full = full
        self.twice_upper = None
        if lapack.usable(full.device, full.dtype):
            n = math.isqrt(full.shape[-1])
            self.twice_upper = torch.ones(n, n, dtype=full.dtype, device=full.device).triu_(1).mul_(2.0)


def training_differences(X):
    """:class:`TrainingDifferences` of training inputs ``X`` (Tensor of shape (n, d))."""
    return TrainingDifferences(augmented_differences(squared_differences(X, X)))


def _training(D2):
    """``D2`` as :class:`TrainingDifferences`; unchanged if it already is.

    The likelihood functions below accept the squared differences of shape
    (d, n, n), their augmented form of shape (d + 1, n * n), or
    :class:`TrainingDifferences`: a fit passes the last, built once, so that
    an evaluation of a lone member does not copy ``(d + 1) n^2`` numbers first
    (15% of its time at n = 264, d = 3).
    """
    if isinstance(D2, TrainingDifferences):
        return D2
    return TrainingDifferences(D2 if D2.dim() == 2 else augmented_differences(D2))


# Members are processed in blocks of at most this many numbers per n x n
# matrix (4 MiB in float64): blocks that small are recycled by the memory
# allocator instead of being mapped afresh, and they bound peak memory
# (doc/benchmarks.rst, "Constants chosen by measurement").
_BLOCK_NUMBERS = 2**19
# A GPU needs large batches to be busy: blocks of up to 2**27 numbers (1 GiB
# in float64) per n x n matrix.
_GPU_BLOCK_NUMBERS = 2**27


def member_blocks(b, n, device=None):
    """Slices that cut ``b`` members into blocks of ``n x n`` matrices.

    Parameters
    ----------
    b, n : int
    device : torch.device, optional
        Blocks are larger on a GPU.
    """
    numbers = _GPU_BLOCK_NUMBERS if device is not None and device.type == "cuda" else _BLOCK_NUMBERS
    return split_blocks(b, numbers // max(1, n * n))


def member_rows(alpha, block):
    """``alpha`` of the members in ``block`` (a slice or an index tensor): per-member rows
    (b, n) are selected, a value shared by all members ((n,) or ()) is not."""
    return alpha[block] if alpha.dim() == 2 else alpha


def training_covariance(kernel, theta, D2aug, maskf, alpha):
    """Masked training covariance of every member.

    Parameters
    ----------
    kernel : StationaryKernel
    theta : Tensor of shape (b, P)
        Log hyperparameters.
    D2aug : Tensor of shape (d + 1, n * n)
        Augmented squared differences of the training inputs
        (:func:`augmented_differences`, ``TrainingDifferences.full``).
    maskf : Tensor of shape (b, n)
        1.0 where observed, 0.0 where missing.
    alpha : Tensor of shape (n,), () or (b, n)
        Value added to the observed diagonal (scikit-learn's ``alpha``).

    Returns
    -------
    Tensor of shape (b, n, n)
        Observed block of ``sigma^2 rho + (sigma_n^2 + alpha) I``, identity on
        the missing rows and columns.
    """
    n = maskf.shape[-1]
    K, _ = signal_covariance(kernel, theta, D2aug, n, n)
    _mask_(K, maskf)
    _add_diagonal_(K, kernel, theta, maskf, alpha)
    return K


def _mask_(K, maskf):
    """Zero the rows and columns of missing points, in place."""
    if not bool(maskf.bool().all()):
        _zero_missing_(K, maskf)


def _zero_missing_(K, maskf):
    K.mul_(maskf.unsqueeze(-1)).mul_(maskf.unsqueeze(-2))


def _add_diagonal_(K, kernel, theta, maskf, alpha):
    """Add noise and ``alpha`` on observed points and 1 on missing ones, in place."""
    diag = (kernel.noise(theta).unsqueeze(-1) + alpha) * maskf + (1.0 - maskf)
    K.diagonal(dim1=-2, dim2=-1).add_(diag)


def _lml(L, y, maskf):
    """Log marginal likelihood and ``K^-1 y`` (R&W Alg. 2.1 lines 2-3 and 7).

    Returns
    -------
    lml : Tensor of shape (b,)
    a : Tensor of shape (b, n)
    """
    nll, a = _nll(L, y, 0.5 * LOG_2PI * maskf.sum(-1))
    return nll.neg_(), a


def _nll(L, y, const):
    """``-log p(y)`` and ``K^-1 y`` from the lower factor ``L`` (reading only its triangle).

    ``v = L^-1 y``, ``a = L^-T v``, ``-log p = |v|^2 / 2 + sum(log diag L) +
    const``, with ``const = n_observed log(2 pi) / 2`` (a number or a Tensor of
    shape (b,)). Two triangular solves: ``torch.cholesky_solve`` was 2-4x
    slower on small batches.

    Returns
    -------
    nll : Tensor of shape (b,)
    a : Tensor of shape (b, n)
    """
    v = torch.linalg.solve_triangular(L, y.unsqueeze(-1), upper=False)
    a = torch.linalg.solve_triangular(L.mT, v, upper=True).squeeze(-1)
    v = v.squeeze(-1)
    # log diag L is 0 at missing points
    nll = L.diagonal(dim1=-2, dim2=-1).log().sum(-1).add_(torch.linalg.vecdot(v, v), alpha=0.5)
    return nll.add_(const), a


# With several intra-op threads and below this size, K^-1 = L^-T L^-1 by a
# triangular solve and one batched product (matmul-shaped, spread over the
# threads) beats LAPACK's potri (one small call per member); single-threaded,
# and from this size on, potri wins; on a GPU the solve and product win at
# every size (doc/benchmarks.rst, "Constants chosen by measurement").
_POTRI_FROM = 256


def _cholesky_inverse(U):
    """Tensor of shape (b, n, n), contiguous: ``K^-1`` from ``K = U^T U``."""
    n = U.shape[-1]
    if U.device.type == "cpu" and (n >= _POTRI_FROM or torch.get_num_threads() == 1):
        Kinv = torch.cholesky_inverse(U, upper=True)
        # the result is exactly symmetric; LAPACK leaves it column-major, so its
        # transpose is the row-major tensor without a copy
        return Kinv.mT if Kinv.mT.is_contiguous() else Kinv.contiguous()
    eye = torch.eye(n, dtype=U.dtype, device=U.device).expand(U.shape)
    Linv = torch.linalg.solve_triangular(U.mT, eye, upper=False)
    return torch.bmm(Linv.mT, Linv)


# Fewer rows than this take another code path in MKL's matrix product (a
# matrix-vector kernel), whose sums round differently: a member evaluated
# alone would then differ from the same member in a block (see _weighted_sums).
_MIN_ROWS = 4


def _weighted_sums(W, D2aug):
    """Tensor of shape (b, d + 1): ``W @ D2aug^T``, each row independent of the others.

    Blocks of fewer than ``_MIN_ROWS`` members are padded with zero rows, so
    that every member's sums come from the same kernel, in the same order,
    whatever its block: on the CPU with single-threaded arithmetic, a row of
    a product with at least four rows does not depend on the other rows.

    Parameters
    ----------
    W : Tensor of shape (b, n * n)
    D2aug : Tensor of shape (d + 1, n * n)
    """
    b = W.shape[0]
    if b >= _MIN_ROWS or W.device.type != "cpu":
        return torch.mm(W, D2aug.mT)
    # out of place (torch.cat): also the backward of composite._RowProduct, under vmap
    padded = torch.cat([W, W.new_zeros(_MIN_ROWS - b, W.shape[1])])
    return torch.mm(padded, D2aug.mT)[:b]


def neg_log_marginal_likelihood(kernel, theta, D2, y, maskf, alpha, eval_gradient=True):
    """Negative log marginal likelihood of every member and its gradient.

    Parameters
    ----------
    kernel : StationaryKernel
    theta : Tensor of shape (b, P)
        Log hyperparameters.
    D2 : Tensor of shape (d, n, n) or (d + 1, n * n), or TrainingDifferences
        Squared differences of the training inputs, their
        :func:`augmented_differences`, or :func:`training_differences`
        (fastest when reused).
    y : Tensor of shape (b, n)
        Targets with missing entries set to 0.
    maskf : Tensor of shape (b, n)
    alpha : Tensor of shape (n,), () or (b, n)
    eval_gradient : bool

    Returns
    -------
    loss : Tensor of shape (b,)
        ``-log p(y | theta)``; ``inf`` for a member whose covariance is not
        positive definite.
    grad : Tensor of shape (b, P) or None
        Gradient with respect to ``theta``; zero where ``loss`` is ``inf``.
    """
    b = theta.shape[0]
    n = maskf.shape[-1]
    data = _training(D2)
    # Everything per member that is not an n x n matrix is computed here, once
    # for all blocks: an evaluation of a lone member is dominated by the fixed
    # cost of each small tensor operation (about 5 us here, and more when
    # member threads contend for the GIL), not by its arithmetic.
    observed = bool(maskf.bool().all())
    coef, s = covariance_coefficients(kernel, theta, data.full.shape[0] - 1)
    diag = kernel.noise(theta).unsqueeze(-1) + alpha  # (b, n) or (b, 1)
    if observed:
        mask, const = None, 0.5 * LOG_2PI * n
    else:
        mask, const = maskf, 0.5 * LOG_2PI * maskf.sum(-1)
        diag = diag * maskf + (1.0 - maskf)  # 1 on the diagonal of missing points
    # d nlml / d theta = 1/2 [sum(V Kf), sums_j / ell_j^2, sigma_n^2 tr(V)] with
    # V = K^-1 - a a^T (see _nlml_block): the factors are 1/2 exp(theta * (0, -2, ..., -2, 1))
    scale = None
    if eval_gradient:
        powers = ([0.0] if kernel.has_outputscale else []) + [-2.0] * kernel.n_lengthscales \
            + ([1.0] if kernel.has_noise else [])
        scale = theta.mul(theta.new_tensor(powers)).exp_().mul_(0.5)
    # in place LAPACK (no copies) where it is available; see .lapack
    direct = data.twice_upper is not None and lapack.usable(theta.device, theta.dtype)
    loss = torch.empty(b, dtype=theta.dtype, device=theta.device)
    grad = torch.empty_like(theta) if eval_gradient else None

    def block(blk):
        whole = blk == slice(0, b)  # one block: no slicing
        pick = (lambda t: t) if whole else (lambda t: t[blk])
        _nlml_block(kernel, data.full, data.twice_upper if direct else None, n, pick(coef),
                    None if s is None else pick(s), pick(diag), pick(y), None if mask is None else pick(mask),
                    const if observed else pick(const), None if scale is None else pick(scale),
                    pick(loss), None if grad is None else pick(grad))

    run_blocks(block, member_blocks(b, n, theta.device))
    return loss, grad


def _nlml_block(kernel, D2aug, twice_upper, n, coef, s, diag, y, maskf, const, scale,
                loss_out, grad_out):
    """One block of :func:`neg_log_marginal_likelihood`, written into the outputs.

    ``coef, s`` are from :func:`covariance_coefficients`, ``diag`` is added to
    the diagonal, ``maskf`` is None when every point is observed, ``const`` is
    ``n_observed log(2 pi) / 2`` and ``scale`` the factors of the gradient's
    entries (None: no gradient). With ``twice_upper``
    (:attr:`TrainingDifferences.twice_upper`), the covariance buffer is
    factorised and inverted in place (:mod:`.lapack`).
    """
    b = coef.shape[0]
    direct = twice_upper is not None
    Kf, sG = signal_from_coefficients(kernel, coef, s, D2aug, n, n)
    if maskf is not None:
        _zero_missing_(Kf, maskf)
    Kd = Kf.diagonal(dim1=-2, dim2=-1)
    kf_diag = Kd.clone()
    Kd.add_(diag)
    if direct:
        # above the diagonal: the factor U (K = U^T U); below it, still Kf
        info = lapack.potrf_upper_(Kf)
        U = Kf
    else:
        # the upper factor of a row-major matrix is LAPACK's lower one: no transposes
        U, info = torch.linalg.cholesky_ex(Kf, upper=True)
        Kd.copy_(kf_diag)  # back to the signal part
    # no jitter: a member that is not positive definite scores inf (scikit-learn's -inf)
    ok = None
    if bool(info.any()):
        ok = info == 0
        eye = torch.eye(n, dtype=U.dtype, device=U.device)
        if direct:
            U[~ok] = eye  # those members' results are discarded
        else:
            U = torch.where(ok[:, None, None], U, eye)
    nll, a = _nll(U.mT, y, const)
    if ok is None:
        loss_out.copy_(nll)
    else:
        loss_out.copy_(nll.masked_fill_(~ok, math.inf))
    if grad_out is None:
        return

    # d nlml / d theta_k = 0.5 tr(V dK/dtheta_k), V = K^-1 - a a^T  (R&W eq. 5.9).
    # At missing points V is 1 on the diagonal and 0 elsewhere, while Kf and
    # the squared differences vanish there: they add nothing.
    flat = (b, n * n)
    if direct:
        lapack.potri_upper_(U)  # above the diagonal: K^-1; below it, still Kf
        v_diag = Kd - a.square()
        # a sum over all entries is twice the sum above the diagonal (the mask
        # ``twice_upper`` also drops what lies below) plus the diagonal's; Kf
        # above the diagonal is read from below it (U.mT)
        V = torch.addcmul(U, a.unsqueeze(-1), a.unsqueeze(-2), value=-1.0)
        on_diag = torch.linalg.vecdot(v_diag, kf_diag).unsqueeze(-1)
        if sG is None:
            sums = _weighted_sums(V.mul_(U.mT).mul_(twice_upper).view(flat), D2aug)
            signal = sums[:, -1:] + on_diag
        else:
            signal = torch.mul(V, U.mT).mul_(twice_upper).view(flat).sum(-1, keepdim=True) + on_diag
            sums = _weighted_sums(V.mul_(sG).mul_(twice_upper).view(flat), D2aug)
    else:
        V = _cholesky_inverse(U).addcmul_(a.unsqueeze(-1), a.unsqueeze(-2), value=-1.0)
        v_diag = V.diagonal(dim1=-2, dim2=-1).clone()
        if sG is None:
            # RBF: sigma^2 G = Kf. sums[b, j] = sum_ik (V Kf)[b, i, k] D2aug[j, i k]; the
            # last row of ones gives sum(V * Kf)
            sums = _weighted_sums(V.mul_(Kf).view(flat), D2aug)
            signal = sums[:, -1:]
        else:
            signal = torch.linalg.vecdot(V.view(flat), Kf.view(flat)).unsqueeze(-1)
            sums = _weighted_sums(V.mul_(sG).view(flat), D2aug)
    ls = sums[:, :-1] if kernel.n_lengthscales > 1 else sums[:, :-1].sum(-1, keepdim=True)
    parts = ([signal] if kernel.has_outputscale else []) + [ls]
    if kernel.has_noise:
        parts.append((v_diag if maskf is None else v_diag * maskf).sum(-1, keepdim=True))
    torch.mul(torch.cat(parts, dim=-1), scale, out=grad_out)
    if ok is not None:
        grad_out.masked_fill_(~ok[:, None], 0.0)


@dataclass(frozen=True)
class Factor:
    """The cached factorisation of every member's training covariance.

    Attributes
    ----------
    L : Tensor of shape (b, n, n)
        Lower Cholesky factor of the masked training covariance plus jitter.
    alpha : Tensor of shape (b, n)
        ``K^-1 y`` (zero at missing points).
    log_marginal_likelihood : Tensor of shape (b,)
    jitter : Tensor of shape (b,)
        Diagonal jitter that had to be added (0 where none was needed).
    failed : Tensor of shape (b,)
        True where no jitter up to the largest tried made the matrix positive
        definite.
    """

    L: torch.Tensor
    alpha: torch.Tensor
    log_marginal_likelihood: torch.Tensor
    jitter: torch.Tensor
    failed: torch.Tensor


# Not acquisition._cholesky: the fit jitters only failing members, from zero, recording the
# jitter (refactorize repeats it), and marks a member that no jitter helps as failed.
def _jittered_cholesky(K, maskf, max_tries):
    """Lower Cholesky factors of ``K``, adding jitter only to failing members.

    A failing member gets ``1e-8 * mean(diag K)`` added to its observed
    diagonal, then ten times more, up to ``max_tries`` times.

    Parameters
    ----------
    K : Tensor of shape (b, n, n)
        Masked training covariances (not modified: a failing member's is copied).
    maskf : Tensor of shape (b, n)
    max_tries : int

    Returns
    -------
    L : Tensor of shape (b, n, n)
        Identity where no jitter helped.
    jitter : Tensor of shape (b,)
    failed : Tensor of shape (b,), bool
    """
    n = K.shape[-1]
    Lb, info = torch.linalg.cholesky_ex(K)
    bad = info != 0
    scale = 1e-8 * K.diagonal(dim1=-2, dim2=-1).mean(-1)
    jit = torch.zeros_like(scale)
    for _ in range(max_tries):
        if not bool(bad.any()):
            break
        idx = bad.nonzero().squeeze(-1)
        jit[idx] = torch.where(jit[idx] > 0, 10.0 * jit[idx], scale[idx])
        Kj = K[idx]
        Kj.diagonal(dim1=-2, dim2=-1).add_(jit[idx, None] * maskf[idx])
        Lj, infoj = torch.linalg.cholesky_ex(Kj)
        Lb[idx] = Lj
        bad[idx] = infoj != 0
    if bool(bad.any()):
        Lb = torch.where(bad[:, None, None], torch.eye(n, dtype=K.dtype, device=K.device), Lb)
    return Lb, jit, bad


def factor_members(covariance, maskf, blocks, max_tries=6, jitter=None):
    """Cholesky factors of every member's training covariance, block by block.

    Parameters
    ----------
    covariance : callable
        ``covariance(block) -> Tensor of shape (k, n, n)``: the masked training
        covariance of the members in ``block`` (a slice), which may be
        modified.
    maskf : Tensor of shape (b, n)
    blocks : list of slice
        From :func:`member_blocks`.
    max_tries : int
        Jitter escalations (see :func:`_jittered_cholesky`).
    jitter : Tensor of shape (b,), optional
        Jitter found before: added as it is, which gives the factors of that
        earlier factorisation again; a member that fails with it (in another
        dtype, on another device) gets more, escalating as above.

    Returns
    -------
    L : Tensor of shape (b, n, n)
        Lower factors (the identity where factorisation failed).
    jitter : Tensor of shape (b,)
    failed : Tensor of shape (b,), bool
    """
    b, n = maskf.shape
    L = torch.empty(b, n, n, dtype=maskf.dtype, device=maskf.device)
    jit = torch.zeros(b, dtype=maskf.dtype, device=maskf.device) if jitter is None else jitter
    failed = torch.zeros(b, dtype=torch.bool, device=maskf.device)

    def block(blk):
        K = covariance(blk)
        if jitter is None:
            L[blk], jit[blk], failed[blk] = _jittered_cholesky(K, maskf[blk], max_tries)
            return
        if bool((jitter[blk] > 0).any()):
            K.diagonal(dim1=-2, dim2=-1).add_(jitter[blk].unsqueeze(-1) * maskf[blk])
        Lb, info = torch.linalg.cholesky_ex(K)
        bad = info != 0
        if bool(bad.any()):
            # the recorded jitter no longer suffices (another dtype or device):
            # escalate from there, as the fit did, for the failing members only
            idx = bad.nonzero().squeeze(-1)
            Le, extra, still = _jittered_cholesky(K[idx], maskf[blk][idx], max_tries)
            Lb[idx] = Le
            jit[blk.start + idx] = jit[blk.start + idx] + extra
            bad[idx] = still
        failed[blk] = bad
        L[blk] = torch.where(bad[:, None, None], torch.eye(n, dtype=K.dtype, device=K.device), Lb)

    run_blocks(block, blocks)
    return L, jit, failed


def factorize(kernel, theta, D2, y, maskf, alpha, max_tries=6):
    """Cholesky-factorise every member, escalating jitter per failing member.

    A member whose factorisation fails gets ``1e-8 * mean(diag K)`` added to its
    observed diagonal, then ten times more, up to ``max_tries`` times; members
    that succeed are untouched.

    Parameters
    ----------
    kernel : StationaryKernel
    theta : Tensor of shape (b, P)
    D2 : Tensor of shape (d, n, n) or (d + 1, n * n)
        As in :func:`neg_log_marginal_likelihood`.
    y : Tensor of shape (b, n)
    maskf : Tensor of shape (b, n)
    alpha : Tensor of shape (n,), () or (b, n)
    max_tries : int

    Returns
    -------
    Factor
    """
    D2aug = _training(D2).full
    L, jitter, failed = factor_members(
        lambda blk: training_covariance(kernel, theta[blk], D2aug, maskf[blk],
                                        member_rows(alpha, blk)),
        maskf, member_blocks(y.shape[0], y.shape[1], theta.device), max_tries,
    )
    lml, a = _lml(L, y, maskf)
    lml = torch.where(failed, -math.inf, lml)
    return Factor(L=L, alpha=a, log_marginal_likelihood=lml, jitter=jitter, failed=failed)


def refactorize(kernel, theta, D2, maskf, alpha, jitter):
    """The Cholesky factors that :func:`factorize` found, computed again.

    Adds each member's recorded jitter to its observed diagonal and factorises;
    the arithmetic is that of :func:`factorize`, so the factors are the same.
    Lets a fitted model keep ``theta`` and ``jitter`` instead of ``b n^2``
    numbers of factors.

    Parameters
    ----------
    kernel : StationaryKernel
    theta : Tensor of shape (b, P)
    D2 : Tensor of shape (d, n, n) or (d + 1, n * n)
        As in :func:`neg_log_marginal_likelihood`.
    maskf : Tensor of shape (b, n)
    alpha : Tensor of shape (n,), () or (b, n)
    jitter : Tensor of shape (b,)
        ``Factor.jitter`` of these members.

    Returns
    -------
    L : Tensor of shape (b, n, n)
        Lower Cholesky factors (the identity for a member that cannot be
        factorised).
    jitter : Tensor of shape (b,)
        The jitter used: the recorded one, or more where that no longer
        sufficed.
    failed : Tensor of shape (b,), bool
        Members that could not be factorised even with more jitter.
    """
    D2aug = _training(D2).full
    return factor_members(
        lambda blk: training_covariance(kernel, theta[blk], D2aug, maskf[blk],
                                        member_rows(alpha, blk)),
        maskf, member_blocks(*maskf.shape, theta.device), jitter=jitter.clone(),
    )


def posterior(kernel, theta, X_train, X_test, factor_L, factor_alpha, maskf,
              full_cov=False, observation_noise=True, chunk_size=None):
    """Posterior mean and variance (or covariance) at query points.

    R&W Alg. 2.1 lines 4-6 on every member, from the cached factor.

    Parameters
    ----------
    kernel : StationaryKernel
    theta : Tensor of shape (b, P)
    X_train : Tensor of shape (n, d)
    X_test : Tensor of shape (p, d)
    factor_L : Tensor of shape (b, n, n) or None
        ``None``: the mean only (``var`` is None).
    factor_alpha : Tensor of shape (b, n)
    maskf : Tensor of shape (b, n)
    full_cov : bool
        Return the full covariance instead of the variance.
    observation_noise : bool
        Add the white-noise variance to the diagonal (scikit-learn counts a
        ``WhiteKernel`` in its predictive std).
    chunk_size : int or None
        Number of query points processed at once when ``full_cov`` is False;
        bounds memory to ``b * chunk_size * n`` numbers.

    Returns
    -------
    mean : Tensor of shape (b, p)
    var : Tensor of shape (b, p) or (b, p, p)
        Variances clamped at 0 (or the full covariance).
    """
    s = kernel.outputscale(theta)
    noise = kernel.noise(theta) if observation_noise else torch.zeros_like(s)
    n = X_train.shape[0]

    def cross(Xc):
        D2aug = augmented_differences(squared_differences(Xc, X_train))
        return signal_covariance(kernel, theta, D2aug, Xc.shape[0], n)[0]

    def prior_cov(X):
        p = X.shape[0]
        cov, _ = signal_covariance(kernel, theta, augmented_differences(squared_differences(X, X)), p, p)
        cov.diagonal(dim1=-2, dim2=-1).add_(noise.unsqueeze(-1))
        return cov

    return posterior_from(cross, lambda Xc: (s + noise).unsqueeze(-1), prior_cov, X_test,
                          factor_L, factor_alpha, maskf, full_cov, chunk_size)


def posterior_from(cross, prior_var, prior_cov, X_test, factor_L, factor_alpha, maskf,
                   full_cov=False, chunk_size=None):
    """Posterior mean and variance (or covariance) of any kernel, from its factor.

    R&W Alg. 2.1 lines 4-6, with the query points in chunks.

    Parameters
    ----------
    cross : callable
        ``cross(Xc) -> Tensor of shape (b, c, n)``: prior covariance of the
        query points ``Xc`` (Tensor of shape (c, d)) with the training points.
    prior_var : callable
        ``prior_var(Xc) -> Tensor broadcastable to (b, c)``: prior variance.
    prior_cov : callable
        ``prior_cov(X) -> Tensor of shape (b, p, p)``: prior covariance of the
        query points; it may be modified.
    X_test : Tensor of shape (p, d)
    factor_L : Tensor of shape (b, n, n) or None
        ``None``: the mean only, without a factor.
    factor_alpha : Tensor of shape (b, n)
    maskf : Tensor of shape (b, n)
    full_cov : bool
    chunk_size : int or None
        Query points per chunk when ``full_cov`` is False.

    Returns
    -------
    mean : Tensor of shape (b, p)
    var : Tensor of shape (b, p) or (b, p, p), or None
        Variances clamped at 0 (or the full covariance); ``None`` without
        ``factor_L``.
    """
    p = X_test.shape[0]
    if full_cov or chunk_size is None:
        chunk_size = max(p, 1)
    means, variances, V_all = [], [], []
    for start in range(0, p, chunk_size):
        Xc = X_test[start:start + chunk_size]
        Ks = cross(Xc)  # (b, c, n)
        if factor_L is None:
            # the mean needs the dual coefficients only (0 at missing points)
            means.append(Ks @ factor_alpha.unsqueeze(-1))
            continue
        Ks = Ks * maskf.unsqueeze(-2)  # a composite kernel may return a broadcast view
        means.append(Ks @ factor_alpha.unsqueeze(-1))
        V = torch.linalg.solve_triangular(factor_L, Ks.mT, upper=False)  # (b, n, c)
        if full_cov:
            V_all.append(V)
        else:
            variances.append(prior_var(Xc) - V.square().sum(-2))
    mean = torch.cat(means, dim=-2).squeeze(-1)
    if factor_L is None:
        return mean, None
    if full_cov:
        V = torch.cat(V_all, dim=-1)
        return mean, prior_cov(X_test).baddbmm_(V.mT, V, alpha=-1.0)
    return mean, torch.cat(variances, dim=-1).clamp_min_(0.0)


def sample_mvn(mean, cov, n_samples, generator=None):
    """Joint samples from a batch of (possibly singular) Gaussians.

    Uses the symmetric square root from an eigendecomposition, so positive
    semi-definite covariances (no noise, duplicate points) are sampled exactly;
    negative eigenvalues from round-off are clipped to zero.

    Parameters
    ----------
    mean : Tensor of shape (b, p)
    cov : Tensor of shape (b, p, p)
    n_samples : int
    generator : torch.Generator or None

    Returns
    -------
    Tensor of shape (b, p, n_samples)
    """
    evals, evecs = torch.linalg.eigh(cov)
    # V diag(sqrt(lambda)) V^T does not depend on the signs LAPACK gives the eigenvectors,
    # which differ between a member alone and in a batch: the same draws either way
    root = (evecs * evals.clamp_min(0.0).sqrt().unsqueeze(-2)) @ evecs.mT  # (b, p, p)
    # drawn where the generator lives (a CPU generator serves every device), member after
    # member: torch fills one large draw in blocks whose tail depends on its size, so a
    # member's numbers would depend on its batch
    where = generator.device if generator is not None else mean.device
    z = torch.stack([
        torch.randn((mean.shape[-1], n_samples), dtype=mean.dtype, device=where, generator=generator)
        for _ in range(mean.shape[0])
    ]).to(mean.device)
    return mean.unsqueeze(-1) + root @ z


# KernelMaths's methods call this module's functions, which take the kernel first
StationaryKernel._maths = sys.modules[__name__]
