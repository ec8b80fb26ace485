"""The fit problem: validated data, target scaling and starting points of one fit.

``BatchedGaussianProcessRegressor.prepare_fit`` validates ``X`` and ``y``
and calls :func:`make_problem`, which standardises the targets, folds known
noise into ``alpha``, builds the core kernel plan (:mod:`._sklearn_kernels`)
and draws every target's starting points (:func:`restart_design`). The
frozen :class:`FitProblem` it returns is what the fitting engine
(:mod:`._engine`) optimises, alone or as one fold of many.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._core.gp import member_rows
from ._core.sobol import sobol_points
from ._fitted import format_targets
from ._sklearn_kernels import STEP_FLOOR_MAX, plan_default, plan_from_kernel, recording_step
from ._validation import column_sums, log_mean_square, to_tensor

__all__ = ["FitProblem", "ProblemSpec", "make_problem", "restart_design"]


@dataclass(frozen=True)
class FitProblem:
    """The validated data and starting points of one fit (from ``prepare_fit``).

    Arrays are numpy, targets last as in scikit-learn: ``Yn`` and ``maskf_np``
    of shape (n_samples, n_targets) (normalised targets, 0 where missing; 1.0
    where observed), ``alpha_np`` of shape (n_samples,), () or
    (n_samples, n_targets) (``alpha`` plus the noise variance passed to
    ``fit``), ``starts_np`` of shape
    (n_starts, n_targets, P), ``bounds`` of shape (n_targets, P, 2), ``mean``
    and ``std`` of shape (n_targets,) (the target scaling). ``plan`` is the
    core kernel with its priors and bounds. The properties give the core's
    tensors (targets first) on the compute device.
    """

    X: np.ndarray
    y_given: np.ndarray
    observed: np.ndarray
    empty: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    Yn: np.ndarray
    maskf_np: np.ndarray
    alpha_np: np.ndarray
    plan: object
    bounds: np.ndarray
    starts_np: np.ndarray
    device: torch.device
    dtype: torch.dtype
    feature_names: object = None  # feature_names_in_ to set at finish_fit (None: none)
    spec: object = None  # the ProblemSpec it was made with
    alpha_given: object = None  # the estimator's alpha, checked, before known noise was added
    noise_given: object = None  # fit's noise_variance as given (None: none)

    def _t(self, a):
        return to_tensor(a, self.dtype, self.device)

    @property
    def Xt(self):
        """Tensor of shape (n_samples, n_features)."""
        return self._t(self.X)

    @property
    def y(self):
        """Tensor of shape (n_targets, n_samples)."""
        return self._t(self.Yn.T)

    @property
    def maskf(self):
        """Tensor of shape (n_targets, n_samples)."""
        return self._t(self.maskf_np.T)

    @property
    def alpha(self):
        """Tensor of shape (n_samples,), () or (n_targets, n_samples)."""
        return self._t(self.alpha_np.T if self.alpha_np.ndim == 2 else self.alpha_np)

    def alpha_of(self, targets):
        """Tensor of shape (n_samples,), () or (len(targets), n_samples): ``alpha`` of ``targets``."""
        return member_rows(self.alpha, targets)

    @property
    def starts(self):
        """Tensor of shape (n_starts, n_targets, P)."""
        return self._t(self.starts_np)

    @property
    def lower(self):
        """Tensor of shape (n_targets, P)."""
        return self._t(self.bounds[..., 0])

    @property
    def upper(self):
        """Tensor of shape (n_targets, P)."""
        return self._t(self.bounds[..., 1])

    @property
    def free(self):
        """Tensor of shape (P,), bool."""
        return torch.as_tensor(self.plan.free, device=self.device)


@dataclass(frozen=True)
class ProblemSpec:
    """The estimator's settings that shape a fit problem.

    Attributes
    ----------
    kernel : sklearn kernel, skbgp.kernels object or None
        ``None`` is the default model (:func:`~skbgp._sklearn_kernels.plan_default`).
    normalize : bool
        Standardise every target.
    n_restarts : int
        Extra starting points per target (0 when nothing is optimised).
    random_state : int, RandomState instance or None
    device : torch.device
    dtype : torch.dtype
    generic_kernels : bool
        Whether a scikit-learn kernel the core cannot translate runs on the
        generic path (False: a ``ValueError`` naming it).
    """

    kernel: object
    normalize: bool
    n_restarts: int
    random_state: object
    device: torch.device
    dtype: torch.dtype
    generic_kernels: bool = True


def make_problem(spec, X, y, alpha, noise_variance=None, feature_names=None, warn=True):
    """The :class:`FitProblem` of validated data.

    Parameters
    ----------
    spec : ProblemSpec
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Validated; NaN where missing.
    alpha : ndarray of shape (n_samples,) or ()
        The estimator's ``alpha``, checked.
    noise_variance : array-like of shape (n_samples,) or (n_samples, n_targets), optional
        Known noise in the units of ``y`` (``fit``'s argument).
    feature_names : ndarray or None
        ``feature_names_in_`` for ``finish_fit`` to set.
    warn : bool, default=True
        Warn about targets without an observation and an ``alpha`` that
        swamps them (False: a caller whose full data were checked already
        and that handles unobserved targets itself, as the sparse
        estimator's subset fit).

    Returns
    -------
    FitProblem
    """
    alpha_given = alpha
    Y = y.reshape(y.shape[0], -1)
    observed = ~np.isnan(Y)
    noise = None if noise_variance is None else _check_noise_variance(noise_variance, observed)
    empty = _check_empty(observed, warn)
    n_obs = np.maximum(observed.sum(axis=0), 1)
    mean, std = scale_targets(Y, observed, n_obs, spec.normalize)
    Yn = np.where(observed, (Y - mean) / std, 0.0)
    if noise is not None:
        # known noise is in y's units; the GP is fitted in units of std
        if noise.ndim == 1 and np.all(std == 1.0):
            alpha = alpha + noise
        else:
            per_target = (noise[:, None] if noise.ndim == 1 else noise) / std**2
            alpha = (alpha[:, None] if alpha.ndim == 1 else alpha) + per_target
    if warn:
        _warn_alpha_swamps(alpha, Yn, n_obs)
    maskf = observed.astype(float)
    n_targets = Y.shape[1]
    if spec.kernel is None:
        plan = plan_default(X, Yn, maskf, _log_noise_floor(Y, observed, n_obs, std, alpha))
    else:
        plan = plan_from_kernel(spec.kernel, X.shape[1], n_targets, generic=spec.generic_kernels)
    P = plan.free.shape[0]
    bounds = np.broadcast_to(plan.bounds, (n_targets, P, 2))
    return FitProblem(
        X=X, y_given=y, observed=observed, empty=empty, mean=mean, std=std, Yn=Yn,
        maskf_np=maskf, alpha_np=alpha, plan=plan, bounds=bounds,
        starts_np=_starts(plan, bounds, spec), device=spec.device, dtype=spec.dtype,
        feature_names=feature_names, spec=spec, alpha_given=alpha_given,
        noise_given=None if noise_variance is None else np.asarray(noise_variance, dtype=float),
    )


def _log_noise_floor(Y, observed, n_obs, std, alpha):
    r"""ndarray of shape (n_targets,): the log of the smallest noise variance every target can have.

    In the fit's units (``std``): :math:`\Delta_t^2 / 12` for a target recorded
    to a step :math:`\Delta_t` (:func:`~skbgp._sklearn_kernels.recording_step`),
    less the smallest known noise (``alpha``, with any ``noise_variance``) of
    its observed rows, which already explains that much, and at most
    ``STEP_FLOOR_MAX`` times the variance of its observed values; ``-inf``
    (no floor) for a continuous target.
    """
    with np.errstate(over="ignore"):
        rounding = (recording_step(Y, observed) / std) ** 2 / 12.0
    known = np.asarray(alpha, dtype=float)
    known = np.broadcast_to(known[:, None] if known.ndim == 1 else known, Y.shape)
    known = np.where(observed, known, np.inf).min(axis=0, initial=np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):  # inf - inf: no observations
        floor = np.log(np.nan_to_num(np.maximum(rounding - known, 0.0), nan=0.0, posinf=np.inf))
    spread = scale_targets(Y, observed, n_obs, True)[1]  # in logs: no overflow at 1e160
    return np.minimum(floor, math.log(STEP_FLOOR_MAX) + 2.0 * (np.log(spread) - np.log(std)))


def _check_empty(observed, warn=True):
    """Bool array of shape (n_targets,): targets without an observation (warned if ``warn``; all:
    an error)."""
    empty = ~observed.any(axis=0)
    if empty.all():
        raise ValueError(
            f"Target(s) {format_targets(np.flatnonzero(empty))} have no observed value "
            "(all NaN); there is nothing to fit."
        )
    if warn and empty.any():
        warnings.warn(
            f"Target(s) {format_targets(np.flatnonzero(empty))} have no observed value "
            "(all NaN) and are not fitted: they are listed in failed_targets_ and "
            "predicted as NaN. Drop these columns of y to silence this warning.",
            UserWarning,
        )
    return empty


def scale_targets(Y, observed, n_obs, normalize):
    """``(mean, std)``, each of shape (n_targets,): the scaling of every target.

    With ``normalize``, each target's mean and standard deviation over its
    observed rows, computed in units of its largest magnitude (no overflow for
    huge targets; a constant target, its spread at rounding level, keeps std
    1); otherwise 0 and 1.
    """
    n_targets = Y.shape[1]
    if not normalize:
        return np.zeros(n_targets), np.ones(n_targets)
    peak = np.where(observed, np.abs(Y), 0.0).max(axis=0)
    peak = np.where(peak > 0, peak, 1.0)
    Z = np.where(observed, Y / peak, 0.0)
    mean_z = column_sums(Z) / n_obs
    std_z = np.sqrt(column_sums(np.where(observed, Z - mean_z, 0.0) ** 2) / n_obs)
    spread = std_z > 10 * np.finfo(float).eps
    return mean_z * peak, np.where(spread, std_z * peak, 1.0)


def _starts(plan, bounds, spec):
    """ndarray of shape (n_starts, n_targets, P): the initial value, then the restarts."""
    n_targets, P = bounds.shape[:2]
    theta0 = np.clip(np.broadcast_to(plan.theta0, (n_targets, P)), bounds[..., 0], bounds[..., 1])
    starts = [theta0]
    if spec.n_restarts:
        free = np.flatnonzero(plan.free)
        low, high = np.broadcast_to(plan.restart_bounds, (n_targets, P, 2))[:, free].transpose(2, 0, 1)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(
                "Multiple optimizer restarts (n_restarts_optimizer>0) requires that all "
                "bounds are finite."
            )
        # one design for all targets, placed in each target's own box: a
        # target's starts depend on its own data and random_state only
        for u in restart_design(plan.restart_design, spec.random_state, spec.n_restarts, free.size):
            draw = theta0.copy()
            draw[:, free] = low + (high - low) * u
            starts.append(draw)
    return np.stack(starts)


def _check_noise_variance(noise_variance, observed):
    """``noise_variance`` as a float array of shape (n_samples,) or (n_samples, n_targets), checked.

    ``observed`` (bool, of shape (n_samples, n_targets)) marks where ``y`` is
    observed; a per-target variance may be NaN where its target is missing
    (it is then unused, and set to 0).
    """
    n_samples, n_targets = observed.shape
    noise = np.asarray(noise_variance, dtype=float)
    if noise.shape not in ((n_samples,), (n_samples, n_targets)):
        raise ValueError(
            f"noise_variance must have shape ({n_samples},), one variance per training "
            f"sample, or ({n_samples}, {n_targets}), one per sample and target; got shape "
            f"{noise.shape}."
        )
    used = noise if noise.ndim == 1 else noise[observed]
    if not np.all(np.isfinite(used)) or np.any(used < 0):
        raise ValueError(
            "noise_variance must be finite and non-negative (NaN is allowed only where y is "
            "missing)."
        )
    return noise if noise.ndim == 1 else np.where(observed, noise, 0.0)


def restart_design(kind, random_state, n_restarts, n_free):
    """Points in the unit cube where the restarts of every target start.

    Parameters
    ----------
    kind : {"sobol", "uniform"}
        ``"uniform"``: scikit-learn's draws (``rng.uniform`` over the box, one
        restart after the other), for a user's kernel. ``"sobol"``: a
        scrambled Sobol' sequence, for the default kernel: its first points
        split every dimension's range evenly (two points fall in opposite
        halves, four in different quarters), where independent draws often
        leave a basin unvisited.
    random_state : int, RandomState instance or None
    n_restarts, n_free : int

    Returns
    -------
    ndarray of shape (n_restarts, n_free)
        The first ``k`` rows do not depend on ``n_restarts``: the starts with
        fewer restarts are a prefix of those with more.
    """
    rng = check_random_state(random_state)
    if n_restarts <= 0:
        return np.empty((0, n_free))
    if kind == "sobol":
        return sobol_points(n_restarts, n_free, int(rng.randint(2**31 - 1))).numpy()
    return np.stack([rng.uniform(size=n_free) for _ in range(n_restarts)])


def _warn_alpha_swamps(alpha, Yn, n_obs):
    """Warn about targets whose power (mean square, as fitted) is not above ``alpha``.

    ``alpha`` is added to every training covariance as it is: for an
    unstandardised target of magnitude 1e-12, the default 1e-10 is a noise
    variance 1e14 times its power, and the fit explains the target as noise.
    """
    # alpha of shape (n, m) is per target: each target against its own largest
    top = np.max(alpha, axis=0) if np.ndim(alpha) == 2 else np.max(alpha)
    if np.max(top) <= 0:
        return
    log_power = log_mean_square(Yn, n_obs)
    # a constant standardised target (all zeros, -inf) has nothing to swamp
    with np.errstate(divide="ignore"):
        bad = np.flatnonzero((np.log(top) >= log_power) & np.isfinite(log_power))
    top = float(np.max(np.broadcast_to(top, log_power.shape)[bad])) if bad.size else 0.0
    if bad.size:
        warnings.warn(
            f"alpha (up to {top:.3g}, added to the training covariance) is at least "
            f"the mean square of target(s) {format_targets(bad)} (down to "
            f"{np.exp(log_power[bad].min()):.3g}): it swamps them as noise. Pass normalize_y=True (the "
            "default for the default kernel) or an alpha small against the targets.",
            UserWarning,
        )
