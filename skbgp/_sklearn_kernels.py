"""Translate kernel objects into the batched core's kernel and theta layout.

Two kinds of kernel objects are accepted: scikit-learn's
(``sklearn.gaussian_process.kernels``: ConstantKernel, WhiteKernel, RBF,
Matern with nu in 0.5, 1.5, 2.5, inf, RationalQuadratic, ExpSineSquared,
DotProduct, Sum, Product, Exponentiation) and skbgp's own specifications
(:mod:`skbgp.kernels`, the same classes plus per-target values and priors).
Both are walked the same way, reading ``<name>``, ``<name>_bounds`` and, for
skbgp's, ``<name>_prior`` of every hyperparameter.

Kernels of the form ``[ConstantKernel *] (RBF | Matern) [+ WhiteKernel]`` (in
this operand order) run on the fast stationary path of
:mod:`skbgp._core.kernels` and :mod:`skbgp._core.stationary`, with theta laid out
as ``[log constant] + [log length scales] + [log noise]``; every other kernel
of those classes runs on the composite path of :mod:`skbgp._core.composite`.
Any other scikit-learn kernel object (a user's ``Kernel`` subclass, a Matern
of another ``nu``, ``PairwiseKernel``) runs on the generic path of
:mod:`skbgp._generic_kernel`, through scikit-learn's own kernel API, with
scikit-learn's ``theta`` and ``bounds`` (:func:`plan_generic`). On the first two paths
theta is in scikit-learn's order (``kernel.theta`` with the fixed
hyperparameters kept).
Values and bounds keep scikit-learn's parameterisation: ``theta`` is the log
of each hyperparameter and ``"fixed"`` bounds hold it constant.
"""

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.gaussian_process import kernels as skk

from . import kernels as native
from ._core import composite
from ._core.fit import RACE_ITER
from ._core.stationary import StationaryKernel
from ._core.priors import PriorTerm, rebuild_distribution
from ._generic_kernel import GenericKernel
from ._validation import external_stacklevel, log_mean_square

__all__ = ["KernelPlan", "PriorSpec", "plan_from_kernel", "plan_generic", "requires_vector_input",
           "plan_default", "length_scale_prior", "recording_step"]

SUPPORTED = (
    "ConstantKernel, WhiteKernel, RBF, Matern (nu in 0.5, 1.5, 2.5, inf), "
    "RationalQuadratic, ExpSineSquared, DotProduct and their Sum, Product and "
    "Exponentiation, from sklearn.gaussian_process.kernels or skbgp.kernels"
)


@dataclass(frozen=True)
class PriorSpec:
    """A user's prior on some columns of theta, before dtype and device are known.

    Attributes
    ----------
    name : str
        The hyperparameter's parameter path.
    index : tuple of int
        Its columns of theta.
    distribution : torch.distributions.Distribution
        As given by the user.
    shape : tuple of int
        Batch shape it is reshaped to: ``()``, ``(q,)`` or ``(n_targets, q)``.
    per_target : bool
    """

    name: str
    index: tuple
    distribution: object
    shape: tuple
    per_target: bool

    def term(self, dtype, device, targets=None):
        """The core :class:`~skbgp._core.priors.PriorTerm` in this dtype and device.

        Parameters
        ----------
        dtype : torch.dtype
        device : torch.device
        targets : array-like of int or None
            For a fit on a subset (chunk) of the targets: their indices, which
            select the rows of a per-target prior. ``None``: all targets.
        """
        def convert(p):
            p = p.to(dtype=dtype, device=device).reshape(self.shape)
            if self.per_target and targets is not None:
                p = p[torch.as_tensor(targets, dtype=torch.long, device=device)]
            return p

        dist = rebuild_distribution(self.distribution, convert)
        return PriorTerm(index=self.index, distribution=dist, per_target=self.per_target)


@dataclass(frozen=True)
class KernelPlan:
    """Everything the estimator needs to run the core on one kernel.

    Attributes
    ----------
    kernel : StationaryKernel, CompositeKernel or GenericKernel
        The core kernel (a kernel of the covariance protocol of
        :mod:`skbgp._core.gp`); its methods evaluate the likelihood,
        factorise and predict.
    theta0 : ndarray of shape (n_targets, n_params) or (n_params,)
        Initial log hyperparameters.
    bounds : ndarray of shape (n_targets, n_params, 2) or (n_params, 2)
        Log bounds (intersected with the support of any prior); equal bounds
        for fixed hyperparameters.
    free : ndarray of shape (n_params,), bool
    names : list of str
        Name of every hyperparameter, as the kernel's parameter path with a
        dimension suffix for ARD length scales (``"k1__k2__length_scale[1]"``).
    restart_bounds : ndarray, same shape as ``bounds``
        Box in which restart points are drawn log-uniformly: the bounds
        themselves for a user's kernel (scikit-learn's semantics), a box of
        plausible values around the data-driven start for the default kernel.
    race : bool
        Whether the starts are raced (the default kernel) or every start runs
        to convergence (a user's kernel); see :meth:`race_iter`.
    restart_design : {"uniform", "sobol"}
        How the restarts are placed in that box: scikit-learn's independent
        uniform draws for a user's kernel, a scrambled Sobol' sequence for the
        default kernel (:func:`skbgp._problem.restart_design`).
    warn_at_upper : ndarray of shape (n_params,), bool
        Whether ending at the upper bound deserves a warning. Not for the
        default kernel's length scales: their upper bound is 1e5 times the
        feature's spread, and reaching it means the feature is irrelevant to
        that target (ARD), not that the bound is too tight.
    prior_bounded : ndarray of shape (n_params, 2), bool
        Where the support of a prior set the lower (column 0) or upper
        (column 1) bound: a MAP estimate there is the prior's doing, not a bound
        to widen, and is not warned about.
    priors : tuple of PriorSpec
        Empty without priors (maximum likelihood).
    length_scale_index, outputscale_index, noise_index : tuple of int, int or None
        Columns of theta read by :meth:`summaries` (``None``: absent).
    ambiguous : frozenset of str
        Of ``"length_scale"``, ``"outputscale"``, ``"noise_level"``: the
        summaries that are not one hyperparameter of the kernel (NaN).
    template : sklearn kernel
        The scikit-learn kernel whose parameters :meth:`sklearn_kernels` sets.
    groups : tuple of (str, tuple of int, bool)
        ``(parameter path, theta columns, scalar)`` of every hyperparameter.
    set_bounds : bool
        Whether :meth:`sklearn_kernels` also sets each target's bounds.
    generic : bool
        The kernel runs through scikit-learn's kernel API
        (:class:`~skbgp._generic_kernel.GenericKernel`): theta is the
        template's ``theta`` (its free hyperparameters), and
        :meth:`sklearn_kernels` is ``template.clone_with_theta``.
    """

    kernel: object
    theta0: np.ndarray
    bounds: np.ndarray
    free: np.ndarray
    names: list
    restart_bounds: np.ndarray
    warn_at_upper: np.ndarray
    prior_bounded: np.ndarray
    priors: tuple
    length_scale_index: tuple
    outputscale_index: object
    noise_index: object
    ambiguous: frozenset
    template: object
    groups: tuple
    set_bounds: bool
    restart_design: str = "uniform"
    race: bool = False
    generic: bool = False

    def race_iter(self, max_iter):
        """Iterations every start runs before only the record setters go on (see ``fit.py``).

        The default kernel races its starts; a user's kernel runs every start
        to convergence, as scikit-learn does (its restarts are drawn from the
        whole bounds, and a start that is far off after a few iterations can
        still end best).
        """
        return RACE_ITER if self.race else max_iter

    def prior_terms(self, dtype, device, targets=None):
        """Tuple of core ``PriorTerm`` in this dtype and device.

        ``targets`` (indices) selects the rows of per-target priors for a fit
        on a chunk of the targets; ``None`` keeps all.
        """
        return tuple(spec.term(dtype, device, targets) for spec in self.priors)

    def summaries(self, theta, n_features):
        """Length scales, outputscales and noise levels of every target.

        Parameters
        ----------
        theta : ndarray of shape (n_targets, n_params)
        n_features : int

        Returns
        -------
        length_scales : ndarray of shape (n_targets, n_features)
        outputscales : ndarray of shape (n_targets,)
        noise_levels : ndarray of shape (n_targets,)
        """
        m = theta.shape[0]

        def read(index, default, key):
            if key in self.ambiguous:
                return np.full(m, np.nan)
            return np.full(m, default) if index is None else np.exp(theta[:, index])

        if "length_scale" in self.ambiguous or self.length_scale_index is None:
            ls = np.full((m, n_features), np.nan)
        else:
            ls = np.broadcast_to(np.exp(theta[:, list(self.length_scale_index)]),
                                 (m, n_features)).copy()
        return ls, read(self.outputscale_index, 1.0, "outputscale"), read(
            self.noise_index, 0.0, "noise_level")

    def sklearn_kernels(self, theta, bounds):
        """One fitted scikit-learn kernel object per target.

        Parameters
        ----------
        theta : ndarray of shape (n_targets, n_params)
        bounds : ndarray of shape (n_targets, n_params, 2)

        Returns
        -------
        list of sklearn.gaussian_process.kernels.Kernel
        """
        out = []
        for t in range(theta.shape[0]):
            if self.generic:
                # scikit-learn's theta: the free hyperparameters, all of theta here
                finite = np.all(np.isfinite(theta[t]))
                out.append(self.template.clone_with_theta(theta[t]) if finite
                           else copy.deepcopy(self.template))
                continue
            kernel = copy.deepcopy(self.template)
            params = {}
            for path, index, scalar in self.groups:
                value = np.exp(theta[t, list(index)])
                params[path] = float(value[0]) if scalar else value
                if self.set_bounds and self.free[index[0]]:
                    b = np.exp(bounds[t, list(index)])
                    params[path + "_bounds"] = tuple(b[0]) if scalar or np.all(b == b[0]) else b
            kernel.set_params(**params)
            out.append(kernel)
        return out


# ----------------------------------------------------------------- the walk
@dataclass
class _Hyperparameter:
    path: str
    attr: str
    value: np.ndarray  # (n_targets, q), natural scale
    log_bounds: np.ndarray  # (n_targets, q, 2)
    free: bool
    prior: object  # (distribution, shape, per_target) or None
    scalar: bool  # one value per target (q == 1 and not given per feature)
    prior_bounded: np.ndarray  # (q, 2): whether the prior's support set each bound


@dataclass
class _Leaf:
    kind: str
    cls: str
    hps: list
    nu: float = math.inf


@dataclass
class _Op:
    kind: str  # "sum", "product" or "power"
    children: list
    exponent: float = 1.0


# kind, hyperparameter names in scikit-learn's (alphabetical) order, ARD allowed
_LEAF_KINDS = {
    "RBF": ("rbf", ("length_scale",), True),
    "Matern": ("matern", ("length_scale",), True),
    "RationalQuadratic": ("rq", ("alpha", "length_scale"), False),
    "ExpSineSquared": ("periodic", ("length_scale", "periodicity"), False),
    "DotProduct": ("dot", ("sigma_0",), False),
    "ConstantKernel": ("constant", ("constant_value",), False),
    "WhiteKernel": ("white", ("noise_level",), False),
}
_LEAF_CLASSES = {}
for _name in _LEAF_KINDS:
    _LEAF_CLASSES[getattr(skk, _name)] = _name
    _LEAF_CLASSES[getattr(native, _name)] = _name
_OPERATOR_CLASSES = {
    skk.Sum: "sum", skk.Product: "product", skk.Exponentiation: "power",
    native.Sum: "sum", native.Product: "product", native.Exponentiation: "power",
}


class Untranslatable(ValueError):
    """A kernel (or part of one, ``part``) that the batched core has no formula for."""

    def __init__(self, message, part):
        super().__init__(message)
        self.part = part


def _unsupported(kernel):
    return Untranslatable(
        f"Kernel {kernel!r} ({type(kernel).__name__}) is not supported by "
        f"BatchedGaussianProcessRegressor. Supported kernels: {SUPPORTED}.", kernel
    )


def _value(kernel, cls, path, attr, ard, n_features, n_targets):
    """Initial values of one hyperparameter as (n_targets, q), and whether scalar."""
    value = np.asarray(getattr(kernel, attr), dtype=float)
    shape = value.shape
    if ard:
        expected = f"a scalar, ({n_features},) or ({n_targets}, {n_features}) (per target)"
        if value.ndim == 0 or shape == (1,):
            out, scalar = np.full((n_targets, 1), float(value.reshape(-1)[0])), True
        elif shape == (n_features,):
            out, scalar = np.broadcast_to(value, (n_targets, n_features)), False
        elif value.ndim == 2 and shape[0] == n_targets and shape[1] in (1, n_features):
            out, scalar = value, shape[1] == 1
        else:
            raise ValueError(
                f"The {attr} of {cls} ({path}) has shape {shape}, but X has {n_features} "
                f"features and y {n_targets} target(s): expected {expected}."
            )
    else:
        if value.ndim == 0 or shape == (1,):
            out = np.full((n_targets, 1), float(value.reshape(-1)[0]))
        elif shape in ((n_targets,), (n_targets, 1)):
            out = value.reshape(n_targets, 1)
        else:
            raise ValueError(
                f"The {attr} of {cls} ({path}) has shape {shape}; expected a scalar or "
                f"({n_targets},) (one value per target)."
            )
        scalar = True
    if not np.all(np.isfinite(out)) or np.any(out <= 0):
        raise ValueError(f"The {attr} of {cls} ({path}) must be positive and finite; got {value}.")
    return np.array(out, dtype=float), scalar


def _bounds(kernel, cls, path, attr, value):
    """Log bounds (n_targets, q, 2) and whether the hyperparameter is free."""
    bounds = getattr(kernel, attr + "_bounds")
    if isinstance(bounds, str):
        if bounds != "fixed":
            raise ValueError(f"{path}_bounds must be a pair of floats or 'fixed'; got {bounds!r}.")
        log = np.log(value)
        return np.stack([log, log], axis=-1), False
    q = value.shape[1]
    b = np.asarray(bounds, dtype=float)
    if b.shape not in ((2,), (q, 2)) and not (q == 1 and b.shape == (1, 2)):
        raise ValueError(
            f"{path}_bounds of {cls} has shape {b.shape}; expected (2,) or ({q}, 2), or 'fixed'."
        )
    if np.any(b[..., 0] <= 0) or np.any(b[..., 0] > b[..., 1]):
        raise ValueError(f"{path}_bounds of {cls} must satisfy 0 < low <= high; got {bounds}.")
    b = np.broadcast_to(b.reshape(-1, 2) if b.ndim == 2 else b, (q, 2))
    return np.log(np.broadcast_to(b, value.shape + (2,))).copy(), True


def _prior(kernel, path, attr, value, scalar, log_bounds, free):
    """Validate a prior, intersect the bounds with its support (in place).

    ``value`` of shape (n_targets, q) is the hyperparameter's initial value
    for every target.
    """
    n_targets = value.shape[0]
    dist = getattr(kernel, attr + "_prior", None)
    if dist is None:
        return None, np.zeros((value.shape[1], 2), dtype=bool)
    if not isinstance(dist, torch.distributions.Distribution):
        raise TypeError(
            f"{path}_prior must be a torch.distributions.Distribution or None; got "
            f"{type(dist).__name__}."
        )
    if getattr(dist.support, "is_discrete", False):
        raise ValueError(
            f"The prior on {path} is {dist!r}, a distribution on discrete values (support "
            f"{dist.support}); {path} is continuous and positive: use a continuous prior such "
            "as LogNormal, Gamma, HalfCauchy or Uniform."
        )
    if tuple(dist.event_shape) != ():
        raise ValueError(
            f"The prior on {path} has event shape {tuple(dist.event_shape)}; use a univariate "
            "distribution (event shape ()), batched over the dimensions if needed."
        )
    q = value.shape[1]
    batch = tuple(dist.batch_shape)
    if batch == () or (batch == (1,) and q == 1):
        shape, per_target = (), False
    elif batch == (q,) and not scalar:
        shape, per_target = (q,), False
    elif batch in ((n_targets, q),) or (q == 1 and batch == (n_targets,)):
        shape, per_target = (n_targets, q), True
    else:
        own = "()" if scalar else f"({q},)"
        expected = (f"() or ({n_targets},) (per target)" if scalar
                    else f"(), ({q},) or ({n_targets}, {q})")
        raise ValueError(
            f"The prior on {path} has batch shape {batch}, but {path} has shape {own} "
            f"for each of the {n_targets} target(s): expected a batch shape of {expected}."
        )
    # the support, as (n_targets, q) arrays of natural values
    def support_bound(name, default):
        bound = getattr(dist.support, name, None)
        if bound is None:
            return np.full((n_targets, q), default)
        bound = torch.as_tensor(bound, dtype=torch.float64, device="cpu")
        if bound.ndim:
            bound = bound.expand(batch).reshape(shape)
        return np.broadcast_to(bound.numpy(), (n_targets, q))

    low, high = support_bound("lower_bound", -np.inf), support_bound("upper_bound", np.inf)
    outside = (value < low) | (value > high)
    if outside.any():
        bad = tuple(np.argwhere(outside)[0])
        raise ValueError(
            f"The initial value {value[bad]:g} of {path} lies outside the support "
            f"[{low[bad]:g}, {high[bad]:g}] of its prior {dist!r}; start inside it."
        )
    if free:
        # strictly inside the support: exp(log(v)) may round across an open end
        with np.errstate(divide="ignore"):
            log_low = np.where(low > 0, np.log(np.where(low > 0, low, 1.0)) + 1e-10, -np.inf)
            log_high = np.where(np.isfinite(high), np.log(np.where(high > 0, high, 1.0)) - 1e-10,
                                np.inf)
        bounded = np.stack([(log_low >= log_bounds[..., 0]).any(0),
                            (log_high <= log_bounds[..., 1]).any(0)], axis=-1)  # (q, 2)
        log_bounds[..., 0] = np.maximum(log_bounds[..., 0], log_low)
        log_bounds[..., 1] = np.minimum(log_bounds[..., 1], log_high)
        if np.any(log_bounds[..., 0] > log_bounds[..., 1]):
            raise ValueError(
                f"The bounds of {path} do not overlap the support of its prior {dist!r}."
            )
        return (dist, shape, per_target), bounded
    return (dist, shape, per_target), np.zeros((q, 2), dtype=bool)


def _walk(kernel, prefix, n_features, n_targets):
    """The kernel as a tree of _Leaf and _Op, validated."""
    cls = type(kernel)
    if cls in _OPERATOR_CLASSES:
        kind = _OPERATOR_CLASSES[cls]
        if kind == "power":
            exponent = float(kernel.exponent)
            return _Op("power", [_walk(kernel.kernel, prefix + "kernel__", n_features, n_targets)],
                       exponent)
        return _Op(kind, [_walk(kernel.k1, prefix + "k1__", n_features, n_targets),
                          _walk(kernel.k2, prefix + "k2__", n_features, n_targets)])
    if cls not in _LEAF_CLASSES:
        raise _unsupported(kernel)
    name = _LEAF_CLASSES[cls]
    kind, attrs, ard = _LEAF_KINDS[name]
    nu = math.inf
    if kind == "matern":
        nu = float(kernel.nu)
        if nu not in (0.5, 1.5, 2.5, math.inf):
            raise Untranslatable(
                f"Matern kernels with nu={kernel.nu} are not supported; use nu in "
                "0.5, 1.5, 2.5 or inf (the closed forms).", kernel
            )
    hps = []
    for attr in attrs:
        path = prefix + attr
        value, scalar = _value(kernel, name, path, attr, ard, n_features, n_targets)
        log_bounds, free = _bounds(kernel, name, path, attr, value)
        prior, bounded = _prior(kernel, path, attr, value, scalar, log_bounds, free)
        hps.append(_Hyperparameter(path, attr, value, log_bounds, free, prior, scalar, bounded))
    return _Leaf(kind, name, hps, nu)


def _leaves(node):
    if isinstance(node, _Leaf):
        return [node]
    return [leaf for child in node.children for leaf in _leaves(child)]


def _fast_form(tree):
    """``(scale, base, noise)`` leaves if the tree is ``[C *] base [+ W]``, else None.

    Only in this operand order, whose scikit-learn theta order is the fast
    path's layout, so that theta is scikit-learn's on both paths.
    """
    def split(node, kind, leaf_kind, position):
        if isinstance(node, _Op) and node.kind == kind:
            part, other = node.children[position], node.children[1 - position]
            if isinstance(part, _Leaf) and part.kind == leaf_kind:
                return other, part
        return node, None

    rest, noise = split(tree, "sum", "white", 1)
    rest, scale = split(rest, "product", "constant", 0)
    if isinstance(rest, _Leaf) and rest.kind in ("rbf", "matern"):
        return scale, rest, noise
    return None


def _core_node(node, start):
    """Core node of a _Leaf/_Op whose hyperparameters start at column ``start``."""
    if isinstance(node, _Op):
        if node.kind == "power":
            child, start = _core_node(node.children[0], start)
            return composite.PowerNode(child, node.exponent), start
        left, start = _core_node(node.children[0], start)
        right, start = _core_node(node.children[1], start)
        op = composite.SumNode if node.kind == "sum" else composite.ProductNode
        return op(left, right), start
    q = [hp.value.shape[1] for hp in node.hps]
    make = {
        "rbf": lambda: composite.RBFNode(start, q[0]),
        "matern": lambda: composite.MaternNode(start, q[0], node.nu),
        "rq": lambda: composite.RationalQuadraticNode(start, q[1]),
        "periodic": lambda: composite.ExpSineSquaredNode(start),
        "dot": lambda: composite.DotProductNode(start),
        "constant": lambda: composite.ConstantNode(start),
        "white": lambda: composite.WhiteNode(start),
    }[node.kind]
    return make(), start + sum(q)


def _sklearn_twin(node):
    """A scikit-learn kernel with the structure of the tree (values set later)."""
    if isinstance(node, _Op):
        if node.kind == "power":
            return skk.Exponentiation(_sklearn_twin(node.children[0]), node.exponent)
        op = skk.Sum if node.kind == "sum" else skk.Product
        return op(_sklearn_twin(node.children[0]), _sklearn_twin(node.children[1]))
    kwargs = {}
    for hp in node.hps:
        kwargs[hp.attr] = float(hp.value[0, 0]) if hp.scalar else hp.value[0].copy()
        kwargs[hp.attr + "_bounds"] = (
            "fixed" if not hp.free else tuple(np.exp(hp.log_bounds[0, 0])))
    if node.kind == "matern":
        kwargs["nu"] = node.nu
    return getattr(skk, node.cls)(**kwargs)


def plan_from_kernel(kernel, n_features, n_targets, force_composite=False, generic=True):
    """Translate a scikit-learn or skbgp kernel object.

    Parameters
    ----------
    kernel : sklearn.gaussian_process.kernels.Kernel or skbgp.kernels object
    n_features : int
    n_targets : int
    force_composite : bool, default=False
        Use the composite path even for a kernel of the fast form (to compare
        the two paths).
    generic : bool, default=True
        Run a scikit-learn kernel that the core cannot translate on the
        generic path; False: raise instead (an estimator that has no generic
        path, before any warning about it).

    Returns
    -------
    KernelPlan
        With per-target ``theta0`` and ``bounds``.

    Raises
    ------
    ValueError
        For an skbgp kernel outside the translated classes (naming it; a
        scikit-learn kernel of any other class runs on the generic path,
        :func:`plan_generic`, with a ``UserWarning``), a hyperparameter or a
        prior whose shape does not fit the data (naming it, with the shape
        received and the shapes expected), or an initial value outside the
        support of its prior.
    """
    try:
        tree = _walk(kernel, "", n_features, n_targets)
    except Untranslatable as error:
        if not isinstance(kernel, skk.Kernel):
            raise ValueError(
                f"{error} An skbgp.kernels object combines only these classes; any other "
                "kernel runs as a scikit-learn kernel object (without priors), through "
                "scikit-learn's kernel API."
            ) from None
        if not generic:
            raise
        return plan_generic(kernel, error.part)
    fast = None if force_composite else _fast_form(tree)
    if fast is not None:
        scale, base, noise = fast
        ordered = ([scale] if scale is not None else []) + [base] + (
            [noise] if noise is not None else [])
        hps = [hp for leaf in ordered for hp in leaf.hps]
        core = StationaryKernel(nu=base.nu, n_lengthscales=base.hps[0].value.shape[1],
                                has_outputscale=scale is not None, has_noise=noise is not None)
    else:
        hps = [hp for leaf in _leaves(tree) for hp in leaf.hps]
        root, n_params = _core_node(tree, 0)
        core = composite.CompositeKernel(root, n_params)

    columns, names, priors, groups = {}, [], [], []
    start = 0
    for hp in hps:
        q = hp.value.shape[1]
        index = tuple(range(start, start + q))
        columns[id(hp)] = index
        names.extend([hp.path] if q == 1 else [f"{hp.path}[{j}]" for j in range(q)])
        groups.append((hp.path, index, hp.scalar))
        if hp.prior is not None:
            dist, shape, per_target = hp.prior
            priors.append(PriorSpec(hp.path, index, dist, shape, per_target))
        start += q
    theta0 = np.concatenate([np.log(hp.value) for hp in hps], axis=1)
    bounds = np.concatenate([hp.log_bounds for hp in hps], axis=1)
    free = np.concatenate([[hp.free] * hp.value.shape[1] for hp in hps]).astype(bool)

    # the summary attributes: one hyperparameter of each role, or ambiguous
    leaves = _leaves(tree)
    with_ls = [leaf for leaf in leaves if leaf.kind in ("rbf", "matern", "rq", "periodic")]
    by_kind = {kind: [leaf for leaf in leaves if leaf.kind == kind] for kind in ("constant", "white")}
    ambiguous = set()
    ls_index = out_index = noise_index = None
    if len(with_ls) == 1:
        hp = next(h for h in with_ls[0].hps if h.attr == "length_scale")
        ls_index = columns[id(hp)]
    elif with_ls:
        ambiguous.add("length_scale")
    for kind, role in (("constant", "outputscale"), ("white", "noise_level")):
        found = by_kind[kind]
        if len(found) > 1 or (found and fast is None and kind == "constant"
                              and not _is_scale(tree, found[0])):
            ambiguous.add(role)
        elif found:
            index = columns[id(found[0].hps[0])][0]
            if kind == "constant":
                out_index = index
            else:
                noise_index = index
    is_native = not type(kernel).__module__.startswith("sklearn")
    return KernelPlan(
        kernel=core,
        theta0=theta0,
        bounds=bounds,
        free=free,
        names=names,
        restart_bounds=bounds,
        warn_at_upper=np.ones(len(names), dtype=bool),
        prior_bounded=np.concatenate([hp.prior_bounded for hp in hps]),
        priors=tuple(priors),
        length_scale_index=ls_index,
        outputscale_index=out_index,
        noise_index=noise_index,
        ambiguous=frozenset(ambiguous),
        template=_sklearn_twin(tree) if is_native else copy.deepcopy(kernel),
        groups=tuple(groups),
        set_bounds=is_native,
    )


def requires_vector_input(kernel):
    """Whether ``kernel`` (None, a scikit-learn or an skbgp kernel) takes numeric feature vectors.

    scikit-learn's ``requires_vector_input`` (False for kernels on strings,
    graphs or other structured inputs, ``GenericKernelMixin``); True for
    skbgp's kernels and the default model.
    """
    return not isinstance(kernel, skk.Kernel) or bool(kernel.requires_vector_input)


# The start of the warning of the generic path, for users who filter it
GENERIC_WARNING = "skbgp evaluates the kernel"


def plan_generic(kernel, part=None):
    """A scikit-learn kernel the core cannot translate, run through scikit-learn's kernel API.

    Every target's covariance, its gradient and its diagonal come from
    ``kernel.clone_with_theta(theta)`` in numpy, one target at a time
    (:class:`~skbgp._generic_kernel.GenericKernel`); the optimiser, restarts
    and everything downstream are the batched engine's. theta and bounds are
    scikit-learn's (``kernel.theta``, ``kernel.bounds``: the free
    hyperparameters in log space); there are no priors. Warns
    (``UserWarning``) that this path is slower.

    Parameters
    ----------
    kernel : sklearn.gaussian_process.kernels.Kernel
    part : sklearn.gaussian_process.kernels.Kernel, optional
        The part of ``kernel`` that cannot be translated (named in the warning).

    Returns
    -------
    KernelPlan
    """
    part = kernel if part is None else part
    what = type(part).__name__ + (f"(nu={part.nu})" if isinstance(part, skk.Matern) else "")
    template = copy.deepcopy(kernel)
    try:
        theta0 = np.asarray(template.theta, dtype=float).reshape(-1)
        P = theta0.size
        bounds = np.asarray(template.bounds, dtype=float).reshape(P, 2)
        hyperparameters = template.hyperparameters
    except (AttributeError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"The kernel ({type(kernel).__name__}, containing {what}) does not follow "
            f"scikit-learn's Kernel API: reading its theta and bounds failed with "
            f"{type(error).__name__}: {error}. A kernel needs theta, bounds, "
            "clone_with_theta, __call__(X, Y=None, eval_gradient=False) and diag(X)."
        ) from error
    names = []
    for hp in hyperparameters:
        if not hp.fixed:
            names.extend([hp.name] if hp.n_elements == 1
                         else [f"{hp.name}[{j}]" for j in range(hp.n_elements)])
    if len(names) != P:  # a kernel whose hyperparameters do not describe its theta
        names = [f"theta[{j}]" for j in range(P)]
    warnings.warn(
        f"{GENERIC_WARNING} through scikit-learn's kernel API, one target at a time in "
        f"numpy, as it contains {what}, which skbgp does not translate into its batched core "
        f"(it translates {SUPPORTED}): the fit is correct but slower.",
        UserWarning, stacklevel=external_stacklevel(),
    )
    return KernelPlan(
        kernel=GenericKernel(template, P, structured=not requires_vector_input(kernel)),
        theta0=theta0,
        bounds=bounds,
        free=np.ones(P, dtype=bool),
        names=names,
        restart_bounds=bounds,
        warn_at_upper=np.ones(P, dtype=bool),
        prior_bounded=np.zeros((P, 2), dtype=bool),
        priors=(),
        length_scale_index=None,
        outputscale_index=None,
        noise_index=None,
        ambiguous=frozenset({"length_scale", "outputscale", "noise_level"}),
        template=template,
        groups=(),
        set_bounds=False,
        generic=True,
    )


def _is_scale(tree, constant):
    """Whether ``constant`` is a factor of the whole signal (``C * k1 * k2 [+ W]``)."""
    node = tree
    if isinstance(node, _Op) and node.kind == "sum":
        a, b = node.children
        node = a if isinstance(b, _Leaf) and b.kind == "white" else (
            b if isinstance(a, _Leaf) and a.kind == "white" else None)

    def factors(n):
        if isinstance(n, _Op) and n.kind == "product":
            return [f for child in n.children for f in factors(child)]
        return [n]

    return isinstance(node, _Op) and node.kind == "product" and any(
        f is constant for f in factors(node))


# The default kernel's restart box, as multiples of the scales (outputscale,
# length scale, noise); see plan_default.
DEFAULT_BOX = ((0.1, 0.01, 1e-4), (3.0, 2.0, 1.0))


def _length_scale_prior_parameters(d):
    """``(loc, variance)`` of the default length-scale prior of ``log(ell / range)`` for ``d`` features."""
    return math.sqrt(2.0) + 0.5 * math.log(d), 3.0


def length_scale_prior(X):
    r"""The default kernel's prior on every length scale, from the training inputs.

    BoTorch's dimension-scaled prior (Hvarfner, Hellsten & Nardi, 2024) on
    inputs scaled to the unit cube, written for the raw inputs: with
    :math:`r_j` the range of feature :math:`j` (1 for a constant feature),

    .. math::

        \ell_j / r_j \sim \mathrm{LogNormal}\big(\sqrt{2} + \tfrac12 \log d,\ \sqrt{3}\big).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)

    Returns
    -------
    torch.distributions.LogNormal
        Batch shape (n_features,), float64.
    """
    d = X.shape[1]
    loc, variance = _length_scale_prior_parameters(d)
    loc = torch.as_tensor(loc + np.log(_span(X)), dtype=torch.float64, device="cpu")
    scale = torch.full((d,), math.sqrt(variance), dtype=torch.float64, device="cpu")
    return torch.distributions.LogNormal(loc, scale)


def _span(X):
    """ndarray of shape (n_features,): the range of every feature (1 for a constant one)."""
    span = X.max(axis=0) - X.min(axis=0)
    return np.where(span > 0, span, 1.0)


# Gamma(concentration, rate) prior on the noise variance relative to each
# target's power (GPyTorch's and BoTorch's default noise prior before BoTorch
# 0.12): density ~ v^0.1 near 0, so a fit must gain from interpolating.
NOISE_PRIOR = (1.1, 0.05)


def noise_prior(log_power):
    r"""The default kernel's prior on every target's noise variance.

    .. math::

        \sigma_{n,t}^2 / P_t \sim \mathrm{Gamma}(1.1,\ 0.05),

    with :math:`P_t` the target's power (1 for a standardised target): nearly
    flat (its density grows as :math:`v^{0.1}`), but an exactly interpolating
    fit (:math:`\sigma_n^2 \to 0`) of a few noisy points is penalised enough
    to lose against explaining them as noise.

    Parameters
    ----------
    log_power : ndarray of shape (n_targets,)

    Returns
    -------
    torch.distributions.Gamma
        Batch shape (n_targets, 1), float64.
    """
    a, b = NOISE_PRIOR
    # floored: a target too large for float64's range keeps a finite log density
    rate = np.maximum(b * np.exp(-np.asarray(log_power, dtype=float)), np.finfo(float).tiny)
    rate = torch.as_tensor(rate, dtype=torch.float64, device="cpu").reshape(-1, 1)
    return torch.distributions.Gamma(torch.full_like(rate, a), rate)


def _spacing(X):
    """ndarray of shape (n_features,): the median gap between the sorted distinct values of every feature."""
    out = np.empty(X.shape[1])
    for j in range(X.shape[1]):
        gaps = np.diff(np.unique(X[:, j]))
        out[j] = np.median(gaps) if gaps.size else 1.0
    return out


# The recording resolution of a target (see recording_step): the smallest gap
# between its distinct values is divided by k = 1, 2, ... up to this until every
# value lies on the grid (0.2 and 0.5 apart: a grid of 0.1).
_STEP_DIVISORS = 10
# A value lies on the grid within this many steps (float64 rounding of decimal data).
_STEP_TOL = 1e-6
# Values closer than this many units in the last place of the target's largest
# magnitude are one value (sums and differences of rounded decimals).
_STEP_TIE_ULPS = 64
# A grid with more levels than this over the target's range is no resolution (float
# rounding would decide) and its floor would be below the noise's own bound anyway.
_STEP_MAX_LEVELS = 1e8
# The noise floor from the resolution is at most this fraction of the target's
# variance: with a handful of levels (a 0/1 target) the rounding variance
# step^2 / 12 is no small correction (Sheppard's) but most of the spread.
STEP_FLOOR_MAX = 1e-2


def recording_step(Y, observed):
    r"""The resolution every target was recorded to: the step of the grid its values lie on.

    Real targets are often rounded when recorded (protein to 0.1 %, weights to
    whole pounds). Rounding to a step :math:`\Delta` adds an error of variance
    :math:`\Delta^2 / 12` (Sheppard's correction) that no model can explain,
    and ties between rounded values let an interpolating fit's likelihood grow
    without bound as its noise goes to 0 (near-duplicate inputs with equal
    recorded values). The default kernel therefore keeps the noise variance
    at least :math:`\Delta^2 / 12` (less the noise already known, at most 1%
    of the target's variance; :func:`plan_default`).

    The step is the smallest gap between a target's distinct observed values,
    divided by the smallest :math:`k \le 10` for which every value lies on the
    grid of that step from the smallest value (within :math:`10^{-6}` of a
    step). Values closer than 64 units in the last place of the target's
    largest magnitude are one value (sums of rounded decimals). A target has
    a grid when it has at least three distinct values, or two with a tie,
    and at most :math:`10^8` steps over its range; continuous values almost
    never lie on one.

    Parameters
    ----------
    Y : ndarray of shape (n_samples, n_targets)
        The targets as given (any value where ``observed`` is False).
    observed : ndarray of shape (n_samples, n_targets), bool

    Returns
    -------
    ndarray of shape (n_targets,)
        The step in the units of ``Y``; 0 for a target on no grid.
    """
    values = np.sort(np.where(observed, Y, np.nan), axis=0)  # missing values last
    with np.errstate(over="ignore", invalid="ignore"):  # a range beyond float64: no grid
        offsets = values - values[:1]
        gaps = np.diff(values, axis=0)
    # values that differ in their last bits (0.1 + 0.2 against 0.3) are equal
    tie = _STEP_TIE_ULPS * np.finfo(float).eps * np.nanmax(np.abs(values), axis=0, initial=0.0)
    with np.errstate(invalid="ignore"):
        tied = (gaps <= tie).any(axis=0)
        distinct = gaps > tie
    gap = np.where(distinct, gaps, np.inf).min(axis=0, initial=np.inf)
    n_levels = distinct.sum(axis=0) + 1
    # a grid needs three levels, or two with a tie; float rounding decides a finer one
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        candidate = (((n_levels >= 3) | ((n_levels == 2) & tied))
                     & (np.nanmax(offsets, axis=0, initial=0.0) / gap < _STEP_MAX_LEVELS))
    steps = np.zeros(Y.shape[1])

    def on_grid(rows, columns, k):
        with np.errstate(divide="ignore", invalid="ignore"):
            q = offsets[rows][:, columns] / (gap[columns] / k)
            return ~(np.abs(q - np.round(q)) > _STEP_TOL).any(axis=0)  # NaN: missing, no vote

    for k in range(1, _STEP_DIVISORS + 1):
        todo = np.flatnonzero(candidate & (steps == 0))
        todo = todo[on_grid(slice(0, 16), todo, k)]  # continuous targets leave on a few rows
        todo = todo[on_grid(slice(None), todo, k)]
        steps[todo] = gap[todo] / k
    return steps


def plan_default(X, y, maskf, log_noise_floor=None):
    r"""The default kernel, scaled by the data, with its length-scale and noise priors.

    ``outputscale * RBF(ARD) + noise`` with, for target ``t`` of power
    :math:`P_t = \overline{y_t^2}` (the mean square of its observed values: 1
    for a standardised target) and feature ``j`` of range :math:`r_j`:

    * length scale: the prior of :func:`length_scale_prior` (the fit is a MAP
      estimate), starting at its mode, bounds :math:`[10^{-5}, 10^{5}]\,r_j`;
    * outputscale :math:`P_t`, bounds :math:`[10^{-5}, 10^{5}]\,P_t`;
    * noise :math:`10^{-2}\,P_t`, the prior of :func:`noise_prior`, bounds
      :math:`[\max(10^{-8} P_t, F_t), 10^{5} P_t]` with :math:`\log F_t` the
      ``log_noise_floor`` (the rounding variance of a target recorded to a
      step, at most 1% of its variance; 0 for a continuous target): no fit
      explains the data more exactly than they were recorded.

    Restarts are placed log-uniformly (a Sobol' design) in a box of plausible
    values rather than in these wide bounds (where most draws would be
    degenerate): length scales from the finer of :math:`0.01\,r_j` and the
    median spacing of the feature's values up to :math:`2\,r_j`, outputscale
    in :math:`[0.1, 3]\,P_t` and noise in :math:`[10^{-4}, 1]\,P_t`, from a
    signal with no noise to noise as large as the target (the high-noise
    basin of a weak signal); the noise from its floor where that is higher.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples, n_targets)
        Missing entries set to 0.
    maskf : ndarray of shape (n_samples, n_targets)
        1.0 where observed.
    log_noise_floor : ndarray of shape (n_targets,), default=None
        The log of the smallest noise variance every target's data can have,
        in the units of ``y``: the rounding variance :math:`\Delta_t^2 / 12`
        of its :func:`recording_step`, less the noise already known
        (``alpha``), at most ``STEP_FLOOR_MAX`` times the variance of its
        observed values (``-inf``: none). None: no floor.

    Returns
    -------
    KernelPlan
        With per-target ``theta0`` and ``bounds``; its scikit-learn twin is
        ``ConstantKernel * RBF(ARD) + WhiteKernel``.
    """
    n_features = X.shape[1]
    n_targets = y.shape[1]
    log_power = log_mean_square(y, np.maximum(maskf.sum(axis=0), 1.0))
    log_power = np.where(np.isfinite(log_power), log_power, 0.0)  # a target of zeros: power 1
    log_ls = np.broadcast_to(np.log(_span(X)), (n_targets, n_features))
    log_s = log_power[:, None]

    def scaled(outputscale, length_scale, noise):
        """Log hyperparameters (n_targets, n_params) at these multiples of the scales."""
        return np.concatenate([log_s + np.log(outputscale), log_ls + np.log(length_scale),
                               log_s + np.log(noise)], axis=1)

    bounds = np.stack([scaled(1e-5, 1e-5, 1e-8), scaled(1e5, 1e5, 1e5)], axis=-1)
    if log_noise_floor is not None:
        bounds[:, -1, 0] = np.maximum(bounds[:, -1, 0], log_noise_floor)
    box = np.stack([scaled(*DEFAULT_BOX[0]), scaled(*DEFAULT_BOX[1])], axis=-1)
    # the shortest length scales start at the spacing of each feature's values
    # when it is finer (a long series: weather from day to day)
    box[:, 1:n_features + 1, 0] = np.minimum(box[:, 1:n_features + 1, 0], np.log(_spacing(X)))
    box[:, -1, 0] = np.maximum(box[:, -1, 0], bounds[:, -1, 0])

    names = (
        ["outputscale"]
        + [f"length_scale[{j}]" for j in range(n_features)]
        + ["noise_level"]
    )
    ls = tuple(range(1, n_features + 1))
    priors = (PriorSpec("length_scale", ls, length_scale_prior(X), (n_features,), False),
              PriorSpec("noise_level", (n_features + 1,), noise_prior(log_power), (n_targets, 1), True))
    loc, variance = _length_scale_prior_parameters(n_features)
    mode = math.exp(loc - variance)  # of the length-scale prior, relative to the range
    return KernelPlan(
        kernel=StationaryKernel(nu=math.inf, n_lengthscales=n_features),
        theta0=scaled(1.0, mode, 1e-2),
        bounds=bounds,
        free=np.ones(n_features + 2, dtype=bool),
        names=names,
        restart_bounds=box,
        warn_at_upper=np.array([True] + [False] * n_features + [True]),
        prior_bounded=np.zeros((n_features + 2, 2), dtype=bool),
        priors=priors,
        length_scale_index=ls,
        outputscale_index=0,
        noise_index=n_features + 1,
        ambiguous=frozenset(),
        template=skk.ConstantKernel() * skk.RBF(np.ones(n_features)) + skk.WhiteKernel(),
        groups=(("k1__k1__constant_value", (0,), True), ("k1__k2__length_scale", ls, False),
                ("k2__noise_level", (n_features + 1,), True)),
        set_bounds=True,
        restart_design="sobol",
        race=True,
    )
