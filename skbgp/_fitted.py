"""FittedGPs: the fitted Gaussian processes of every target, in one object.

The regressor stores one :class:`FittedGPs` after ``fit``; prediction,
sampling, closed-form leave-one-out, the batched cross-validation and the
suggester all read the fitted model through it (never through each other's
private attributes).

Its Cholesky factors are kept in memory, once computed (by the fit itself or
by the first prediction), while they fit a budget of bytes; beyond it they are
recomputed chunk by chunk from the hyperparameters and the recorded jitter at
every call, which gives the same numbers. The predictive mean needs only the
dual coefficients, never a factor. The cache is not pickled: an unpickled
model computes its factors again on its first prediction.
"""

import numbers
import threading
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ._core import gp
from ._core.sparse import InducingKernel
from ._core.threads import on_member_threads
from ._validation import compute_device, to_numpy, to_tensor

__all__ = ["FittedGPs", "SparseFittedGPs", "DEFAULT_CACHE_MIB", "cache_bytes", "factors_fit", "format_targets"]

# Default budget of the factor cache, in MiB (the regressor's cache_size).
DEFAULT_CACHE_MIB = 1024
# Numbers of a (targets x query points x training points) block of prediction:
# 8 MiB blocks are recycled by the memory allocator, larger ones are mapped afresh.
_PREDICT_BLOCK = 2**20
# Numbers of the factors recomputed at once when they are not kept (128 MiB in
# float64): smaller blocks made recomputation slower (doc/benchmarks.rst).
_FACTOR_BLOCK = 2**24


def cache_bytes(cache_size):
    """The factor cache's budget in bytes from ``cache_size`` in MiB (checked; inf: no limit)."""
    if isinstance(cache_size, bool) or not isinstance(cache_size, numbers.Real) or not cache_size >= 0:
        raise ValueError(f"cache_size must be a number of MiB >= 0; got {cache_size!r}.")
    return int(cache_size * 2**20) if np.isfinite(cache_size) else np.iinfo(np.int64).max


def factors_fit(n_targets, n_samples, dtype, cache_bytes):
    """Whether the factors of ``n_targets`` targets on ``n_samples`` rows fit ``cache_bytes``."""
    return n_targets * n_samples**2 * dtype.itemsize <= cache_bytes


def format_targets(indices, limit=10):
    """``"[0, 3, 7]"``: target indices for a message, the first ``limit`` of them."""
    indices = [int(i) for i in indices]
    shown = ", ".join(map(str, indices[:limit]))
    more = f", ... ({len(indices)} in all)" if len(indices) > limit else ""
    return f"[{shown}{more}]"


class _Tensors:
    """The fitted arrays as tensors on one device, in one dtype (built once, reused)."""

    __slots__ = ("X", "theta", "dual", "mask", "alpha", "data", "L", "sparse")

    def __init__(self, gps, device, dtype):
        as_t = lambda a: to_tensor(a, dtype, device)  # noqa: E731
        self.X = as_t(gps.X_train)
        self.theta = as_t(np.nan_to_num(gps.theta))  # failed targets: any finite value
        self.dual = as_t(gps.dual)
        self.mask = as_t(gps.observed.T.astype(float))
        self.alpha = as_t(gps.alpha.T if gps.alpha.ndim == 2 else gps.alpha)  # targets first
        self.data = None  # the kernel's training data, built on the first factorisation
        self.L = None  # every target's factor, while it fits the budget
        self.sparse = None  # the sparse kind's kernel, inducing points and factors


class FittedGPs:
    """Every target's fitted exact GP: all that predicting from it needs.

    Parameters
    ----------
    problem : FitProblem
        What was fitted (``BatchedGaussianProcessRegressor.prepare_fit``): the
        core kernel, the observed mask, the target scaling, ``alpha``, the
        device and dtype.
    result : FitResult
        The fit's record (:mod:`skbgp._engine`): dual coefficients and jitter.
    X_train : ndarray of shape (n_samples, n_features)
        The training inputs as the estimator keeps them.
    theta : ndarray of shape (n_targets, P)
        Every target's log hyperparameters, fixed ones included (NaN rows for
        the targets that failed).
    failed : ndarray of shape (n_targets,), bool
        Targets without a fit (no observation, or no positive definite
        covariance); their predictions are NaN.
    cache_bytes : int
        Budget of the factor cache: every target's factor is kept, once
        computed, when all of them take at most this many bytes.

    Attributes
    ----------
    kernel : StationaryKernel or CompositeKernel
        The core kernel (:mod:`skbgp._core`), shared by the targets.
    theta, X_train, failed
        As given.
    observed : ndarray of shape (n_samples, n_targets), bool
    y_mean, y_std : ndarray of shape (n_targets,)
        The targets were fitted as ``(y - y_mean) / y_std``; predictions are
        transformed back.
    dual : ndarray of shape (n_targets, n_samples)
        Dual coefficients ``K^-1 (y - y_mean) / y_std`` (0 where missing).
    jitter : ndarray of shape (n_targets,)
        Diagonal jitter of every target's factorisation in the fit.
    alpha : ndarray of shape (n_samples,), () or (n_samples, n_targets)
        Added to the diagonal of every training covariance (``alpha`` plus the
        known noise variance, per target when that was given per target; 0
        at a missing entry).
    alpha_everywhere : ndarray of shape (n_samples,), () or (n_samples, n_targets)
        ``alpha`` at every entry, the missing ones included: the known noise
        variance given there (0 where it was NaN). The leave-one-out
        variance of a missing entry is that of a new observation there.
    device : torch.device
    dtype : torch.dtype
        Where the factors are computed and kept.
    cache_bytes : int

    Notes
    -----
    ``n_samples**2 * n_targets`` numbers of factors would make a fitted model
    (and its pickle) as large as its fit's working memory; the model stores
    ``theta`` and ``jitter`` instead and rebuilds the factors, whose
    arithmetic is that of the fit, so they are the same to the bit on the
    same device and dtype.
    """

    def __init__(self, problem, result, X_train, theta, failed,
                 cache_bytes=DEFAULT_CACHE_MIB * 2**20):
        self.kernel = problem.plan.kernel
        self.theta = theta
        self.X_train = X_train
        self.observed = problem.observed
        self.y_mean = problem.mean
        self.y_std = problem.std
        self.dual = result.dual
        self.jitter = result.jitter
        self.alpha = problem.alpha_np
        self.alpha_everywhere = _alpha_everywhere(problem)
        self.failed = failed
        self.device = problem.device
        self.dtype = problem.dtype
        self.cache_bytes = cache_bytes
        self._tensors = None
        self._lock = threading.Lock()

    # pickles hold the fitted arrays only: no tensors, no factors, no lock
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_tensors"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def n_targets(self):
        return self.theta.shape[0]

    @property
    def n_samples(self):
        return self.X_train.shape[0]

    @property
    def n_basis(self):
        """Points a prediction is a combination of: the training rows (the sparse kind: inducing points)."""
        return self.n_samples

    def conditioned(self, t, targets, L):
        """gp.Conditioned of ``targets`` (a slice) from ``tensors()`` ``t`` and their factors ``L``."""
        return gp.Conditioned(self.kernel, t.theta[targets], t.X, L, t.dual[targets], t.mask[targets])

    def caches(self, dtype=None):
        """Whether every target's factor is kept in memory (within ``cache_bytes``)."""
        return factors_fit(self.n_targets, self.n_samples, dtype or self.dtype, self.cache_bytes)

    def standardize(self, Y):
        """ndarray of shape (n_samples, n_targets): ``Y`` in the fitted units, 0 where missing."""
        return np.where(self.observed, (Y - self.y_mean) / self.y_std, 0.0)

    def tensors(self, device=None, dtype=None):
        """The fitted arrays as tensors on ``device`` in ``dtype`` (kept for the next call).

        By default the fit's device and dtype; the CPU, with a warning, for a
        model fitted on a GPU and loaded where there is none.
        """
        device = device or compute_device(self.device)
        dtype = dtype or self.dtype
        with self._lock:
            t = self._tensors
            if t is None or t.X.device != device or t.X.dtype != dtype:
                t = self._tensors = _Tensors(self, device, dtype)
            return t

    def keep_factors(self, L, device, dtype):
        """Keep ``L`` (n_targets, n, n), the factors a fit computed, when they fit the budget."""
        if self.caches(dtype):
            self.tensors(device, dtype).L = L

    @property
    def cached(self):
        """Whether the factors are in memory now."""
        return self._tensors is not None and self._tensors.L is not None

    # ---------------------------------------------------------------- factors
    def _refactorize(self, t, targets):
        """Factors of ``targets`` (a slice or an index array) from theta and the fit's jitter."""
        if t.data is None:
            t.data = self.kernel.training_data(t.X)
        rows = targets if isinstance(targets, slice) else torch.as_tensor(targets,
                                                                          device=t.X.device)
        recorded = to_tensor(self.jitter[targets], t.X.dtype, t.X.device)
        L, jitter, failed = on_member_threads(t.X.device, lambda: gp.refactorize(
            self.kernel, t.theta[rows], t.data, t.mask[rows], gp.member_rows(t.alpha, rows),
            recorded))  # the fit's arithmetic
        self._check_refactorized(np.arange(self.n_targets)[targets], to_numpy(jitter),
                                 to_numpy(failed, bool), t.X.dtype)
        return L

    def factor_chunks(self, numbers_per_target=0, device=None, dtype=None):
        """Yield ``(targets, L)``: the Cholesky factors, a slice of targets at a time.

        From the cache when every factor fits the budget (computed on the
        first call); otherwise recomputed for chunks that hold about
        ``_FACTOR_BLOCK`` numbers with ``numbers_per_target`` more each.

        Parameters
        ----------
        numbers_per_target : int
            Numbers the caller holds per target beside its factor (``p * p``
            for a joint covariance); 0 gives the whole cache as one chunk.
        device, dtype : optional
            Where to compute (the fit's by default).

        Yields
        ------
        targets : slice
        L : Tensor of shape (len(targets), n_samples, n_samples)
            Lower factors of the masked training covariances (identity rows
            and columns at missing observations; the identity for a failed
            target).
        """
        t = self.tensors(device, dtype)
        n, m = self.n_samples, self.n_targets
        L = self._cached(t)
        if L is not None and numbers_per_target == 0:
            yield slice(0, m), L  # views of the cache: no memory to bound
            return
        for sl in _slices(m, _FACTOR_BLOCK // max(1, n * n + numbers_per_target)):
            yield sl, (L[sl] if L is not None else self._refactorize(t, sl))

    def _cached(self, t):
        """Every target's factor from the cache (computed if need be); None beyond the budget."""
        with self._lock:  # one thread computes them; the others wait and reuse them
            if not self.caches(t.X.dtype):
                t.L = None  # the budget was lowered
            elif t.L is None:
                t.L = self._refactorize(t, slice(0, self.n_targets))
            return t.L

    def factors(self, targets=None, device=None, dtype=None):
        """Tensor of shape (k, n_samples, n_samples): the factors of ``targets`` (default all).

        Parameters
        ----------
        targets : array-like of int of shape (k,), optional
            Indices of the targets, in the order wanted; all by default.
        device, dtype : optional
            Where to compute (the fit's by default).
        """
        m = self.n_targets
        idx = np.arange(m) if targets is None else np.asarray(targets, dtype=int).reshape(-1)
        t = self.tensors(device, dtype)
        L = self._cached(t)
        if L is not None:
            return L[torch.as_tensor(idx, device=L.device)]
        size = _FACTOR_BLOCK // max(1, self.n_samples**2)
        parts = [self._refactorize(t, idx[sl]) for sl in _slices(idx.size, size)]
        return torch.cat(parts) if parts else t.X.new_empty(0, self.n_samples, self.n_samples)

    def _check_refactorized(self, targets, jitter, failed, dtype):
        """Raise for ``targets`` that no longer factorise; warn for those needing more jitter."""
        fitted = ~self.failed[targets]
        lost = targets[failed & fitted]
        if lost.size:
            raise ValueError(
                f"The training covariance of target(s) {format_targets(lost)} is no longer "
                f"positive definite in {dtype} on this device, even with added jitter, so no "
                "prediction can be made for them. Predict with dtype='float64' (set_params), "
                "or refit with a larger `alpha` or a WhiteKernel."
            )
        more = targets[(jitter > self.jitter[targets]) & fitted]
        if more.size:
            warnings.warn(
                f"The training covariance of target(s) {format_targets(more)} needed more "
                f"jitter in {dtype} than in the fit (up to {jitter.max():.3g}); their predictions "
                "use it. Predict with dtype='float64' for the fit's own factors.",
                ConvergenceWarning,
            )

    # ------------------------------------------------------------- posterior
    def posterior(self, X, *, variance=False, full_cov=False, observation_noise=True, device=None,
                  dtype=None):
        """The latent posterior of every target at ``X``, in the fitted (standardised) units.

        Parameters
        ----------
        X : ndarray of shape (p, n_features)
        variance : bool
            Also the predictive variance (with the kernel's white noise, as
            scikit-learn counts it, unless ``observation_noise`` is False).
        full_cov : bool
            The joint covariance instead of the variance.
        observation_noise : bool
            False leaves the kernel's white noise out of the variance (the
            latent function's posterior).
        device, dtype : optional
            Where to compute (the fit's by default).

        Returns
        -------
        mean : ndarray of shape (n_targets, p)
        var : ndarray of shape (n_targets, p), (n_targets, p, p) or None
            ``None`` unless ``variance`` or ``full_cov``.
        """
        t = self.tensors(device, dtype)
        Xq = to_tensor(X, t.X.dtype, t.X.device)
        p, n, m = Xq.shape[0], self.n_basis, self.n_targets
        mean = np.empty((m, p))
        var = None
        if variance or full_cov:
            var = np.empty((m, p, p) if full_cov else (m, p))
            chunks = self.factor_chunks(p * p if full_cov else 0, device, dtype)
            if not full_cov:
                chunks = _pieces(chunks, max(4, _PREDICT_BLOCK // max(1, p * n)))
        else:
            # the mean needs the dual coefficients only: no factorisation
            chunks = ((sl, None) for sl in _slices(m, _PREDICT_BLOCK // max(1, n)))
        with torch.no_grad():
            for sl, L in chunks:
                chunk = max(1, _PREDICT_BLOCK // max(1, (sl.stop - sl.start) * n))
                mu, v = gp.posterior(self.conditioned(t, sl, L), Xq, full_cov=full_cov,
                                     observation_noise=observation_noise, chunk_size=chunk)
                mean[sl] = to_numpy(mu)
                if var is not None:
                    var[sl] = to_numpy(v)
        return mean, var


def _alpha_everywhere(problem):
    """``problem.alpha_np`` with the known noise of the missing entries put back (NaN: 0)."""
    noise = problem.noise_given
    if noise is None or noise.ndim == 1:
        return problem.alpha_np  # the same at missing entries as at observed ones
    given = problem.alpha_given
    given = given[:, None] if np.ndim(given) == 1 else given
    return given + np.nan_to_num(noise, nan=0.0) / problem.std**2


def _pieces(chunks, size):
    """``(targets, L)`` chunks whose factors exceed ``_FACTOR_BLOCK`` numbers, cut into pieces.

    Every block of query points reads the factors of its targets: a large
    cache read whole for every block of points goes to memory again and
    again, while below ``_FACTOR_BLOCK`` the factors stay in the CPU's caches
    and whole chunks are faster (doc/benchmarks.rst, "Constants chosen by
    measurement").
    """
    for sl, L in chunks:
        if L.numel() <= _FACTOR_BLOCK:
            yield sl, L
            continue
        for piece in _slices(sl.stop - sl.start, size):
            yield slice(sl.start + piece.start, sl.start + piece.stop), L[piece]


def _slices(m, size):
    """Slices that cut ``range(m)`` into pieces of ``size`` (at least 1)."""
    size = max(1, size)
    return [slice(start, min(start + size, m)) for start in range(0, m, size)]


class SparseFittedGPs(FittedGPs):
    """Every target's fitted sparse GP (:class:`~skbgp.SparseBatchedGaussianProcessRegressor`).

    A :class:`FittedGPs` whose targets are conditioned on their inducing
    points: ``dual`` is over them, and the factors (of ``K_mm`` and of ``B``,
    :mod:`skbgp._core.sparse`) are small (``m x m`` per target), so they are
    always kept and pickled; nothing is recomputed.

    Parameters
    ----------
    problem, result, X_train, theta, failed
        As :class:`FittedGPs`; ``result`` a ``SparseFitResult``.
    jitter : float
        The relative jitter on ``K_mm`` of the fit.
    center : ndarray of shape (n_features,)
        The fit's centre of the inputs (distances are computed from it).

    Attributes
    ----------
    Z : ndarray of shape (n_targets, m, n_features)
        Every target's inducing inputs.
    zmask : ndarray of shape (n_targets, m)
        1.0 for an inducing point in use, 0.0 for padding.
    Lmm, LB : ndarray of shape (n_targets, m, m)
    center : ndarray of shape (n_features,)
    """

    def __init__(self, problem, result, X_train, theta, failed, jitter, center):
        super().__init__(problem, result, X_train, theta, failed, cache_bytes=0)
        self.Z, self.zmask, self.Lmm, self.LB = result.Z, result.zmask, result.Lmm, result.LB
        self.center = center
        self.inducing_jitter = jitter

    @property
    def n_basis(self):
        return self.Z.shape[1]

    def tensors(self, device=None, dtype=None):
        t = super().tensors(device, dtype)
        if getattr(t, "sparse", None) is None:
            as_t = lambda a: to_tensor(a, t.X.dtype, t.X.device)  # noqa: E731
            t.sparse = (InducingKernel(self.kernel, self.inducing_jitter, as_t(self.center)),
                        as_t(self.Z), as_t(self.zmask), as_t(self.Lmm), as_t(self.LB))
        return t

    def conditioned(self, t, targets, L):
        kernel, Z, zmask, Lmm, LB = t.sparse
        return gp.Conditioned(kernel, t.theta[targets], Z[targets], Lmm[targets],
                              t.dual[targets], zmask[targets], LB=LB[targets])

    def factor_chunks(self, numbers_per_target=0, device=None, dtype=None):
        """Yield ``(targets, Lmm)``: the kept factors of ``K_mm``, a slice of targets at a time."""
        Lmm = self.tensors(device, dtype).sparse[3]
        m = self.n_basis
        for sl in _slices(self.n_targets, _FACTOR_BLOCK // max(1, m * m + numbers_per_target)):
            yield sl, Lmm[sl]

    def factors(self, targets=None, device=None, dtype=None):
        raise AttributeError(
            "A sparse model has no n_samples x n_samples factors: it is conditioned on its "
            "inducing points (Z, Lmm and LB of gps_)."
        )
