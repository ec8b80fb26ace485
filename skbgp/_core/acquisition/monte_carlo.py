"""Monte-Carlo q-batch acquisition functions with fixed base samples.

:class:`MCAcquisition` draws joint latent samples of a candidate set (pending
points appended, and jointly with noisy EI's baseline) from the fixed
quasi-random base samples, and hands them to its head, one of the units of
:mod:`.heads` (qEI, qLogEI, qNEI, qLogNEI, qUCB, qPI, qSimpleRegret). It
caches what is fixed during one suggestion and writes the backward pass of
the posterior out, so that the optimiser needs no autograd graph through the
GP.

Shape glossary: ``m`` targets, ``n`` training points, ``b`` t-batch, ``q``
points of a candidate set, ``p`` pending points, ``q' = q + p``, ``s``
Monte-Carlo samples, ``d`` features, ``k`` baseline points.
"""

from dataclasses import dataclass

import torch

from .baseline import Baseline, make_baseline
from .heads import MONTE_CARLO, MONTE_CARLO_HEADS, HeadParameters
from ..gp import BASE_JITTER, posterior_cholesky
from .model import GPModel, _correlation, lift_t_batch, normal_base_samples
from .objective import _objective_bounds

__all__ = ["MCOptions", "MCAcquisition", "make_mc_acquisition"]


@dataclass(frozen=True)
class MCOptions:
    """Settings of a Monte-Carlo acquisition function.

    Attributes
    ----------
    mc_samples : int
        Number of Monte-Carlo samples ``s``.
    seed : int
        Seed of the scrambled Sobol base samples (the baseline's use
        ``seed + 1``).
    beta : float
        qUCB's exploration weight.
    prune_baseline : bool
        Keep only the baseline points that are the best feasible one in at
        least one sample (BoTorch's ``prune_baseline``); they decide the
        noisy incumbent.
    """

    mc_samples: int
    seed: int
    beta: float = 0.2
    prune_baseline: bool = True


@dataclass(frozen=True)
class _Cache:
    """Quantities of an :class:`MCAcquisition` that are fixed while it is optimised.

    With ``Z`` the training and baseline points scaled by the length scales
    and ``rho`` the correlations of the scaled candidates with them,
    ``rho @ B = [V^T | C | mean]`` in one product: ``V^T = L^-1 k(X_train,
    X)`` transposed (the training mask and outputscale folded into ``B``),
    ``C = (k(X, X_b) - V^T V_b) L_bb^-T`` the candidates' block of the joint
    Cholesky factor with the baseline, and the standardised posterior mean.

    Attributes
    ----------
    inv_ls : Tensor of shape (m, 1, d)
    scale : Tensor of shape (m, 1, 1)
        Outputscales (prior variances, standardised units).
    Z : Tensor of shape (m, n + k, d)
    Zt : Tensor of shape (m, d, n + k)
    Z_sq : Tensor of shape (m, 1, n + k)
    B : Tensor of shape (m, n + k, n + k + 1)
    n, k : int
    zt : Tensor of shape (m, k + q + p, s)
        Base samples of the baseline, candidate and pending points, samples last.
    y_mean, y_std : Tensor of shape (m, 1, 1)
    eye : Tensor of shape (q + p, q + p)
    jitter : Tensor of shape (m, q + p, q + p)
        The base jitter of :func:`~skbgp._core.gp.posterior_cholesky`.
    """

    inv_ls: torch.Tensor
    scale: torch.Tensor
    Z: torch.Tensor
    Zt: torch.Tensor
    Z_sq: torch.Tensor
    B: torch.Tensor
    n: int
    k: int
    zt: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor
    eye: torch.Tensor
    jitter: torch.Tensor


def _make_cache(model, z, baseline):
    """The :class:`_Cache` of a model, base samples z (s, m, q + p) and a Baseline or None."""
    ls = model.kernel.lengthscale(model.theta)  # (m, d) or (m, 1)
    m, n = model.alpha.shape
    d = model.X_train.shape[-1]
    inv_ls = (1.0 / ls).expand(m, d).unsqueeze(-2)
    scale = model.kernel.outputscale(model.theta)[:, None, None]
    Ts = model.X_train * inv_ls  # (m, n, d)
    Mtr = scale * model.maskf.unsqueeze(-1) * model.L_inv.mT  # rho_tr @ Mtr = V^T
    a_col = (scale[..., 0] * model.maskf * model.alpha).unsqueeze(-1)  # rho_tr @ a_col = mean
    zs = z.permute(1, 2, 0)  # (m, q', s)
    if baseline is None:
        Z, B, k, zt = Ts, torch.cat([Mtr, a_col], dim=-1), 0, zs
    else:
        Bs = baseline.X * inv_ls  # (m, k, d)
        k = Bs.shape[1]
        LbT = baseline.L_inv.mT
        top = torch.cat([Mtr, -Mtr @ baseline.Vt.mT @ LbT, a_col], dim=-1)
        bottom = torch.cat([LbT.new_zeros(m, k, n), scale * LbT, LbT.new_zeros(m, k, 1)], dim=-1)
        Z, B = torch.cat([Ts, Bs], dim=-2), torch.cat([top, bottom], dim=-2)
        zt = torch.cat([baseline.z.permute(1, 2, 0), zs], dim=-2)
    eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
    return _Cache(inv_ls, scale, Z, Z.mT.contiguous(), Z.square().sum(-1).unsqueeze(-2),
                  B.contiguous(), n, k, zt.contiguous(), model.y_mean[:, None, None],
                  model.y_std[:, None, None], eye, BASE_JITTER * (scale * eye))


@dataclass(frozen=True)
class _Forward:
    """One evaluation's intermediate quantities, kept for the analytic gradient."""

    Xs: torch.Tensor  # (b, m, q', d) scaled candidates
    slope: torch.Tensor  # (b, m, q', n + k) d rho / d r2 to the training and baseline points
    slope_s: torch.Tensor  # (b, m, q', q') d rho / d r2 among the candidates
    U: torch.Tensor  # (b, m, q', n + k): [V^T | C]
    L: torch.Tensor  # (b, m, q', q')
    diagonal: bool  # a member's covariance fell back to its diagonal
    f: torch.Tensor  # (b, m, q', s) latent samples, own units
    mean: torch.Tensor  # (b, m, q') posterior mean, own units


@dataclass(frozen=True)
class MCAcquisition:
    """A Monte-Carlo q-batch acquisition function with fixed base samples.

    The latent samples ``f^(i)`` of the ``q`` candidates and of the pending
    points (appended to every candidate set) are
    ``f = mean + [C | L_x] [z_b; z]`` (R&W Alg. 2.1 with the cached factors;
    ``C`` the candidates' block of the joint Cholesky factor with noisy EI's
    baseline); the head turns them into values (see :mod:`.heads`).

    Calling it gives values that autograd can differentiate;
    :meth:`value_and_grad` gives values and gradients with the backward pass
    written out (several times faster for the small batches of an optimiser).

    Attributes
    ----------
    head : a unit of :mod:`.heads`
        A value of :data:`~skbgp._core.acquisition.heads.MONTE_CARLO_HEADS`
        (``QExpectedImprovement``, ``QLogExpectedImprovement``, ...).
    params : HeadParameters
        The objective, incumbent, ``beta`` and infeasible cost the head reads.
    model : GPModel
    z : Tensor of shape (s, m, q + p)
        Base samples of the candidate and pending points.
    X_pending : Tensor of shape (p, d)
    baseline : Baseline or None
        For qNEI and qLogNEI.
    """

    head: object
    params: HeadParameters
    model: GPModel
    z: torch.Tensor
    X_pending: torch.Tensor
    baseline: Baseline | None

    def __post_init__(self):
        object.__setattr__(self, "_cache", _make_cache(self.model, self.z, self.baseline))

    @property
    def q(self):
        return self.z.shape[-1] - self.X_pending.shape[0]

    def _check(self, X):
        X = lift_t_batch(X)
        if X.shape[-2] != self.q:
            raise ValueError(
                f"This acquisition function was built for q = {self.q} points per "
                f"candidate set; got {X.shape[-2]}."
            )
        if self.X_pending.shape[0]:
            X = torch.cat([X, self.X_pending.expand(X.shape[0], *self.X_pending.shape)], dim=-2)
        return X

    def _forward(self, Xf, slopes=False):
        """Joint latent samples at candidate sets ``Xf`` of shape (b, q', d), pending included.

        The posterior of the candidates jointly with the baseline (qNEI) is
        sampled through the block Cholesky factor ``[[L_bb, 0], [C, L_x]]``:
        ``f = mean + C z_b + L_x z`` with ``L_x L_x^T = Sigma_xx - V^T V - C C^T``.
        With ``slopes``, the correlations' derivatives are kept for the gradient.
        """
        c = self._cache
        nu = self.model.kernel.nu
        Xs = Xf.unsqueeze(-3) * c.inv_ls  # (b, m, q', d)
        # |x - z|^2 = |x|^2 + |z|^2 - 2 x.z, one matrix product per member
        r2 = Xs.square().sum(-1, keepdim=True) + c.Z_sq - 2.0 * (Xs @ c.Zt)
        r2s = (Xs.unsqueeze(-2) - Xs.unsqueeze(-3)).square().sum(-1)
        rho, slope = _correlation(nu, r2.clamp_min(0.0), slopes)
        rho_s, slope_s = _correlation(nu, r2s, slopes)
        out = rho @ c.B  # (b, m, q', n + k + 1)
        U, mean = out[..., :-1], out[..., -1]
        A = c.scale * rho_s - U @ U.mT
        # posterior_cholesky's first try, its base jitter cached; the rest only where that fails
        L, info = torch.linalg.cholesky_ex(A + c.jitter)
        diagonal = False
        if bool(info.any()):
            L, diagonal = posterior_cholesky(A, c.scale[:, 0, 0])
        CL = torch.cat([U[..., c.n:], L], dim=-1) if c.k else L
        f = c.y_mean + c.y_std * (mean.unsqueeze(-1) + CL @ c.zt)  # (b, m, q', s)
        mean = c.y_mean[..., 0] + c.y_std[..., 0] * mean
        return _Forward(Xs, slope, slope_s, U, L, diagonal, f, mean)

    def samples(self, X):
        """Joint latent samples at every candidate set (pending points appended).

        Parameters
        ----------
        X : Tensor of shape (b, q, d)

        Returns
        -------
        f : Tensor of shape (s, b, m, q + p)
            In each target's own units.
        mean : Tensor of shape (b, m, q + p)
        """
        fw = self._forward(self._check(X))
        return fw.f.permute(3, 0, 1, 2), fw.mean

    def __call__(self, X):
        """Acquisition values.

        Parameters
        ----------
        X : Tensor of shape (b, q, d) or (q, d)

        Returns
        -------
        Tensor of shape (b,)
        """
        fw = self._forward(self._check(X))
        return self.head.value(fw.f, fw.mean, self.params)

    def value_and_grad(self, X):
        """Acquisition values and their gradients, the backward pass written out.

        Parameters
        ----------
        X : Tensor of shape (b, q, d) or (q, d)

        Returns
        -------
        value : Tensor of shape (b,)
        grad : Tensor of shape (b, q, d)
            Gradient of every value with respect to its own candidate set.
        """
        X = lift_t_batch(X).detach()
        with torch.no_grad():
            fw = self._forward(self._check(X), slopes=True)
            if fw.diagonal:  # a covariance fell back to its diagonal: let autograd handle it
                with torch.enable_grad():
                    Xg = X.requires_grad_(True)
                    value = self(Xg)
                    (grad,) = torch.autograd.grad(value.sum(), Xg)
                return value.detach(), grad
            value, G, g_mean = self.head.value_and_grad(fw.f, fw.mean, self.params)
            return value, self._posterior_grad(fw, G, g_mean)[:, :X.shape[1]]

    def _posterior_grad(self, fw, G, g_mean):
        """Gradient with respect to the candidates (b, q', d) from that w.r.t. the samples.

        Reverse mode through ``f = mean + [C | L] z`` (R&W Alg. 2.1 with the
        cached factors), the Cholesky factor (Murray, 2016:
        ``dA = L^-T Phi(L^T dL) L^-1``, symmetrised, ``Phi`` the lower triangle
        with its diagonal halved), the covariance ``A = k(X, X) - U U^T`` and
        the correlations' dependence on the squared distances.
        """
        c = self._cache
        Gs = G * c.y_std  # (b, m, q', s), standardised units
        gm = Gs.sum(-1)
        if g_mean is not None:
            gm = gm + g_mean * c.y_std[..., 0]
        gCL = Gs @ c.zt.mT  # (b, m, q', k + q')
        L = fw.L
        L_inv = torch.linalg.solve_triangular(L, c.eye, upper=False)
        P = (L.mT @ gCL[..., c.k:]).tril()
        P.diagonal(dim1=-2, dim2=-1).mul_(0.5)
        gA = L_inv.mT @ P @ L_inv
        gA = 0.5 * (gA + gA.mT)
        gU = -2.0 * (gA @ fw.U)
        if c.k:
            gU[..., c.n:] += gCL[..., :c.k]
        g_rho = torch.cat([gU, gm.unsqueeze(-1)], dim=-1) @ c.B.mT  # (b, m, q', n + k)
        W = g_rho * fw.slope
        Xs = fw.Xs
        g_xs = 2.0 * (W.sum(-1, keepdim=True) * Xs - W @ c.Z)
        Ws = (4.0 * c.scale) * gA * fw.slope_s
        g_xs += Ws.sum(-1, keepdim=True) * Xs - Ws @ Xs
        return (g_xs * c.inv_ls).sum(-3)


def make_mc_acquisition(name, model, objective, q, options, *, X_pending=None, best_f=None,
                        X_baseline=None):
    """Build a Monte-Carlo acquisition function with fixed Sobol base samples.

    Parameters
    ----------
    name : str
        One of ``MONTE_CARLO``: the head is ``MONTE_CARLO_HEADS[name]``.
    model : GPModel
    objective : Objective
    q : int
        Points per candidate set.
    options : MCOptions
        Samples, seed, qUCB's ``beta`` and the baseline's pruning.
    X_pending : Tensor of shape (p, d) or None
        Points being evaluated; appended to every candidate set.
    best_f : float or Tensor of shape () or None
        Required by qEI, qLogEI and qPI.
    X_baseline : Tensor of shape (k, d) or None
        Required by qNEI and qLogNEI (usually the training inputs).

    Returns
    -------
    MCAcquisition
    """
    head = MONTE_CARLO_HEADS.get(name)
    if head is None:
        raise ValueError(f"Unknown Monte-Carlo acquisition {name!r}; use one of {MONTE_CARLO}.")
    dtype, device = model.theta.dtype, model.theta.device
    m, d = model.n_targets, model.X_train.shape[-1]
    if X_pending is None:
        X_pending = torch.empty(0, d, dtype=dtype, device=device)
    qp = q + X_pending.shape[0]
    s = options.mc_samples
    z = normal_base_samples(s, m * qp, options.seed, dtype, device).view(s, m, qp)
    lower = _objective_bounds(model, objective)
    baseline = None
    if head.needs == "X_baseline":
        if X_baseline is None:
            raise ValueError(f"{name} needs X_baseline (the points evaluated so far).")
        baseline = make_baseline(model, objective, X_baseline, s, options.seed + 1, lower,
                                 options.prune_baseline)
    elif head.needs == "best_f" and best_f is None:
        raise ValueError(f"{name} needs best_f (the best objective value so far).")
    best_f = torch.as_tensor(0.0 if best_f is None else best_f, dtype=dtype, device=device)
    best = best_f if baseline is None else baseline.best
    params = HeadParameters(objective, best, float(options.beta), (-lower).clamp_min(0.0))
    return MCAcquisition(head, params, model, z, X_pending, baseline)
