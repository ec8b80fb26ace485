"""QBatchSuggester: Bayesian optimisation that proposes q points at once."""

import math
import numbers
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.stats import qmc
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data
from torch.distributions import LogNormal

from ._core.acquisition import (
    ANALYTIC,
    MONTE_CARLO,
    MCOptions,
    Objective,
    make_analytic_acquisition,
    make_mc_acquisition,
    make_model,
)
from ._core.optimize import OptimizeOptions, maximize_acquisition
from ._core.threads import on_member_threads
from ._regressor import BatchedGaussianProcessRegressor
from ._validation import resolve_device, to_numpy, to_tensor, torch_generator
from .kernels import ConstantKernel, Matern, WhiteKernel

__all__ = ["QBatchSuggester", "Incumbent", "incumbent"]

_ACQUISITIONS = MONTE_CARLO + ANALYTIC

# A told point clears the nearest pending point within this fraction of each feature's width:
# rounding to 6 significant digits moves a value by at most 5e-7 of its magnitude, within
# 1e-6 of the width where |value| <= 2 * width (a box such as (0, 1000)); relative to the
# width, distinct points of a box narrower than 1e-12 stay apart.
PENDING_RTOL = 1e-6


class _DefaultGP(BatchedGaussianProcessRegressor):
    """The default GP of :class:`QBatchSuggester`, which does not warn at its bounds.

    Its bounds belong to its prior (fixed in the unit cube on standardised
    targets; see the notes of :class:`QBatchSuggester`), so a value fitted at
    one is treated as the regressor treats a bound set by a prior's support:
    not warned about. Decided in the fit itself, not by a warnings filter,
    which is process-wide and not thread-safe.
    """

    def _warn_after_fit(self, plan, bounds):
        at_prior_bounds = replace(plan, prior_bounded=np.ones_like(plan.prior_bounded))
        super()._warn_after_fit(at_prior_bounds, bounds)


def default_estimator(n_features):
    """The GP a :class:`QBatchSuggester` uses when none is given.

    ``ConstantKernel(1, (0.05, 20)) * Matern(0.5 * ones(d), (0.05, 10), nu=2.5)
    + WhiteKernel(1e-4, (1e-6, 0.1))`` on inputs in the unit cube and
    standardised targets (``normalize_y=True``), with 4 restarts, and a
    ``LogNormal(log(0.25 sqrt(d)), 1)`` prior on every length scale (a MAP
    fit; see the notes of :class:`QBatchSuggester`).

    Parameters
    ----------
    n_features : int

    Returns
    -------
    BatchedGaussianProcessRegressor
        Of a private subclass that does not warn about values at the bounds.
    """
    # float64 on the CPU whatever torch's default dtype and device (the fit converts it)
    loc = torch.tensor(math.log(0.25 * math.sqrt(n_features)), dtype=torch.float64, device="cpu")
    prior = LogNormal(loc, torch.ones((), dtype=torch.float64, device="cpu"))
    kernel = (ConstantKernel(1.0, (0.05, 20.0))
              * Matern(np.full(n_features, 0.5), (0.05, 10.0), nu=2.5, length_scale_prior=prior)
              + WhiteKernel(1e-4, (1e-6, 1e-1)))
    return _DefaultGP(kernel, normalize_y=True, n_restarts_optimizer=4)


def _check_int(name, value, low):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class Incumbent:
    """Outcome of :func:`incumbent`.

    Attributes
    ----------
    index : int or None
        The row; ``None`` when no row has every objective target observed.
    value : float or None
        Its objective ``y @ weights`` (not sign-flipped).
    feasible : bool
        Whether the row satisfies every constraint.
    """

    index: int | None
    value: float | None
    feasible: bool


def incumbent(Y, weights, constraints, maximize):
    """The best feasible observed row; the worst one if no row is feasible.

    The rule of the suggester's ``best_index_`` and of the ``best_f`` of its
    acquisition functions (and of ``benchmarks/bench_bo.py``'s regret).

    Parameters
    ----------
    Y : ndarray of shape (n_samples, n_targets)
        Observed targets (NaN: not observed).
    weights : ndarray of shape (n_targets,)
        The objective is ``Y @ weights`` over the targets of non-zero weight;
        a row with one of those targets unobserved has none.
    constraints : dict of {int: float}
        A row is feasible when ``Y[:, t] <= threshold`` for every item.
    maximize : bool
        Whether the objective is maximised (else minimised).

    Returns
    -------
    Incumbent
    """
    weights = np.asarray(weights, dtype=float)
    used = weights != 0
    obj = Y[:, used] @ weights[used]
    signed = obj if maximize else -obj
    finite = np.isfinite(obj)
    feasible = finite.copy()
    for t, thr in constraints.items():
        feasible &= Y[:, t] <= thr
    if feasible.any():
        index = int(np.argmax(np.where(feasible, signed, -np.inf)))
    elif finite.any():
        index = int(np.argmin(np.where(finite, signed, np.inf)))
    else:
        return Incumbent(None, None, False)
    return Incumbent(index, float(obj[index]), bool(feasible[index]))


class QBatchSuggester(BaseEstimator):
    """Bayesian optimisation that suggests ``q`` points to evaluate jointly.

    A Gaussian process (one independent GP per target, fitted as one batch by
    :class:`BatchedGaussianProcessRegressor`) models the evaluations so far;
    a q-batch acquisition function (Monte-Carlo, with fixed quasi-random base
    samples, or analytic for ``q = 1``) is maximised over ``q`` points at once
    with batched random restarts and a per-restart L-BFGS inside the bounds.
    Before any evaluation, :meth:`ask` hands out a scrambled Sobol' design.

    Parameters
    ----------
    estimator : BatchedGaussianProcessRegressor or None, default=None
        The GP model (cloned at fit). It is fitted to the inputs mapped to the
        unit cube ``[0, 1]^d`` by ``bounds``. ``None`` selects
        ``ConstantKernel * Matern(nu=2.5, ARD) + WhiteKernel`` with
        ``normalize_y=True`` (see Notes).
    bounds : array-like of shape (n_features, 2)
        The search box as one ``(low, high)`` pair per feature, the layout of
        ``scipy.optimize.minimize`` and scikit-optimize:
        ``bounds=[(-5, 10), (0, 15)]`` means ``-5 <= x0 <= 10`` and
        ``0 <= x1 <= 15``. Required; finite, with ``low < high`` and a width
        ``high - low`` that float64 holds. BoTorch's
        ``bounds`` tensor is the transpose, shape ``(2, n_features)`` (a row
        of lows, a row of highs): pass ``bounds.T``. Such an array is rejected
        when ``n_features != 2``, but a 2 x 2 array cannot be told apart and
        is always read as two ``(low, high)`` rows.
    acquisition : str, default="qLogNEI"
        Monte-Carlo: ``"qEI"``, ``"qLogEI"``, ``"qNEI"``, ``"qLogNEI"``,
        ``"qUCB"``, ``"qPI"``, ``"qSimpleRegret"``; analytic (``q = 1``, no
        pending points): ``"EI"``, ``"LogEI"``, ``"UCB"``, ``"PI"``.
    q : int, default=1
        Number of points suggested together.
    num_restarts : int, default=10
        Starting points of the acquisition optimiser, optimised together.
    raw_samples : int, default=512
        Quasi-random candidate sets scored to choose the starting points.
    mc_samples : int, default=128
        Monte-Carlo samples (scrambled Sobol, fixed for one suggestion).
    maximize : bool, default=False
        ``False``: the objective is minimised (as scikit-optimize);
        ``True``: maximised (as BoTorch).
    objective_weights : array-like of shape (n_targets,) or None, default=None
        The objective is ``y @ objective_weights``; ``None`` means the first
        target alone.
    constraints : dict or None, default=None
        ``{target_index: threshold}``: a point is feasible when every listed
        target is ``<= threshold``. In the Monte-Carlo acquisition functions a
        constraint weighs every sample by ``sigmoid((threshold - f) / eta)``
        with ``eta = 1e-3`` times the target's standard deviation; in EI,
        LogEI and PI by the probability of feasibility.
    integer_features : array-like of int or None, default=None
        Features that take integer values: suggestions are rounded to the
        nearest integer inside the bounds after the continuous optimisation.
    beta : float, default=0.2
        Exploration weight of ``"UCB"`` and ``"qUCB"``.
    max_iter : int, default=200
        L-BFGS iterations per restart.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial design, the GP fit (when the estimator's own
        ``random_state`` is ``None``), the quasi-random candidates and base
        samples and the choice of restarts. An int gives identical
        suggestions for identical data.

    Attributes
    ----------
    estimator_ : BatchedGaussianProcessRegressor
        The GP fitted to the data, on unit-cube inputs (set by the first
        observation).
    bounds_ : ndarray of shape (n_features, 2)
        The checked ``bounds``: ``bounds_[:, 0]`` the lows, ``bounds_[:, 1]``
        the highs.
    X_ : ndarray of shape (n_samples, n_features)
        Inputs evaluated so far.
    y_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Their observed targets (NaN: not observed).
    X_pending_ : ndarray of shape (n_pending, n_features)
        Points handed out by :meth:`ask` and not yet passed to :meth:`tell`.
    n_features_in_ : int
    n_targets_ : int
    best_index_ : int or None
        Row of ``X_`` with the best feasible objective observed (``None``
        if no observed row is feasible).
    X_best_ : ndarray of shape (n_features,) or None
        That row's input.
    y_best_ : float or None
        Its objective value ``y @ objective_weights``.

    See Also
    --------
    BatchedGaussianProcessRegressor : The GP model.

    Notes
    -----
    **Shapes.** Internally every acquisition function takes ``b x q x d``
    candidate sets (a t-batch of ``b`` q-batches) and returns ``b`` values;
    :meth:`suggest` always returns an array of shape ``(q, n_features)``.

    **Initial design.** Before any observation (no :meth:`fit`, no
    :meth:`tell` yet) :meth:`ask` and :meth:`suggest` return the next points
    of a scrambled Sobol' sequence scaled to the box, as scikit-optimize's
    ``Optimizer`` hands out its initial points: with an int
    ``random_state``, the first ``n`` points are
    ``qmc.scale(qmc.Sobol(d, scramble=True, rng=random_state).random(n), low,
    high)`` (``seed=np.random.default_rng(random_state)`` in place of ``rng``
    before scipy 1.15; integer features rounded), and each :meth:`ask`
    continues the sequence. Ask for the whole design at once (``ask(n_points=n_init)``)
    to keep Sobol's balance.

    **Pending points** (being evaluated, not yet observed) are appended to
    every candidate set of a Monte-Carlo acquisition function, so their joint
    posterior with the candidates counts: a candidate close to a pending point
    adds little. :meth:`ask` registers its points as pending until
    :meth:`tell` receives them (matched to within ``1e-6`` of the box's
    width in every feature; see :meth:`tell`).

    **Suggest, then ask.** :meth:`suggest` shows the points the next
    :meth:`ask` hands out: a suggestion's random numbers are drawn once and
    used by that :meth:`ask`.

    **Threads and torch's settings.** The acquisition is optimised on a
    single-threaded thread of skbgp's own, as the GP is fitted (the caller's
    torch threads are left as they are), with inference mode off there, so
    that it works inside ``torch.inference_mode()``; torch's default dtype
    and device change nothing.

    **Observations outside the box** are modelled (the GP sees them outside
    the unit cube) but suggestions stay inside it; :meth:`fit` and
    :meth:`tell` warn about them.

    **Noise.** The acquisition functions use the latent function (no
    observation noise). ``qNEI`` and ``qLogNEI`` take the incumbent as the best
    feasible latent value over the evaluated points in each joint sample
    (noisy EI), and so suit noisy evaluations; ``qEI``, ``qLogEI``, ``qPI``,
    ``EI``, ``LogEI`` and ``PI`` take the best feasible observed value.

    **Default GP.** Inputs are in the unit cube and targets standardised, so
    fixed bounds suit every problem: length scales in ``[0.05, 10]``,
    outputscale in ``[0.05, 20]``, noise variance in ``[1e-6, 0.1]``, and a
    ``LogNormal(log(0.25 sqrt(d)), 1)`` prior on every length scale, so the
    fit is MAP. With few points, unbounded maximum-likelihood fits chase
    spurious short length scales, and in many dimensions send most length
    scales to their upper bound, so that the suggestions crowd the faces of
    the box; the bounds and the prior (whose median grows as ``sqrt(d)``, as
    BoTorch's dimension-scaled prior does) prevent both. The default GP does
    not warn about values at its bounds, which belong to its prior (no
    warnings filter is set: that would be process-wide and not thread-safe);
    pass an estimator to see such warnings.

    **Integer features** are optimised as continuous and rounded at the end,
    which may make two of the ``q`` points equal.

    Examples
    --------
    >>> import numpy as np
    >>> from skbgp import QBatchSuggester
    >>> def f(X):
    ...     return ((X - 0.3) ** 2).sum(axis=1)
    >>> opt = QBatchSuggester(bounds=[(0, 1), (0, 2)], q=2, num_restarts=2,
    ...                       raw_samples=32, mc_samples=32, random_state=0)
    >>> X = opt.ask(n_points=6)  # before any observation: a Sobol' design
    >>> X.shape
    (6, 2)
    >>> opt = opt.tell(X, f(X))
    >>> opt.ask().shape
    (2, 2)
    """

    def __init__(
        self,
        estimator=None,
        *,
        bounds=None,
        acquisition="qLogNEI",
        q=1,
        num_restarts=10,
        raw_samples=512,
        mc_samples=128,
        maximize=False,
        objective_weights=None,
        constraints=None,
        integer_features=None,
        beta=0.2,
        max_iter=200,
        random_state=None,
    ):
        self.estimator = estimator
        self.bounds = bounds
        self.acquisition = acquisition
        self.q = q
        self.num_restarts = num_restarts
        self.raw_samples = raw_samples
        self.mc_samples = mc_samples
        self.maximize = maximize
        self.objective_weights = objective_weights
        self.constraints = constraints
        self.integer_features = integer_features
        self.beta = beta
        self.max_iter = max_iter
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        if self.estimator is not None and not (isinstance(
                self.estimator, BatchedGaussianProcessRegressor) and self.estimator._exact):
            raise TypeError(
                "estimator must be None or a skbgp.BatchedGaussianProcessRegressor (exact GPs); "
                f"got {type(self.estimator).__name__}."
            )
        if self.acquisition not in _ACQUISITIONS:
            raise ValueError(
                f"acquisition must be one of {_ACQUISITIONS}; got {self.acquisition!r}."
            )
        _check_int("q", self.q, 1)
        _check_int("num_restarts", self.num_restarts, 1)
        _check_int("raw_samples", self.raw_samples, 1)
        _check_int("mc_samples", self.mc_samples, 1)
        _check_int("max_iter", self.max_iter, 1)
        if not isinstance(self.maximize, (bool, np.bool_)):
            raise TypeError(f"maximize must be True or False; got {self.maximize!r}.")
        if not isinstance(self.beta, numbers.Real) or not self.beta >= 0:
            raise ValueError(f"beta must be a non-negative number; got {self.beta!r}.")

    def _check_bounds(self):
        """ndarray of shape (n_features, 2): ``bounds`` checked, a (low, high) row per feature."""
        layout = ("bounds must have shape (n_features, 2), one (low, high) pair per feature "
                  "as in scipy.optimize.minimize, e.g. bounds=[(-5, 10), (0, 15)]")
        if self.bounds is None:
            raise ValueError(f"bounds is required: {layout}.")
        try:
            bounds = np.asarray(self.bounds, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{layout}; got {self.bounds!r}.") from exc
        if bounds.ndim != 2 or bounds.shape[1] != 2 or bounds.shape[0] < 1:
            hint = (" It looks like BoTorch's (2, n_features) layout, a row of lows and a row of "
                    "highs: pass its transpose, bounds.T." if bounds.ndim == 2
                    and bounds.shape[0] == 2 else "")
            raise ValueError(f"{layout}; got shape {bounds.shape}.{hint}")
        bad = [j for j, (low, high) in enumerate(bounds)
               if not (np.isfinite(low) and np.isfinite(high) and low < high)]
        if bad:
            raise ValueError(
                f"{layout}, finite with low < high; the rows of feature(s) {bad} are "
                f"{[(float(bounds[j, 0]), float(bounds[j, 1])) for j in bad]}. (A row of lows "
                "and a row of highs is BoTorch's layout: pass its transpose.)"
            )
        with np.errstate(over="ignore"):
            wide = np.flatnonzero(~np.isfinite(bounds[:, 1] - bounds[:, 0]))
        if wide.size:
            raise ValueError(
                f"The width high - low of feature(s) {wide.tolist()} overflows float64 (bounds "
                f"{[(float(bounds[j, 0]), float(bounds[j, 1])) for j in wide]}): the unit cube "
                "the GP works in cannot be mapped to such a box. Rescale those features so "
                "that high - low is finite (below about 1.8e308)."
            )
        return bounds

    def _check_objective(self, n_targets):
        if self.objective_weights is None:
            weights = np.zeros(n_targets)
            weights[0] = 1.0
        else:
            weights = np.asarray(self.objective_weights, dtype=float)
            if weights.shape != (n_targets,) or not np.all(np.isfinite(weights)):
                raise ValueError(
                    f"objective_weights must be {n_targets} finite numbers (one per target); "
                    f"got {self.objective_weights!r}."
                )
            if not np.any(weights):
                raise ValueError("objective_weights must not all be zero.")
        constraints = {} if self.constraints is None else self.constraints
        if not isinstance(constraints, dict):
            raise TypeError(
                "constraints must be a dict {target_index: threshold} (feasible where "
                f"y[:, target_index] <= threshold); got {type(constraints).__name__}."
            )
        for t, thr in constraints.items():
            if not isinstance(t, numbers.Integral) or not 0 <= t < n_targets:
                raise ValueError(
                    f"constraints keys must be target indices in [0, {n_targets}); got {t!r}."
                )
            if not isinstance(thr, numbers.Real) or not np.isfinite(thr):
                raise ValueError(
                    f"The threshold of constraint {t} must be a finite number; got {thr!r}."
                )
        return weights, {int(t): float(v) for t, v in constraints.items()}

    def _check_integer_features(self, n_features):
        if self.integer_features is None:
            return np.zeros(0, dtype=int)
        idx = np.asarray(self.integer_features)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or np.any(idx < 0) \
                or np.any(idx >= n_features):
            raise ValueError(
                f"integer_features must be a list of feature indices in [0, {n_features}); "
                f"got {self.integer_features!r}."
            )
        return idx

    # ----------------------------------------------------------------- state
    def _start(self):
        """Check the parameters and bounds and start with no observations."""
        self._check_params()
        bounds = self._check_bounds()
        d = bounds.shape[0]
        ints = self._check_integer_features(d)
        low, high = bounds[ints, 0], bounds[ints, 1]
        empty = [int(j) for j, lo, hi in zip(ints, low, high) if np.ceil(lo) > np.floor(hi)]
        if empty:
            raise ValueError(
                f"Integer feature(s) {empty} have bounds that hold no integer "
                f"({[(float(bounds[j, 0]), float(bounds[j, 1])) for j in empty]}); widen the "
                "bounds to include one, or drop the feature from integer_features."
            )
        self.bounds_ = bounds
        self.n_features_in_ = d
        self._rng = check_random_state(self.random_state)
        # the initial design: a scrambled Sobol' sequence, of which _n_design points are out
        self._design_seed = (int(self.random_state)
                             if isinstance(self.random_state, numbers.Integral)
                             else int(self._rng.randint(np.iinfo(np.int32).max)))
        self._n_design = 0
        # the suggestions' seeds have their own stream: suggest() before a tell() then draws
        # nothing that the refit's seed would otherwise have drawn
        self._suggest_rng = np.random.RandomState(int(self._rng.randint(np.iinfo(np.int32).max)))
        self._seed = None  # the seed of the next suggestion, drawn once, used by the next ask()
        self.X_pending_ = np.empty((0, d))

    def _atomic(self, update):
        """Call ``update()``; on any exception (KeyboardInterrupt too) restore the state before.

        The random state is restored with the attributes, so that a retried
        call draws what the failed one drew.
        """
        saved = dict(self.__dict__)
        streams = [(rng, rng.get_state()) for rng in (saved.get("_rng"), saved.get("_suggest_rng"))
                   if rng is not None]
        try:
            update()
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            for rng, state in streams:
                rng.set_state(state)
            raise

    def _check_observations(self, X, y):
        """The first observations, checked as :meth:`fit` checks them."""
        X, y = validate_data(
            self, X, y,
            validate_separately=(
                dict(dtype=np.float64, ensure_2d=True),
                dict(dtype=np.float64, ensure_2d=False, ensure_all_finite="allow-nan"),
            ),
        )
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"X and y have different numbers of rows: {X.shape[0]} and {y.shape[0]}."
            )
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D; got an array of shape {y.shape}.")
        d = self.bounds_.shape[0]
        if X.shape[1] != d:
            raise ValueError(
                f"X has {X.shape[1]} features but bounds has {d} (low, high) pairs; bounds "
                "must have shape (n_features, 2), one row per feature."
            )
        n_targets = 1 if y.ndim == 1 else y.shape[1]
        weights, constraints = self._check_objective(n_targets)
        Y = y.reshape(y.shape[0], -1)
        used = sorted(set(np.flatnonzero(weights)) | set(constraints))
        unobserved = [int(t) for t in used if np.isnan(Y[:, t]).all()]
        if unobserved:
            raise ValueError(
                f"Target(s) {unobserved} enter the objective or a constraint but have no "
                "observed value (all NaN), so the acquisition is undefined; evaluate them at "
                "some points first, or leave them out of weights and constraints."
            )
        self.n_targets_ = n_targets
        return X, y

    def _warn_outside(self, X, stacklevel):
        """Warn about rows of ``X`` (n_new, n_features) outside the box, at the caller
        ``stacklevel`` frames up."""
        low, high = self.bounds_[:, 0], self.bounds_[:, 1]
        outside = np.any((X < low) | (X > high), axis=1)
        if outside.any():
            box = [(float(lo), float(hi)) for lo, hi in self.bounds_]
            warnings.warn(
                f"{int(outside.sum())} of the {X.shape[0]} observed points lie outside the "
                f"bounds {box} ((low, high) per feature). The GP models them, but suggestions "
                "stay inside the box; widen bounds if the search should reach them.",
                UserWarning, stacklevel=stacklevel,
            )

    # ---------------------------------------------------------------- fitting
    def fit(self, X, y):
        """Fit the GP to the evaluations so far, forgetting any earlier state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Evaluated inputs; a UserWarning counts those outside ``bounds``.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Their targets (NaN marks a target that was not observed).

        Returns
        -------
        self : QBatchSuggester
            The fitted suggester, with no pending points.
        """
        def update():
            self._start()
            X_checked, y_checked = self._check_observations(X, y)
            self._warn_outside(X_checked, stacklevel=5)  # update, _atomic, fit, the user
            self._fit_model(X_checked, y_checked)

        self._atomic(update)  # a failed or interrupted fit leaves the previous state
        return self

    def _fit_model(self, X, y):
        est = default_estimator(X.shape[1]) if self.estimator is None else clone(self.estimator)
        if est.random_state is None:
            est.set_params(random_state=int(self._rng.randint(np.iinfo(np.int32).max)))
        est.fit(self._to_unit(X), y)  # the default GP does not warn at its bounds (_DefaultGP)
        if not est.gps_.kernel.stationary:
            raise ValueError(
                "QBatchSuggester's acquisition functions need an estimator whose kernel is "
                "a scaled stationary kernel with noise, [ConstantKernel() *] RBF() or "
                "Matern(nu in 0.5, 1.5, 2.5, inf) [+ WhiteKernel()] in this operand order "
                "(priors allowed); got kernel "
                f"{est.kernel!r}. Use such a kernel, or the default estimator."
            )
        self.estimator_ = est
        self.X_ = X
        self.y_ = y
        weights, constraints = self._check_objective(self.n_targets_)
        best = incumbent(y.reshape(y.shape[0], -1), weights, constraints, self.maximize)
        if best.feasible:
            self.best_index_ = best.index
            self.X_best_ = X[best.index].copy()
            self.y_best_ = best.value
        else:
            self.best_index_ = self.X_best_ = self.y_best_ = None

    # ------------------------------------------------------------- suggestion
    def _acquisition_function(self, q, pending, generator):
        """The core acquisition over the used targets, in the unit cube."""
        est = self.estimator_
        device = resolve_device(est.device)
        as_t = lambda a: to_tensor(a, torch.float64, device)  # noqa: E731
        weights, constraints = self._check_objective(self.n_targets_)
        used = sorted(set(np.flatnonzero(weights)) | set(constraints))
        position = {t: i for i, t in enumerate(used)}
        gps = est.gps_
        model = make_model(
            gps.kernel, as_t(gps.theta[used]), as_t(gps.X_train),
            gps.factors(used, device=device, dtype=torch.float64),
            as_t(gps.dual[used]), as_t(gps.observed[:, used].T.astype(float)),
            as_t(gps.y_mean[used]), as_t(gps.y_std[used]),
        )
        sign = 1.0 if self.maximize else -1.0
        targets = list(constraints)
        objective = Objective(
            weights=as_t(sign * weights[used]),
            constraint_targets=torch.as_tensor([position[t] for t in targets], dtype=torch.long,
                                               device=device),
            thresholds=as_t(np.array([constraints[t] for t in targets], dtype=float)),
            eta=as_t(np.array([1e-3 * gps.y_std[t] for t in targets], dtype=float)),
        )
        best = incumbent(self.y_.reshape(self.y_.shape[0], -1), weights, constraints,
                         self.maximize)
        if best.index is None:
            raise ValueError(
                "No row of y has every objective target observed; cannot find an incumbent. "
                "Evaluate every target of the objective at one point at least."
            )
        best_f = sign * best.value  # the acquisition functions maximise
        name = self.acquisition
        if name in ANALYTIC:
            if q != 1:
                raise ValueError(
                    f"The analytic acquisition {name!r} suggests one point at a time; got "
                    f"q = {q}. Use a Monte-Carlo acquisition such as 'q{name}' or 'qLogNEI'."
                )
            if pending.shape[0]:
                raise ValueError(
                    f"The analytic acquisition {name!r} cannot account for pending points; "
                    "use a Monte-Carlo acquisition such as 'qLogNEI'."
                )
            return make_analytic_acquisition(name, model, objective, best_f, beta=self.beta)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device="cpu"))
        return make_mc_acquisition(
            name, model, objective, q, MCOptions(self.mc_samples, seed, beta=self.beta),
            X_pending=as_t(pending) if pending.shape[0] else None, best_f=best_f,
            X_baseline=model.X_train,
        )

    def _to_unit(self, X):
        """Inputs (n, n_features) mapped to the unit cube by the bounds."""
        low, high = self.bounds_[:, 0], self.bounds_[:, 1]
        return (X - low) / (high - low)

    def _to_box(self, U):
        """Unit-cube points (n, n_features) mapped into the box, integer features rounded."""
        low, high = self.bounds_[:, 0], self.bounds_[:, 1]
        X = np.clip(low + U.clip(0.0, 1.0) * (high - low), low, high)
        ints = self._check_integer_features(self.n_features_in_)
        if ints.size:
            lo, hi = np.ceil(low[ints]), np.floor(high[ints])
            X[:, ints] = np.clip(np.round(X[:, ints]), lo, np.maximum(lo, hi))
        return X

    def _initial_design(self, n_points):
        """Points ``_n_design`` to ``_n_design + n_points`` of the scrambled Sobol' sequence."""
        engine = qmc.Sobol(self.n_features_in_, scramble=True,
                           seed=np.random.default_rng(self._design_seed))
        # the first 2^k points, then those wanted: the same points as random(n), without its
        # warning about the balance of 2^k points (a design of any size is wanted)
        k = max(0, math.ceil(math.log2(self._n_design + n_points)))
        U = engine.random_base2(k)[self._n_design:self._n_design + n_points]
        return self._to_box(U)

    def _check_points(self, X, name):
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} must have shape (n_points, {self.n_features_in_}); got {X.shape}."
            )
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{name} must be finite.")
        return X

    def suggest(self, n_points=None, X_pending=None):
        """Suggest points to evaluate next, chosen jointly.

        Before any observation, the next points of the initial design (a
        scrambled Sobol' sequence in the box; see Notes). The points are those
        that the next :meth:`ask` with the same arguments hands out; calling
        :meth:`suggest` draws no random numbers of its own.

        Parameters
        ----------
        n_points : int or None, default=None
            Number of points; ``None`` means ``q``.
        X_pending : array-like of shape (n_pending, n_features) or None, default=None
            Points being evaluated whose results are not known yet, in
            addition to those registered by :meth:`ask`. Not accepted before
            any observation (the initial design does not depend on them).

        Returns
        -------
        X_next : ndarray of shape (n_points, n_features)
            Inside the bounds (integer features rounded).
        """
        if not hasattr(self, "bounds_"):
            self._start()
        q = self.q if n_points is None else _check_int("n_points", n_points, 1)
        if not hasattr(self, "X_"):
            if X_pending is not None:
                raise ValueError(
                    "X_pending is not used before any observation: the initial design "
                    "continues a Sobol' sequence past the points ask() handed out. Call "
                    "suggest() without X_pending, or tell() some evaluations first."
                )
            return self._initial_design(q)
        pending = self.X_pending_
        if X_pending is not None:
            pending = np.vstack([pending, self._check_points(X_pending, "X_pending")])
        if self._seed is None:  # drawn once: suggest() shows what the next ask() hands out
            self._seed = int(self._suggest_rng.randint(np.iinfo(np.int32).max))
        return self._to_box(self._maximize(q, self._to_unit(pending), self._seed))

    def _maximize(self, q, pending, seed):
        """The best ``q`` points (q, n_features) in the unit cube, from ``seed``.

        On skbgp's own single-threaded thread, as the fit (see
        :func:`~skbgp._core.threads.on_member_threads`): a busy machine slows
        it down no more than it slows one thread, and the caller's torch
        threads are left as they are. With inference mode off on that thread,
        since the optimiser needs gradients even inside the caller's
        ``torch.inference_mode()``.
        """
        device = resolve_device(self.estimator_.device)
        options = OptimizeOptions(num_restarts=self.num_restarts, raw_samples=self.raw_samples,
                                  max_iter=self.max_iter)

        def work():
            with torch.inference_mode(False):
                generator = torch_generator(seed)
                acq = self._acquisition_function(q, pending, generator)
                result = maximize_acquisition(acq, q, self.n_features_in_, options,
                                              generator=generator, device=device)
                return to_numpy(result.X)

        return on_member_threads(device, work)

    def ask(self, n_points=None):
        """Suggest points and register them as pending until :meth:`tell`.

        Before any observation (no :meth:`fit` or :meth:`tell` yet), the next
        points of a scrambled Sobol' design in the box: ``ask(n_points=n)`` on
        a new suggester with an int ``random_state`` returns
        ``qmc.scale(qmc.Sobol(d, scramble=True, rng=random_state).random(n),
        low, high)`` (integer features rounded), and later calls continue the
        sequence (see Notes).

        Parameters
        ----------
        n_points : int or None, default=None
            Number of points; ``None`` means ``q``.

        Returns
        -------
        X_next : ndarray of shape (n_points, n_features)
        """
        X_next = self.suggest(n_points)
        if not hasattr(self, "X_"):
            self._n_design += X_next.shape[0]
        self._seed = None  # handed out: the next suggestion draws anew
        self.X_pending_ = np.vstack([self.X_pending_, X_next])
        return X_next

    def tell(self, X, y):
        """Add evaluations, drop them from the pending points and refit the GP.

        The first :meth:`tell` (after :meth:`ask`, or on a new suggester)
        checks its data as :meth:`fit` does and fixes the number of targets.

        Parameters
        ----------
        X : array-like of shape (n_new, n_features) or (n_features,)
            Evaluated inputs; one point may be given as a 1-D array. A
            UserWarning counts those outside ``bounds``.
        y : array-like of shape (n_new,) or (n_new, n_targets), or a number
            Their targets; one point's as a number (one target) or a 1-D
            array of its targets.

        Returns
        -------
        self : QBatchSuggester

        Notes
        -----
        A told point clears the pending point nearest to it that lies within
        ``1e-6`` of the box's width in every feature (so points rounded to 6
        significant digits match in a box such as ``(0, 1000)``); a UserWarning
        names each told point that matches no pending point while some are
        pending. The call is atomic: if the refit fails or is interrupted, the
        suggester is left exactly as it was (the evaluations are neither lost
        nor half added).
        """
        self._atomic(lambda: self._tell(X, y))
        return self

    def _tell(self, X, y):
        if not hasattr(self, "bounds_"):
            self._start()
        one = np.ndim(X) == 1
        if not hasattr(self, "X_"):  # the first observations
            if one:
                X = np.reshape(X, (1, -1))
                y = np.reshape(y, (1, -1) if np.size(y) > 1 else (1,))
            X, y = self._check_observations(X, y)
            X_all, y_all = X, y
        else:
            X = self._check_points(np.atleast_2d(np.asarray(X, dtype=float)) if one else X, "X")
            y = np.asarray(y, dtype=float)
            per_point = int(np.prod(self.y_.shape[1:], dtype=int))  # 1, or the number of targets
            if one and y.size == per_point:  # one point: its target, or its targets
                y = y.reshape((1,) + self.y_.shape[1:])
            if (y.shape[:1] != X.shape[:1] or y.ndim != self.y_.ndim
                    or y.shape[1:] != self.y_.shape[1:]):
                raise ValueError(
                    f"y must have shape {(X.shape[0],) + self.y_.shape[1:]} to match X and the "
                    f"targets seen in fit; got {y.shape}."
                )
            if np.isinf(y).any():
                raise ValueError("y contains infinity.")
            X_all, y_all = np.vstack([self.X_, X]), np.concatenate([self.y_, y])
        # the user's call is 6 frames up: here, _tell, the lambda, _atomic, tell
        self._warn_outside(X, stacklevel=6)
        self.X_pending_ = self._pending_after(X)
        self._fit_model(X_all, y_all)

    def _pending_after(self, X):
        """The pending points (n_pending', n_features) left when the rows of ``X`` are told.

        Each row clears the nearest pending point (in widths of the box) within
        ``PENDING_RTOL`` of the width in every feature; a UserWarning names the
        rows that clear none while points are pending.
        """
        pending = self.X_pending_
        width = self.bounds_[:, 1] - self.bounds_[:, 0]
        keep = np.ones(pending.shape[0], dtype=bool)
        unmatched = []
        for row in X:
            gap = np.max(np.abs(pending - row) / width, axis=1, initial=0.0)
            gap[~keep] = np.inf
            nearest = int(np.argmin(gap)) if gap.size else -1
            if nearest >= 0 and gap[nearest] <= PENDING_RTOL:
                keep[nearest] = False
            elif pending.shape[0]:
                unmatched.append(row)
        if unmatched:
            shown = ", ".join(np.array2string(row, precision=17, separator=", ")
                              for row in unmatched[:5])
            more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
            warnings.warn(
                f"Told point(s) {shown}{more} match none of the {pending.shape[0]} pending "
                "point(s) (handed out by ask() and not yet told), which stay pending. Tell the "
                "points as ask() returned them (to within 1e-6 of the box width per feature); "
                "points evaluated outside ask() are fine to tell, and fit() clears the pending "
                "points.",
                UserWarning, stacklevel=6,
            )
        return pending[keep]
