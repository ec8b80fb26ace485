"""Analytic and Monte-Carlo acquisition functions on a batch of independent GPs.

Every acquisition function follows BoTorch's t-batch / q-batch convention: it
takes candidates of shape ``b x q x d`` (``b`` independent candidate sets of
``q`` points each) and returns ``b`` values, larger is better. A plain
``q x d`` input is a t-batch of one (a tensor of shape ``(1,)`` comes back).

The model is a set of ``m`` independent exact GPs sharing the training inputs.
Acquisition works on the **latent** functions (no observation noise), in each
target's own units. An :class:`Objective` turns the ``m`` latent values into
one quantity to **maximise** (a weighted sum of targets) and up to ``m``
constraints ``f_t(x) <= threshold``; a constraint enters the Monte-Carlo
acquisition functions as the smooth feasibility weight
``sigmoid((threshold - f_t) / eta)`` per sample (BoTorch's
``compute_smoothed_feasibility_indicator``) and the analytic ones as the
probability of feasibility (the GPs are independent).

Monte-Carlo acquisition functions draw joint posterior samples with the
reparameterisation trick, ``f = mu(X) + chol(Sigma(X)) z``, from a **fixed**
set of quasi-random normal base samples ``z`` (scrambled Sobol points pushed
through the normal quantile function), so that the acquisition surface is a
deterministic, differentiable function of ``X`` for a gradient optimiser.

Shape glossary: ``m`` targets, ``n`` training points, ``b`` t-batch, ``q``
points of a candidate set, ``p`` pending points, ``s`` Monte-Carlo samples,
``d`` features, ``c`` constraints, ``k`` baseline points.
"""

import math
from dataclasses import dataclass

import torch
from torch.quasirandom import SobolEngine

from .stationary import StationaryKernel
from .kernels import correlation

__all__ = [
    "GPModel",
    "Objective",
    "make_model",
    "lift_t_batch",
    "latent_posterior",
    "normal_base_samples",
    "AnalyticAcquisition",
    "MCAcquisition",
    "make_analytic_acquisition",
    "make_mc_acquisition",
    "ANALYTIC",
    "MONTE_CARLO",
]

ANALYTIC = ("EI", "LogEI", "UCB", "PI")
MONTE_CARLO = ("qEI", "qLogEI", "qNEI", "qLogNEI", "qUCB", "qPI", "qSimpleRegret")

TAU_RELU = 1e-6  # smoothing of the improvement's ReLU in the log variants (BoTorch's default)
TAU_MAX = 1e-2  # smoothing of the max over the q points in the log variants (BoTorch's default)
TAU_PI = 1e-3  # temperature of the sigmoid in qPI (BoTorch's default)
_BASE_JITTER = 1e-9  # relative jitter on every joint covariance before its Cholesky


# --------------------------------------------------------------------- model
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
        Lower Cholesky factors (as in :class:`~skbgp._core.exact.Factor`).
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


# Not exact._jittered_cholesky: a joint posterior of q points is often singular, so every member
# gets a base jitter, and sampling needs a factor even where no jitter helps (the diagonal).
def _cholesky(A, prior_var):
    """Lower Cholesky factor of a batch of covariances, with jitter where needed.

    ``_BASE_JITTER * prior_var`` is always added to the diagonal; members that
    still fail get ten times more, up to six times (``1e-3 * prior_var``), and
    a member that fails even then falls back to its diagonal (independent
    points).

    Parameters
    ----------
    A : Tensor of shape (..., m, q, q)
    prior_var : Tensor of shape (m,)
        Scale of the jitter per target.

    Returns
    -------
    L : Tensor of shape (..., m, q, q)
    diagonal : bool
        Whether a member fell back to its diagonal.
    """
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    unit = prior_var[:, None, None] * eye
    L, info = torch.linalg.cholesky_ex(A + _BASE_JITTER * unit)
    jitter = _BASE_JITTER
    failed = bool(info.any())
    for _ in range(6):
        if not failed:
            break
        jitter *= 10.0
        bad = (info != 0)[..., None, None]
        L2, info2 = torch.linalg.cholesky_ex(A + jitter * unit)
        L = torch.where(bad, L2, L)
        info = torch.where(info != 0, info2, info)
        failed = bool(info.any())
    if failed:
        diag = torch.diag_embed(A.diagonal(dim1=-2, dim2=-1).clamp_min(0.0).sqrt())
        L = torch.where((info != 0)[..., None, None], diag, L)
    return L, failed


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
    u = SobolEngine(dim, scramble=True, seed=seed).draw(n_samples, dtype=torch.float64)
    eps = 1e-10
    return torch.special.ndtri(u.clamp(eps, 1.0 - eps)).to(dtype=dtype, device=device)


# ----------------------------------------------------------------- objective
@dataclass(frozen=True)
class Objective:
    """What is maximised and what is constrained.

    Attributes
    ----------
    weights : Tensor of shape (m,)
        The objective is ``sum_t weights[t] * f_t`` (to be maximised; a
        minimised target has a negative weight).
    constraint_targets : Tensor of shape (c,), int64
        Targets that are constrained.
    thresholds : Tensor of shape (c,)
        Feasible where ``f_t <= thresholds`` (in the target's own units).
    eta : Tensor of shape (c,)
        Temperature of each smooth feasibility weight, in the target's units.
    """

    weights: torch.Tensor
    constraint_targets: torch.Tensor
    thresholds: torch.Tensor
    eta: torch.Tensor

    @property
    def has_constraints(self):
        return self.constraint_targets.numel() > 0


def _objective_samples(objective, f):
    """Objective values from latent values: (..., q) from (..., m, q)."""
    return torch.einsum("m,...mq->...q", objective.weights, f)


def _log_feasibility(objective, f):
    """Sum of the log smooth feasibility weights: (b, q', s) from samples (b, m, q', s)."""
    if not objective.has_constraints:
        return torch.zeros_like(f[:, 0])
    fc = f[:, objective.constraint_targets]  # (b, c, q', s)
    z = (objective.thresholds[:, None, None] - fc) / objective.eta[:, None, None]
    return torch.nn.functional.logsigmoid(z).sum(-3)


# ----------------------------------------------------------------- analytic
def _log_ei_helper(u):
    """``log(phi(u) + u Phi(u))``, accurate for very negative ``u`` (Ament et al., 2023)."""
    bound = -1.0
    u_up = u.clamp_min(bound)
    upper = torch.log(torch.exp(-0.5 * u_up * u_up) / math.sqrt(2 * math.pi)
                      + u_up * torch.special.ndtr(u_up))
    neg_inv_sqrt_eps = -1.0 / math.sqrt(torch.finfo(u.dtype).eps)
    u_low = u.clamp_max(bound)
    u_eps = u_low.clamp_min(neg_inv_sqrt_eps)
    # log(|u| Phi(u) / phi(u)) = log(erfcx(-u / sqrt 2) |u|) + log(pi / 2) / 2
    w = (torch.log(torch.special.erfcx(-u_eps / math.sqrt(2)) * u_eps.abs())
         + 0.5 * math.log(math.pi / 2))
    log_phi = -0.5 * u_low * u_low - 0.5 * math.log(2 * math.pi)
    # log(1 - exp(w)), stable for w near 0 and very negative w
    log1mexp = torch.where(w > -math.log(2.0), torch.log(-torch.expm1(w)),
                           torch.log1p(-torch.exp(w)))
    lower = log_phi + torch.where(u_low > neg_inv_sqrt_eps, log1mexp, -2.0 * u_low.abs().log())
    return torch.where(u > bound, upper, lower)


@dataclass(frozen=True)
class AnalyticAcquisition:
    """A closed-form acquisition function of one point (``q = 1``).

    With the objective's mean ``mu`` and standard deviation ``sigma``
    (independent targets: ``mu = w . mu_t``, ``sigma^2 = w^2 . sigma_t^2``)
    and ``z = (mu - best_f) / sigma``:

    * ``EI = sigma (phi(z) + z Phi(z))``, ``LogEI = log EI`` (computed stably),
    * ``PI = Phi(z)``,
    * ``UCB = mu + sqrt(beta) sigma``.

    With constraints, EI and PI are multiplied by the probability of
    feasibility ``prod_c Phi((threshold_c - mu_c) / sigma_c)`` (LogEI adds its
    logarithm); UCB takes no constraints.

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
        if self.name == "UCB":
            return mu + math.sqrt(self.beta) * sigma
        z = (mu - self.best_f) / sigma
        log_feas = torch.zeros_like(mu)
        if self.objective.has_constraints:
            ct = self.objective.constraint_targets
            zc = (self.objective.thresholds - mu_t[..., ct]) / var_t[..., ct].sqrt()
            log_feas = torch.special.log_ndtr(zc).sum(-1)
        if self.name == "PI":
            return torch.exp(torch.special.log_ndtr(z) + log_feas)
        log_ei = _log_ei_helper(z) + sigma.log() + log_feas
        return log_ei if self.name == "LogEI" else log_ei.exp()


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
    if name not in ANALYTIC:
        raise ValueError(f"Unknown analytic acquisition {name!r}; use one of {ANALYTIC}.")
    if name == "UCB" and objective.has_constraints:
        raise ValueError(
            "UCB does not take constraints; use EI, LogEI or a Monte-Carlo acquisition."
        )
    best_f = torch.as_tensor(best_f, dtype=model.theta.dtype, device=model.theta.device)
    return AnalyticAcquisition(name, model, objective, best_f, float(beta))


# -------------------------------------------------------------- Monte Carlo
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


def _baseline_samples(model, objective, X_base, z):
    """Joint latent samples at the baseline points and their cached factors.

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
    L, _ = _cholesky(cov, model.kernel.outputscale(model.theta))
    f = mean + torch.einsum("mij,smj->smi", L, z)
    return model.y_mean[:, None] + model.y_std[:, None] * f, Vt, L


def _best_feasible(objective, f, lower):
    """Best feasible objective in every sample (``lower`` when none is feasible).

    Parameters
    ----------
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
        The base jitter of :func:`_cholesky`.
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
                  model.y_std[:, None, None], eye, _BASE_JITTER * (scale * eye))


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

    With latent samples ``f^(i)`` of the ``q`` candidates (and of the pending
    points, appended to every candidate set), objective samples
    ``o^(i)_j`` and smooth feasibility weights ``w^(i)_j`` (1 without
    constraints):

    * ``qEI = mean_i max_j relu(o_j - best_f) w_j``; ``qNEI`` the same with
      ``best_f`` replaced by the best feasible objective over the baseline
      points *in the same joint sample* (noisy EI);
    * ``qLogEI`` / ``qLogNEI``: ``log`` of the same with the ReLU, the max
      and the feasibility weight smoothed by fat-tailed functions
      (``log_fatplus`` with temperature ``TAU_RELU``, ``fatmax`` with
      ``TAU_MAX``, ``fatmoid``) and the mean taken in log space, as BoTorch's
      ``qLogExpectedImprovement`` / ``qLogNoisyExpectedImprovement`` (with
      their default ``fat=True``);
    * ``qPI = mean_i max_j sigmoid((o_j - best_f) / tau_pi) w_j``;
    * ``qUCB = mean_i max_j (mu_j + sqrt(beta pi / 2) |o_j - mu_j|)``;
    * ``qSimpleRegret = mean_i max_j o_j``;

    for qUCB and qSimpleRegret, constraints enter as BoTorch's
    ``apply_constraints``: ``(v + M) w - M`` with ``M = infeasible_cost``.

    Calling it gives values that autograd can differentiate;
    :meth:`value_and_grad` gives values and gradients with the backward pass
    written out (several times faster for the small batches of an optimiser).

    Attributes
    ----------
    name : str
        One of ``MONTE_CARLO``.
    model : GPModel
    objective : Objective
    z : Tensor of shape (s, m, q + p)
        Base samples of the candidate and pending points.
    X_pending : Tensor of shape (p, d)
    best_f : Tensor of shape ()
        For qEI, qLogEI and qPI.
    baseline : Baseline or None
        For qNEI and qLogNEI.
    beta : float
    infeasible_cost : Tensor of shape ()
    """

    name: str
    model: GPModel
    objective: Objective
    z: torch.Tensor
    X_pending: torch.Tensor
    best_f: torch.Tensor
    baseline: Baseline
    beta: float
    infeasible_cost: torch.Tensor

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
        # _cholesky's first try, its base jitter cached; the rest only where that fails
        L, info = torch.linalg.cholesky_ex(A + c.jitter)
        diagonal = False
        if bool(info.any()):
            L, diagonal = _cholesky(A, c.scale[:, 0, 0])
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

    def _head(self, f, mean):
        """Acquisition values (b,) from samples (b, m, q', s) and means (b, m, q')."""
        w = self.objective.weights
        obj = torch.einsum("m,bmjs->bjs", w, f)  # (b, q', s)
        name = self.name
        if name in ("qEI", "qNEI", "qLogEI", "qLogNEI"):
            best = self.best_f if self.baseline is None else self.baseline.best
            if name in ("qLogEI", "qLogNEI"):
                log_imp = _log_fatplus(obj - best, TAU_RELU) + _log_fat_feasibility(
                    self.objective, f)
                v = _fatmax(log_imp.mT, TAU_MAX)  # (b, s)
                return torch.logsumexp(v, dim=-1) - math.log(v.shape[-1])
            imp = torch.relu(obj - best) * _log_feasibility(self.objective, f).exp()
            return imp.amax(-2).mean(-1)
        if name == "qPI":
            v = torch.sigmoid((obj - self.best_f) / TAU_PI) * _log_feasibility(
                self.objective, f).exp()
            return v.amax(-2).mean(-1)
        if name == "qUCB":
            mu = torch.einsum("m,bmj->bj", w, mean).unsqueeze(-1)  # (b, q', 1)
            v = mu + math.sqrt(self.beta * math.pi / 2.0) * (obj - mu).abs()
        else:  # qSimpleRegret
            v = obj
        if self.objective.has_constraints:
            M = self.infeasible_cost
            v = (v + M) * _log_feasibility(self.objective, f).exp() - M
        return v.amax(-2).mean(-1)

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
        return self._head(fw.f, fw.mean)

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
            if self.name in ("qLogEI", "qLogNEI"):
                value, G, g_mean = *self._log_head_grad(fw.f), None
            else:
                with torch.enable_grad():
                    f = fw.f.requires_grad_(True)
                    mean = fw.mean.requires_grad_(True)
                    value = self._head(f, mean)
                    G, g_mean = torch.autograd.grad(value.sum(), (f, mean), allow_unused=True)
                value = value.detach()
            return value, self._posterior_grad(fw, G, g_mean)[:, :X.shape[1]]

    def _log_head_grad(self, f):
        """qLogEI / qLogNEI and its gradient with respect to the samples (b, m, q', s)."""
        objective = self.objective
        best = self.best_f if self.baseline is None else self.baseline.best
        u = (torch.einsum("m,bmjs->bjs", objective.weights, f) - best) / TAU_RELU
        cu = _cauchy(u)
        h = torch.nn.functional.softplus(u) + 0.1 * cu
        log_imp = h.log() + math.log(TAU_RELU)  # (b, q', s)
        dlog_imp = (torch.sigmoid(u) - 0.2 * u * cu * cu) / (h * TAU_RELU)  # d / d objective
        if objective.has_constraints:
            ct = objective.constraint_targets
            zc = (objective.thresholds[:, None, None] - f[:, ct]) / objective.eta[:, None, None]
            m_ = 1.0 / math.sqrt(3.0)
            low = zc < -m_
            t = torch.where(low, zc - m_, zc + m_)
            ctt = _cauchy(t)
            fat = torch.where(low, 2.0 / 3.0 * ctt, 1.0 - 2.0 / 3.0 * ctt)
            # d log fat / d f_c = -fat'(z) / (fat eta), fat'(z) = -/+ 4/3 t cauchy(t)^2
            slope = 4.0 / 3.0 * t * ctt * ctt
            dlog_fat = torch.where(low, slope, -slope) / (fat * objective.eta[:, None, None])
            log_imp = log_imp + fat.log().sum(-3)
        # fatmax over the q' points (alpha = 2): M + tau log sum_j 2 / (1 + (1 + y_j)^2)
        M = log_imp.amax(-2, keepdim=True)  # (b, 1, s)
        y1 = 1.0 + (M - log_imp) / TAU_MAX
        p = 2.0 / (1.0 + y1 * y1)
        S = p.sum(-2, keepdim=True)
        v = M + TAU_MAX * S.log()  # (b, 1, s)
        lse = torch.logsumexp(v, dim=-1, keepdim=True)
        value = (lse - math.log(v.shape[-1])).view(-1)
        # d v / d x_j = (1 + y_j) p_j^2 / S, plus (1 - their sum) through the max
        dv = y1 * p * p / S
        at_max = (log_imp == M).to(dv.dtype)
        dv = dv + (1.0 - dv.sum(-2, keepdim=True)) * at_max / at_max.sum(-2, keepdim=True)
        dx = torch.exp(v - lse) * dv  # d value / d log_imp, (b, q', s)
        G = (objective.weights[:, None, None] * (dx * dlog_imp).unsqueeze(-3))  # (b, m, q', s)
        if objective.has_constraints:
            G.index_add_(-3, ct, dx.unsqueeze(-3) * dlog_fat)
        return value, G

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


def _cauchy(x):
    return 1.0 / (1.0 + x * x)


def _log_fatplus(x, tau):
    """``log(tau (softplus(x / tau) + 0.1 / (1 + (x / tau)^2)))``: a smooth ReLU with a fat tail.

    BoTorch's ``log_fatplus``: far below zero it decays like ``(x / tau)^-2``
    instead of exponentially, so its logarithm, and the acquisition's gradient,
    stay well scaled in regions of negligible improvement.
    """
    z = x / tau
    return torch.log(torch.nn.functional.softplus(z) + 0.1 * _cauchy(z)) + math.log(tau)


def _fatmax(x, tau, alpha=2.0):
    """Smooth maximum over the last dimension with a fat tail (BoTorch's ``fatmax``).

    ``M + tau log sum_j pareto((M - x_j) / tau)`` with ``M = max_j x_j`` and
    ``pareto(y) = (a b / (a b + b y + y^2))^(alpha / 2)``, ``a = alpha / 2``,
    ``b = 2 a``: exactly the maximum for one element.
    """
    M = x.amax(-1, keepdim=True)
    y = (M - x) / tau
    a = alpha / 2.0
    b1 = 2.0 * a
    b0 = a * b1
    pareto = (b0 / (b0 + b1 * y + y * y)).pow(a)
    return (M + tau * pareto.sum(-1, keepdim=True).log()).squeeze(-1)


def _log_fat_feasibility(objective, f):
    """Sum over constraints of ``log fatmoid((threshold - f_t) / eta)``.

    Samples of shape (b, m, q', s) give a Tensor of shape (b, q', s).

    BoTorch's fat sigmoid: ``2/3 cauchy(z - 1/sqrt 3)`` below ``-1/sqrt 3`` and
    ``1 - 2/3 cauchy(z + 1/sqrt 3)`` above, decaying like ``z^-2`` far into the
    infeasible region.
    """
    if not objective.has_constraints:
        return torch.zeros_like(f[:, 0])
    fc = f[:, objective.constraint_targets]  # (b, c, q', s)
    z = (objective.thresholds[:, None, None] - fc) / objective.eta[:, None, None]
    m = 1.0 / math.sqrt(3.0)
    fat = torch.where(z < -m, 2.0 / 3.0 * _cauchy(z - m), 1.0 - 2.0 / 3.0 * _cauchy(z + m))
    return fat.log().sum(-3)


def _objective_bounds(model, objective):
    """Lower bound of the objective over the training points (mean - 6 std)."""
    mean, cov = latent_posterior(model, model.X_train.unsqueeze(-2))  # (n, m, 1), (n, m, 1, 1)
    w = objective.weights
    mu = mean[..., 0] @ w
    sd = (cov[..., 0, 0].clamp_min(0.0) @ (w * w)).sqrt()
    return (mu - 6.0 * sd).min()


def _prune(model, objective, X_base, z, lower):
    """Baseline points that are the best feasible one in at least one sample."""
    f, _, _ = _baseline_samples(model, objective, X_base, z)
    _, obj = _best_feasible(objective, f, lower)
    winners = torch.unique(obj.argmax(-1))
    return X_base[winners]


def make_mc_acquisition(name, model, objective, q, mc_samples, seed, X_pending=None,
                        best_f=None, X_baseline=None, beta=0.2, prune_baseline=True):
    """Build a Monte-Carlo acquisition function with fixed Sobol base samples.

    Parameters
    ----------
    name : str
        One of ``MONTE_CARLO``.
    model : GPModel
    objective : Objective
    q : int
        Points per candidate set.
    mc_samples : int
        Number of Monte-Carlo samples ``s``.
    seed : int
        Seed of the scrambled Sobol base samples.
    X_pending : Tensor of shape (p, d) or None
        Points being evaluated; appended to every candidate set.
    best_f : float or Tensor of shape () or None
        Required by qEI, qLogEI and qPI.
    X_baseline : Tensor of shape (k, d) or None
        Required by qNEI and qLogNEI (usually the training inputs).
    beta : float
        qUCB's exploration weight.
    prune_baseline : bool
        Keep only the baseline points that are the best feasible one in at
        least one sample (BoTorch's ``prune_baseline``); they decide the
        noisy incumbent.

    Returns
    -------
    MCAcquisition
    """
    if name not in MONTE_CARLO:
        raise ValueError(f"Unknown Monte-Carlo acquisition {name!r}; use one of {MONTE_CARLO}.")
    dtype, device = model.theta.dtype, model.theta.device
    m, d = model.n_targets, model.X_train.shape[-1]
    if X_pending is None:
        X_pending = torch.empty(0, d, dtype=dtype, device=device)
    qp = q + X_pending.shape[0]
    z = normal_base_samples(mc_samples, m * qp, seed, dtype, device).view(mc_samples, m, qp)
    lower = _objective_bounds(model, objective)
    cost = (-lower).clamp_min(0.0)
    baseline = None
    if name in ("qNEI", "qLogNEI"):
        if X_baseline is None:
            raise ValueError(f"{name} needs X_baseline (the points evaluated so far).")
        zb_seed = seed + 1
        k = X_baseline.shape[0]
        zb = normal_base_samples(mc_samples, m * k, zb_seed, dtype, device).view(mc_samples, m, k)
        if prune_baseline and k > 1:
            X_baseline = _prune(model, objective, X_baseline, zb, lower)
            k = X_baseline.shape[0]
            zb = normal_base_samples(mc_samples, m * k, zb_seed, dtype, device)
            zb = zb.view(mc_samples, m, k)
        f, Vt, L = _baseline_samples(model, objective, X_baseline, zb)
        best, _ = _best_feasible(objective, f, lower)
        eye = torch.eye(k, dtype=dtype, device=device).expand(L.shape)
        L_inv = torch.linalg.solve_triangular(L, eye, upper=False)
        baseline = Baseline(X_baseline, Vt, L_inv, zb, best)
        best_f = torch.zeros((), dtype=dtype, device=device)
    elif name in ("qEI", "qLogEI", "qPI"):
        if best_f is None:
            raise ValueError(f"{name} needs best_f (the best objective value so far).")
    best_f = torch.as_tensor(0.0 if best_f is None else best_f, dtype=dtype, device=device)
    return MCAcquisition(name, model, objective, z, X_pending, best_f, baseline, float(beta), cost)
