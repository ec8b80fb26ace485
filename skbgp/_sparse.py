"""SparseBatchedGaussianProcessRegressor: many independent sparse GPs for large n, fitted at once."""

import numbers
from dataclasses import replace

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._core.sparse import sparse_nlml
from ._core.stationary import StationaryKernel
from ._engine import Engine, SparseSettings
from ._fitted import SparseFittedGPs
from ._problem import make_problem
from ._sklearn_kernels import Untranslatable
from ._regressor import BatchedGaussianProcessRegressor
from ._validation import to_numpy, to_tensor

__all__ = ["SparseBatchedGaussianProcessRegressor"]

# Rows the inducing points are chosen from, at most: the greedy selection holds
# m numbers per candidate and reads them m times (doc/sparse.rst has the measurements).
MAX_CANDIDATES = 20_000


class SparseBatchedGaussianProcessRegressor(BatchedGaussianProcessRegressor):
    r"""Independent sparse Gaussian process regression for every target, for large ``n_samples``.

    Every target gets its own GP with its own hyperparameters (ARD length
    scales, outputscale, noise level), as in
    :class:`BatchedGaussianProcessRegressor`, but conditioned on ``m =
    n_inducing`` inducing points of its own instead of on every training row:
    a fit costs ``O(n m^2)`` time and ``O(m^2 + m \cdot \text{block})``
    memory per target instead of ``O(n^3)`` and ``O(n^2)``. All targets are
    fitted simultaneously, in chunks, with the same batched L-BFGS.

    The fit, for every target:

    1. the exact estimator's fit (:class:`BatchedGaussianProcessRegressor`,
       with its restarts and priors) of a random subset of
       ``init_subset_size`` rows gives the hyperparameters;
    2. greedy variance selection (a pivoted Cholesky of the prior covariance
       at those hyperparameters) chooses ``n_inducing`` training rows as
       inducing points: each the row the points so far explain least;
    3. optionally (``bound_max_iter > 0``) the hyperparameters then maximise
       Titsias' collapsed variational bound on the log marginal likelihood
       over all rows (SGPR/VFE; plus the log prior with priors), the
       inducing points fixed;
    4. the optimal variational posterior of the inducing values given
       **every** row (Titsias') predicts.

    By default step 3 is skipped: at equal time, more inducing points at the
    subset's hyperparameters predicted better than fewer points with the
    bound maximised (the bound's evaluations cost ``4 n m^2`` each; see the
    "Large n" page).

    Parameters
    ----------
    kernel : sklearn kernel object, skbgp.kernels object or None, default=None
        ``None`` is the default model of :class:`BatchedGaussianProcessRegressor`
        (standardised targets, ``outputscale * RBF(ARD) + noise`` with its
        priors). A user's kernel must be a stationary kernel with a
        closed-form correlation: ``ConstantKernel * RBF`` or ``ConstantKernel
        * Matern`` (``nu`` 0.5, 1.5, 2.5), isotropic or ARD, with or without
        a ``WhiteKernel`` (and their :mod:`skbgp.kernels` twins, priors
        allowed); any other kernel is a ``ValueError``.
    n_inducing : int, default=1024
        Inducing points per target, chosen among the training rows (at most
        ``MAX_CANDIDATES`` = 20,000 random rows are candidates). Time grows
        as ``n_inducing**2`` per row, memory as ``n_inducing**2`` per target;
        fewer are used only when the rest are determined to rounding.
    init_subset_size : int, default=1000
        Rows of the exact fit that gives the hyperparameters (all rows when
        there are fewer).
    bound_max_iter : int, default=0
        L-BFGS iterations on the collapsed bound after the subset's fit (0:
        none). Each evaluates the bound and its gradient on up to
        ``bound_subset_size`` rows.
    bound_subset_size : int, default=20_000
        Rows whose bound is maximised when ``bound_max_iter > 0`` (a random
        subset beyond that: the cost of an evaluation is capped; the
        posterior always uses every row).
    alpha : float or array-like of shape (n_samples,), default=1e-10
        Added to every target's noise variance (a known noise per sample).
    optimizer : {"lbfgs", "fmin_l_bfgs_b"} or None, default="lbfgs"
        ``None`` keeps the kernel's initial hyperparameters (no subset fit
        either); a callable is not supported.
    n_restarts_optimizer : int, default=2
        Extra starting points of the subset's exact fit (step 1).
    normalize_y, copy_X_train, random_state, max_iter, tol, device, dtype, n_jobs, verbose, n_targets
        As in :class:`BatchedGaussianProcessRegressor`; ``random_state``
        also draws the subset and the candidate rows; ``max_iter`` and
        ``tol`` apply to the subset's fit (``tol`` also to the bound's).
    jitter : float, default=1e-6
        Added to the diagonal of every ``K_mm``, relative to the outputscale
        (GPflow's default): it keeps the bound smooth and the factors stable
        and leaves it a lower bound.
    batch_size : int or None, default=None
        Targets per chunk; ``None`` from a 1 GiB budget of ``n_inducing``
        times (the candidates plus ``10 n_inducing``) numbers per target.
        The training rows go through in blocks, so it does not grow with
        ``n_samples``.

    Attributes
    ----------
    log_marginal_likelihood_value_ : float or ndarray of shape (n_targets,)
        A float for a single target. The collapsed bound over every row at the fitted hyperparameters, a
        lower bound on the log marginal likelihood of all rows (of the
        standardised target when ``normalize_y``); with ``bound_max_iter >
        0`` and no more than ``bound_subset_size`` rows, what the fit
        maximises (plus the log prior). By default the hyperparameters
        maximise the subset's exact likelihood (plus prior) instead.
    inducing_points_ : ndarray of shape (n_targets, n_inducing, n_features)
        Every target's inducing inputs (rows of ``X``; NaN for unused slots).
    n_inducing_ : ndarray of shape (n_targets,)
        Inducing points every target uses.
    gps_ : SparseFittedGPs
        Every target's fitted sparse GP.

    The other attributes are those of :class:`BatchedGaussianProcessRegressor`
    (``theta_``, ``kernels_``, ``length_scales_``, ``outputscales_``,
    ``noise_levels_``, ``log_prior_value_``, ``n_iter_``, ``n_evaluations_``,
    ``converged_``, ``failed_targets_``, ...), except ``L_`` and ``alpha_``,
    which a sparse model does not have; ``jitter_`` is 0.

    See Also
    --------
    BatchedGaussianProcessRegressor : the exact GPs, the better choice up to
        a few thousand rows.

    Notes
    -----
    ``predict(return_std=True)`` is the SGPR predictive distribution: the
    mean ``k(x, Z) (K_mm + K_mn \Lambda^{-1} K_nm)^{-1} K_mn \Lambda^{-1} y``
    and the variance ``k(x, x) - k(x, Z) K_mm^{-1} k(Z, x) + k(x, Z) (K_mm +
    K_mn \Lambda^{-1} K_nm)^{-1} k(Z, x)`` (plus the white noise unless
    ``observation_noise=False``), with ``\Lambda`` the noise variance plus
    ``alpha`` on every row. With the inducing points at every training row (``n_inducing >=
    n_samples``), bound and predictions are the exact GP's, up to
    ``jitter``. A target's result does not depend on the other targets, the
    chunks or the workers. The batched cross-validation,
    :func:`loo_predictive` and :class:`QBatchSuggester` take exact models
    only.

    References
    ----------
    M. Titsias, "Variational learning of inducing variables in sparse Gaussian
    processes", AISTATS 2009. D. Burt, C. E. Rasmussen and M. van der Wilk,
    "Convergence of sparse variational inference in Gaussian processes
    regression", JMLR 21 (2020).

    Examples
    --------
    >>> import numpy as np
    >>> from skbgp import SparseBatchedGaussianProcessRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(0, 10, size=(3000, 2))
    >>> y = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1])]) + 0.1 * rng.randn(3000, 2)
    >>> gpr = SparseBatchedGaussianProcessRegressor(n_inducing=64, random_state=0).fit(X, y)
    >>> mean, std = gpr.predict(X[:3], return_std=True)
    >>> mean.shape, gpr.inducing_points_.shape
    ((3, 2), (2, 64, 2))
    """

    _exact = False
    _GENERIC_KERNELS = False

    def __init__(
        self,
        kernel=None,
        *,
        n_inducing=1024,
        init_subset_size=1000,
        bound_max_iter=0,
        bound_subset_size=20_000,
        alpha=1e-10,
        optimizer="lbfgs",
        n_restarts_optimizer=2,
        normalize_y="auto",
        copy_X_train=True,
        random_state=None,
        max_iter=500,
        tol=1e-5,
        jitter=1e-6,
        device="cpu",
        dtype="float64",
        batch_size=None,
        n_jobs=None,
        verbose=0,
        n_targets=None,
    ):
        self.kernel = kernel
        self.n_inducing = n_inducing
        self.init_subset_size = init_subset_size
        self.bound_max_iter = bound_max_iter
        self.bound_subset_size = bound_subset_size
        self.alpha = alpha
        self.optimizer = optimizer
        self.n_restarts_optimizer = n_restarts_optimizer
        self.normalize_y = normalize_y
        self.copy_X_train = copy_X_train
        self.random_state = random_state
        self.max_iter = max_iter
        self.tol = tol
        self.jitter = jitter
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.n_targets = n_targets

    # ------------------------------------------------------------------ checks
    def _cache_bytes(self):
        return 0  # nothing to cache: the factors are m x m and always kept

    def _check_params(self):
        if callable(self.optimizer):
            raise ValueError(
                "SparseBatchedGaussianProcessRegressor does not take a callable optimizer; "
                "use optimizer='lbfgs' or None, or BatchedGaussianProcessRegressor."
            )
        for name, low in (("n_inducing", 1), ("init_subset_size", 1), ("bound_max_iter", 0),
                          ("bound_subset_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
        if (isinstance(self.jitter, bool) or not isinstance(self.jitter, numbers.Real)
                or not 0 <= self.jitter < 1):
            raise ValueError(f"jitter must be a number in [0, 1); got {self.jitter!r}.")
        return super()._check_params()

    # ---------------------------------------------------------------- fitting
    def prepare_fit(self, X, y, noise_variance=None):
        """As :meth:`BatchedGaussianProcessRegressor.prepare_fit`; a kernel the sparse
        estimator cannot run is refused here, before any warning about it."""
        try:
            problem = super().prepare_fit(X, y, noise_variance)
            supported = isinstance(problem.plan.kernel, StationaryKernel)
        except Untranslatable:
            supported = False
        if not supported:
            raise ValueError(
                "SparseBatchedGaussianProcessRegressor supports kernel=None and the kernels "
                "ConstantKernel * RBF|Matern (+ WhiteKernel), isotropic or ARD; got "
                f"{self.kernel}. Use BatchedGaussianProcessRegressor for other kernels."
            )
        return problem

    def finish_fit(self, problem, optimum=None):
        """Start (subset fit or ``optimum``), choose inducing points, maximise the bound; store.

        Parameters
        ----------
        problem : FitProblem
            From :meth:`prepare_fit` (all the rows).
        optimum : Optimum, optional
            Hyperparameters to start from instead of the subset's exact fit;
            they are kept as they are (no optimisation).

        Returns
        -------
        self : SparseBatchedGaussianProcessRegressor
        """
        n = problem.X.shape[0]
        rng = check_random_state(self.random_state)
        engine = Engine.of(self)
        start = None  # the subset fit's record
        if optimum is not None:
            theta = to_numpy(optimum.theta)
        elif self.optimizer is None:
            theta = problem.starts_np[0]
        else:
            theta, start = self._subset_start(problem, engine, rng)
        optimize = optimum is None and self.optimizer is not None and self.bound_max_iter > 0
        sparse = SparseSettings(n_inducing=self.n_inducing, jitter=float(self.jitter),
                                candidates=_random_rows(rng, n, MAX_CANDIDATES),
                                bound_rows=_random_rows(rng, n, self.bound_subset_size),
                                center=problem.X.mean(0))
        result = replace(engine, max_iter=max(1, self.bound_max_iter)).fit_sparse(
            problem, theta, sparse, optimize=optimize)
        if start is not None and start.n_iter.shape == result.n_iter.shape:
            # the record of both optimisations
            result = replace(result, n_iter=result.n_iter + start.n_iter,
                             n_evaluations=result.n_evaluations + start.n_evaluations,
                             converged=start.converged.astype(bool) & (result.converged | (not optimize)))
        self._store_fit(problem, result)
        used = result.zmask > 0
        self.n_inducing_ = used.sum(1)
        self.inducing_points_ = np.where(used[..., None], result.Z, np.nan)
        return self

    def _subset_start(self, problem, engine, rng):
        """``(theta, result)``: every target's exact fit on a random subset of rows (theta of
        shape (n_targets, P), in the full data's target scaling) and its FitResult.

        The subset is fitted exactly as the exact estimator fits those rows
        (its own scaling, kernel plan, bounds and starts); a target
        unobserved in it keeps its initial value.
        """
        n = problem.X.shape[0]
        rows = _random_rows(rng, n, self.init_subset_size)
        alpha, noise = problem.alpha_given, problem.noise_given
        try:
            # the full data were checked and warned about; a target unobserved in the subset
            # is handled below
            subset = make_problem(problem.spec, problem.X[rows], problem.y_given[rows],
                                  alpha[rows] if alpha.ndim else alpha,
                                  None if noise is None else noise[rows], warn=False)
        except ValueError:  # no target observed in the subset: the initial values
            return problem.starts_np[0].copy(), None
        result = engine.fit(subset)
        theta = result.theta.copy()
        # variances are relative to each target's variance: the subset's to the full data's
        kernel = problem.plan.kernel
        shift = 2.0 * np.log(subset.std / problem.std)
        if kernel.has_outputscale:
            theta[:, 0] += shift
        if kernel.has_noise:
            theta[:, -1] += shift
        bad = result.failed | subset.empty | ~np.isfinite(theta).all(1)
        theta[bad] = problem.starts_np[0][bad]
        return np.clip(theta, problem.bounds[..., 0], problem.bounds[..., 1]), result

    def _fitted_gps(self, problem, result, theta, failed):
        return SparseFittedGPs(problem, result, self.X_train_, theta, failed, float(self.jitter),
                               center=problem.X.mean(0))

    # ------------------------------------------------------------- the model
    @property
    def L_(self):
        """A sparse model has no ``n_samples x n_samples`` factors (AttributeError)."""
        raise AttributeError(
            "SparseBatchedGaussianProcessRegressor has no L_: it is conditioned on its "
            "inducing points (gps_.Lmm and gps_.LB are its factors)."
        )

    @property
    def alpha_(self):
        """A sparse model has no dual coefficients over the training rows (AttributeError)."""
        raise AttributeError(
            "SparseBatchedGaussianProcessRegressor has no alpha_: its dual coefficients are "
            "over the inducing points (gps_.dual)."
        )

    def log_marginal_likelihood(self, theta=None, eval_gradient=False, clone_kernel=True):
        """The collapsed bound of every target (at the fitted inducing points).

        Parameters
        ----------
        theta : array-like of shape (n_targets, n_free) or (n_free,), default=None
            Log hyperparameters that are optimised, in the order of
            ``hyperparameter_names_``; ``None`` returns
            ``log_marginal_likelihood_value_``.
        eval_gradient : bool, default=False
            Also return the gradient with respect to ``theta``.
        clone_kernel : bool, default=True
            Accepted for compatibility with scikit-learn.

        Returns
        -------
        bound : float or ndarray of shape (n_targets,)
            A lower bound on the log marginal likelihood; a float for a
            single target, as scikit-learn's ``log_marginal_likelihood``.
        bound_gradient : ndarray of shape (n_targets, n_free) or (n_free,)
            Only with ``eval_gradient=True``; (n_free,) for a single target.
        """
        check_is_fitted(self, "gps_")
        if theta is None:
            if eval_gradient:
                raise ValueError("Gradient can only be evaluated for theta!=None")
            return self.log_marginal_likelihood_value_.copy()
        full = self._full_theta(theta)
        gps, where = self._gps()
        t = gps.tensors(**where)
        kernel, Z, zmask, _, _ = t.sparse
        y = gps.standardize(self._y_train_2d())
        loss, grad = sparse_nlml(kernel, to_tensor(full, t.X.dtype, t.X.device), Z, zmask, t.X,
                                 to_tensor(y.T, t.X.dtype, t.X.device), t.mask, t.alpha,
                                 eval_gradient=eval_gradient)
        bound = -to_numpy(loss)
        bound[self.failed_targets_] = np.nan
        return self._per_target(bound, -to_numpy(grad)[:, self._free] if eval_gradient else None)


def _random_rows(rng, n, k):
    """ndarray of int: ``k`` of ``range(n)`` drawn without replacement, sorted (all when ``n <= k``)."""
    return np.arange(n) if n <= k else np.sort(rng.choice(n, k, replace=False))


