"""Translate scikit-learn kernel objects into the batched core's kernel.

Supported today are the kernels a scikit-learn user writes for a scaled
stationary GP with learned noise, in any order of the operands::

    RBF(...)  |  Matern(nu=0.5 | 1.5 | 2.5 | inf)                 (base)
    ConstantKernel(...) * base                                    (scaled)
    base_or_scaled + WhiteKernel(...)                              (noisy)

Length scales may be isotropic (a scalar) or ARD (one per feature). Values and
bounds keep scikit-learn's parameterisation: ``theta`` is the log of each
hyperparameter and ``"fixed"`` bounds hold it constant.
"""

import math
from dataclasses import dataclass

import numpy as np
from sklearn.gaussian_process.kernels import (
    RBF,
    ConstantKernel,
    Matern,
    Product,
    Sum,
    WhiteKernel,
)

from ._core.kernels import StationaryKernel

__all__ = ["KernelPlan", "plan_from_sklearn", "plan_default"]

_SUPPORTED = (
    "RBF, Matern(nu in 0.5, 1.5, 2.5, inf), optionally multiplied by a ConstantKernel "
    "and/or added to a WhiteKernel, e.g. ConstantKernel() * RBF([1.0] * n_features) "
    "+ WhiteKernel()"
)


@dataclass(frozen=True)
class KernelPlan:
    """Everything the estimator needs to run the core on one kernel.

    Attributes
    ----------
    kernel : StationaryKernel
    theta0 : ndarray of shape (n_targets, n_params) or (n_params,)
        Initial log hyperparameters (per target for the default kernel).
    bounds : ndarray of shape (n_targets, n_params, 2) or (n_params, 2)
        Log bounds; equal bounds for fixed hyperparameters.
    free : ndarray of shape (n_params,), bool
    names : list of str
        Name of every hyperparameter, as scikit-learn's parameter path with a
        dimension suffix for ARD length scales (``"k1__k2__length_scale[1]"``).
    restart_bounds : ndarray, same shape as ``bounds``
        Box in which restart points are drawn log-uniformly: the bounds
        themselves for a scikit-learn kernel (its semantics), a box of plausible
        values around the data-driven start for the default kernel.
    warn_at_upper : ndarray of shape (n_params,), bool
        Whether ending at the upper bound deserves a warning. Not for the
        default kernel's length scales: their upper bound is 1e5 times the
        feature's spread, and reaching it means the feature is irrelevant to
        that target (ARD), not that the bound is too tight.
    """

    kernel: StationaryKernel
    theta0: np.ndarray
    bounds: np.ndarray
    free: np.ndarray
    names: list
    restart_bounds: np.ndarray
    warn_at_upper: np.ndarray


def _log_bounds(hyperparameter, value, n_elements):
    """Log bounds of shape (n_elements, 2); ``fixed`` gives ``[log v, log v]``."""
    value = np.broadcast_to(np.asarray(value, dtype=float), (n_elements,))
    if hyperparameter.fixed:
        return np.log(np.stack([value, value], axis=-1)), False
    bounds = np.asarray(hyperparameter.bounds, dtype=float)
    return np.log(np.broadcast_to(bounds, (n_elements, 2)).copy()), True


def _unsupported(kernel):
    return ValueError(
        f"Kernel {kernel!r} ({type(kernel).__name__}) is not supported by "
        f"BatchedGaussianProcessRegressor yet. Supported kernels: {_SUPPORTED}."
    )


def _split(kernel, kind, prefix):
    """``(other, part, other_prefix, part_prefix)`` if ``kernel`` is a
    Product/Sum with one operand of type ``kind``, else ``None``."""
    for part, other, pp, op in ((kernel.k1, kernel.k2, "k1", "k2"), (kernel.k2, kernel.k1, "k2", "k1")):
        if isinstance(part, kind) and not isinstance(other, kind):
            return other, part, prefix + op + "__", prefix + pp + "__"
    return None


def plan_from_sklearn(kernel, n_features):
    """Translate a scikit-learn kernel object.

    Parameters
    ----------
    kernel : sklearn.gaussian_process.kernels.Kernel
    n_features : int

    Returns
    -------
    KernelPlan

    Raises
    ------
    ValueError
        For an unsupported kernel (naming its class) or ARD length scales whose
        length differs from ``n_features``.
    """
    noise = scale = None
    rest, prefix = kernel, ""
    if isinstance(rest, Sum):
        found = _split(rest, WhiteKernel, prefix)
        if found is None:
            raise _unsupported(kernel)
        rest, noise, prefix, noise_prefix = found
    if isinstance(rest, Product):
        found = _split(rest, ConstantKernel, prefix)
        if found is None:
            raise _unsupported(kernel)
        rest, scale, prefix, scale_prefix = found
    if isinstance(rest, Matern):
        nu = float(rest.nu)
        if nu not in (0.5, 1.5, 2.5, math.inf):
            raise ValueError(
                f"Matern kernels with nu={rest.nu} are not supported; use nu in "
                "0.5, 1.5, 2.5 or inf (the closed forms)."
            )
    elif isinstance(rest, RBF):
        nu = math.inf
    else:
        raise _unsupported(rest if rest is not kernel else kernel)

    length_scale = np.atleast_1d(np.asarray(rest.length_scale, dtype=float))
    if length_scale.ndim != 1 or length_scale.shape[0] not in (1, n_features) or (
        rest.anisotropic and length_scale.shape[0] != n_features
    ):
        raise ValueError(
            f"The length_scale of {type(rest).__name__} has shape {length_scale.shape}, "
            f"but X has {n_features} features: pass a scalar (isotropic) or an array "
            f"of shape ({n_features},) (ARD)."
        )
    n_ls = length_scale.shape[0]

    theta, bounds, free, names = [], [], [], []
    if scale is not None:
        hp = scale.hyperparameter_constant_value
        b, f = _log_bounds(hp, scale.constant_value, 1)
        theta.append(np.log([float(scale.constant_value)]))
        bounds.append(b)
        free.append([f])
        names.append(scale_prefix + "constant_value")
    b, f = _log_bounds(rest.hyperparameter_length_scale, length_scale, n_ls)
    theta.append(np.log(length_scale))
    bounds.append(b)
    free.append([f] * n_ls)
    base = prefix + "length_scale"
    names.extend([base] if n_ls == 1 else [f"{base}[{j}]" for j in range(n_ls)])
    if noise is not None:
        b, f = _log_bounds(noise.hyperparameter_noise_level, noise.noise_level, 1)
        theta.append(np.log([float(noise.noise_level)]))
        bounds.append(b)
        free.append([f])
        names.append(noise_prefix + "noise_level")

    core = StationaryKernel(
        nu=nu, n_lengthscales=n_ls, has_outputscale=scale is not None, has_noise=noise is not None
    )
    bounds = np.concatenate(bounds)
    return KernelPlan(
        kernel=core,
        theta0=np.concatenate(theta),
        bounds=bounds,
        free=np.concatenate(free).astype(bool),
        names=names,
        restart_bounds=bounds,
        warn_at_upper=np.ones(len(names), dtype=bool),
    )


def plan_default(X, y, maskf):
    r"""The default kernel, initialised from the spread of the data.

    ``outputscale * RBF(ARD) + noise`` with, for target ``t`` and feature
    ``j``:

    * length scale :math:`\ell_j^0 = \mathrm{std}(X_{:, j})` (1 for a constant
      feature), bounds :math:`[10^{-5}, 10^{5}]\,\ell_j^0`;
    * outputscale :math:`\sigma_t^{2,0} = \overline{y_t^2}`, the mean square of
      the observed targets (their spread about the zero prior mean; 1 if it is
      zero), bounds :math:`[10^{-5}, 10^{5}]\,\sigma_t^{2,0}`;
    * noise :math:`10^{-2}\,\sigma_t^{2,0}`, bounds
      :math:`[10^{-8}, 10^{5}]\,\sigma_t^{2,0}`.

    Restarts are drawn log-uniformly from a box of plausible values rather
    than from these wide bounds (where most draws would be degenerate): length
    scales in :math:`[0.02, 2]\,\ell_j^0`, outputscale in
    :math:`[0.1, 3]\,\sigma_t^{2,0}`, noise in :math:`[10^{-4}, 0.5]\,\sigma_t^{2,0}`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples, n_targets)
        Missing entries set to 0.
    maskf : ndarray of shape (n_samples, n_targets)
        1.0 where observed.

    Returns
    -------
    KernelPlan
        With per-target ``theta0`` and ``bounds``.
    """
    n_features = X.shape[1]
    n_targets = y.shape[1]
    spread = X.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    # log of the mean square, computed without overflow for huge targets
    peak = np.abs(y).max(axis=0)
    peak = np.where(peak > 0, peak, 1.0)
    mean_square = ((y / peak) ** 2).sum(axis=0) / np.maximum(maskf.sum(axis=0), 1.0)
    log_power = np.where(mean_square > 0, 2.0 * np.log(peak) + np.log(np.where(mean_square > 0, mean_square, 1.0)), 0.0)
    log_ls = np.broadcast_to(np.log(spread), (n_targets, n_features))
    log_s = log_power[:, None]

    def scaled(outputscale, length_scale, noise):
        """Log hyperparameters (n_targets, n_params) at these multiples of the scales."""
        return np.concatenate([log_s + np.log(outputscale), log_ls + np.log(length_scale),
                               log_s + np.log(noise)], axis=1)

    names = (
        ["outputscale"]
        + [f"length_scale[{j}]" for j in range(n_features)]
        + ["noise_level"]
    )
    return KernelPlan(
        kernel=StationaryKernel(nu=math.inf, n_lengthscales=n_features),
        theta0=scaled(1.0, 1.0, 1e-2),
        bounds=np.stack([scaled(1e-5, 1e-5, 1e-8), scaled(1e5, 1e5, 1e5)], axis=-1),
        free=np.ones(n_features + 2, dtype=bool),
        names=names,
        restart_bounds=np.stack([scaled(0.1, 0.02, 1e-4), scaled(3.0, 2.0, 0.5)], axis=-1),
        warn_at_upper=np.array([True] + [False] * n_features + [True]),
    )
