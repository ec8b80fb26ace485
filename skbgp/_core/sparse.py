r"""The sparse kind: the collapsed variational bound of inducing points (SGPR/VFE).

Every member has its own ``m`` inducing inputs ``Z`` (rows of its training
inputs, chosen by :func:`greedy_inducing`) and the stationary kernel of
:mod:`.stationary`. Its training data enter only through the statistics

.. math::

    S = K_{mn} W K_{nm}, \qquad r = K_{mn} W y, \qquad W = \mathrm{diag}(w),
    \; w_i = [i \text{ observed}] / \lambda_i, \; \lambda_i = \sigma_n^2 + \alpha_i,

accumulated over blocks of rows, so that no member ever holds more than a
block of ``K_{nm}``: memory is ``O(m^2 + m \cdot \text{block})`` per member,
never ``O(n^2)`` or even ``O(n m)``. From them, with ``K_{mm} = L L^T`` and
``B = I + L^{-1} S L^{-T} = L_B L_B^T``, Titsias' (2009) collapsed bound on
the log marginal likelihood, written for a diagonal noise ``Lambda``, is

.. math::

    F = -\tfrac{n_o}{2}\log 2\pi - \tfrac12 \sum_o \log\lambda_i - \log|L_B|
        - \tfrac12 y^T W y + \tfrac12 |c|^2
        - \tfrac12 \sigma^2 \textstyle\sum_i w_i + \tfrac12 \operatorname{tr}(B - I),
    \qquad c = L_B^{-1} L^{-1} r,

where :math:`\sigma^2` is the outputscale (the prior variance at every point)
and :math:`n_o` the number of observed rows. ``F`` never exceeds the exact
log marginal likelihood, and equals it when ``Z`` holds every training input
(up to the jitter on ``K_{mm}``). Its gradient comes in two passes over the
row blocks: the statistics without a graph, then ``dF/dS`` and ``dF/dr``
pushed back through each block's covariance (:func:`sparse_nlml`), so the
gradient costs two block products per row instead of autograd's four.

The posterior from the same factors is :func:`.gp.posterior` with the
inducing points as the training inputs and ``L_B`` as a second factor
(:class:`InducingKernel` supplies the covariances).

Shape glossary: ``b`` members, ``n`` training points, ``m`` inducing points,
``p`` query points, ``d`` features, ``P`` hyperparameters per member.
"""

import math
from dataclasses import dataclass

import torch

from .gp import LOG_2PI, member_rows
from .kernels import _EXP_FLOOR, correlation
from .stationary import StationaryKernel
from .threads import map_blocks

__all__ = [
    "InducingKernel",
    "SparseFactor",
    "greedy_inducing",
    "sparse_factorize",
    "sparse_nlml",
    "row_block",
]

# Numbers of one member block's (members x rows x inducing points) covariance:
# 2**22 (32 MiB in float64) keeps a block's few copies well inside the memory
# budget while its products are large enough to run at full speed.
_BLOCK_NUMBERS = 2**22


def row_block(m):
    """Training rows per block so that a member of ``m`` inducing points holds ``_BLOCK_NUMBERS``."""
    return max(256, _BLOCK_NUMBERS // max(1, m))


@dataclass(frozen=True)
class InducingKernel:
    """A :class:`~.stationary.StationaryKernel` between data and every member's inducing points.

    The sparse kind's side of the covariance protocol of :mod:`.gp`: the
    query covariances of :func:`.gp.posterior` (``cross_covariance``,
    ``prior_variance``, ``prior_covariance``) with the per-member inducing
    inputs in place of the shared training inputs, and the blocks of the
    bound (:meth:`inducing_covariance`, :meth:`cross`).

    Distances are ``|a|^2 + |z|^2 - 2 a.z`` of the scaled inputs (one matrix
    product per member; the exact kinds' per-dimension differences would cost
    ``d`` times the memory). The inputs are centred first (the kernel is
    stationary), which keeps the cancellation in that form at the rounding
    of the distances themselves.

    Parameters
    ----------
    base : StationaryKernel
    jitter : float
        Added to the diagonal of ``K_mm``, relative to the outputscale: a
        fixed jitter keeps the bound a smooth function of the
        hyperparameters (and still a lower bound).
    center : Tensor of shape (d,) or None
        Subtracted from every input (the training inputs' mean).
    """

    base: StationaryKernel
    jitter: float = 1e-6
    center: torch.Tensor = None

    stationary = False  # not the acquisition model's fast kernel

    def _scaled(self, theta, X):
        """Tensor of shape (b, k, d): ``(X - center) / lengthscale`` of every member."""
        if self.center is not None:
            X = X - self.center
        ls = self.base.lengthscale(theta)  # (b, L)
        if X.dim() == 2:
            return X.unsqueeze(0) / ls.unsqueeze(-2)
        return X / ls.unsqueeze(-2)

    def cross(self, theta, A, Z):
        """Tensor of shape (b, k, m): the signal covariance of points ``A`` and inducing points ``Z``.

        Parameters
        ----------
        theta : Tensor of shape (b, P)
        A : Tensor of shape (k, d) (shared) or (b, k, d)
        Z : Tensor of shape (b, m, d)
        """
        a, z = self._scaled(theta, A), self._scaled(theta, Z)
        r2 = torch.baddbmm(a.square().sum(-1, keepdim=True) + z.square().sum(-1).unsqueeze(-2),
                           a, z.mT, alpha=-2.0).clamp_min(0.0)
        rho, _ = correlation(self.base.nu, r2)
        return self.base.outputscale(theta)[:, None, None] * rho

    def inducing_covariance(self, theta, Z, zmask):
        """Tensor of shape (b, m, m): ``K_mm`` plus jitter; identity rows at unused inducing points."""
        K = self.cross(theta, Z, Z)
        s = self.base.outputscale(theta)
        eye = torch.eye(Z.shape[-2], dtype=Z.dtype, device=Z.device)
        # the diagonal exactly (no cancellation), the jitter on it, unused points identity
        K = K * (1.0 - eye) * zmask.unsqueeze(-1) * zmask.unsqueeze(-2)
        diag = (s * (1.0 + self.jitter))[:, None] * zmask + (1.0 - zmask)
        return K + torch.diag_embed(diag)

    # ------------------------------------------- the covariance protocol of .gp
    def cross_covariance(self, theta, X_query, Z):
        """Tensor of shape (b, p, m): signal covariance of query points and inducing points."""
        return self.cross(theta, X_query, Z)

    def prior_variance(self, theta, X_query, observation_noise=True):
        return self.base.prior_variance(theta, X_query, observation_noise)

    def prior_covariance(self, theta, X_query, observation_noise=True):
        return self.base.prior_covariance(theta, X_query, observation_noise)


def _weights(kernel, theta, maskf, alpha):
    """Tensor of shape (b, n): ``maskf / (noise + alpha)``, the rows' precisions (0 where missing)."""
    lam = kernel.base.noise(theta).unsqueeze(-1) + alpha
    return maskf / torch.where(maskf > 0, lam, 1.0)


# Exponents below this give K = 0 (missing rows, padding) or are floored there
# (kernels._EXP_FLOOR: subnormal numbers run on the CPU's slow paths).
_OFF = -1e4


def _weighted_block(kernel, theta, X, Z, zmask, sw):
    """One block of ``K~ = diag(sqrt(w)) K_nm`` of every member, in a few in-place passes.

    For the RBF kernel ``log K~_ik = log s + log sw_i - |a_i|^2/2 - |z_k|^2/2 +
    a_i . z_k`` is one matrix product of augmented inputs, then one ``exp``;
    Matern kernels get ``r^2`` the same way and their closed forms.

    Parameters
    ----------
    kernel : InducingKernel
    theta : Tensor of shape (b, P)
    X : Tensor of shape (k, d)
    Z : Tensor of shape (b, m, d)
    zmask : Tensor of shape (b, m)
    sw : Tensor of shape (b, k)
        ``sqrt(w)``: 0 at missing rows.

    Returns
    -------
    Kw : Tensor of shape (b, k, m)
        ``sqrt(w_i) k(x_i, z_k)``, 0 (or below 1e-150 of the outputscale) at
        missing rows and padding.
    sG : Tensor of shape (b, k, m) or None
        ``sqrt(w_i) s G(r_ik)`` (:func:`.kernels.signal_covariance`), the
        length scales' derivative factor; ``None`` for the RBF kernel, where
        it is ``Kw``.
    a, z : Tensor of shape (b, k, d) and (b, m, d)
        The scaled, centred inputs.
    """
    base = kernel.base
    a, z = kernel._scaled(theta, X), kernel._scaled(theta, Z)
    ones_a = a.new_ones(a.shape[:-1] + (1,))
    ones_z = z.new_ones(z.shape[:-1] + (1,))
    log_sw = torch.where(sw > 0, sw, 1.0).log().masked_fill_(sw <= 0, _OFF).unsqueeze(-1)
    z_off = torch.where(zmask > 0, 0.0, _OFF).unsqueeze(-1)
    if base.nu == math.inf:
        log_s = base.outputscale(theta).log()[:, None, None]
        row = log_s + log_sw - 0.5 * a.square().sum(-1, keepdim=True)
        col = z_off - 0.5 * z.square().sum(-1, keepdim=True)
        Kw = torch.bmm(torch.cat([a, ones_a, row], -1), torch.cat([z, col, ones_z], -1).mT)
        return Kw.clamp_min_(-_EXP_FLOOR).exp_(), None, a, z
    r2 = torch.bmm(torch.cat([-2.0 * a, ones_a, a.square().sum(-1, keepdim=True)], -1),
                   torch.cat([z, z.square().sum(-1, keepdim=True), ones_z], -1).mT)
    # below the rounding of |a|^2 + |z|^2 - 2 a.z a distance is 0 (coincident points,
    # where nu = 1/2's G = e^-r / r would blow the rounding up)
    noise_floor = 64 * torch.finfo(r2.dtype).eps * (
        a.square().sum(-1).amax(-1) + z.square().sum(-1).amax(-1))[:, None, None]
    r2.masked_fill_(r2 <= noise_floor, 0.0)
    rho, slope = correlation(base.nu, r2, slope=True)
    scale = base.outputscale(theta)[:, None, None] * (log_sw.exp() * (z_off.mT == 0))
    # G = -2 drho/dr^2 (for nu = 1/2 it is infinite at r = 0, where the kernel has no
    # derivative; autograd through correlation gives 0 there too)
    return rho.mul_(scale), slope.mul_(-2.0 * scale), a, z


class _Members:
    """The members of one bound evaluation, cut into units of (member, block of rows).

    Every unit is computed alone (one member, one block of ``row_block(m)``
    rows, a size fixed by ``m``), and a member's sums over its blocks
    are taken in the blocks' order: so a member's numbers do not depend on
    the other members, nor on which thread computed which unit.
    """

    def __init__(self, kernel, theta, Z, zmask, X, y, maskf, alpha):
        self.kernel, self.theta, self.Z, self.zmask, self.X = kernel, theta, Z, zmask, X
        self.y, self.maskf, self.alpha = y, maskf, alpha
        with torch.no_grad():
            self.sw = _weights(kernel, theta, maskf, alpha).sqrt()
        self.b, self.m = Z.shape[0], Z.shape[1]
        rows = row_block(self.m)
        self.blocks = [slice(i, i + rows) for i in range(0, X.shape[0], rows)]
        self.units = [(i, blk) for i in range(self.b) for blk in self.blocks]

    def member(self, i):
        """theta, Z, zmask, y, maskf, alpha of member ``i`` (batch of one)."""
        one = slice(i, i + 1)
        return (self.theta[one], self.Z[one], self.zmask[one], self.y[one], self.maskf[one],
                member_rows(self.alpha, one))

    def per_member(self, parts):
        """Every member's sum of its units' results (tuples of tensors), in the blocks' order."""
        k = len(self.blocks)
        sums = []
        for i in range(self.b):
            mine = parts[i * k:(i + 1) * k]
            total = list(mine[0])
            for part in mine[1:]:
                total = [a + p for a, p in zip(total, part)]
            sums.append(total)
        return [torch.cat(column) for column in zip(*sums)]

    def statistics(self):
        """``S = K~^T K~`` (b, m, m) and ``r = K~^T (sw y)`` (b, m)."""
        def unit(u):
            i, blk = u
            theta, Z, zmask, y, _, _ = self.member(i)
            sw = self.sw[i:i + 1, blk]
            with torch.no_grad():
                Kw = _weighted_block(self.kernel, theta, self.X[blk], Z, zmask, sw)[0]
                return (torch.bmm(Kw.mT, Kw),
                        torch.bmm((sw * y[:, blk]).unsqueeze(-2), Kw).squeeze(-2))

        return self.per_member(map_blocks(unit, self.units))

    def backward(self, dS, dr):
        """``d/dtheta`` of ``<dS, S(theta)> + <dr, r(theta)>`` (b, P), written out.

        With ``y~ = sw y``: ``dF/dK~ = 2 K~ dS + y~ dr^T`` and ``dF/dy~ = K~ dr``.
        ``K~`` is proportional to the outputscale; its log length-scale
        derivative is ``sG~ (a_ij - z_kj)^2`` (summed with ``H = dF/dK~ * sG~``
        as three products: no ``(k, m, d)`` tensor); ``sqrt(w)`` and ``y~``
        move with the noise as ``-sigma_n^2 w / 2`` times themselves.
        """
        base = self.kernel.base
        ls = base.lengthscale_slice
        dS = dS + dS.mT  # 2 dS, symmetric

        def unit(u):
            i, blk = u
            theta, Z, zmask, y, _, _ = self.member(i)
            swb = self.sw[i:i + 1, blk]
            grad = torch.zeros_like(theta)
            with torch.no_grad():
                yt = swb * y[:, blk]
                Kw, sG, a, z = _weighted_block(self.kernel, theta, self.X[blk], Z, zmask, swb)
                dK = torch.bmm(Kw, dS[i:i + 1])  # (1, k, m): 2 K~ dS
                dK.baddbmm_(yt.unsqueeze(-1), dr[i:i + 1].unsqueeze(-2))
                Kdr = torch.bmm(Kw, dr[i:i + 1].unsqueeze(-1)).squeeze(-1)  # dF/dy~
                HK = dK * Kw
                h = HK.sum(-1)  # (1, k)
                if base.has_outputscale:
                    grad[:, 0] += h.sum(-1)
                Hl = HK if sG is None else dK.mul_(sG)
                hl, gl = Hl.sum(-1), Hl.sum(-2)
                per_dim = ((a.square() * hl.unsqueeze(-1)).sum(-2)
                           - 2.0 * (torch.bmm(Hl.mT, a) * z).sum(-2)
                           + (z.square() * gl.unsqueeze(-1)).sum(-2))  # (1, d)
                grad[:, ls] += per_dim if base.n_lengthscales > 1 else per_dim.sum(-1, keepdim=True)
                if base.has_noise:
                    grad[:, -1] -= 0.5 * base.noise(theta) * (swb.square() * (h + yt * Kdr)).sum(-1)
            return (grad,)

        return self.per_member(map_blocks(unit, self.units))[0]


def _bound_terms(kernel, theta, Z, zmask, S, r, y, w, maskf, alpha, b_jitter=0.0):
    """The bound ``F`` (b,) from the statistics, and ``K_mm``'s and ``B``'s factors.

    Differentiable in ``theta``, ``S`` and ``r``; ``w`` must be the weights
    at ``theta`` (through the noise). Members whose ``K_mm`` or ``B`` is not
    positive definite get ``F = -inf``.
    """
    Kmm = kernel.inducing_covariance(theta, Z, zmask)
    L, info = torch.linalg.cholesky_ex(Kmm)
    A = torch.linalg.solve_triangular(L, S, upper=False)  # L^-1 S
    B = torch.linalg.solve_triangular(L, A.mT, upper=False)  # L^-1 S L^-T
    B = 0.5 * (B + B.mT)
    eye = torch.eye(B.shape[-1], dtype=B.dtype, device=B.device)
    if b_jitter:
        B = B + b_jitter * (1.0 + B.diagonal(dim1=-2, dim2=-1).mean(-1))[:, None, None] * eye
    LB, infoB = torch.linalg.cholesky_ex(B + eye)
    c = torch.linalg.solve_triangular(
        LB, torch.linalg.solve_triangular(L, r.unsqueeze(-1), upper=False), upper=False).squeeze(-1)
    lam = kernel.base.noise(theta).unsqueeze(-1) + alpha
    n_obs = maskf.sum(-1)
    log_lam = torch.where(maskf > 0, lam, 1.0).log().mul(maskf).sum(-1)
    s = kernel.base.outputscale(theta)
    F = (-0.5 * n_obs * LOG_2PI - 0.5 * log_lam
         - LB.diagonal(dim1=-2, dim2=-1).log().sum(-1)
         - 0.5 * (w * y.square()).sum(-1) + 0.5 * c.square().sum(-1)
         - 0.5 * s * w.sum(-1) + 0.5 * B.diagonal(dim1=-2, dim2=-1).sum(-1))
    ok = (info == 0) & (infoB == 0)
    return torch.where(ok, F, -math.inf), L, LB, c, ok


def sparse_nlml(kernel, theta, Z, zmask, X, y, maskf, alpha, eval_gradient=True):
    """The negative collapsed bound of every member and its gradient (module docstring).

    Its units of work (a member and a block of rows) go through
    :func:`.threads.map_blocks`: onto skbgp's threads inside
    :func:`.threads.on_member_threads`, in turn elsewhere; the result is the same.

    Parameters
    ----------
    kernel : InducingKernel
    theta : Tensor of shape (b, P)
    Z : Tensor of shape (b, m, d)
    zmask : Tensor of shape (b, m)
        1.0 for an inducing point in use, 0.0 for padding.
    X : Tensor of shape (n, d)
    y : Tensor of shape (b, n)
        Targets, 0 where missing.
    maskf : Tensor of shape (b, n)
    alpha : Tensor of shape (n,), () or (b, n)
        Added to the noise variance of every observed row.
    eval_gradient : bool
    Returns
    -------
    loss : Tensor of shape (b,)
        ``-F``; ``inf`` where ``K_mm`` or ``B`` is not positive definite.
    grad : Tensor of shape (b, P) or None
        Zero where ``loss`` is ``inf``.
    """
    members = _Members(kernel, theta.detach(), Z, zmask, X, y, maskf, alpha)
    S, r = members.statistics()

    def bound(i):
        th, Zi, zi, yi, mi, ai = members.member(i)
        if not eval_gradient:
            with torch.no_grad():
                w = _weights(kernel, th, mi, ai)
                return (_bound_terms(kernel, th, Zi, zi, S[i:i + 1], r[i:i + 1], yi, w, mi, ai)[0],)
        th = th.clone().requires_grad_(True)
        Si = S[i:i + 1].clone().requires_grad_(True)
        ri = r[i:i + 1].clone().requires_grad_(True)
        with torch.enable_grad():
            w = _weights(kernel, th, mi, ai)
            F, _, _, _, ok = _bound_terms(kernel, th, Zi, zi, Si, ri, yi, w, mi, ai)
            g_theta, dS, dr = torch.autograd.grad(torch.where(ok, F, 0.0).sum(), [th, Si, ri])
        return F.detach(), g_theta, dS, dr

    parts = [torch.cat(column) for column in zip(*map_blocks(bound, range(members.b)))]
    if not eval_gradient:
        return -parts[0], None
    F, g_theta, dS, dr = parts
    grad = g_theta + members.backward(dS, dr)
    grad = torch.where(torch.isfinite(F).unsqueeze(-1), grad, 0.0)
    return -F, -grad


@dataclass(frozen=True)
class SparseFactor:
    """Every member's sparse posterior, from :func:`sparse_factorize`.

    Attributes
    ----------
    L : Tensor of shape (b, m, m)
        Lower factor of ``K_mm`` plus jitter.
    LB : Tensor of shape (b, m, m)
        Lower factor of ``B = I + L^-1 S L^-T``.
    dual : Tensor of shape (b, m)
        ``L^-T L_B^-T c``: the mean at ``x`` is ``k(x, Z) @ dual``.
    bound : Tensor of shape (b,)
        The collapsed bound ``F`` (``-inf`` where a factor failed).
    failed : Tensor of shape (b,), bool
    jitter : Tensor of shape (b,)
        Added to ``B``'s diagonal, relative to its mean (0 where none was needed).
    """

    L: torch.Tensor
    LB: torch.Tensor
    dual: torch.Tensor
    bound: torch.Tensor
    failed: torch.Tensor
    jitter: torch.Tensor


_B_JITTERS = (0.0, 1e-10, 1e-8, 1e-6, 1e-4)


def sparse_factorize(kernel, theta, Z, zmask, X, y, maskf, alpha):
    """:class:`SparseFactor` of every member at ``theta`` (arguments as :func:`sparse_nlml`)."""
    members = _Members(kernel, theta, Z, zmask, X, y, maskf, alpha)
    S, r = members.statistics()

    def factor(i):
        th, Zi, zi, yi, mi, ai = members.member(i)
        with torch.no_grad():
            w = _weights(kernel, th, mi, ai)
            # B = I + L^-1 S L^-T is positive definite, but with almost no noise its
            # rounding may not be: jitter relative to its diagonal, as little as works
            for jitter in _B_JITTERS:
                terms = _bound_terms(kernel, th, Zi, zi, S[i:i + 1], r[i:i + 1], yi, w, mi, ai,
                                     b_jitter=jitter)
                if bool(terms[-1].all()):
                    break
            return terms + (torch.full_like(terms[0], jitter),)

    F, L, LB, c, ok, jitter = [torch.cat(column)
                               for column in zip(*map_blocks(factor, range(members.b)))]
    with torch.no_grad():
        eye = torch.eye(Z.shape[1], dtype=theta.dtype, device=theta.device)
        L = torch.where(ok[:, None, None], L, eye)
        LB = torch.where(ok[:, None, None], LB, eye)
        v = torch.linalg.solve_triangular(LB.mT, c.unsqueeze(-1), upper=True)
        dual = torch.linalg.solve_triangular(L.mT, v, upper=True).squeeze(-1)
        dual = torch.where(ok[:, None], dual, 0.0)
    return SparseFactor(L=L, LB=LB, dual=dual, bound=F, failed=~ok, jitter=jitter)


def greedy_inducing(kernel, theta, X, m, min_variance=1e-6):
    """Inducing points of every member by greedy variance selection (a pivoted Cholesky).

    Every step adds the row of ``X`` whose prior variance, conditioned on the
    points chosen so far, is largest (Burt, Rasmussen & van der Wilk 2020:
    near-optimal for the collapsed bound). A member stops early when no row
    has a conditional variance above ``min_variance`` times its outputscale:
    its remaining slots are padding (``zmask`` 0).

    Parameters
    ----------
    kernel : InducingKernel
    theta : Tensor of shape (b, P)
    X : Tensor of shape (n, d)
        Candidate rows (shared by the members).
    m : int
        Inducing points per member (at most ``n``).
    min_variance : float

    Returns
    -------
    index : Tensor of shape (b, m), int64
        Rows of ``X`` (0 where padding).
    zmask : Tensor of shape (b, m)
    """
    b, n = theta.shape[0], X.shape[0]
    m = min(m, n)
    s = kernel.base.outputscale(theta)
    index = torch.zeros(b, m, dtype=torch.long, device=X.device)
    zmask = theta.new_zeros(b, m)
    with torch.no_grad():
        residual = s.unsqueeze(-1).expand(b, n).clone()
        rows = theta.new_zeros(b, m, n)  # the pivoted factor, one row per chosen point
        members = torch.arange(b, device=X.device)
        for j in range(m):
            value, pivot = residual.max(-1)
            use = value > min_variance * s
            if not bool(use.any()):
                break
            index[:, j] = torch.where(use, pivot, 0)
            zmask[:, j] = use.to(theta.dtype)
            k = kernel.cross(theta, X, X[pivot].unsqueeze(-2)).squeeze(-1)  # (b, n)
            if j:
                k = k - torch.bmm(rows[members, :j, pivot].unsqueeze(-2), rows[:, :j]).squeeze(-2)
            row = k / value.clamp_min(1e-300).sqrt().unsqueeze(-1) * use.unsqueeze(-1)
            rows[:, j] = row
            residual.sub_(row.square())
            residual[members, pivot] = -math.inf  # never chosen twice
    return index, zmask
