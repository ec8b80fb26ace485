"""Fitting the targets in chunks, in this process or on joblib workers.

A chunk is a contiguous range of targets. Every chunk is fitted by
:func:`fit_chunk`, a module-level function of numpy arrays that returns numpy
arrays, so that joblib can ship it to loky processes or to the workers of a
Dask cluster (``joblib.parallel_config(backend="dask")``). Because the batched
optimiser keeps one line search and one convergence test per member, a target's
result does not depend on the chunk it lands in.
"""

import math
import sys
import time
from dataclasses import dataclass, fields

import numpy as np
import torch

from ._core.fit import fit_hyperparameters, training_objective, with_priors
from ._core.priors import log_prior
from ._core.threads import on_member_threads
from ._validation import to_numpy, to_tensor

__all__ = ["MIN_WORKER_WORK", "worker_jobs", "auto_batch_size", "Chunk", "FitResult", "FitSettings", "Optimum", "fit_chunk", "Progress"]

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
        2 prints a line per optimiser iteration.
    keep_factors : bool
        Also return the Cholesky factors (:attr:`FitResult.L`), for the
        caller's prediction cache.
    """

    optimize: bool
    max_iter: int
    tol: float
    device: torch.device
    dtype: torch.dtype
    verbose: int = 0
    keep_factors: bool = False


@dataclass(frozen=True)
class FitResult:
    """Every target's outcome of a fit (and factorisation), targets first.

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
    alpha : ndarray of shape (c, n)
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
    alpha: np.ndarray
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
    data = kernel.training_data(Xt)
    yt, mt, alphat = as_t(chunk.y), as_t(chunk.maskf), as_t(chunk.alpha)
    priors = plan.prior_terms(dtype, Xt.device, targets=chunk.targets)
    c = chunk.y.shape[0]

    def work():
        if settings.optimize:
            def report(iteration, n_active):
                print(f"[skbgp] {label}iteration {iteration}: {n_active} member(s) still "
                      "optimising", flush=True)

            result = fit_hyperparameters(
                with_priors(training_objective(kernel, data, yt, mt, alphat), priors),
                as_t(chunk.starts), as_t(chunk.lower), as_t(chunk.upper),
                torch.as_tensor(plan.free, device=Xt.device), max_iter=settings.max_iter,
                gtol=settings.tol, race_iter=plan.race_iter(settings.max_iter),
                callback=report if settings.verbose >= 2 else None,
            )
            theta = result.theta
            n_iter = to_numpy(result.n_iter, np.int64)
            converged = to_numpy(result.converged, bool)
            n_evals = to_numpy(result.member_evaluations, np.int64)
        else:
            theta = as_t(chunk.starts[0])
            n_iter = np.zeros(c, dtype=np.int64)
            converged = np.ones(c, dtype=bool)
            n_evals = np.zeros(c, dtype=np.int64)
        return theta, n_iter, converged, n_evals, kernel.factorize(theta, data, yt, mt, alphat)

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
        alpha=to_numpy(factor.alpha),
        jitter=to_numpy(factor.jitter),
        failed=to_numpy(factor.failed, bool),
        log_prior=to_numpy(lp),
        L=factor.L if settings.keep_factors else None,
    )


class Progress:
    """Reports fitted chunks: a tqdm bar when tqdm is installed, else a line each.

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
        self.start = time.perf_counter()
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

    def close(self):
        if self.bar is not None:
            self.bar.close()
