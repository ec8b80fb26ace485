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

from .kernels import StationaryKernel

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


def _correlation(nu, r2):
    """Stationary correlation from squared scaled distances (R&W eq. 4.14, 4.17).

    The Matern forms take ``a = sqrt(2 nu r^2)`` of a clamped ``r^2``, so the
    gradient at zero distance is zero instead of ``nan``.
    """
    if nu == math.inf:
        return torch.exp(-0.5 * r2)
    a = torch.sqrt(2.0 * nu * r2.clamp_min(1e-30))
    E = torch.exp(-a)
    if nu == 0.5:
        return E
    if nu == 1.5:
        return (1.0 + a) * E
    return (1.0 + a + a * a / 3.0) * E


def _scaled(model, X):
    """Inputs divided by every target's length scales: (..., m, q, d) from (..., q, d)."""
    ls = model.kernel.lengthscale(model.theta)  # (m, d) or (m, 1)
    return X.unsqueeze(-3) / ls.unsqueeze(-2)


def _cross_covariance(model, Xs, Zs):
    """``sigma^2 rho`` between scaled sets: (..., m, q, k) from (..., m, q, d), (m, k, d)."""
    # |x - z|^2 = |x|^2 + |z|^2 - 2 x.z, one matrix product per member
    r2 = Xs.square().sum(-1).unsqueeze(-1) + Zs.square().sum(-1).unsqueeze(-2) - 2.0 * Xs @ Zs.mT
    s = model.kernel.outputscale(model.theta)[:, None, None]
    return s * _correlation(model.kernel.nu, r2.clamp_min(0.0))


def _self_covariance(model, Xs):
    """``sigma^2 rho`` within a scaled set, from exact differences: (..., m, q, q)."""
    r2 = (Xs.unsqueeze(-2) - Xs.unsqueeze(-3)).square().sum(-1)
    s = model.kernel.outputscale(model.theta)[:, None, None]
    return s * _correlation(model.kernel.nu, r2)


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


def _cholesky(A, prior_var):
    """Lower Cholesky factor of a batch of covariances, with jitter where needed.

    ``_BASE_JITTER * prior_var`` is always added to the diagonal; members that
    still fail get ten times more, up to ``1e-4 * prior_var``, and a member that
    fails even then falls back to its diagonal (independent points).

    Parameters
    ----------
    A : Tensor of shape (..., m, q, q)
    prior_var : Tensor of shape (m,)
        Scale of the jitter per target.

    Returns
    -------
    Tensor of shape (..., m, q, q)
    """
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    unit = prior_var[:, None, None] * eye
    L, info = torch.linalg.cholesky_ex(A + _BASE_JITTER * unit)
    jitter = _BASE_JITTER
    while bool((info != 0).any()) and jitter < 1e-4:
        jitter *= 10.0
        bad = (info != 0)[..., None, None]
        L2, info2 = torch.linalg.cholesky_ex(A + jitter * unit)
        L = torch.where(bad, L2, L)
        info = torch.where(info != 0, info2, info)
    if bool((info != 0).any()):
        diag = torch.diag_embed(A.diagonal(dim1=-2, dim2=-1).clamp_min(0.0).sqrt())
        L = torch.where((info != 0)[..., None, None], diag, L)
    return L


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
    """Sum of the log smooth feasibility weights: (..., q) from (..., m, q)."""
    if not objective.has_constraints:
        return torch.zeros_like(f[..., 0, :])
    fc = f[..., objective.constraint_targets, :]  # (..., c, q)
    z = (objective.thresholds[:, None] - fc) / objective.eta[:, None]
    return torch.nn.functional.logsigmoid(z).sum(-2)


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
    L = _cholesky(cov, model.kernel.outputscale(model.theta))
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

    @property
    def q(self):
        return self.z.shape[-1] - self.X_pending.shape[0]

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
        model = self.model
        b = X.shape[0]
        Xf = torch.cat([X, self.X_pending.expand(b, *self.X_pending.shape)], dim=-2)
        Xs = _scaled(model, Xf)  # (b, m, q', d)
        mean, Vt = _train_terms(model, Xs)  # (b, m, q'), (b, m, q', n)
        cov = _self_covariance(model, Xs) - Vt @ Vt.mT  # (b, m, q', q')
        prior = model.kernel.outputscale(model.theta)
        if self.baseline is None:
            L = _cholesky(cov, prior)
            f = mean + torch.einsum("bmij,smj->sbmi", L, self.z)
        else:
            # joint with the baseline: cov_xb = k(X, B) - V_x^T V_B, then the
            # block Cholesky [[L_bb, 0], [C, L_x]] with C = cov_xb L_bb^-T
            bl = self.baseline
            cross = _cross_covariance(model, Xs, _scaled(model, bl.X)) - Vt @ bl.Vt.mT.unsqueeze(0)
            C = cross @ bl.L_inv.mT  # (b, m, q', k)
            L = _cholesky(cov - C @ C.mT, prior)
            f = (mean + torch.einsum("bmik,smk->sbmi", C, bl.z)
                 + torch.einsum("bmij,smj->sbmi", L, self.z))
        std = model.y_std[:, None]
        return model.y_mean[:, None] + std * f, model.y_mean[:, None] + std * mean

    def __call__(self, X):
        """Acquisition values.

        Parameters
        ----------
        X : Tensor of shape (b, q, d) or (q, d)

        Returns
        -------
        Tensor of shape (b,)
        """
        X = lift_t_batch(X)
        if X.shape[-2] != self.q:
            raise ValueError(
                f"This acquisition function was built for q = {self.q} points per "
                f"candidate set; got {X.shape[-2]}."
            )
        f, mean = self.samples(X)
        obj = _objective_samples(self.objective, f)  # (s, b, q')
        log_w = _log_feasibility(self.objective, f)  # (s, b, q')
        name = self.name
        if name in ("qEI", "qNEI", "qLogEI", "qLogNEI"):
            best = self.best_f if self.baseline is None else self.baseline.best[:, None, None]
            if name in ("qLogEI", "qLogNEI"):
                log_w = _log_fat_feasibility(self.objective, f)
                log_imp = _log_fatplus(obj - best, TAU_RELU) + log_w
                v = _fatmax(log_imp, TAU_MAX)  # (s, b)
                return torch.logsumexp(v, dim=0) - math.log(v.shape[0])
            imp = torch.relu(obj - best) * log_w.exp()
            return imp.amax(-1).mean(0)
        if name == "qPI":
            v = torch.sigmoid((obj - self.best_f) / TAU_PI) * log_w.exp()
            return v.amax(-1).mean(0)
        if name == "qUCB":
            mu = _objective_samples(self.objective, mean)  # (b, q')
            v = mu + math.sqrt(self.beta * math.pi / 2.0) * (obj - mu).abs()
        else:  # qSimpleRegret
            v = obj
        if self.objective.has_constraints:
            M = self.infeasible_cost
            v = (v + M) * log_w.exp() - M
        return v.amax(-1).mean(0)


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
    """Sum over constraints of ``log fatmoid((threshold - f_t) / eta)``: (..., q) from (..., m, q).

    BoTorch's fat sigmoid: ``2/3 cauchy(z - 1/sqrt 3)`` below ``-1/sqrt 3`` and
    ``1 - 2/3 cauchy(z + 1/sqrt 3)`` above, decaying like ``z^-2`` far into the
    infeasible region.
    """
    if not objective.has_constraints:
        return torch.zeros_like(f[..., 0, :])
    fc = f[..., objective.constraint_targets, :]  # (..., c, q)
    z = (objective.thresholds[:, None] - fc) / objective.eta[:, None]
    m = 1.0 / math.sqrt(3.0)
    fat = torch.where(z < -m, 2.0 / 3.0 * _cauchy(z - m), 1.0 - 2.0 / 3.0 * _cauchy(z + m))
    return fat.log().sum(-2)


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
