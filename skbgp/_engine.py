"""The fitting engine: every optimisation of hyperparameters, and every factorisation.

One module owns "optimise these fit problems (targets, CV folds, restarts as
batch members) from these starts, with this optimiser, on these workers, warm
or cold" and "factorise at these hyperparameters". The regressor's ``fit``
(:meth:`Engine.fit`), the batched cross-validation in each of its modes
(:meth:`Engine.optimise_folds`) and scikit-learn's callable-optimizer
interface all come here; none of them assembles an objective, an optimiser
call or a thread pool of its own.

Work over targets is cut into chunks: a chunk is a contiguous range of
targets, fitted by :func:`fit_chunk`, a module-level function of numpy arrays
that returns numpy arrays, so that joblib can ship it to loky processes or to
the workers of a Dask cluster (``joblib.parallel_config(backend="dask")``).
The batched CV splits its (fold, target) members by target the same way
(:func:`_optimise_targets`). Because the batched optimiser keeps one line
search and one convergence test per member, a target's result does not depend
on the chunk, the worker or the batch-mates it lands with.
"""

import contextlib
import math
import sys
import time
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from joblib import effective_n_jobs
from sklearn.utils.parallel import Parallel, delayed

from ._core import gp
from ._core.fit import Box, finite_difference_hessian, fit_hyperparameters, training_objective, with_priors
from ._core.folds import fold_objective, keeps_data, pack_folds
from ._core.lbfgs import hessian_pairs
from ._core.priors import concatenate_terms, log_prior
from ._core.sparse import InducingKernel, greedy_inducing, sparse_factorize, sparse_nlml
from ._core.threads import map_blocks, on_member_threads
from ._fitted import factors_fit
from ._resources import (SLOW_SECONDS, Placement, Workload, allocation_failures, announce,
                         assumed_evaluations, check_memory, placement)
from ._validation import to_numpy, to_tensor

__all__ = ["MIN_WORKER_WORK", "Engine", "worker_jobs", "auto_batch_size", "Chunk", "FitResult",
           "FitSettings", "Optimum", "fit_chunk", "Progress", "SparseSettings", "SparseFitResult",
           "fit_sparse_chunk", "sparse_batch_size"]

# Memory budget of one chunk on the CPU. What grows with the number of targets
# in a chunk is its final Cholesky factors (one n x n matrix per target); the
# likelihood evaluations work through blocks of members of bounded size.
_CPU_CHUNK_BYTES = 2**30
# On a GPU, a chunk may use this fraction of the memory that is free when the
# fit starts: its members are evaluated in a few large blocks.
_GPU_FREE_FRACTION = 0.25
# n x n matrices per member held at once by a likelihood evaluation on a GPU.
_GPU_COPIES = 6


# Work of a fit (targets x starts x n_samples^2) below which it runs in this process
# whatever n_jobs says: one process already spreads its members over every core torch
# has threads for, and starting worker processes (each imports torch) costs seconds
# (doc/scale.rst has the measurements).
MIN_WORKER_WORK = 2**29


# On the CPU the optimisation sees the training rows padded with masked rows to a
# multiple of four. MKL's matrix products, triangular solves and potri round a
# member's n x n matrix differently when it does not start on a 32-byte boundary;
# with n^2 odd every other member of a block is off it, so identical targets got
# hyperparameters apart by up to 3e-5 (issue 23, item 3). A masked row adds nothing
# to the likelihood or its gradient; only their rounding becomes the same.
_ROW_MULTIPLE = 4


def aligned_rows(X, y, maskf, alpha):
    """The training data of an optimisation, padded with masked rows to a multiple of four.

    Parameters
    ----------
    X : Tensor of shape (n, d)
    y, maskf : Tensor of shape (c, n)
    alpha : Tensor of shape (n,), () or (c, n)

    Returns
    -------
    X, y, maskf, alpha
        With ``n`` rounded up to a multiple of ``_ROW_MULTIPLE`` on the CPU
        (unchanged on a GPU, or when it is one already): the new rows repeat
        the first input (finite for every kernel), their targets and masks
        are 0, so the masked likelihood (:mod:`skbgp._core.gp`) is that of
        the given rows.
    """
    extra = -X.shape[0] % _ROW_MULTIPLE
    if extra == 0 or X.device.type != "cpu" or X.shape[0] == 0:
        return X, y, maskf, alpha
    X = torch.cat([X, X[:1].expand(extra, -1)])
    pad = lambda a: torch.cat([a, a.new_zeros(a.shape[:-1] + (extra,))], dim=-1)  # noqa: E731
    return X, pad(y), pad(maskf), (alpha if alpha.dim() == 0 else pad(alpha))


def worker_jobs(n_jobs, n_targets, n_starts, n_samples):
    """The ``n_jobs`` a fit uses: 1 when its work is too small for workers to pay.

    Parameters
    ----------
    n_jobs : int or None
        The estimator's ``n_jobs``.
    n_targets, n_starts, n_samples : int

    Returns
    -------
    int or None
        ``n_jobs``, or 1 when ``n_targets * n_starts * n_samples**2`` is below
        ``MIN_WORKER_WORK``.
    """
    if n_targets * n_starts * n_samples**2 < MIN_WORKER_WORK:
        return 1
    return n_jobs


def auto_batch_size(n_samples, n_targets, n_starts, n_workers, device, itemsize):
    """Default number of targets per chunk.

    Parameters
    ----------
    n_samples : int
        Training points.
    n_targets : int
    n_starts : int
        Starting points per target (restarts plus one).
    n_workers : int
        Workers that will share the chunks.
    device : torch.device
    itemsize : int
        Bytes per number (8 for float64).

    Returns
    -------
    int
        The largest chunk that fits the memory budget (1 GiB of factors on
        the CPU; a quarter of the free GPU memory on a GPU), cut further so
        that every worker gets at least two chunks when there are several.
    """
    matrix = n_samples * n_samples * itemsize
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        size = int(_GPU_FREE_FRACTION * free) // (_GPU_COPIES * n_starts * matrix)
    else:
        size = _CPU_CHUNK_BYTES // matrix
    if n_workers > 1:
        size = min(size, math.ceil(n_targets / (2 * n_workers)))
    return int(max(1, min(size, n_targets)))


@dataclass(frozen=True)
class Chunk:
    """One contiguous range of targets to fit, as numpy arrays (joblib ships it to a worker).

    Attributes
    ----------
    plan : KernelPlan
        The core kernel and its priors.
    targets : ndarray of shape (c,), int
        Indices of the chunk's targets among all (they select the rows of
        per-target priors).
    X : ndarray of shape (n, d)
    y : ndarray of shape (c, n)
        Targets of the chunk (normalised), missing entries 0.
    maskf : ndarray of shape (c, n)
        1.0 where observed.
    alpha : ndarray of shape (n,), () or (c, n)
        Added to the observed diagonal (per target when 2-D).
    starts : ndarray of shape (r, c, P)
        Starting points in log space; the first is the initial value.
    lower, upper : ndarray of shape (c, P)
        Log bounds.
    """

    plan: object
    targets: np.ndarray
    X: np.ndarray
    y: np.ndarray
    maskf: np.ndarray
    alpha: np.ndarray
    starts: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass(frozen=True)
class FitSettings:
    """How :func:`fit_chunk` fits a chunk.

    Attributes
    ----------
    optimize : bool
        False keeps ``starts[0]`` (factorises only).
    max_iter : int
    tol : float
    device : torch.device
    dtype : torch.dtype
    verbose : int
        2 prints a line per optimiser iteration (the engine asks for it from
        ``verbose=1`` on when a chunk will take minutes).
    keep_factors : bool
        Also return the Cholesky factors (:attr:`FitResult.L`), for the
        caller's prediction cache.
    progress : callable or None
        ``progress(iteration, n_active)`` after every optimiser iteration
        (:meth:`Progress.iteration`); only for a fit in this process (it
        does not travel to workers).
    """

    optimize: bool
    max_iter: int
    tol: float
    device: torch.device
    dtype: torch.dtype
    verbose: int = 0
    keep_factors: bool = False
    progress: object = None


@dataclass(frozen=True)
class FitResult:
    """Every target's outcome of a fit (and factorisation), targets first: what ``finish_fit`` stores.

    Attributes
    ----------
    theta : ndarray of shape (c, P)
        Log hyperparameters.
    n_iter, n_evaluations : ndarray of shape (c,), int
        Optimiser iterations; likelihood evaluations of every target, all its
        starts (0 where nothing was optimised).
    converged : ndarray of shape (c,), bool
    lml : ndarray of shape (c,)
        Log marginal likelihood at ``theta``.
    dual : ndarray of shape (c, n)
        Dual coefficients ``K^-1 y`` (normalised targets).
    jitter : ndarray of shape (c,)
    failed : ndarray of shape (c,), bool
        True where the covariance could not be factorised even with jitter.
    log_prior : ndarray of shape (c,)
        0 without priors.
    L : Tensor of shape (c, n, n) or None
        The Cholesky factors, on the fit's device, when they were kept.
    """

    theta: np.ndarray
    n_iter: np.ndarray
    n_evaluations: np.ndarray
    converged: np.ndarray
    lml: np.ndarray
    dual: np.ndarray
    jitter: np.ndarray
    failed: np.ndarray
    log_prior: np.ndarray
    L: torch.Tensor = None

    @classmethod
    def concatenate(cls, results):
        """One :class:`FitResult` of consecutive chunks' results (factors kept only if all kept them)."""
        if len(results) == 1:
            return results[0]
        arrays = {f.name: np.concatenate([getattr(r, f.name) for r in results])
                  for f in fields(cls) if f.name != "L"}
        L = None
        if all(r.L is not None for r in results):
            L = torch.cat([r.L for r in results])
        return cls(**arrays, L=L)


@dataclass(frozen=True)
class Optimum:
    """Hyperparameters found outside :func:`fit_chunk` (by the batched cross-validation or a
    callable optimizer), for ``finish_fit``.

    Attributes
    ----------
    theta : ndarray or Tensor of shape (m, P)
        Log hyperparameters of every target.
    n_iter, converged, n_evaluations : ndarray or Tensor of shape (m,), or None
        The optimiser's record; ``None`` when nothing was optimised.
    """

    theta: object
    n_iter: object = None
    converged: object = None
    n_evaluations: object = None


@dataclass(frozen=True)
class SparseSettings:
    """How :func:`fit_sparse_chunk` fits the sparse kind.

    Attributes
    ----------
    n_inducing : int
        Inducing points per target (at most the candidates).
    jitter : float
        Relative jitter on ``K_mm`` (:class:`~skbgp._core.sparse.InducingKernel`).
    candidates : ndarray of int
        Training rows the inducing points are chosen from (all, or a random
        subset that bounds the selection's time).
    bound_rows : ndarray of int
        Training rows whose bound the hyperparameters maximise (all, or a
        random subset that bounds the optimisation's time); the posterior
        is conditioned on every row.
    center : ndarray of shape (d,)
        Subtracted from every input before distances (the training inputs'
        mean; the fitted model uses the same numbers).
    """

    n_inducing: int
    jitter: float
    candidates: np.ndarray
    bound_rows: np.ndarray
    center: np.ndarray


@dataclass(frozen=True)
class SparseFitResult(FitResult):
    """A :class:`FitResult` of the sparse kind: ``dual`` is over the inducing points.

    Attributes
    ----------
    dual : ndarray of shape (c, m)
        ``L^-T L_B^-T c``: the mean at ``x`` is ``k(x, Z) @ dual``.
    lml : ndarray of shape (c,)
        The collapsed bound at ``theta`` (a lower bound on the log marginal likelihood).
    Z : ndarray of shape (c, m, d)
        Every target's inducing inputs.
    zmask : ndarray of shape (c, m)
        1.0 for an inducing point in use, 0.0 for padding.
    Lmm, LB : ndarray of shape (c, m, m)
        The factors of ``K_mm`` and of ``B`` (:class:`~skbgp._core.sparse.SparseFactor`).
    """

    Z: np.ndarray = None
    zmask: np.ndarray = None
    Lmm: np.ndarray = None
    LB: np.ndarray = None


def sparse_batch_size(sparse, n_targets, n_workers, device, itemsize):
    """Default targets per chunk of a sparse fit: its selection and factors within the budget.

    A target holds its pivoted factor over the candidates (``m`` rows of
    ``len(candidates)``) while its inducing points are chosen, and about ten
    ``m x m`` matrices (statistics, factors, gradients) while it is fitted;
    the blocks of training rows are bounded apart (:func:`~skbgp._core.sparse.row_block`).
    """
    m = sparse.n_inducing
    per_target = itemsize * (sparse.candidates.size * m + 10 * m * m)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        size = int(_GPU_FREE_FRACTION * free) // per_target
    else:
        size = _CPU_CHUNK_BYTES // per_target
    if n_workers > 1:
        size = min(size, math.ceil(n_targets / (2 * n_workers)))
    return int(max(1, min(size, n_targets)))


def _minimise(objective, box, plan, settings, label="", memory=None):
    """The batched L-BFGS of every member of ``box`` (:func:`~skbgp._core.fit.fit_hyperparameters`).

    Parameters
    ----------
    objective : callable
        ``objective(theta, members) -> (loss, grad)``.
    box : Box
    plan : KernelPlan
        Its restart race (``race_iter``).
    settings : FitSettings
        ``max_iter`` and ``tol``; ``verbose >= 2`` prints a line per iteration.
    label : str
        Prefix of those lines.
    memory
        As :func:`~skbgp._core.fit.fit_hyperparameters` takes it.
    """
    start = time.perf_counter()

    def report(iteration, n_active):
        if settings.verbose >= 2:
            print(f"[skbgp] {label}iteration {iteration}: {n_active} member(s) still optimising, "
                  f"{time.perf_counter() - start:.1f} s elapsed", flush=True)
        if settings.progress is not None:
            settings.progress(iteration, n_active)

    reports = settings.verbose >= 2 or settings.progress is not None
    return fit_hyperparameters(objective, box, max_iter=settings.max_iter, gtol=settings.tol,
                               race_iter=plan.race_iter(settings.max_iter),
                               callback=report if reports else None, memory=memory)


@dataclass(frozen=True)
class Engine:
    """How the hyperparameters of fit problems are found: the estimator's optimiser settings.

    Attributes
    ----------
    optimizer : "lbfgs", callable or None
        The estimator's ``optimizer`` (``"fmin_l_bfgs_b"`` is ``"lbfgs"``).
    max_iter : int
    tol : float
    n_jobs : int or None
        joblib workers over which targets are split, for work large enough
        to pay (:func:`worker_jobs`).
    batch_size : int or None
        Targets per chunk; ``None`` from a memory budget (:func:`auto_batch_size`).
    cache_bytes : int
        The factor cache's budget: a fit keeps its factors when they fit it.
    verbose : int
    """

    optimizer: object
    max_iter: int
    tol: float
    n_jobs: object = None
    batch_size: object = None
    cache_bytes: int = 0
    verbose: int = 0

    def fit(self, problem, optimum=None):
        """Optimise every target of ``problem`` (or take ``optimum``) and factorise.

        Parameters
        ----------
        problem : FitProblem
        optimum : Optimum, optional
            Hyperparameters found elsewhere (the batched CV): every target is
            factorised there and keeps the optimum's record. ``None``
            optimises: the batched L-BFGS chunk by chunk, or a callable
            ``optimizer`` target by target.

        Returns
        -------
        FitResult
        """
        # a kernel without hyperparameters has nothing to optimise (scikit-learn's n_dims == 0)
        optimize = self.optimizer is not None and problem.plan.free.size > 0
        if optimum is None and optimize and callable(self.optimizer):
            optimum = self._optimise_with_callable(problem)
        if optimum is None:
            return self._chunks(problem, problem.starts_np, optimize)
        result = self._chunks(problem, to_numpy(optimum.theta)[None], False)  # 0 evaluations
        if optimum.n_iter is None:
            return result
        return replace(
            result, n_iter=to_numpy(optimum.n_iter, np.int64),
            converged=to_numpy(optimum.converged, bool),
            n_evaluations=to_numpy(optimum.n_evaluations, np.int64),
        )

    def _layout(self, problem, n_starts, sparse=None):
        """``(n_jobs, batch_size, keep_factors)`` of a fit of ``problem`` from ``n_starts`` starts.

        ``keep_factors``: the fit's factors seed the prediction cache when they
        fit its budget and need not travel back from worker processes (the
        sparse kind's small factors always travel back).
        """
        n_targets, n = problem.bounds.shape[0], problem.X.shape[0]
        if sparse is not None:  # an evaluation costs about n m^2 per target, not n^3
            n_jobs = worker_jobs(self.n_jobs, n_targets, 1, math.isqrt(n * sparse.n_inducing))
            batch_size = self.batch_size or sparse_batch_size(
                sparse, n_targets, effective_n_jobs(n_jobs), problem.device, problem.dtype.itemsize)
            return n_jobs, min(batch_size, n_targets), False
        n_jobs = worker_jobs(self.n_jobs, n_targets, n_starts, n)
        batch_size = self.batch_size
        if batch_size is None:
            batch_size = auto_batch_size(n, n_targets, n_starts, effective_n_jobs(n_jobs),
                                         problem.device, problem.dtype.itemsize)
        keep = (effective_n_jobs(n_jobs) == 1
                and factors_fit(n_targets, n, problem.dtype, self.cache_bytes))
        return n_jobs, min(batch_size, n_targets), keep

    def workload(self, problem, n_starts, optimize, layout=None):
        """The :class:`~skbgp._resources.Workload` of fitting ``problem`` chunk by chunk.

        Parameters
        ----------
        problem : FitProblem
        n_starts : int
            Starts per target.
        optimize : bool
            False: factorise only.
        layout : tuple, optional
            ``(n_jobs, batch_size, keep_factors)`` of :meth:`_layout`, when known.
        """
        n_jobs, chunk, keep = layout or self._layout(problem, n_starts)
        n_targets = problem.bounds.shape[0]
        n_chunks = math.ceil(n_targets / chunk)
        plan = problem.plan
        return Workload(
            plan.kernel, problem.X.shape[0], problem.X.shape[1], problem.device, problem.dtype,
            members=n_starts * chunk if optimize else 0, factors=chunk, chunk=chunk,
            targets=n_targets, placement=placement(n_jobs, n_chunks, problem.device),
            evaluations=(assumed_evaluations(n_starts, self.max_iter, plan.race_iter(self.max_iter))
                         if optimize else 0),
            kept=n_targets - chunk if keep else 0, joined=n_targets if keep and n_chunks > 1 else 0,
        )

    def _chunks(self, problem, starts, optimize, sparse=None):
        """Fit (or, with ``optimize`` False, factorise at ``starts[0]``) every target, chunk by chunk.

        Raises :class:`~skbgp._resources.FitMemoryError` before anything is
        allocated when an exact fit clearly needs more memory than is
        available. ``sparse`` (:class:`SparseSettings`) fits the sparse kind
        (:func:`fit_sparse_chunk`, its memory bounded by design) instead of
        the exact one (:func:`fit_chunk`).

        Returns
        -------
        FitResult
            Of all targets; the factors kept when they fit the cache budget
            and the fit ran in this process.
        """
        layout = n_jobs, batch_size, keep = self._layout(problem, starts.shape[0], sparse)
        seconds, guard = 0.0, contextlib.nullcontext()
        if sparse is None:
            work = self.workload(problem, starts.shape[0], optimize, layout)
            check_memory(work)
            seconds = announce(work, self.verbose) if optimize else 0.0
            guard = allocation_failures(work)
        X, plan, bounds = problem.X, problem.plan, problem.bounds
        n_targets = bounds.shape[0]
        chunks = [slice(i, min(i + batch_size, n_targets)) for i in range(0, n_targets, batch_size)]
        # a chunk that takes minutes reports every optimiser iteration from verbose=1 on
        slow = self.verbose == 1 and seconds / len(chunks) > SLOW_SECONDS
        progress = Progress(n_targets, len(chunks), self.verbose if optimize else 0)
        # in this process the progress moves with the iterations, not only with the chunks
        inside = optimize and sparse is None and effective_n_jobs(n_jobs) == 1
        settings = FitSettings(
            optimize=optimize, max_iter=self.max_iter, tol=self.tol, device=problem.device,
            dtype=problem.dtype, verbose=2 if slow else self.verbose, keep_factors=keep,
            # a slow chunk prints a line per iteration already (verbose=2)
            progress=progress.iteration if inside and self.verbose >= 1 and not slow else None,
        )
        extra = {} if sparse is None else {"sparse": sparse}
        jobs = (
            delayed(fit_chunk if sparse is None else fit_sparse_chunk)(
                Chunk(plan, np.arange(sl.start, sl.stop), X, problem.Yn[:, sl].T,
                      problem.maskf_np[:, sl].T,
                      problem.alpha_np[:, sl].T if problem.alpha_np.ndim == 2 else problem.alpha_np,
                      starts[:, sl], bounds[sl, :, 0], bounds[sl, :, 1]),
                settings, label=f"chunk {k + 1}/{len(chunks)}: " if len(chunks) > 1 else "",
                **extra,
            )
            for k, sl in enumerate(chunks)
        )
        results = []
        try:
            with guard:
                # results arrive in order
                for sl, result in zip(chunks, Parallel(n_jobs=n_jobs, return_as="generator")(jobs)):
                    results.append(result)
                    progress.update(sl.stop - sl.start, int(result.converged.sum()))
        finally:
            progress.close()
        return type(results[0]).concatenate(results)

    def fit_sparse(self, problem, theta, sparse, optimize=True):
        """Fit the sparse kind of every target of ``problem`` from ``theta``, chunk by chunk.

        Parameters
        ----------
        problem : FitProblem
            Of all the training rows.
        theta : ndarray of shape (n_targets, P)
            Every target's start (an exact fit on a subset of the rows), inside
            its bounds.
        sparse : SparseSettings
        optimize : bool
            False factorises at ``theta`` (the inducing points chosen there).

        Returns
        -------
        SparseFitResult
        """
        return self._chunks(problem, theta[None], optimize and self.optimizer is not None,
                            sparse=sparse)

    def _optimise_with_callable(self, problem):
        """Every start of every target through the user's ``optimizer`` callable, in turn.

        scikit-learn's interface: ``optimizer(obj_func, initial_theta, bounds)``
        with ``obj_func(theta, eval_gradient=True) -> (-lml, -gradient)`` over
        the free log hyperparameters (the negative log posterior with priors).

        Returns
        -------
        Optimum
            The best start of every target (``n_iter`` 0: not known).
        """
        # one member at a time, in this thread
        work = Workload(problem.plan.kernel, problem.X.shape[0], problem.X.shape[1],
                        problem.device, problem.dtype, members=1, factors=0, chunk=1,
                        targets=problem.bounds.shape[0], placement=Placement(1, 1, True))
        check_memory(work)
        with allocation_failures(work):
            return self._callable_optimum(problem)

    def _callable_optimum(self, problem):
        """:meth:`_optimise_with_callable` after its memory check."""
        plan, free = problem.plan, problem.plan.free
        kernel = plan.kernel
        n_targets = problem.bounds.shape[0]
        with torch.no_grad():
            data = kernel.training_data(problem.Xt)
        y, maskf, alpha = problem.y, problem.maskf, problem.alpha
        theta = problem.starts_np[0].copy()
        evaluations = np.zeros(n_targets, dtype=np.int64)
        converged = np.ones(n_targets, dtype=bool)
        for t in range(n_targets):
            idx = torch.tensor([t], device=problem.device)
            objective = with_priors(
                training_objective(kernel, data, y[idx], maskf[idx], gp.member_rows(alpha, idx)),
                plan.prior_terms(problem.dtype, problem.device, targets=np.array([t])))
            full = problem.starts_np[0, t].copy()

            def obj_func(theta_free, eval_gradient=True):
                # scikit-learn's objective: the negative log marginal likelihood (and prior)
                full[free] = theta_free
                evaluations[t] += 1
                with torch.no_grad():
                    loss, grad = objective(to_tensor(full[None], problem.dtype, problem.device),
                                           torch.zeros(1, dtype=torch.long, device=problem.device))
                loss = float(loss[0])
                return (loss, to_numpy(grad[0])[free]) if eval_gradient else loss

            best = None
            for start in problem.starts_np[:, t]:
                theta_opt, func_min = self.optimizer(obj_func, start[free].copy(),
                                                     bounds=problem.bounds[t][free])
                if best is None or func_min < best[1]:
                    best = (np.asarray(theta_opt, dtype=float), func_min)
            theta[t, free] = best[0]
        return Optimum(theta, np.zeros(n_targets, dtype=np.int64), converged, evaluations)

    def optimise_folds(self, problems, mode, warm=None, full_problem=None):
        """The hyperparameters of every fold's targets, optimised as one batch.

        Parameters
        ----------
        problems : list of FitProblem
            One per fold, each of ``m`` targets and the same kernel.
        mode : {"exact", "warm_start", "full_data"}
            ``"exact"`` starts every fold where its standalone fit would;
            ``"warm_start"`` starts it at the full-data optimum ``warm`` with
            the full-data curvature; ``"full_data"`` keeps ``warm``.
        warm : ndarray of shape (m, P), optional
            The full-data optimum (modes ``"warm_start"`` and ``"full_data"``).
        full_problem : FitProblem, optional
            Of the full data (mode ``"warm_start"``: its curvature seeds L-BFGS).

        Returns
        -------
        list of Optimum or None
            One per fold; ``None`` entries with a callable ``optimizer``,
            which :meth:`fit` then runs in each fold, target by target.
        """
        k = len(problems)
        m = problems[0].y.shape[0]
        if self.optimizer is None:
            return [Optimum(p.starts[0]) for p in problems]
        if mode == "full_data":
            # no optimisation: every fold keeps the full-data hyperparameters
            return [Optimum(_clipped_starts(p, warm, np.arange(m))[0]) for p in problems]
        if callable(self.optimizer):
            return [None] * k
        n_starts = 1 if warm is not None else problems[0].starts_np.shape[0]
        first = problems[0]
        n, d = max(p.X.shape[0] for p in problems), first.X.shape[1]
        n_jobs = worker_jobs(self.n_jobs, k * m, n_starts, n)
        size = m if effective_n_jobs(n_jobs) == 1 else -(-m // (2 * effective_n_jobs(n_jobs)))
        # the warm start's full-data curvature evaluates on all rows as the full-data fit
        # before it did, which was checked
        plan = first.plan
        work = Workload(
            plan.kernel, n, d, first.device, first.dtype, members=k * size * n_starts,
            factors=0, chunk=size, targets=k * m,
            placement=placement(n_jobs, math.ceil(m / size), first.device),
            evaluations=assumed_evaluations(n_starts, self.max_iter, plan.race_iter(self.max_iter)),
            folds=k, folds_kept=keeps_data(k, n, d, first.dtype.itemsize), task="cross-validation",
        )
        check_memory(work)
        seconds = announce(work, self.verbose)
        # an optimisation that takes minutes reports every iteration from verbose=1 on
        slow = self.verbose == 1 and seconds / work.placement.processes > SLOW_SECONDS
        settings = FitSettings(optimize=True, max_iter=self.max_iter, tol=self.tol,
                               device=first.device, dtype=first.dtype,
                               verbose=2 if slow else self.verbose)
        with allocation_failures(work):
            parts = Parallel(n_jobs=n_jobs)(
                delayed(_optimise_targets)(settings, problems, np.arange(i, min(i + size, m)),
                                           warm, full_problem)
                for i in range(0, m, size)
            )
        # parts[c][f] holds fold f's record for chunk c's targets
        return [Optimum(*(torch.cat([getattr(part[f], name) for part in parts])
                          for name in ("theta", "n_iter", "converged", "n_evaluations")))
                for f in range(k)]

    @classmethod
    def of(cls, estimator, n_jobs=None):
        """The engine of a BatchedGaussianProcessRegressor's (checked) parameters.

        Parameters
        ----------
        estimator : BatchedGaussianProcessRegressor
        n_jobs : int or None
            Overrides the estimator's ``n_jobs`` (the batched CV's own).
        """
        return cls(
            optimizer=estimator.optimizer, max_iter=estimator.max_iter, tol=estimator.tol,
            n_jobs=estimator.n_jobs if n_jobs is None else n_jobs,
            batch_size=estimator.batch_size, verbose=estimator.verbose,
            cache_bytes=estimator._cache_bytes(),
        )


def _clipped_starts(problem, warm, targets):
    """Tensor of shape (r, t, P): the starts of ``targets``, or their full-data optimum clipped."""
    if warm is None:
        return problem.starts[:, targets]
    lower, upper = problem.lower[targets], problem.upper[targets]
    start = to_tensor(warm[targets], lower.dtype, lower.device)
    return torch.minimum(torch.maximum(start, lower), upper).unsqueeze(0)


def _optimise_targets(settings, problems, targets, warm=None, full_problem=None):
    """Optimise the members (fold, target) of ``targets`` in every fold, as one batch.

    Module-level (numpy and tensors in and out) so that joblib can ship it to
    a worker; a member's result does not depend on the others in its batch.

    Parameters
    ----------
    settings : FitSettings
    problems : list of FitProblem
        One per fold.
    targets : ndarray of shape (t,), int
    warm : ndarray of shape (m, P), optional
        The full-data optimum every member starts from (no restarts).
    full_problem : FitProblem, optional
        Its curvature at ``warm`` seeds every member's L-BFGS.

    Returns
    -------
    list of Optimum
        One per fold, of the ``t = len(targets)`` targets.
    """
    k, t = len(problems), targets.size
    plan = problems[0].plan
    lower = torch.cat([p.lower[targets] for p in problems])  # (k * t, P), fold-major
    upper = torch.cat([p.upper[targets] for p in problems])
    starts = torch.cat([_clipped_starts(p, warm, targets) for p in problems], dim=1)  # (r, k t, P)
    # every fold's rows aligned as its standalone fit aligns them (aligned_rows)
    batch = pack_folds(*zip(*(aligned_rows(p.Xt, p.y[targets], p.maskf[targets],
                                           p.alpha_of(targets)) for p in problems)))
    # member f * t + j is target targets[j]: its rows of any per-target prior
    priors = concatenate_terms(
        [p.plan.prior_terms(lower.dtype, lower.device, targets=targets) for p in problems],
        [t] * k)

    def work():
        memory = None
        if full_problem is not None:
            memory = _full_data_curvature(full_problem, starts[0, :t], targets)
            memory = (memory[0].repeat(k, 1, 1), memory[1].repeat(k, 1, 1))
        objective = with_priors(fold_objective(plan.kernel, batch), priors)
        return _minimise(objective, Box(starts, lower, upper, problems[0].free), plan, settings,
                         "cross-validation: ", memory=memory)

    result = on_member_threads(lower.device, work)
    return [Optimum(result.theta[f * t:(f + 1) * t], result.n_iter[f * t:(f + 1) * t],
                    result.converged[f * t:(f + 1) * t],
                    result.member_evaluations[f * t:(f + 1) * t]) for f in range(k)]


def _full_data_curvature(problem, theta, targets):
    """Curvature pairs of every target's full-data objective at its optimum.

    The Hessian of the full-data objective (negative log marginal likelihood
    minus log prior) at ``theta``, by forward differences of the gradient in
    one batched call, as L-BFGS curvature pairs
    (:func:`~skbgp._core.lbfgs.hessian_pairs`). A fold leaves out a few rows,
    so its objective's Hessian near the optimum is close to this one: its
    members start with a quasi-Newton step of nearly Newton quality instead of
    a short steepest-descent step and building the curvature anew.

    Parameters
    ----------
    problem : FitProblem
        Of the full data.
    theta : Tensor of shape (t, P)
        The full-data optimum of each of ``targets`` (clipped to the bounds).
    targets : ndarray of shape (t,), int

    Returns
    -------
    S, Y : Tensor of shape (t, P, P)
    """
    batch = pack_folds(*zip(aligned_rows(problem.Xt, problem.y[targets], problem.maskf[targets],
                                         problem.alpha_of(targets))))
    priors = problem.plan.prior_terms(theta.dtype, theta.device, targets=targets)
    fun = with_priors(fold_objective(problem.plan.kernel, batch), priors)
    finite = torch.isfinite(theta).all(-1)
    x = torch.where(finite[:, None], theta, 0.0)
    members = torch.arange(theta.shape[0], device=theta.device)
    H = finite_difference_hessian(fun, x, members, problem.upper[targets], problem.free)
    H[~finite] = torch.eye(theta.shape[1], dtype=theta.dtype, device=theta.device)
    return hessian_pairs(H, problem.free)


def fit_chunk(chunk, settings, label=""):
    """Fit one chunk of targets and factorise their covariances.

    Parameters
    ----------
    chunk : Chunk
    settings : FitSettings
    label : str
        Prefix of the lines that ``settings.verbose >= 2`` prints.

    Returns
    -------
    FitResult
        Of the chunk's ``c`` targets; ``L`` set when ``settings.keep_factors``.
    """
    dtype, device = settings.dtype, settings.device
    as_t = lambda a: to_tensor(a, dtype, device)  # noqa: E731
    plan = chunk.plan
    Xt = as_t(chunk.X)
    kernel = plan.kernel
    yt, mt, alphat = as_t(chunk.y), as_t(chunk.maskf), as_t(chunk.alpha)
    priors = plan.prior_terms(dtype, Xt.device, targets=chunk.targets)
    c = chunk.y.shape[0]
    # the optimisation runs on rows aligned for MKL, the factorisation on the given rows
    Xa, ya, ma, alphaa = aligned_rows(Xt, yt, mt, alphat) if settings.optimize else (Xt, yt, mt, alphat)

    def work():
        data = kernel.training_data(Xa)
        if settings.optimize:
            objective = with_priors(training_objective(kernel, data, ya, ma, alphaa), priors)
            box = Box(as_t(chunk.starts), as_t(chunk.lower), as_t(chunk.upper),
                      torch.as_tensor(plan.free, device=Xt.device))
            result = _minimise(objective, box, plan, settings, label)
            theta = result.theta
            n_iter = to_numpy(result.n_iter, np.int64)
            converged = to_numpy(result.converged, bool)
            n_evals = to_numpy(result.member_evaluations, np.int64)
        else:
            theta = as_t(chunk.starts[0])
            n_iter = np.zeros(c, dtype=np.int64)
            converged = np.ones(c, dtype=bool)
            n_evals = np.zeros(c, dtype=np.int64)
        if Xa is not Xt:
            del objective, data  # the padded rows' data freed before the given rows' are built
            data = kernel.training_data(Xt)
        return theta, n_iter, converged, n_evals, gp.factorize(kernel, theta, data, yt, mt, alphat)

    # single-threaded arithmetic, member blocks on a pool (see skbgp._core.threads)
    theta, n_iter, converged, n_evals, factor = on_member_threads(Xt.device, work)
    with torch.no_grad():
        lp = log_prior(priors, theta, torch.arange(c, device=Xt.device), eval_gradient=False)[0]
    return FitResult(
        theta=to_numpy(theta),
        n_iter=n_iter,
        n_evaluations=n_evals,
        converged=converged,
        lml=to_numpy(factor.log_marginal_likelihood),
        dual=to_numpy(factor.alpha),
        jitter=to_numpy(factor.jitter),
        failed=to_numpy(factor.failed, bool),
        log_prior=to_numpy(lp),
        L=factor.L if settings.keep_factors else None,
    )


# Seconds between two plain-text lines about the optimiser's iterations (without tqdm)
_TEXT_EVERY = 5.0


class Progress:
    """Reports fitted chunks and, within a chunk, the optimiser's iterations.

    A tqdm bar when tqdm is installed (the iterations in its text), else a
    line per chunk and a line about the iterations every ``_TEXT_EVERY``
    seconds.

    Parameters
    ----------
    n_targets : int
    n_chunks : int
    verbose : int
        0 reports nothing.
    """

    def __init__(self, n_targets, n_chunks, verbose):
        self.n_targets, self.n_chunks, self.verbose = n_targets, n_chunks, verbose
        self.done = self.converged = self.chunks = 0
        self.start = self.last_line = time.perf_counter()
        self.bar = None
        if verbose >= 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=n_targets, unit="target", desc="skbgp fit", file=sys.stderr)

    def update(self, n_targets, n_converged):
        """Record a finished chunk of ``n_targets`` of which ``n_converged`` converged."""
        self.done += n_targets
        self.converged += n_converged
        self.chunks += 1
        if self.bar is not None:
            self.bar.set_postfix(converged=f"{self.converged}/{self.done}", refresh=False)
            self.bar.update(n_targets)
        elif self.verbose >= 1:
            print(
                f"[skbgp] chunk {self.chunks}/{self.n_chunks}: {self.done}/{self.n_targets} "
                f"targets fitted, {self.converged} converged, "
                f"{time.perf_counter() - self.start:.1f} s elapsed",
                flush=True,
            )

    def iteration(self, iteration, n_active):
        """Record an optimiser iteration of the running chunk, ``n_active`` members still optimising."""
        chunk = f"chunk {self.chunks + 1}/{self.n_chunks}: " if self.n_chunks > 1 else ""
        state = f"{chunk}iteration {iteration}, {n_active} member(s) still optimising"
        if self.bar is not None:
            self.bar.set_postfix_str(state, refresh=False)
            self.bar.update(0)  # redrawn at tqdm's own pace
            return
        now = time.perf_counter()
        if now - self.last_line >= _TEXT_EVERY:
            self.last_line = now
            print(f"[skbgp] {state}; {self.done}/{self.n_targets} targets fitted, "
                  f"{now - self.start:.1f} s elapsed", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# Conditional variance (relative to the outputscale) below which a target stops
# choosing inducing points: only points the chosen ones already determine to rounding.
_INDUCING_FLOOR = 1e-12


def fit_sparse_chunk(chunk, settings, label="", sparse=None):
    """Fit the sparse kind of one chunk of targets: choose inducing points, optimise the bound.

    Every target's inducing points are chosen by greedy variance selection
    at its start ``chunk.starts[0]`` (an exact fit on a subset of the rows),
    then its hyperparameters maximise the collapsed bound (minus the log
    prior) over all rows with the batched L-BFGS, from that start; the
    inducing points stay fixed.

    Parameters
    ----------
    chunk : Chunk
        ``starts`` of shape (1, c, P).
    settings : FitSettings
    label : str
    sparse : SparseSettings

    Returns
    -------
    SparseFitResult
    """
    dtype, device = settings.dtype, settings.device
    as_t = lambda a: to_tensor(a, dtype, device)  # noqa: E731
    plan = chunk.plan
    Xt = as_t(chunk.X)
    kernel = InducingKernel(plan.kernel, sparse.jitter, center=as_t(sparse.center))
    yt, mt, alphat = as_t(chunk.y), as_t(chunk.maskf), as_t(chunk.alpha)
    priors = plan.prior_terms(dtype, device, targets=chunk.targets)
    c = chunk.y.shape[0]
    theta0 = as_t(chunk.starts[0])
    candidates = Xt[torch.as_tensor(sparse.candidates, device=device)]
    m = min(sparse.n_inducing, candidates.shape[0])

    def select(i):
        # the whole budget unless the rest is explained to rounding: the start's length
        # scales are a subset's, and points they call redundant let the bound shorten
        # them (on the weather data of bench_large_n.py stopping at the jitter lost
        # up to 0.03 in R^2; doc/benchmarks.rst)
        index, zmask = greedy_inducing(kernel, theta0[i:i + 1], candidates, m,
                                       min_variance=_INDUCING_FLOOR)
        return candidates[index], zmask

    rows = torch.as_tensor(sparse.bound_rows, device=device)
    Xb, yb, mb = Xt[rows], yt[:, rows], mt[:, rows]
    alphab = alphat if alphat.dim() == 0 else alphat[..., rows]

    def work():
        # one target per unit of work on skbgp's threads
        Z, zmask = (torch.cat(column) for column in zip(*map_blocks(select, range(c))))

        def objective(theta, targets):
            # units of (target, block of rows) on skbgp's threads: one target still
            # optimising keeps every thread busy
            return sparse_nlml(kernel, theta, Z[targets], zmask[targets], Xb, yb[targets],
                               mb[targets], gp.member_rows(alphab, targets))

        if settings.optimize:
            def report(iteration, n_active):
                print(f"[skbgp] {label}iteration {iteration}: {n_active} target(s) still "
                      "optimising", flush=True)

            box = Box(theta0.unsqueeze(0), as_t(chunk.lower), as_t(chunk.upper),
                      torch.as_tensor(plan.free, device=device))
            # one start, from the subset's optimum: no race (and no restart of its history)
            result = fit_hyperparameters(
                with_priors(objective, priors), box, max_iter=settings.max_iter,
                gtol=settings.tol, race_iter=settings.max_iter,
                callback=report if settings.verbose >= 2 else None)
            theta = result.theta
            record = (to_numpy(result.n_iter, np.int64), to_numpy(result.converged, bool),
                      to_numpy(result.member_evaluations, np.int64))
        else:
            theta = theta0
            record = (np.zeros(c, dtype=np.int64), np.ones(c, dtype=bool),
                      np.zeros(c, dtype=np.int64))

        def factor(i):
            # one target at a time over every row: its blocks' sums held for it alone
            sl = slice(i, i + 1)
            f = sparse_factorize(kernel, theta[sl], Z[sl], zmask[sl], Xt, yt[sl], mt[sl],
                                 gp.member_rows(alphat, sl))
            return f.L, f.LB, f.dual, f.bound, f.failed, f.jitter

        factors = [torch.cat(column) for column in zip(*(factor(i) for i in range(c)))]
        return theta, record, Z, zmask, factors

    theta, (n_iter, converged, n_evals), Z, zmask, (L, LB, dual, bound, failed, jitter) = \
        on_member_threads(device, work)
    with torch.no_grad():
        lp = log_prior(priors, theta, torch.arange(c, device=device), eval_gradient=False)[0]
    return SparseFitResult(
        theta=to_numpy(theta), n_iter=n_iter, n_evaluations=n_evals, converged=converged,
        lml=to_numpy(bound), dual=to_numpy(dual), jitter=to_numpy(jitter),
        failed=to_numpy(failed, bool),
        log_prior=to_numpy(lp), Z=to_numpy(Z), zmask=to_numpy(zmask), Lmm=to_numpy(L),
        LB=to_numpy(LB),
    )
