"""BatchedGaussianProcessRegressor: many independent exact GPs, fitted at once."""

import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Kernel
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data

from ._core import gp
from ._core.priors import log_prior
from ._engine import Engine
from ._fitted import DEFAULT_CACHE_MIB, FittedGPs, cache_bytes, format_targets
from ._problem import ProblemSpec, make_problem
from ._scoring import observed_r2_score
from ._generic_kernel import decode_points, encode_points
from ._sklearn_kernels import plan_from_kernel, requires_vector_input
from ._validation import (check_numeric_y, compute_device, reject_grad_tensors, resolve_device, resolve_dtype, to_numpy,
                          to_tensor, torch_generator)
from .kernels import _Operators as _SkbgpKernel

__all__ = ["BatchedGaussianProcessRegressor"]

# what validate_data records about the inputs at fit
_INPUT_ATTRIBUTES = ("n_features_in_", "feature_names_in_")


def _readable(bound):
    """A bound for a message: scikit-learn's ``0.001`` and ``1000.0``; ``4.61e-09``, not
    ``4.61009595509e-09``, for one computed from the data."""
    text = repr(float(f"{bound:.12g}"))
    return text if len(text) <= 8 else f"{bound:.3g}"


def _latent_diag(kernel, X, chunk=256):
    """``diag k(X, X)`` of a scikit-learn kernel with its white noise left out, in chunks of points."""
    return np.concatenate([np.diagonal(kernel(X[i:i + chunk], X[i:i + chunk]))
                           for i in range(0, X.shape[0], chunk)])




class BatchedGaussianProcessRegressor(MultiOutputMixin, RegressorMixin, BaseEstimator):
    r"""Independent exact Gaussian process regression for every target, in one batch.

    Each column of a multi-target ``y`` gets its own Gaussian process with its
    own hyperparameters (ARD length scales, outputscale, noise level). All
    targets, and all restarts of the optimiser, are fitted simultaneously as
    one batch of tensors by a batched L-BFGS that keeps one line search and one
    convergence test per target, so a target's fit does not depend on which
    other targets share its batch. scikit-learn's
    :class:`~sklearn.gaussian_process.GaussianProcessRegressor`, given the
    same multi-target ``y``, fits one shared set of hyperparameters instead.

    Parameters
    ----------
    kernel : sklearn kernel object, skbgp.kernels object or None, default=None
        The covariance of every target's GP. ``None`` selects
        ``outputscale * RBF(ARD) + noise`` on standardised targets, with
        initial values and bounds from the data's spread and weak priors on
        the length scales and the noise level (a MAP fit; see Notes and the
        "How the defaults were chosen" page), so that unscaled data work.
        A scikit-learn kernel (ConstantKernel, WhiteKernel, RBF, Matern with
        ``nu`` in 0.5, 1.5, 2.5, inf, RationalQuadratic, ExpSineSquared,
        DotProduct, and their Sum, Product and Exponentiation; length scales
        isotropic or ARD) is used with scikit-learn's formulas,
        parameterisation and bounds, every target starting from the kernel's
        values. Any other scikit-learn kernel object (your own ``Kernel``
        subclass, on numbers or, with ``requires_vector_input`` False, on
        structured inputs such as strings) runs through scikit-learn's kernel
        API (``clone_with_theta``, ``__call__`` with ``eval_gradient``,
        ``diag``), one target at a time in numpy, without priors: slower,
        and a ``UserWarning`` says so at every fit. An :mod:`skbgp.kernels`
        object may also give every target its
        own initial values and put priors on hyperparameters (the fit is then
        maximum a posteriori). The kernel object is never modified.
    alpha : float or array-like of shape (n_samples,), default=1e-10
        Value added to the diagonal of every target's training covariance, as
        in scikit-learn: a jitter, or a known noise variance per sample. A
        per-sample array does not follow the rows of a cross-validation split;
        pass known per-sample noise to ``fit`` as ``noise_variance`` instead.
    optimizer : {"lbfgs", "fmin_l_bfgs_b"}, callable or None, default="lbfgs"
        ``"lbfgs"`` maximises every target's log marginal likelihood with the
        batched L-BFGS (``"fmin_l_bfgs_b"`` is accepted as an alias, for code
        written for scikit-learn). ``None`` keeps the initial hyperparameters.
        A callable is scikit-learn's interface,
        ``optimizer(obj_func, initial_theta, bounds) -> (theta_opt, func_min)``
        with ``obj_func(theta, eval_gradient=True) -> (-lml, -gradient)`` (the
        negative log posterior with priors), called once per start of every
        target, one target after the other (no batching), in log space over
        the free hyperparameters (``bounds`` of shape (n_free, 2)); its
        targets record ``n_iter_`` 0 and ``converged_`` True (not known).
    n_restarts_optimizer : int, default=2
        Number of extra starting points per target, log-uniform in a box:
        scikit-learn's own draws within the bounds for a user's kernel (the
        same points as scikit-learn's GPR with this ``random_state``), a
        scrambled Sobol' sequence in a box of plausible values for the
        default kernel (see Notes). All starts of all targets are one batch;
        for a user's kernel every start runs to convergence (as in
        scikit-learn), for the default kernel they are raced (see Notes); the
        best start of each target is kept. More restarts never end lower: the
        starts with ``k`` restarts include those with fewer.
    normalize_y : bool or "auto", default="auto"
        Standardise every target (mean 0, variance 1 over its observed
        entries) before fitting; predictions are transformed back. "auto"
        standardises for the default kernel and not for a user's kernel
        (scikit-learn's default, a zero prior mean). The fitted
        hyperparameters (``theta_``, ``kernels_``, ``outputscales_``,
        ``noise_levels_``) are then those of the standardised targets;
        ``noise_variance_`` gives the noise in ``y``'s units.
    copy_X_train : bool, default=True
        Store a copy of the training data (otherwise a reference).
    random_state : int, RandomState instance or None, default=None
        Draws the restart points, one design for all targets (each target's
        starts depend on its own data and ``random_state`` only). Pass an
        int for reproducible fits.
    max_iter : int, default=500
        Maximum number of L-BFGS iterations per target.
    tol : float, default=1e-5
        Stop a target when the infinity norm of its projected gradient falls
        below ``tol`` (as ``pgtol`` in scipy's L-BFGS-B; a target also stops
        when its relative decrease falls below scipy's default ``ftol``).
    device : str or torch.device, default="cpu"
        Where the computation runs, e.g. ``"cuda"``. Fitted attributes are
        numpy arrays, so a model fitted on a GPU loads anywhere.
    dtype : {"float64", "float32"}, default="float64"
        Precision of the computation. Outputs are always float64. float32
        halves memory and is faster on most GPUs, but its Cholesky factors
        carry about 1e-7 relative error (amplified by the condition number of
        the covariance): expect predictions to about 1e-3 relative accuracy,
        more jitter and some targets failing to converge.
    batch_size : int or None, default=None
        Number of targets fitted together in one chunk. ``None`` derives it
        from a memory budget (1 GiB of Cholesky factors per chunk on the CPU, a
        quarter of the free memory on a GPU), and gives every worker at least
        two chunks when ``n_jobs`` asks for several. Results do not depend on
        it: every target keeps its own line search and convergence test. A
        chunk's memory grows with ``n_samples**2`` (see Notes, "Memory and
        time"): a fit that would need more than is available stops before it
        starts with a :class:`~skbgp.FitMemoryError`.
    n_jobs : int or None, default=None
        Number of chunks fitted in parallel by joblib
        (:class:`sklearn.utils.parallel.Parallel`); ``None`` means 1 unless in
        a :func:`joblib.parallel_config` context, ``-1`` all processors. Under
        ``joblib.parallel_config(backend="dask")`` the chunks run on the
        workers of a Dask cluster. A fit of fewer than ``2**29`` numbers
        (``n_targets * (n_restarts_optimizer + 1) * n_samples**2``, about a
        minute of work) runs in this process whatever ``n_jobs`` says: one
        process already uses every core, and starting workers costs seconds.
    cache_size : float, default=1024
        Memory, in MiB, for the Cholesky factors kept between predictions
        (as the kernel cache of scikit-learn's SVR). When the factors of all
        targets (``n_targets * n_samples**2`` numbers) fit in it, they are
        kept from the fit on, and ``predict`` with ``return_std`` or
        ``return_cov``, ``sample_y`` and ``L_`` use them; otherwise they are
        recomputed, a chunk of targets at a time, at every such call (same
        numbers, more time). The predictive mean never needs them. Pickles
        never hold them: an unpickled model computes them on its first such
        call.
    verbose : int, default=0
        0 is silent, but for a :class:`~skbgp.SlowFitWarning` before a fit
        that will take minutes; 1 reports every fitted chunk (a progress bar
        when ``tqdm`` is installed, else a line with the targets done, how
        many converged and the time elapsed) and, for a fit in this process,
        the optimiser's progress within a chunk (its iteration and the
        members still optimising: in the bar's text, else a line every 5
        seconds), and for a fit that will take minutes its estimated time
        and a line per optimiser iteration; 2 prints a line per optimiser
        iteration always.
    n_targets : int or None, default=None
        Number of targets of the prior that ``predict`` and ``sample_y`` use
        before ``fit`` (``None``: one, with 1-D outputs), as in scikit-learn;
        ``fit`` checks that ``y`` has this many targets (a 1-D ``y`` has one).

    Attributes
    ----------
    X_train_ : ndarray of shape (n_samples, n_features)
        Training inputs.
    y_train_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Training targets as given (NaN marks a missing observation).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features, when ``X`` has string column names.
    n_targets_ : int
        Number of targets (1 for a 1-D ``y``).
    theta_ : ndarray of shape (n_targets, n_free_hyperparameters)
        Fitted log hyperparameters that were optimised (not the fixed ones),
        in the order of ``hyperparameter_names_`` (scikit-learn's
        ``kernel.theta`` order for a user's kernel); the argument of
        :meth:`log_marginal_likelihood`. Like every fitted hyperparameter
        here, in the units of the standardised target when the targets are
        standardised (``normalize_y=True``, or ``"auto"`` with the default
        kernel): variances are relative to the target's variance.
    hyperparameter_names_ : list of str
        Name of every column of ``theta_``.
    kernels_ : list of sklearn.gaussian_process.kernels.Kernel
        The fitted kernel of every target as a scikit-learn kernel object
        (with its bounds; an :mod:`skbgp.kernels` object becomes its
        scikit-learn twin, priors dropped), to inspect as ``kernel_`` of
        scikit-learn's GPR; ``None`` for the targets in ``failed_targets_``.
        A kernel of the standardised target when the targets are
        standardised (as scikit-learn's ``kernel_`` with
        ``normalize_y=True``).
    kernel_ : sklearn.gaussian_process.kernels.Kernel
        ``kernels_[0]``, scikit-learn's attribute, on a model of a single
        target (1-D ``y`` or one column); a model of several targets has none
        (use ``kernels_``).
    length_scales_ : ndarray of shape (n_targets, n_features)
        Fitted length scale of every feature (repeated for an isotropic
        kernel); NaN when the kernel has several or no length-scale parts.
    outputscales_ : ndarray of shape (n_targets,)
        Fitted signal variance: the constant factor of ``ConstantKernel *
        base``; 1 where the kernel has no constant, NaN where a constant is
        not such a factor (or there are several). Relative to the target's
        variance when the targets are standardised.
    noise_levels_ : ndarray of shape (n_targets,)
        Fitted white-noise variance (0 where the kernel has no white part,
        NaN where it has several), as the kernel holds it: relative to the
        target's variance when the targets are standardised (a noise level
        of 0.01 is 1% of it; ``noise_variance_`` is in ``y``'s units).
    noise_variance_ : ndarray of shape (n_targets,)
        Fitted white-noise variance in the units of ``y`` squared:
        ``noise_levels_`` times the variance of the target over its observed
        entries when the targets are standardised, else ``noise_levels_``.
        It is what ``predict`` adds to the latent variance (``return_std``
        with ``observation_noise`` True minus False); the known noise passed
        to ``fit`` and ``alpha`` are not in it.
    log_marginal_likelihood_value_ : float or ndarray of shape (n_targets,)
        Log marginal likelihood of every target at its fitted hyperparameters
        (of the standardised target when ``normalize_y=True``); without the
        prior. A float for a single target (a 1-D ``y`` or one column), as
        scikit-learn's.
    log_prior_value_ : float or ndarray of shape (n_targets,)
        Log prior density of every target's fitted hyperparameters (0 without
        priors); a float for a single target. With priors the fit maximises
        ``log_marginal_likelihood_value_ + log_prior_value_``.
    n_iter_ : ndarray of shape (n_targets,)
        L-BFGS iterations of every target's winning start (0 without optimiser).
    n_evaluations_ : ndarray of shape (n_targets,)
        Likelihood-and-gradient evaluations spent on every target, all its
        starts together (0 without optimiser).
    converged_ : ndarray of shape (n_targets,)
        Whether every target's winning start met a stopping rule (True without
        optimiser).
    jitter_ : ndarray of shape (n_targets,)
        Diagonal jitter that had to be added to factorise a target (mostly 0).
    failed_targets_ : ndarray of int
        Targets that could not be fitted: no observed value, or a covariance
        that is not positive definite even with jitter. Each is warned about;
        the other targets are fitted normally, and these predict NaN.
    L_ : ndarray of shape (n_targets, n_samples, n_samples)
        Lower Cholesky factor of every target's training covariance (identity
        rows and columns at its missing observations), recomputed when read
        (a fitted model does not hold ``n_targets * n_samples**2`` numbers);
        of shape (n_samples, n_samples) for a single target, as scikit-learn's.
    alpha_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Dual coefficients ``K^-1 y`` of every target (0 where missing), in
        the shape of ``y_train_`` as scikit-learn's.
    gps_ : FittedGPs
        Every target's fitted GP in one object (core kernel, hyperparameters,
        training inputs, mask, target scaling, dual coefficients, jitter),
        which predicts and holds the factor cache (see ``cache_size``); the
        batched cross-validation and the suggester read the fitted model
        through it.

    See Also
    --------
    sklearn.gaussian_process.GaussianProcessRegressor :
        One GP with hyperparameters shared by all targets.

    Notes
    -----
    **Default kernel.** With ``kernel=None`` every target is standardised
    (``normalize_y="auto"``: a constant prior mean at its observed mean) and
    modelled as ``outputscale * RBF(ARD) + noise``. With :math:`r_j` the
    range of feature :math:`j` and :math:`d` features, the length scales have
    BoTorch's dimension-scaled prior :math:`\ell_j / r_j \sim
    \mathrm{LogNormal}(\sqrt2 + \tfrac12\log d, \sqrt3)` and start at its
    mode; the noise variance, relative to the target's variance, has a
    :math:`\mathrm{Gamma}(1.1, 0.05)` prior (nearly flat, but an exactly
    interpolating fit of a few noisy points loses to explaining them as
    noise); the outputscale starts at the target's variance and the noise at
    1% of it. Restarts are a scrambled Sobol' design in a box of plausible
    values: length scales from the finer of 0.01 :math:`r_j` and the spacing
    of the feature's values up to :math:`2 r_j`, outputscale 0.1 to 3 and
    noise :math:`10^{-4}` to 1 times the target's variance (from a noise-free
    signal to pure noise). The model does not depend on the units of ``X``
    or ``y``. A length scale far beyond its feature's range means that the
    feature does not matter to that target (automatic relevance
    determination); it is not warned about. The "How the defaults were
    chosen" page compares this model with scikit-learn's GPR and BoTorch's
    ``SingleTaskGP`` on real data.

    **Restarts.** With ``n_restarts_optimizer > 0`` and the default kernel,
    the starts of all targets are raced: every start runs 5 L-BFGS
    iterations, then a start continues to convergence only if it is better
    than every start before it (the first always continues); the best final
    objective wins. With a user's kernel, whose restarts come from its whole
    bounds as in scikit-learn, every start runs to convergence. A start's fate
    depends on the starts before it only, so more restarts never end lower,
    and an extra start costs about 5 iterations instead of a whole
    optimisation. A target's starts, path and result do not depend on the
    other targets, the chunks or the workers: fitted alone or among others,
    a target gets the same numbers (on the CPU; a GPU's batched kernels may
    round differently with the batch).

    **Priors (MAP).** A prior is a ``torch.distributions`` object on a
    hyperparameter's natural value (e.g. a length scale). The fit maximises
    the log marginal likelihood plus the log prior densities of the natural
    values, without a Jacobian term for the log parameterisation: the
    result is the mode of the posterior density of the natural values, as in
    GPyTorch and BoTorch. A prior with bounded support also bounds the
    optimisation (bounds are the support intersected with the given bounds);
    a MAP estimate at the edge of that support is the prior's doing and is
    not warned about. With ``normalize_y=True`` the priors are on the
    hyperparameters of the standardised targets.

    **Missing values.** A NaN entry of ``y`` marks a missing observation for
    that target only: each target's GP uses exactly its observed rows (a mask
    in the likelihood). scikit-learn's GPR rejects NaN in ``y``. NaN in ``X``
    and inf in ``y`` are errors. A target without any observation, or one
    whose covariance cannot be factorised even with jitter, is warned about,
    listed in ``failed_targets_`` and predicted as NaN while the others are
    fitted normally; only when every target is such is the fit an error.

    **Predictive noise.** As in scikit-learn, the white-noise variance of the
    kernel (the noise part of the default kernel, or a ``WhiteKernel``) is
    included in the predictive std and covariance; ``alpha`` is not.
    ``observation_noise=False`` in ``predict`` and ``sample_y`` leaves it out
    too (the latent function's posterior).

    **Output shapes** follow scikit-learn's GPR: a 1-D ``y``, or a ``y`` with a
    single column, gives 1-D predictions.

    **Memory and time.** An exact GP holds a few ``n_samples x n_samples``
    matrices at once (3.2 GB each in float64 at 20,000 rows): on the CPU
    with the default kernel, ``d + 2`` for the training data (``d``
    features), about a dozen for each likelihood evaluation running at once
    (one per thread), and one per target of a chunk for its Cholesky factor.
    Before a fit allocates anything, this estimate is compared with the
    memory available (MemAvailable, the control group's limit,
    ``RLIMIT_AS``; the free memory of a GPU); a fit that needs more than
    110% of it raises :class:`~skbgp.FitMemoryError`, naming the estimate
    and the remedies: the sparse estimator
    ``SparseBatchedGaussianProcessRegressor``, a subset of the rows (memory
    grows as ``n_samples**2``), fewer targets per chunk (``batch_size``)
    where that helps, ``dtype="float32"``. The time grows as
    ``n_samples**3``: a fit estimated (roughly) to take more than a minute
    says so before it starts (see ``verbose``). The "Scale" page gives the
    formula and its measurements.

    References
    ----------
    .. [RW2006] C. E. Rasmussen and C. K. I. Williams, "Gaussian Processes for
       Machine Learning", MIT Press, 2006, Algorithm 2.1.

    Examples
    --------
    >>> import numpy as np
    >>> from skbgp import BatchedGaussianProcessRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(0, 10, size=(50, 2))
    >>> y = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1]) * 10])
    >>> gpr = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
    >>> gpr.length_scales_.shape
    (2, 2)
    >>> mean, std = gpr.predict(X[:3], return_std=True)
    >>> mean.shape, std.shape
    ((3, 2), (3, 2))
    """

    _exact = True  # conditioned on every training row (the sparse subclass: on inducing points)
    _GENERIC_KERNELS = True  # any scikit-learn kernel (the sparse subclass: the fast form only)

    def __init__(
        self,
        kernel=None,
        *,
        alpha=1e-10,
        optimizer="lbfgs",
        n_restarts_optimizer=2,
        normalize_y="auto",
        copy_X_train=True,
        random_state=None,
        max_iter=500,
        tol=1e-5,
        device="cpu",
        dtype="float64",
        batch_size=None,
        n_jobs=None,
        cache_size=DEFAULT_CACHE_MIB,
        verbose=0,
        n_targets=None,
    ):
        self.kernel = kernel
        self.alpha = alpha
        self.optimizer = optimizer
        self.n_restarts_optimizer = n_restarts_optimizer
        self.normalize_y = normalize_y
        self.copy_X_train = copy_X_train
        self.random_state = random_state
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.cache_size = cache_size
        self.verbose = verbose
        self.n_targets = n_targets

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        if self.kernel is not None and not isinstance(self.kernel, (Kernel, _SkbgpKernel)):
            raise TypeError(
                "kernel must be None, a scikit-learn kernel object such as "
                "ConstantKernel() * RBF() + WhiteKernel(), or an skbgp.kernels object; "
                f"got {type(self.kernel).__name__}."
            )
        if self.optimizer not in ("lbfgs", "fmin_l_bfgs_b", None) and not callable(self.optimizer):
            raise ValueError(
                "optimizer must be 'lbfgs', 'fmin_l_bfgs_b', a callable or None; got "
                f"{self.optimizer!r}."
            )
        for name, low in (("n_restarts_optimizer", 0), ("max_iter", 1), ("batch_size", 1),
                          ("verbose", 0)):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
        if self.n_jobs is not None and (
            not isinstance(self.n_jobs, numbers.Integral) or isinstance(self.n_jobs, bool)
            or self.n_jobs == 0
        ):
            raise ValueError(f"n_jobs must be None or a non-zero integer; got {self.n_jobs!r}.")
        if not (isinstance(self.normalize_y, (bool, np.bool_)) or self.normalize_y == "auto"):
            raise ValueError(f"normalize_y must be True, False or 'auto'; got {self.normalize_y!r}.")
        if self.n_targets is not None and (
            not isinstance(self.n_targets, numbers.Integral) or isinstance(self.n_targets, bool)
            or self.n_targets < 1
        ):
            raise ValueError(f"n_targets must be None or an integer >= 1; got {self.n_targets!r}.")
        if not isinstance(self.tol, numbers.Real) or not self.tol > 0:
            raise ValueError(f"tol must be a positive number; got {self.tol!r}.")
        self._cache_bytes()
        return resolve_device(self.device), resolve_dtype(self.dtype)

    def _cache_bytes(self):
        return cache_bytes(self.cache_size)

    def _check_alpha(self, n_samples):
        alpha = np.asarray(self.alpha, dtype=float)
        if alpha.ndim > 1 or (alpha.ndim == 1 and alpha.shape[0] != n_samples):
            raise ValueError(
                "alpha must be a scalar or an array with same number of entries as y. "
                f"({alpha.shape[0] if alpha.ndim == 1 else alpha.shape} != {n_samples})"
            )
        if not np.all(np.isfinite(alpha)) or np.any(alpha < 0):
            raise ValueError("alpha must be finite and non-negative.")
        return alpha

    def _normalizes(self):
        """Whether the targets are standardised: ``normalize_y``, with "auto" for the default kernel."""
        if self.normalize_y == "auto":
            return self.kernel is None
        return bool(self.normalize_y)

    def _input_checks(self):
        """validate_data's checks of X: numbers, or any points for a kernel on structured inputs
        (scikit-learn's rule, from ``kernel.requires_vector_input``)."""
        if requires_vector_input(self.kernel):
            return dict(dtype=np.float64, ensure_2d=True)
        return dict(dtype=None, ensure_2d=False)

    def _core_inputs(self, X):
        """X as the core takes it: numbers (structured points encoded, see skbgp._generic_kernel)."""
        return X if requires_vector_input(self.kernel) else encode_points(X)

    def _validate_fit_data(self, X, y):
        try:
            X, y = validate_data(
                self,
                X,
                y,
                validate_separately=(
                    self._input_checks(),
                    dict(dtype=np.float64, ensure_2d=False, ensure_all_finite="allow-nan"),
                ),
            )
        except ValueError:
            check_numeric_y(y)  # a string in y: say so, and which column
            raise
        check_consistent_length(X, y)
        X = self._core_inputs(X)
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D; got an array of shape {y.shape}.")
        if np.isinf(y).any():
            raise ValueError("Input y contains infinity or a value too large for dtype('float64').")
        return X, y

    # ---------------------------------------------------------------- fitting
    def fit(self, X, y, noise_variance=None):
        """Fit one Gaussian process per target, all at once.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Training targets; NaN marks a missing observation of one target.
        noise_variance : array-like of shape (n_samples,) or (n_samples, n_targets), default=None
            Known noise variance of every training sample, in the units of
            ``y`` (divided by each target's variance when the targets are
            standardised), added to ``alpha``; a ``fit`` argument, so that
            cross-validation splits it with the samples. Of shape
            (n_samples, n_targets): one per sample and target (BoTorch's
            ``train_Yvar``), NaN allowed where ``y`` is missing.
            Request it with ``set_fit_request(noise_variance=True)`` when
            scikit-learn's metadata routing is enabled.

        Returns
        -------
        self : BatchedGaussianProcessRegressor
            The fitted estimator.
        """
        reject_grad_tensors(X=X, y=y, noise_variance=noise_variance)
        saved = dict(self.__dict__)
        try:
            return self.finish_fit(self.prepare_fit(X, y, noise_variance))
        except BaseException:
            # atomic: a failed or interrupted fit leaves the previous model intact
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def prepare_fit(self, X, y, noise_variance=None):
        """Validate the data, normalise it and draw every starting point: the first half of ``fit``.

        ``fit(X, y)`` is ``finish_fit(prepare_fit(X, y))`` made atomic. The
        two halves let :func:`~skbgp.batched_cross_validate` set up every
        fold's clone exactly as ``fit`` would, optimise all folds' targets as
        one batch, and finish every clone at its own optimum. Every restart
        of every target is drawn here, before the targets are cut into
        chunks, so that a target's starts do not depend on the chunks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        noise_variance : array-like of shape (n_samples,) or (n_samples, n_targets), default=None
            As in :meth:`fit`.

        Returns
        -------
        FitProblem
            Frozen; the estimator is not changed.
        """
        device, dtype = self._check_params()
        # validate_data sets n_features_in_ and feature_names_in_: finish_fit sets them
        kept = {k: v for k, v in self.__dict__.items() if k in _INPUT_ATTRIBUTES}
        try:
            X, y = self._validate_fit_data(X, y)
            feature_names = getattr(self, "feature_names_in_", None)
        finally:
            for key in _INPUT_ATTRIBUTES:
                self.__dict__.pop(key, None)
            self.__dict__.update(kept)
        alpha = self._check_alpha(X.shape[0])
        n_targets = 1 if y.ndim == 1 else y.shape[1]
        if self.n_targets is not None and n_targets != self.n_targets:
            raise ValueError(
                "The number of targets seen in `y` is different from the parameter `n_targets`. "
                f"Got {n_targets} != {self.n_targets}; pass n_targets=None or a y with "
                f"{self.n_targets} columns."
            )
        spec = ProblemSpec(
            kernel=self.kernel, normalize=self._normalizes(),
            n_restarts=self.n_restarts_optimizer if self.optimizer is not None else 0,
            random_state=self.random_state, device=device, dtype=dtype,
            generic_kernels=self._GENERIC_KERNELS,
        )
        return make_problem(spec, X, y, alpha, noise_variance, feature_names)

    def finish_fit(self, problem, optimum=None):
        """Fit, or factorise at hyperparameters found elsewhere, then store and warn: the second half of ``fit``.

        Parameters
        ----------
        problem : FitProblem
            From :meth:`prepare_fit` of this estimator (or of a clone).
        optimum : Optimum, optional
            ``None`` optimises every target as ``fit`` does (chunk by chunk,
            or with a callable ``optimizer`` target by target).
            Otherwise every target is factorised at ``optimum.theta`` (shape
            (n_targets, P)) and its record (``n_iter_``, ``converged_``,
            ``n_evaluations_``) is the optimum's; with ``optimum.n_iter`` None
            nothing was optimised.

        Returns
        -------
        self : BatchedGaussianProcessRegressor
            The fitted estimator.
        """
        return self._store_fit(problem, Engine.of(self).fit(problem, optimum))

    def _store_fit(self, problem, result):
        """Set the fitted attributes from the per-target results (a FitResult), and warn."""
        X, y, plan, bounds, empty = (problem.X, problem.y_given, problem.plan,
                                      problem.bounds, problem.empty)
        n_targets = bounds.shape[0]
        failed = result.failed | empty
        singular = result.failed & ~empty
        if singular.all() or failed.all():
            first = np.flatnonzero(singular)[0]
            with np.errstate(over="ignore"):
                kernel = plan.sklearn_kernels(result.theta[first:first + 1], bounds[first:first + 1])[0]
            # scikit-learn's error and text (a LinAlgError is a ValueError), then the targets
            raise np.linalg.LinAlgError(
                f"The kernel, {kernel}, is not returning a positive definite matrix. Try "
                "gradually increasing the 'alpha' parameter of your GaussianProcessRegressor "
                f"estimator. The training covariance of target(s) "
                f"{format_targets(np.flatnonzero(singular))} is not positive definite even with "
                "added jitter; adding a WhiteKernel or removing duplicate rows also helps."
            )
        if singular.any():
            warnings.warn(
                f"The training covariance of target(s) {format_targets(np.flatnonzero(singular))} "
                "is not positive definite, even with added jitter: these targets are listed "
                "in failed_targets_ and predicted as NaN. Try scaling the target "
                "(normalize_y=True), increasing `alpha`, adding a WhiteKernel, or removing "
                "duplicate rows.",
                ConvergenceWarning,
            )

        theta = result.theta.copy()  # the caller's Optimum or starts stay as they are
        theta[failed] = np.nan  # not fitted: no hyperparameters
        self.__dict__.pop("n_features_in_", None)
        if requires_vector_input(self.kernel):  # structured inputs have no features (scikit-learn's rule)
            self.n_features_in_ = X.shape[1]
        self.__dict__.pop("feature_names_in_", None)
        if problem.feature_names is not None:
            self.feature_names_in_ = problem.feature_names
        # structured inputs: the points as given (the core keeps them encoded)
        points = X if requires_vector_input(self.kernel) else decode_points(X)
        self.X_train_ = np.copy(points) if self.copy_X_train else points
        self.y_train_ = np.copy(y) if self.copy_X_train else y
        self.n_targets_ = n_targets
        self._free = plan.free
        self._priors = plan.priors
        self.theta_ = theta[:, plan.free]
        self.hyperparameter_names_ = [n for n, f in zip(plan.names, plan.free) if f]
        self.length_scales_, self.outputscales_, self.noise_levels_ = plan.summaries(
            theta, X.shape[1])
        with np.errstate(over="ignore"):  # inf for a target beyond float64's range squared
            self.noise_variance_ = self.noise_levels_ * problem.std**2  # in y's units
        with np.errstate(over="ignore"):  # the bounds of a target that overflowed
            self.kernels_ = plan.sklearn_kernels(theta, bounds)
        for t in np.flatnonzero(failed):
            self.kernels_[t] = None
        lml = result.lml
        lml[failed] = np.nan
        single = y.ndim == 1 or y.shape[1] == 1
        # a float for a single target, as scikit-learn's
        self.log_marginal_likelihood_value_ = lml[0] if single else lml
        self.log_prior_value_ = result.log_prior[0] if single else result.log_prior
        self.n_iter_ = result.n_iter
        self.n_evaluations_ = result.n_evaluations
        self.converged_ = result.converged & ~failed
        self.jitter_ = result.jitter
        self.failed_targets_ = np.flatnonzero(failed)
        self.gps_ = self._fitted_gps(problem, result, theta, failed)
        if result.L is not None:
            self.gps_.keep_factors(result.L, problem.device, problem.dtype)

        self._warn_after_fit(plan, bounds)
        return self

    def _fitted_gps(self, problem, result, theta, failed):
        """The FittedGPs of a fit's result (``theta`` with NaN rows where ``failed``)."""
        X = self.X_train_ if requires_vector_input(self.kernel) else problem.X  # numbers for the core
        return FittedGPs(problem, result, X, theta, failed, self._cache_bytes())

    def _warn_after_fit(self, plan, bounds):
        fitted = np.ones(self.n_targets_, dtype=bool)
        fitted[self.failed_targets_] = False
        if self.optimizer is not None and not self.converged_[fitted].all():
            bad = np.flatnonzero(~self.converged_ & fitted)
            warnings.warn(
                f"The optimiser stopped before convergence for {bad.size} of "
                f"{self.n_targets_} target(s) {format_targets(bad)} (max_iter="
                f"{self.max_iter} reached or no further decrease found). Increase "
                "max_iter or n_restarts_optimizer, or scale the data.",
                ConvergenceWarning,
            )
        jittered = (self.jitter_ > 0) & fitted
        if jittered.any():
            bad = np.flatnonzero(jittered)
            warnings.warn(
                f"The training covariance of target(s) {format_targets(bad)} was not "
                f"positive definite; jitter up to {self.jitter_[bad].max():.3g} was added to its "
                "diagonal. Consider increasing `alpha` or adding a WhiteKernel.",
                ConvergenceWarning,
            )
        if self.optimizer is None:
            return
        messages = []
        for j in np.flatnonzero(plan.free):
            # scikit-learn's name and dimension: "k2__length_scale[1]" is dimension 1
            name, _, dim = plan.names[j].partition("[")
            dim = dim.rstrip("]") or "0"
            for side, word, verb in ((0, "lower", "Decreasing"), (1, "upper", "Increasing")):
                if (side == 1 and not plan.warn_at_upper[j]) or plan.prior_bounded[j, side]:
                    continue
                # the default model's bounds are not the user's to change: only noise at its
                # upper bound (the data explained as noise) has a remedy, more restarts
                if self.kernel is None and not (side == 1 and name == "noise_level"):
                    continue
                near = np.isclose(bounds[:, j, side], self.gps_.theta[:, j]) & fitted
                if not near.any():
                    continue
                values = np.unique(bounds[near, j, side])
                bound = _readable(np.exp(values[0]))
                if values.size > 1:  # per-target bounds (the default model's, from the data)
                    bound += f" to {_readable(np.exp(values[-1]))}"
                # scikit-learn's text (its tests match it), then which targets
                message = (
                    f"The optimal value found for dimension {dim} of parameter {name} is "
                    f"close to the specified {word} bound {bound}. "
                    f"{verb} the bound and calling fit again may find a better value."
                )
                if self.kernel is None:
                    message = (
                        f"The noise level of target(s) {format_targets(np.flatnonzero(near))} is "
                        f"at its upper bound {bound} (relative to the target's variance): the "
                        "fit explains the data as noise. More restarts (n_restarts_optimizer) "
                        "may find a local optimum that explains it as signal."
                    )
                elif self.n_targets_ > 1:
                    message += f" Target(s): {format_targets(np.flatnonzero(near))}."
                messages.append(message)
        # one warning per fit for several targets; one per parameter, as scikit-learn, for one
        groups = [[m] for m in messages] if self.n_targets_ == 1 else [messages] * bool(messages)
        for group in groups:
            warnings.warn(" ".join(group), ConvergenceWarning)

    # ------------------------------------------------------------- prediction
    def _compute_device(self):
        """The device for prediction; the CPU, with a warning, when it is gone.

        A model fitted on a GPU keeps ``device="cuda"``; unpickled on a machine
        without one it still predicts.
        """
        return compute_device(self.device), resolve_dtype(self.dtype)

    def _gps(self):
        """The fitted GPs, their cache budget and compute device as this estimator's now."""
        gps = self.gps_
        gps.cache_bytes = self._cache_bytes()  # set_params(cache_size=...) after fit applies
        device, dtype = self._compute_device()
        return gps, dict(device=device, dtype=dtype)

    def _warn_not_finite(self, values, more=None):
        """Warn about fitted targets whose predictions are not finite (last axis: targets)."""
        bad = ~np.isfinite(values).reshape(-1, values.shape[-1]).all(0)
        if more is not None:
            bad |= ~np.isfinite(more).reshape(-1, more.shape[-1]).all(0)
        bad[self.failed_targets_] = False
        if bad.any():
            warnings.warn(
                f"The predictions of target(s) {format_targets(np.flatnonzero(bad))} are not "
                "finite at some query points: the kernel overflows there (far from the "
                "training data, or beyond float64's range). Scale the inputs, query nearer the "
                "data, or use a kernel that stays bounded (RBF, Matern).",
                ConvergenceWarning,
            )

    def _warn_failed(self):
        if self.failed_targets_.size:
            warnings.warn(
                f"Target(s) {format_targets(self.failed_targets_)} could not be fitted "
                "(see failed_targets_); their predictions are NaN.",
                UserWarning,
            )

    @property
    def L_(self):
        """ndarray of shape (n_targets, n_samples, n_samples): lower Cholesky factors.

        The factor of every target's training covariance (identity rows and
        columns at its missing observations), from the cache (see
        ``cache_size``) or computed from the fitted hyperparameters when read.
        """
        check_is_fitted(self, "gps_")
        gps, where = self._gps()
        with torch.no_grad():
            L = to_numpy(gps.factors(**where))
        return L[0] if self._single_output() else L

    @property
    def alpha_(self):
        """ndarray of the shape of ``y_train_``: dual coefficients ``K^-1 y`` (0 if missing).

        Of shape (n_samples,) for a 1-D ``y``, else (n_samples, n_targets), as
        scikit-learn's.
        """
        check_is_fitted(self, "gps_")
        return self.gps_.dual.T.reshape(self.y_train_.shape)

    def _single_output(self):
        return self.y_train_.ndim == 1 or self.y_train_.shape[1] == 1

    @property
    def kernel_(self):
        """The fitted kernel of a single-target model: ``kernels_[0]`` (see Attributes)."""
        check_is_fitted(self, "gps_")
        if self.n_targets_ != 1:
            raise AttributeError(
                f"kernel_ is defined for a model of one target; this one has {self.n_targets_} "
                "targets, each with its own fitted kernel: use kernels_[t]."
            )
        return self.kernels_[0]

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R^2 of every target on its observed rows, averaged.

        scikit-learn's :meth:`~sklearn.base.RegressorMixin.score` (its
        ``r2_score`` with ``multioutput="uniform_average"``), except that a
        NaN in ``y`` is a missing value of that target: each target is scored
        on the rows where it is observed. Without NaN it equals scikit-learn's.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Test inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            True values; NaN where missing.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
            The mean over targets of each target's R^2. Targets without any
            observed row are left out; so are the targets in
            ``failed_targets_`` (their predictions are NaN), with a
            ``UserWarning`` naming them: the score is then the mean R^2 of
            the fitted targets (scikit-learn's ``r2_score`` of those
            columns), NaN if there is none.
        """
        # the failed targets are warned about once, by the score
        pred = self._predict(X, False, False, True, warn_failed=False)
        return observed_r2_score(y, pred, sample_weight)

    def _fitted(self):
        return hasattr(self, "gps_")

    def _prior_kernels(self, n_features):
        """scikit-learn kernels of the prior before ``fit``: one, or one per target.

        ``kernel=None`` gives scikit-learn's prior, ``1.0 * RBF(1.0)`` (the
        default model's initial values come from the data, which the prior
        has not seen); an :mod:`skbgp.kernels` object gives every target its
        own initial values.
        """
        if self.kernel is None:
            return [ConstantKernel(1.0, constant_value_bounds="fixed")
                    * RBF(1.0, length_scale_bounds="fixed")]
        if isinstance(self.kernel, Kernel):
            return [self.kernel]
        m = self.n_targets or 1
        plan = plan_from_kernel(self.kernel, n_features, m)
        P = plan.free.shape[0]
        return plan.sklearn_kernels(np.broadcast_to(plan.theta0, (m, P)),
                                    np.broadcast_to(plan.bounds, (m, P, 2)))

    def _prior(self, X, full_cov, observation_noise=True):
        """Mean (m, p) and variance (m, p) or covariance (m, p, p) of the prior at ``X``."""
        m = self.n_targets or 1
        kernels = self._prior_kernels(X.shape[1])
        if observation_noise:
            moments = [k(X) if full_cov else k.diag(X) for k in kernels]
        else:
            # k(X, X) with X given twice: a WhiteKernel adds nothing between two sets
            moments = [k(X, X) if full_cov else _latent_diag(k, X) for k in kernels]
        var = np.stack(moments if len(moments) == m else moments * m)
        return np.zeros((m, X.shape[0])), var

    def _predict_prior(self, X, return_std, return_cov, observation_noise=True):
        """``predict`` before ``fit``: the prior (mean 0), in scikit-learn's shapes."""
        self._check_params()
        mean, var = self._prior(X, full_cov=return_cov, observation_noise=observation_noise)
        single = (self.n_targets or 1) == 1
        out = lambda a: a[0] if single else np.moveaxis(a, 0, -1)  # noqa: E731 - targets last
        if return_cov:
            return out(mean), out(var)
        if return_std:
            return out(mean), out(np.sqrt(var))
        return out(mean)

    def predict(self, X, return_std=False, return_cov=False, observation_noise=True):
        """Predict with every target's GP (or with the prior, before ``fit``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Query points.
        return_std : bool, default=False
            Also return the predictive standard deviation.
        return_cov : bool, default=False
            Also return the joint predictive covariance.
        observation_noise : bool, default=True
            Count the kernel's white noise in ``y_std`` and ``y_cov``, as
            scikit-learn does (the distribution of a new observation). False
            gives the latent function's (BoTorch's ``posterior(X,
            observation_noise=False)``, GPflow's ``predict_f``): the white
            noise left out, ``alpha`` never counted either way.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictive mean (NaN for the targets in ``failed_targets_``).
            Before ``fit``, the prior's: mean 0 and the kernel's covariance,
            for ``n_targets`` targets, as scikit-learn's GPR (see
            ``n_targets``; ``kernel=None`` is ``1.0 * RBF(1.0)`` there).
        y_std : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictive standard deviation; only with ``return_std=True``.
        y_cov : ndarray of shape (n_samples, n_samples) or (n_samples, n_samples, n_targets)
            Predictive covariance; only with ``return_cov=True``.
        """
        return self._predict(X, return_std, return_cov, observation_noise, warn_failed=True)

    def _predict(self, X, return_std, return_cov, observation_noise, warn_failed):
        """:meth:`predict`; ``warn_failed`` False leaves the failed targets to the caller's warning."""
        if return_std and return_cov:
            raise RuntimeError(
                "At most one of return_std or return_cov can be requested."
            )
        reject_grad_tensors(X=X)
        X = validate_data(self, X, reset=False, **self._input_checks())
        if not self._fitted():
            return self._predict_prior(X, return_std, return_cov, observation_noise)
        if warn_failed:
            self._warn_failed()
        gps, where = self._gps()
        mean, var = gps.posterior(self._core_inputs(X), variance=return_std, full_cov=return_cov,
                                  observation_noise=observation_noise, **where)
        y_mean = mean.T
        y_var = None if var is None else np.moveaxis(var, 0, -1)
        std_y = gps.y_std
        with np.errstate(over="ignore", invalid="ignore"):
            y_mean = y_mean * std_y + gps.y_mean
        self._warn_not_finite(y_mean, y_var)
        y_mean[:, self.failed_targets_] = np.nan
        single = self._single_output()
        out_mean = y_mean[:, 0] if single else y_mean
        if return_cov:
            y_cov = y_var * std_y**2
            y_cov[..., self.failed_targets_] = np.nan
            return out_mean, (y_cov[..., 0] if single else y_cov)
        if return_std:
            y_std = np.sqrt(y_var) * std_y
            y_std[:, self.failed_targets_] = np.nan
            return out_mean, (y_std[:, 0] if single else y_std)
        return out_mean

    def sample_y(self, X, n_samples=1, random_state=0, observation_noise=True):
        """Draw joint samples from every target's predictive distribution.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
            Query points.
        n_samples : int, default=1
            Number of joint samples per target.
        random_state : int, RandomState instance or None, default=0
            Seeds a local torch generator; the global torch seed is untouched.
        observation_noise : bool, default=True
            Draw new observations (the kernel's white noise included, as
            scikit-learn does); False draws the latent function.

        Returns
        -------
        y_samples : ndarray of shape (n_samples_X, n_samples) or (n_samples_X, n_targets, n_samples)
            Samples, in scikit-learn's layout (NaN for the targets in
            ``failed_targets_``); before ``fit``, from the prior (see
            :meth:`predict`).
        """
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
        reject_grad_tensors(X=X)
        X = validate_data(self, X, reset=False, **self._input_checks())
        generator = torch_generator(random_state)
        if not self._fitted():
            device, dtype = self._check_params()
            mean, cov = (to_tensor(a, dtype, device)
                         for a in self._prior(X, full_cov=True, observation_noise=observation_noise))
            draws = to_numpy(gp.sample_mvn(mean, cov, n_samples, generator=generator))
            return draws[0] if (self.n_targets or 1) == 1 else np.moveaxis(draws, 0, 1)
        self._warn_failed()
        gps, where = self._gps()
        t = gps.tensors(**where)
        Xq = to_tensor(self._core_inputs(X), t.X.dtype, t.X.device)
        draws = np.empty((self.n_targets_, X.shape[0], n_samples))
        with torch.no_grad():
            for sl, L in gps.factor_chunks(2 * X.shape[0] ** 2, **where):
                mean, cov = gp.posterior(gps.conditioned(t, sl, L), Xq, full_cov=True,
                                         observation_noise=observation_noise)
                draws[sl] = to_numpy(gp.sample_mvn(mean, cov, n_samples, generator=generator))
        with np.errstate(over="ignore", invalid="ignore"):
            draws = draws * gps.y_std[:, None, None] + gps.y_mean[:, None, None]
        self._warn_not_finite(np.moveaxis(draws, 0, -1))
        draws[self.failed_targets_] = np.nan
        draws = np.moveaxis(draws, 0, 1)
        return draws[:, 0, :] if self._single_output() else draws

    def log_marginal_likelihood(self, theta=None, eval_gradient=False, clone_kernel=True):
        """Log marginal likelihood of every target.

        Parameters
        ----------
        theta : array-like of shape (n_targets, n_free) or (n_free,), default=None
            Log hyperparameters that are optimised, in the order of
            ``hyperparameter_names_`` (one row per target, or one row for all).
            ``None`` returns the values at the fitted hyperparameters.
        eval_gradient : bool, default=False
            Also return the gradient with respect to ``theta``.
        clone_kernel : bool, default=True
            Accepted for compatibility with scikit-learn; the fitted model is
            never modified.

        Returns
        -------
        log_likelihood : float or ndarray of shape (n_targets,)
            A float for a single target, as scikit-learn's.
        log_likelihood_gradient : ndarray of shape (n_targets, n_free) or (n_free,)
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
        y = gps.standardize(self._y_train_2d())
        with torch.no_grad():
            loss, grad = gps.kernel.nlml(
                to_tensor(full, t.X.dtype, t.X.device), gps.kernel.training_data(t.X),
                to_tensor(y.T, t.X.dtype, t.X.device), t.mask, t.alpha,
                eval_gradient=eval_gradient,
            )
        lml = -to_numpy(loss)
        lml[self.failed_targets_] = np.nan
        return self._per_target(lml, -to_numpy(grad)[:, self._free] if eval_gradient else None)

    def log_prior(self, theta=None, eval_gradient=False):
        """Log prior density of every target's hyperparameters (0 without priors).

        With priors the fit maximises ``log_marginal_likelihood(theta) +
        log_prior(theta)`` (the default kernel has a prior on its length
        scales); this gives the second term anywhere, to compare optima.

        Parameters
        ----------
        theta : array-like of shape (n_targets, n_free) or (n_free,), default=None
            As in :meth:`log_marginal_likelihood`; ``None`` returns
            ``log_prior_value_``.
        eval_gradient : bool, default=False
            Also return the gradient with respect to ``theta``.

        Returns
        -------
        log_prior : float or ndarray of shape (n_targets,)
            A float for a single target.
        log_prior_gradient : ndarray of shape (n_targets, n_free) or (n_free,)
            Only with ``eval_gradient=True``.
        """
        check_is_fitted(self, "gps_")
        if theta is None:
            if eval_gradient:
                raise ValueError("Gradient can only be evaluated for theta!=None")
            return self.log_prior_value_.copy()
        full = torch.as_tensor(self._full_theta(theta), dtype=torch.float64)
        terms = [spec.term(torch.float64, torch.device("cpu")) for spec in self._priors]
        lp, grad = log_prior(terms, full, torch.arange(self.n_targets_), eval_gradient=eval_gradient)
        lp = to_numpy(lp)
        lp[self.failed_targets_] = np.nan
        return self._per_target(lp, to_numpy(grad)[:, self._free] if eval_gradient else None)

    def _per_target(self, value, gradient=None):
        """``value`` (n_targets,) and ``gradient`` (n_targets, n_free) if given, in the outputs' shapes.

        A single target's are a float and an array of shape (n_free,), as
        scikit-learn's ``log_marginal_likelihood``.
        """
        if self._single_output():
            value = value[0]
            gradient = None if gradient is None else gradient[0]
        return value if gradient is None else (value, gradient)

    def _full_theta(self, theta):
        """ndarray of shape (n_targets, P): the fitted theta with its free part set to ``theta``."""
        n_free = int(self._free.sum())
        theta = np.asarray(theta, dtype=float)
        if theta.shape not in ((n_free,), (self.n_targets_, n_free)):
            raise ValueError(
                f"theta has shape {theta.shape}; expected ({self.n_targets_}, {n_free}) "
                f"or ({n_free},) for the free hyperparameters {self.hyperparameter_names_}."
            )
        full = self.gps_.theta.copy()
        full[:, self._free] = theta
        return full

    def _y_train_2d(self):
        return self.y_train_.reshape(self.y_train_.shape[0], -1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        # predict and sample_y before fit use the prior, as scikit-learn's GPR does
        tags.requires_fit = False
        return tags
