"""The stationary kernel's fast path: ``outputscale * Matern/RBF(ARD) + noise``.

The kernel of the default model and of scikit-learn's ``ConstantKernel *
RBF|Matern + WhiteKernel``. It supplies the covariance protocol of
:mod:`.gp` (training covariance, query covariances, the likelihood's gradient),
written for speed: the training inputs' squared differences are built once per
fit, every member's scaled distances are one matrix product, and the
likelihood's factor and inverse are computed in place in the covariance's
buffer (:mod:`.lapack`). Any other kernel takes the general path of
:mod:`.composite`.

Shape glossary: ``b`` members, ``n`` training points, ``p`` query points,
``d`` features, ``P`` hyperparameters per member.
"""

import math
from dataclasses import dataclass

import torch

from .gp import (LOG_2PI, Footprint, add_observed_diagonal_, cholesky_inverse, mask_, member_blocks,
                 neg_log_likelihood)
from .kernels import (
    SUPPORTED_NU,
    augmented_differences,
    covariance_coefficients,
    signal_covariance,
    signal_from_coefficients,
    squared_differences,
    weighted_sums,
)
from . import lapack
from .threads import run_blocks

__all__ = [
    "StationaryKernel",
    "TrainingDifferences",
    "training_differences",
    "training_covariance",
    "neg_log_marginal_likelihood",
]


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

    # the acquisition model (.acquisition.model) reads nu, length scales and outputscale
    stationary = True

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

    # ------------------------------------------- the covariance protocol of .gp
    def training_data(self, X):
        """The training data of the likelihood: :func:`training_differences` of ``X`` (n, d)."""
        return training_differences(X)

    def training_covariance(self, theta, data, maskf, alpha):
        """Tensor of shape (b, n, n): :func:`training_covariance` from ``training_data``."""
        return training_covariance(self, theta, data, maskf, alpha)

    def block_side(self, n):
        """A member's likelihood holds about one ``n x n`` matrix at a time."""
        return n

    def nlml(self, theta, data, y, maskf, alpha, eval_gradient=True):
        """:func:`neg_log_marginal_likelihood` of every member and its gradient."""
        return neg_log_marginal_likelihood(self, theta, data, y, maskf, alpha, eval_gradient)

    def footprint(self, n, d, device, dtype):
        """:class:`~.gp.Footprint` of a fit of ``n`` points on ``d`` features (``n x n`` matrices).

        While the augmented squared differences are held whole
        (:class:`TrainingDifferences`): the data are those (``d + 1``) and, on
        the in-place LAPACK path, the gradient's mask (1); building them holds
        ``D2``, a row of ones and the augmented copy (``2 d + 2``). On the
        CPU a member alone in its block holds its covariance in a product
        padded to four rows (4, :func:`~.kernels.row_product`), ``K^-1 - a
        a^T`` (1) and that padded to four rows for the gradient's sums (3
        zero rows and the copy, 7): 12 for the RBF kernel, one more for a
        Matern kernel's ``sigma^2 G``, one more again without in-place
        LAPACK; Matern 0.5 builds its covariance anew and frees the padded
        product first (10). Its factorisation holds the padded covariance and
        torch's factor (5), more for a Matern kernel's temporaries.

        Where the differences are built in blocks of rows, no data are held;
        a member's evaluation holds its covariance, factorised and inverted
        in place (1), and the temporaries of a block of rows (at most 1,
        :func:`row_block`); without in-place LAPACK also torch's factor and
        the inverse (2 more). A factorisation holds the covariance, the
        temporaries of a block, then torch's factor and its copy into the
        factors (3).

        These counts agree with the peak resident memory of fits
        (doc/scale.rst). On a GPU (no padding, factor and inverse out of
        place) they are counted from the code, not measured, and given as a
        lower bound.
        """
        if not held_whole(n, d):
            each = 2 if device.type == "cpu" and lapack.usable(device, dtype) else 4
            return Footprint(0, 0, each, each, 3, 3, exact=device.type == "cpu")
        data, build = d + 1 + int(lapack.usable(device, dtype)), 2 * d + 2
        if device.type != "cpu":
            # covariance, factor, triangular inverse, inverse (and sigma^2 G); covariance and factor
            each = 4 + int(self.nu != math.inf)
            return Footprint(data, build, each, each, 2, 2, exact=False)
        evaluation, per_member, factor, factor_per_member = _CPU_MATRICES[self.nu]
        copies = int(not lapack.usable(device, dtype))  # torch's factor is a copy
        return Footprint(data, build, evaluation + copies, per_member + copies, factor,
                         factor_per_member)

    def cross_covariance(self, theta, X_query, X_train):
        """Tensor of shape (b, p, n): the signal covariance of query and training points."""
        D2aug = augmented_differences(squared_differences(X_query, X_train))
        return signal_covariance(self, theta, D2aug, X_query.shape[0], X_train.shape[0])[0]

    def prior_variance(self, theta, X_query, observation_noise=True):
        """Tensor of shape (b, 1): ``sigma^2`` (plus the noise variance), the same at every point."""
        s = self.outputscale(theta)
        noise = self.noise(theta) if observation_noise else torch.zeros_like(s)
        return (s + noise).unsqueeze(-1)

    def prior_covariance(self, theta, X_query, observation_noise=True):
        """Tensor of shape (b, p, p): the prior covariance of the query points."""
        p = X_query.shape[0]
        D2aug = augmented_differences(squared_differences(X_query, X_query))
        cov, _ = signal_covariance(self, theta, D2aug, p, p)
        if observation_noise:
            cov.diagonal(dim1=-2, dim2=-1).add_(self.noise(theta).unsqueeze(-1))
        return cov



# n x n matrices of a fit on the CPU by nu: one member's evaluation alone in its
# block, each further member of a block, one member's factorisation alone in its
# block, each further member (StationaryKernel.footprint)
_CPU_MATRICES = {math.inf: (12, 2, 5, 2), 0.5: (10, 5, 7, 5), 1.5: (13, 4, 5, 3),
                 2.5: (13, 4, 6, 4)}


# The training inputs' augmented squared differences are held whole while they
# take at most this many numbers (64 MiB in float64); beyond it they are built
# anew in blocks of rows at every use, so that a fit holds no (d + 1) n^2
# numbers and no product padded to four n x n rows (doc/scale.rst, "Memory of
# an exact fit"; doc/benchmarks.rst, "Constants chosen by measurement").
_FULL_MAX_NUMBERS = 2**23
# The most numbers per matrix of a block of rows (r x n of them; 2 MiB in float64).
_ROW_BLOCK_NUMBERS = 2**18
# A block's temporaries take at most 1 / _ROW_SHARE of an n x n matrix:
# a lone evaluation then peaks at 1.6 matrices, not 2.4, at the same speed (doc/benchmarks.rst)
_ROW_SHARE = 4


def held_whole(n, d):
    """bool: whether :class:`TrainingDifferences` of ``n`` points on ``d`` features hold the
    augmented squared differences whole (else they are built in blocks of rows)."""
    return (d + 1) * n * n <= _FULL_MAX_NUMBERS


def row_block(n, d):
    """int: rows per block of :meth:`TrainingDifferences.row_blocks`.

    A block's temporaries (its squared differences, their augmented copy and
    a few ``r x n`` matrices per member, about ``(2 d + 8) r n`` numbers) stay
    within a quarter of an ``n x n`` matrix (``_ROW_SHARE``) and 2 MiB per
    matrix. Depends on ``n`` and
    ``d`` only, so a member's sums add in the same order in any batch.
    """
    return max(1, min(n // (_ROW_SHARE * (2 * d + 8)), _ROW_BLOCK_NUMBERS // n))


class TrainingDifferences:
    """The squared differences of the training inputs, held whole or built in row blocks.

    Parameters
    ----------
    X : Tensor of shape (n, d)
        Training inputs.

    Attributes
    ----------
    X : Tensor of shape (n, d)
    n : int
        Training points (``X.shape[0]``).
    full : Tensor of shape (d + 1, n * n) or None
        :func:`augmented_differences` of the training inputs while they take
        at most ``_FULL_MAX_NUMBERS`` numbers; None beyond (then
        :meth:`row_blocks` builds them in blocks of rows at every use).
    twice_upper : Tensor of shape (n, n) or None
        2 above the diagonal and 0 elsewhere: the mask of the gradient's sums
        when a matrix holds ``K^-1`` only above its diagonal (the in-place
        LAPACK path, :mod:`.lapack`); None where that path is not used or the
        differences are built in blocks.
    """

    __slots__ = ("X", "full", "twice_upper")

    def __init__(self, X):
        n, d = X.shape
        self.X = X
        self.full = self.twice_upper = None
        if held_whole(n, d):
            self.full = augmented_differences(squared_differences(X, X))
            if lapack.usable(X.device, X.dtype):
                self.twice_upper = torch.ones(n, n, dtype=X.dtype, device=X.device).triu_(1).mul_(2.0)

    @property
    def n(self):
        return self.X.shape[0]

    @property
    def blocked(self):
        """Whether the differences are built in blocks of rows."""
        return self.full is None

    def row_blocks(self):
        """The augmented squared differences in blocks of rows.

        Yields
        ------
        rows : slice
            Rows ``i`` of the block (the same for every batch: a member's
            sums add in the same order alone and in any batch).
        D2aug : Tensor of shape (d + 1, r * n)
            :func:`augmented_differences` of ``X[rows]`` and ``X``, in a
            buffer that the next block overwrites.
        """
        n, d = self.X.shape
        r = row_block(n, d)
        Xt = self.X.mT.contiguous()  # (d, n): the differences of contiguous rows are fast
        buffer = torch.empty(d + 1, r, n, dtype=Xt.dtype, device=Xt.device)
        buffer[d] = 1.0
        for start in range(0, n, r):
            stop = min(start + r, n)
            block = buffer[:, :stop - start]
            torch.sub(Xt[:, start:stop, None], Xt[:, None, :], out=block[:d]).square_()
            yield slice(start, stop), block.reshape(d + 1, (stop - start) * n)


def training_differences(X):
    """:class:`TrainingDifferences` of training inputs ``X`` (Tensor of shape (n, d))."""
    return TrainingDifferences(X)


def _training(data):
    """``data`` as :class:`TrainingDifferences`; unchanged if it already is.

    The likelihood functions below accept the training inputs of shape (n, d)
    or :class:`TrainingDifferences`: a fit passes the latter, built once.
    """
    if isinstance(data, TrainingDifferences):
        return data
    return TrainingDifferences(data)


def _signal(kernel, coef, s, data, b):
    """Tensor of shape (b, n, n): every member's signal covariance ``sigma^2 rho``.

    Parameters
    ----------
    kernel : StationaryKernel
    coef, s : from :func:`covariance_coefficients`
    data : TrainingDifferences
    b : int
        Members.
    """
    n = data.n
    if not data.blocked:
        return signal_from_coefficients(kernel, coef, s, data.full, n, n)[0]
    K = torch.empty(b, n, n, dtype=coef.dtype, device=coef.device)
    for rows, D2aug in data.row_blocks():
        K[:, rows] = signal_from_coefficients(kernel, coef, s, D2aug, rows.stop - rows.start, n)[0]
    return K


def training_covariance(kernel, theta, data, maskf, alpha):
    """Masked training covariance of every member.

    Parameters
    ----------
    kernel : StationaryKernel
    theta : Tensor of shape (b, P)
        Log hyperparameters.
    data : TrainingDifferences or Tensor of shape (n, d)
        :func:`training_differences` of the training inputs, or the inputs.
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
    data = _training(data)
    coef, s = covariance_coefficients(kernel, theta, data.X.shape[1])
    K = _signal(kernel, coef, s, data, theta.shape[0])
    mask_(K, maskf)
    add_observed_diagonal_(K, maskf, kernel.noise(theta).unsqueeze(-1) + alpha)
    return K


def neg_log_marginal_likelihood(kernel, theta, data, y, maskf, alpha, eval_gradient=True):
    """Negative log marginal likelihood of every member and its gradient.

    Parameters
    ----------
    kernel : StationaryKernel
    theta : Tensor of shape (b, P)
        Log hyperparameters.
    data : TrainingDifferences or Tensor of shape (n, d)
        :func:`training_differences` of the training inputs (fastest when
        reused), or the inputs.
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
    data = _training(data)
    # Everything per member that is not an n x n matrix is computed here, once
    # for all blocks: a lone member's evaluation is dominated by the fixed cost
    # of each small tensor operation, not by its arithmetic (doc/design.rst).
    observed = bool(maskf.bool().all())
    coef, s = covariance_coefficients(kernel, theta, data.X.shape[1])
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
    direct = lapack.usable(theta.device, theta.dtype) and (data.blocked or data.twice_upper is not None)
    members = _Members(coef, s, diag, y, mask, None if observed else const, scale)
    inputs = _Inputs(data, direct, n, const if observed else None)
    loss = torch.empty(b, dtype=theta.dtype, device=theta.device)
    grad = torch.empty_like(theta) if eval_gradient else None

    def block(blk):
        if blk == slice(0, b):  # one block: no slicing
            _nlml_block(kernel, inputs, members, loss, grad)
            return
        _nlml_block(kernel, inputs, members.pick(lambda t: t[blk]), loss[blk],
                    None if grad is None else grad[blk])

    run_blocks(block, member_blocks(b, n, theta.device))
    return loss, grad


@dataclass(frozen=True)
class _Inputs:
    """What every block of :func:`neg_log_marginal_likelihood` shares.

    ``data`` the :class:`TrainingDifferences`; ``direct`` whether the
    in-place LAPACK path is taken; ``const`` the shared ``n log(2 pi) / 2`` when every point is
    observed, else None (then per member).
    """

    data: TrainingDifferences
    direct: bool
    n: int
    const: object


@dataclass(frozen=True)
class _Members:
    """Per-member tensors of :func:`neg_log_marginal_likelihood`, first axis ``b``.

    ``coef, s`` from :func:`covariance_coefficients`; ``diag`` added to the
    diagonal; ``maskf`` None when every point is observed; ``const``
    ``n_observed log(2 pi) / 2`` per member (None when shared); ``scale`` the
    factors of the gradient's entries (None: no gradient).
    """

    coef: torch.Tensor
    s: object
    diag: torch.Tensor
    y: torch.Tensor
    maskf: object
    const: object
    scale: object

    def pick(self, select):
        """The members that ``select`` (a function of a tensor) keeps; None stays None."""
        return _Members(*(None if v is None else select(v) for v in
                          (self.coef, self.s, self.diag, self.y, self.maskf, self.const, self.scale)))


def _nlml_block(kernel, inputs, members, loss_out, grad_out):
    """One block of :func:`neg_log_marginal_likelihood`, written into the outputs.

    On the in-place LAPACK path (``inputs.direct``) the covariance buffer is
    factorised and inverted in place (:mod:`.lapack`).
    """
    data, direct, n = inputs.data, inputs.direct, inputs.n
    coef, s, diag, y, maskf = members.coef, members.s, members.diag, members.y, members.maskf
    const = inputs.const if members.const is None else members.const
    b = coef.shape[0]
    if data.blocked:
        Kf, sG = _signal(kernel, coef, s, data, b), None
    else:
        Kf, sG = signal_from_coefficients(kernel, coef, s, data.full, n, n)
    if maskf is not None:
        Kf.mul_(maskf.unsqueeze(-1)).mul_(maskf.unsqueeze(-2))
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
    nll, a = neg_log_likelihood(U.mT, y, const)
    if ok is None:
        loss_out.copy_(nll)
    else:
        loss_out.copy_(nll.masked_fill_(~ok, math.inf))
    if grad_out is None:
        return

    # d nlml / d theta_k = 0.5 tr(V dK/dtheta_k), V = K^-1 - a a^T  (R&W eq. 5.9).
    # At missing points V is 1 on the diagonal and 0 elsewhere, while Kf and
    # the squared differences vanish there: they add nothing.
    if direct:
        lapack.potri_upper_(U)  # above the diagonal: K^-1; below it, still Kf
        Kinv = U
    else:
        Kinv = cholesky_inverse(U)
    if data.blocked:
        signal, sums, v_diag = _blocked_gradient(kernel, coef, s, data, Kinv, a, kf_diag)
    else:
        signal, sums, v_diag = _full_gradient(data, Kinv, a, Kf if not direct else None, sG,
                                              kf_diag, direct)
    ls = sums[:, :-1] if kernel.n_lengthscales > 1 else sums[:, :-1].sum(-1, keepdim=True)
    parts = ([signal] if kernel.has_outputscale else []) + [ls]
    if kernel.has_noise:
        parts.append((v_diag if maskf is None else v_diag * maskf).sum(-1, keepdim=True))
    torch.mul(torch.cat(parts, dim=-1), members.scale, out=grad_out)
    if ok is not None:
        grad_out.masked_fill_(~ok[:, None], 0.0)


def _full_gradient(data, Kinv, a, Kf, sG, kf_diag, direct):
    """The gradient's sums from the whole augmented differences (:func:`_nlml_block`).

    Parameters
    ----------
    data : TrainingDifferences
        Held whole.
    Kinv : Tensor of shape (b, n, n)
        ``K^-1``; on the in-place LAPACK path (``direct``) above the diagonal
        only, with ``Kf`` below it.
    a : Tensor of shape (b, n)
        ``K^-1 y``.
    Kf : Tensor of shape (b, n, n) or None
        The masked signal covariance off the in-place path.
    sG : Tensor of shape (b, n, n) or None
        ``sigma^2 G`` of a Matern kernel (None for the RBF kernel, where it is ``Kf``).
    kf_diag : Tensor of shape (b, n)
    direct : bool

    Returns
    -------
    signal : Tensor of shape (b, 1)
        ``sum(V * Kf)``.
    sums : Tensor of shape (b, d + 1)
        ``sum(V * sigma^2 G * D2_j)`` for each feature, then ``sum(V * sigma^2 G)``.
    v_diag : Tensor of shape (b, n)
        The diagonal of ``V``.
    """
    D2aug = data.full
    b, n = a.shape
    flat = (b, n * n)
    if direct:
        twice_upper, U = data.twice_upper, Kinv
        v_diag = U.diagonal(dim1=-2, dim2=-1) - a.square()
        # a sum over all entries is twice the sum above the diagonal (the mask
        # ``twice_upper`` also drops what lies below) plus the diagonal's; Kf
        # above the diagonal is read from below it (U.mT)
        V = torch.addcmul(U, a.unsqueeze(-1), a.unsqueeze(-2), value=-1.0)
        on_diag = torch.linalg.vecdot(v_diag, kf_diag).unsqueeze(-1)
        if sG is None:
            sums = weighted_sums(V.mul_(U.mT).mul_(twice_upper).view(flat), D2aug)
            return sums[:, -1:] + on_diag, sums, v_diag
        signal = torch.mul(V, U.mT).mul_(twice_upper).view(flat).sum(-1, keepdim=True) + on_diag
        return signal, weighted_sums(V.mul_(sG).mul_(twice_upper).view(flat), D2aug), v_diag
    V = Kinv.addcmul_(a.unsqueeze(-1), a.unsqueeze(-2), value=-1.0)
    v_diag = V.diagonal(dim1=-2, dim2=-1).clone()
    if sG is None:
        # RBF: sigma^2 G = Kf. sums[b, j] = sum_ik (V Kf)[b, i, k] D2aug[j, i k]; the
        # last row of ones gives sum(V * Kf)
        sums = weighted_sums(V.mul_(Kf).view(flat), D2aug)
        return sums[:, -1:], sums, v_diag
    signal = torch.linalg.vecdot(V.view(flat), Kf.view(flat)).unsqueeze(-1)
    return signal, weighted_sums(V.mul_(sG).view(flat), D2aug), v_diag


def _blocked_gradient(kernel, coef, s, data, Kinv, a, kf_diag):
    """The gradient's sums of :func:`_full_gradient`, the differences built in row blocks.

    Reads only the entries of ``Kinv`` on and above the diagonal (where the
    in-place LAPACK path leaves ``K^-1``) and builds the signal covariance
    and ``sigma^2 G`` of each block anew, so nothing beyond ``Kinv`` is
    ``n x n``: a sum over all entries of the symmetric ``V * Kf`` is twice
    the sum above the diagonal plus the diagonal's. Off the diagonal ``V``
    is 0 at missing points, so the signal needs no mask there.
    """
    b, n = a.shape
    v_diag = Kinv.diagonal(dim1=-2, dim2=-1) - a.square()
    signal = torch.linalg.vecdot(v_diag, kf_diag).unsqueeze(-1)
    sums = None
    for rows, D2aug in data.row_blocks():
        r = rows.stop - rows.start
        Kf, sG = signal_from_coefficients(kernel, coef, s, D2aug, r, n)  # (b, r, n)
        V = torch.addcmul(Kinv[:, rows], a[:, rows].unsqueeze(-1), a.unsqueeze(-2), value=-1.0)
        V.mul_(torch.ones(r, n, dtype=V.dtype, device=V.device).triu_(rows.start + 1).mul_(2.0))
        if sG is None:  # RBF: sigma^2 G = Kf, and the row of ones sums V * Kf
            part = weighted_sums(V.mul_(Kf).view(b, r * n), D2aug)
            signal = signal + part[:, -1:]
        else:
            signal = signal + torch.linalg.vecdot(V.view(b, r * n), Kf.view(b, r * n)).unsqueeze(-1)
            part = weighted_sums(V.mul_(sG).view(b, r * n), D2aug)
        sums = part if sums is None else sums.add_(part)
    return signal, sums, v_diag
