"""BatchedGaussianProcessRegressor: many independent exact GPs, fitted at once."""

import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process.kernels import Kernel
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data

from ._core.exact import sample_mvn
from ._core.fit import fit_hyperparameters
from ._core.priors import log_prior
from ._sklearn_kernels import plan_default, plan_from_kernel
from ._validation import resolve_device, resolve_dtype, to_numpy, to_tensor, torch_generator
from .kernels import _Operators as _SkbgpKernel

__all__ = ["BatchedGaussianProcessRegressor"]

# Numbers held at once by a (targets x query points x training points) block
# during prediction; 2**24 float64 numbers are 128 MiB.
_PREDICT_BLOCK = 2**24


def _format_targets(indices, limit=10):
    indices = [int(i) for i in indices]
    shown = ", ".join(map(str, indices[:limit]))
    more = f", ... ({len(indices)} in all)" if len(indices) > limit else ""
    return f"[{shown}{more}]"


class BatchedGaussianProcessRegressor(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Independent exact Gaussian process regression for every target, in one batch.

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
        ``outputscale * RBF(ARD) + noise`` with initial values taken from the
        data's spread, per target (see Notes), so that unscaled data work.
        A scikit-learn kernel (ConstantKernel, WhiteKernel, RBF, Matern with
        ``nu`` in 0.5, 1.5, 2.5, inf, RationalQuadratic, ExpSineSquared,
        DotProduct, and their Sum, Product and Exponentiation; length scales
        isotropic or ARD) is used with scikit-learn's formulas,
        parameterisation and bounds, every target starting from the kernel's
        values. An :mod:`skbgp.kernels` object may also give every target its
        own initial values and put priors on hyperparameters (the fit is then
        maximum a posteriori). The kernel object is never modified.
    alpha : float or array-like of shape (n_samples,), default=1e-10
        Value added to the diagonal of every target's training covariance, as
        in scikit-learn: a jitter, or a known noise variance per sample.
    optimizer : {"lbfgs", "fmin_l_bfgs_b"} or None, default="lbfgs"
        ``"lbfgs"`` maximises every target's log marginal likelihood with the
        batched L-BFGS (``"fmin_l_bfgs_b"`` is accepted as an alias, for code
        written for scikit-learn). ``None`` keeps the initial hyperparameters.
    n_restarts_optimizer : int, default=2
        Number of extra starting points per target, drawn log-uniformly from
        ``random_state``: within the bounds for a scikit-learn kernel (as
        scikit-learn does), within a box of plausible values around the
        data-driven start for the default kernel (see Notes). All starts of all
        targets are one batch, raced; the best start of each target is kept.
    normalize_y : bool, default=False
        Standardise every target (mean 0, variance 1 over its observed
        entries) before fitting; predictions are transformed back.
    copy_X_train : bool, default=True
        Store a copy of the training data (otherwise a reference).
    random_state : int, RandomState instance or None, default=None
        Draws the restart points. Pass an int for reproducible fits.
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
        Precision of the computation. Outputs are always float64.

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
        :meth:`log_marginal_likelihood`.
    hyperparameter_names_ : list of str
        Name of every column of ``theta_``.
    kernels_ : list of sklearn.gaussian_process.kernels.Kernel
        The fitted kernel of every target as a scikit-learn kernel object
        (with its bounds; an :mod:`skbgp.kernels` object becomes its
        scikit-learn twin, priors dropped), to inspect as ``kernel_`` of
        scikit-learn's GPR.
    length_scales_ : ndarray of shape (n_targets, n_features)
        Fitted length scale of every feature (repeated for an isotropic
        kernel); NaN when the kernel has several or no length-scale parts.
    outputscales_ : ndarray of shape (n_targets,)
        Fitted signal variance: the constant factor of ``ConstantKernel *
        base``; 1 where the kernel has no constant, NaN where a constant is
        not such a factor (or there are several).
    noise_levels_ : ndarray of shape (n_targets,)
        Fitted white-noise variance (0 where the kernel has no white part,
        NaN where it has several).
    log_marginal_likelihood_value_ : ndarray of shape (n_targets,)
        Log marginal likelihood of every target at its fitted hyperparameters
        (of the standardised target when ``normalize_y=True``); without the
        prior.
    log_prior_value_ : ndarray of shape (n_targets,)
        Log prior density of every target's fitted hyperparameters (0 without
        priors). With priors the fit maximises
        ``log_marginal_likelihood_value_ + log_prior_value_``.
    n_iter_ : ndarray of shape (n_targets,)
        L-BFGS iterations of every target's winning start (0 without optimiser).
    converged_ : ndarray of shape (n_targets,)
        Whether every target's winning start met a stopping rule (True without
        optimiser).
    jitter_ : ndarray of shape (n_targets,)
        Diagonal jitter that had to be added to factorise a target (mostly 0).
    L_ : ndarray of shape (n_targets, n_samples, n_samples)
        Lower Cholesky factor of every target's training covariance (identity
        rows and columns at its missing observations).
    alpha_ : ndarray of shape (n_samples, n_targets)
        Dual coefficients ``K^-1 y`` of every target (0 where missing).

    See Also
    --------
    sklearn.gaussian_process.GaussianProcessRegressor :
        One GP with hyperparameters shared by all targets.

    Notes
    -----
    **Default kernel.** With ``kernel=None``, target ``t`` starts from length
    scales equal to each feature's standard deviation, an outputscale equal to
    the mean square of its observed values (their spread about the zero prior
    mean) and a noise variance of 1% of that; bounds are 1e-5 to 1e5 times
    these scales (noise from 1e-8); restarts are drawn from length scales of
    0.02 to 2 times the spread, outputscales of 0.1 to 3 times the mean square
    and noise of 1e-4 to 0.5 times it. Scaling a feature or a target therefore
    scales its starting point, and a fit on unscaled data behaves like one on
    scaled data. A length scale at its upper bound means that the feature does
    not matter to that target (automatic relevance determination); unlike the
    other bounds, this one is not warned about.

    **Restarts.** With ``n_restarts_optimizer > 0`` the starts of all targets
    are raced: every start runs 3 L-BFGS iterations, then only the best start
    of each target continues to convergence. Extra starts then cost about 3
    iterations each instead of a whole optimisation, which is what makes
    several starts affordable by default (a single start often ends in an
    all-noise local optimum).

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
    in the likelihood). scikit-learn's GPR rejects NaN in ``y``. NaN in ``X``,
    inf in ``y`` and a target without any observation are errors.

    **Predictive noise.** As in scikit-learn, the white-noise variance of the
    kernel (the noise part of the default kernel, or a ``WhiteKernel``) is
    included in the predictive std and covariance; ``alpha`` is not.

    **Output shapes** follow scikit-learn's GPR: a 1-D ``y``, or a ``y`` with a
    single column, gives 1-D predictions.

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

    def __init__(
        self,
        kernel=None,
        *,
        alpha=1e-10,
        optimizer="lbfgs",
        n_restarts_optimizer=2,
        normalize_y=False,
        copy_X_train=True,
        random_state=None,
        max_iter=500,
        tol=1e-5,
        device="cpu",
        dtype="float64",
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

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        if self.kernel is not None and not isinstance(self.kernel, (Kernel, _SkbgpKernel)):
            raise TypeError(
                "kernel must be None, a scikit-learn kernel object such as "
                "ConstantKernel() * RBF() + WhiteKernel(), or an skbgp.kernels object; "
                f"got {type(self.kernel).__name__}."
            )
        if self.optimizer not in ("lbfgs", "fmin_l_bfgs_b", None):
            if callable(self.optimizer):
                raise ValueError(
                    "A callable optimizer cannot optimise a batch of targets; use "
                    "optimizer='lbfgs' (batched L-BFGS) or optimizer=None."
                )
            raise ValueError(
                f"optimizer must be 'lbfgs', 'fmin_l_bfgs_b' or None; got {self.optimizer!r}."
            )
        for name, low in (("n_restarts_optimizer", 0), ("max_iter", 1)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
        if not isinstance(self.tol, numbers.Real) or not self.tol > 0:
            raise ValueError(f"tol must be a positive number; got {self.tol!r}.")
        return resolve_device(self.device), resolve_dtype(self.dtype)

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

    def _validate_fit_data(self, X, y):
        X, y = validate_data(
            self,
            X,
            y,
            validate_separately=(
                dict(dtype=np.float64, ensure_2d=True),
                dict(dtype=np.float64, ensure_2d=False, ensure_all_finite="allow-nan"),
            ),
        )
        check_consistent_length(X, y)
        if y.ndim > 2:
            raise ValueError(f"y must be 1-D or 2-D; got an array of shape {y.shape}.")
        if np.isinf(y).any():
            raise ValueError("Input y contains infinity or a value too large for dtype('float64').")
        return X, y

    # ---------------------------------------------------------------- fitting
    def fit(self, X, y):
        """Fit one Gaussian process per target, all at once.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Training targets; NaN marks a missing observation of one target.

        Returns
        -------
        self : BatchedGaussianProcessRegressor
            The fitted estimator.
        """
        device, dtype = self._check_params()
        X, y = self._validate_fit_data(X, y)
        alpha = self._check_alpha(X.shape[0])
        Y = y.reshape(y.shape[0], -1)
        observed = ~np.isnan(Y)
        empty = np.flatnonzero(~observed.any(axis=0))
        if empty.size:
            raise ValueError(
                f"Target(s) {_format_targets(empty)} have no observed value (all NaN); "
                "drop these columns of y before fitting."
            )

        if self.normalize_y:
            mean = np.nanmean(Y, axis=0)
            std = np.nanstd(Y, axis=0)
            std = np.where(std > 10 * np.finfo(std.dtype).eps, std, 1.0)
        else:
            mean = np.zeros(Y.shape[1])
            std = np.ones(Y.shape[1])
        Yn = np.where(observed, (Y - mean) / std, 0.0)
        maskf = observed.astype(float)

        n_targets = Y.shape[1]
        if self.kernel is None:
            plan = plan_default(X, Yn, maskf)
        else:
            plan = plan_from_kernel(self.kernel, X.shape[1], n_targets)
        P = plan.free.shape[0]
        bounds = np.broadcast_to(plan.bounds, (n_targets, P, 2))
        theta0 = np.clip(np.broadcast_to(plan.theta0, (n_targets, P)), bounds[..., 0], bounds[..., 1])

        as_t = lambda a: to_tensor(a, dtype, device)  # noqa: E731
        Xt = as_t(X)
        D2 = plan.engine.training_data(Xt)
        yt, mt, alphat = as_t(Yn.T), as_t(maskf.T), as_t(alpha)

        priors = plan.prior_terms(dtype, device)
        if self.optimizer is not None:
            starts = [theta0]
            rng = check_random_state(self.random_state)
            box = np.broadcast_to(plan.restart_bounds, (n_targets, P, 2))
            for _ in range(self.n_restarts_optimizer):
                draw = rng.uniform(box[..., 0], box[..., 1])
                starts.append(np.where(plan.free, draw, theta0))
            result = fit_hyperparameters(
                plan.kernel,
                D2,
                yt,
                mt,
                alphat,
                as_t(np.stack(starts)),
                as_t(bounds[..., 0]),
                as_t(bounds[..., 1]),
                torch.as_tensor(plan.free, device=device),
                max_iter=self.max_iter,
                gtol=self.tol,
                nlml=plan.engine.nlml,
                priors=priors,
            )
            theta = result.theta
            n_iter = to_numpy(result.n_iter, np.int64)
            converged = to_numpy(result.converged, bool)
        else:
            theta = as_t(theta0)
            n_iter = np.zeros(n_targets, dtype=np.int64)
            converged = np.ones(n_targets, dtype=bool)

        factor = plan.engine.factorize(plan.kernel, theta, D2, yt, mt, alphat)
        failed = to_numpy(factor.failed, bool)
        if failed.any():
            raise ValueError(
                f"The training covariance is not positive definite for target(s) "
                f"{_format_targets(np.flatnonzero(failed))}, even with added jitter. "
                "Try increasing `alpha`, adding a WhiteKernel, or removing duplicate rows."
            )
        jitter = to_numpy(factor.jitter)

        self.X_train_ = np.copy(X) if self.copy_X_train else X
        self.y_train_ = np.copy(y) if self.copy_X_train else y
        self.n_targets_ = n_targets
        self._y_train_mean = mean
        self._y_train_std = std
        self._observed = observed
        self._core_kernel = plan.kernel
        self._engine = plan.engine
        self._theta_full = to_numpy(theta)
        self._free = plan.free
        self.theta_ = self._theta_full[:, plan.free]
        self.hyperparameter_names_ = [n for n, f in zip(plan.names, plan.free) if f]
        self.length_scales_, self.outputscales_, self.noise_levels_ = plan.summaries(
            self._theta_full, X.shape[1])
        self.kernels_ = plan.sklearn_kernels(self._theta_full, bounds)
        self.log_marginal_likelihood_value_ = to_numpy(factor.log_marginal_likelihood)
        with torch.no_grad():
            self.log_prior_value_ = to_numpy(log_prior(
                priors, theta, torch.arange(n_targets, device=device), eval_gradient=False)[0])
        self.n_iter_ = n_iter
        self.converged_ = converged
        self.jitter_ = jitter
        self.L_ = to_numpy(factor.L)
        self.alpha_ = to_numpy(factor.alpha).T.copy()

        self._warn_after_fit(plan, bounds)
        return self

    def _warn_after_fit(self, plan, bounds):
        if self.optimizer is not None and not self.converged_.all():
            bad = np.flatnonzero(~self.converged_)
            warnings.warn(
                f"The optimiser stopped before convergence for {bad.size} of "
                f"{self.n_targets_} target(s) {_format_targets(bad)} (max_iter="
                f"{self.max_iter} reached or no further decrease found). Increase "
                "max_iter or n_restarts_optimizer, or scale the data.",
                ConvergenceWarning,
            )
        if self.jitter_.any():
            bad = np.flatnonzero(self.jitter_ > 0)
            warnings.warn(
                f"The training covariance of target(s) {_format_targets(bad)} was not "
                f"positive definite; jitter up to {self.jitter_.max():.3g} was added to its "
                "diagonal. Consider increasing `alpha` or adding a WhiteKernel.",
                ConvergenceWarning,
            )
        if self.optimizer is None:
            return
        for j in np.flatnonzero(plan.free):
            for side, word, verb in ((0, "lower", "Decreasing"), (1, "upper", "Increasing")):
                if (side == 1 and not plan.warn_at_upper[j]) or plan.prior_bounded[j, side]:
                    continue
                near = np.isclose(bounds[:, j, side], self._theta_full[:, j])
                if near.any():
                    warnings.warn(
                        f"The optimal value found for {plan.names[j]} is close to the "
                        f"specified {word} bound for target(s) "
                        f"{_format_targets(np.flatnonzero(near))}. {verb} the bound and "
                        "calling fit again may find a better value; so may more restarts "
                        "(n_restarts_optimizer), when the fit ended in a local optimum that "
                        "explains the data as noise.",
                        ConvergenceWarning,
                    )

    # ------------------------------------------------------------- prediction
    def _fitted_tensors(self):
        """The cached factor and data as tensors on the compute device."""
        device, dtype = resolve_device(self.device), resolve_dtype(self.dtype)
        as_t = lambda a: to_tensor(a, dtype, device)  # noqa: E731
        return (
            as_t(self._theta_full),
            as_t(self.X_train_),
            as_t(self.L_),
            as_t(self.alpha_.T),
            as_t(self._observed.T.astype(float)),
            as_t,
        )

    def _single_output(self):
        return self.y_train_.ndim == 1 or self.y_train_.shape[1] == 1

    def predict(self, X, return_std=False, return_cov=False):
        """Predict with every target's GP.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Query points.
        return_std : bool, default=False
            Also return the predictive standard deviation.
        return_cov : bool, default=False
            Also return the joint predictive covariance.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictive mean.
        y_std : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictive standard deviation; only with ``return_std=True``.
        y_cov : ndarray of shape (n_samples, n_samples) or (n_samples, n_samples, n_targets)
            Predictive covariance; only with ``return_cov=True``.
        """
        if return_std and return_cov:
            raise RuntimeError(
                "At most one of return_std or return_cov can be requested."
            )
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        theta, Xtr, L, a, mask, as_t = self._fitted_tensors()
        n_train = Xtr.shape[0]
        chunk = max(1, _PREDICT_BLOCK // max(1, self.n_targets_ * n_train))
        with torch.no_grad():
            mean, var = self._engine.posterior(
                self._core_kernel, theta, Xtr, as_t(X), L, a, mask,
                full_cov=return_cov, chunk_size=chunk,
            )
        std_y = self._y_train_std
        y_mean = to_numpy(mean).T * std_y + self._y_train_mean  # (n_samples, n_targets)
        single = self._single_output()
        out_mean = y_mean[:, 0] if single else y_mean
        if return_cov:
            y_cov = np.moveaxis(to_numpy(var), 0, -1) * std_y**2  # (n, n, n_targets)
            return out_mean, (y_cov[..., 0] if single else y_cov)
        if return_std:
            y_std = np.sqrt(to_numpy(var).T) * std_y
            return out_mean, (y_std[:, 0] if single else y_std)
        return out_mean

    def sample_y(self, X, n_samples=1, random_state=0):
        """Draw joint samples from every target's predictive distribution.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
            Query points.
        n_samples : int, default=1
            Number of joint samples per target.
        random_state : int, RandomState instance or None, default=0
            Seeds a local torch generator; the global torch seed is untouched.

        Returns
        -------
        y_samples : ndarray of shape (n_samples_X, n_samples) or (n_samples_X, n_targets, n_samples)
            Samples, in scikit-learn's layout.
        """
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        theta, Xtr, L, a, mask, as_t = self._fitted_tensors()
        with torch.no_grad():
            mean, cov = self._engine.posterior(self._core_kernel, theta, Xtr, as_t(X), L, a, mask,
                                               full_cov=True)
            draws = sample_mvn(mean, cov, n_samples, generator=torch_generator(random_state))
        draws = to_numpy(draws)  # (n_targets, n_samples_X, n_samples)
        draws = draws * self._y_train_std[:, None, None] + self._y_train_mean[:, None, None]
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
        log_likelihood : ndarray of shape (n_targets,)
        log_likelihood_gradient : ndarray of shape (n_targets, n_free)
            Only with ``eval_gradient=True``.
        """
        check_is_fitted(self)
        if theta is None:
            if eval_gradient:
                raise ValueError("Gradient can only be evaluated for theta!=None")
            return self.log_marginal_likelihood_value_.copy()
        n_free = int(self._free.sum())
        theta = np.asarray(theta, dtype=float)
        if theta.shape not in ((n_free,), (self.n_targets_, n_free)):
            raise ValueError(
                f"theta has shape {theta.shape}; expected ({self.n_targets_}, {n_free}) "
                f"or ({n_free},) for the free hyperparameters {self.hyperparameter_names_}."
            )
        full = self._theta_full.copy()
        full[:, self._free] = theta
        _, Xtr, _, _, mask, as_t = self._fitted_tensors()
        std = self._y_train_std
        y = np.where(self._observed, (self._y_train_2d() - self._y_train_mean) / std, 0.0)
        with torch.no_grad():
            loss, grad = self._engine.nlml(
                self._core_kernel, as_t(full), self._engine.training_data(Xtr), as_t(y.T), mask,
                as_t(self._check_alpha(Xtr.shape[0])), eval_gradient=eval_gradient,
            )
        lml = -to_numpy(loss)
        if eval_gradient:
            return lml, -to_numpy(grad)[:, self._free]
        return lml

    def _y_train_2d(self):
        return self.y_train_.reshape(self.y_train_.shape[0], -1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        return tags
