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

import numpy as np
import torch

from ._core.fit import fit_hyperparameters, training_objective, with_priors
from ._core.priors import log_prior
from ._core.threads import on_member_threads
from ._validation import to_numpy, to_tensor

__all__ = ["auto_batch_size", "fit_chunk", "Progress"]

# Memory budget of one chunk on the CPU. What grows with the number of targets
# in a chunk is its final Cholesky factors (one n x n matrix per target); the
# likelihood evaluations work through blocks of members of bounded size.
_CPU_CHUNK_BYTES = 2**30
# On a GPU, a chunk may use this fraction of the memory that is free when the
# fit starts: its members are evaluated in a few large blocks.
_GPU_FREE_FRACTION = 0.25
# n x n matrices per member held at once by a likelihood evaluation on a GPU.
_GPU_COPIES = 6


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


def fit_chunk(plan, targets, X, y, maskf, alpha, starts, lower, upper, *, optimize,
              max_iter, tol, device, dtype, verbose=0, label="", keep_factors=False):
    """Fit one chunk of targets and factorise their covariances.

    Parameters
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
    alpha : ndarray of shape (n,) or ()
    starts : ndarray of shape (r, c, P)
        Starting points in log space; the first is the initial value.
    lower, upper : ndarray of shape (c, P)
        Log bounds.
    optimize : bool
        False keeps ``starts[0]``.
    max_iter : int
    tol : float
    device : torch.device or str
    dtype : torch.dtype
    verbose : int
        2 prints a line per optimiser iteration.
    label : str
        Prefix of those lines.
    keep_factors : bool
        Also return the Cholesky factors (``"L"``, a Tensor of shape
        (c, n, n) on ``device``), for the caller's prediction cache.

    Returns
    -------
    dict of ndarray
        ``theta`` (c, P), ``n_iter`` (c,), ``n_evaluations`` (c,: likelihood
        evaluations of every target, all its starts), ``converged`` (c,), ``lml`` (c,),
        ``alpha`` (c, n), ``jitter`` (c,), ``failed`` (c,): failed is True where
        the covariance could not be factorised even with jitter; ``log_prior``
        (c,), 0 without priors.
    """
    as_t = lambda a: to_tensor(a, dtype, device)  # noqa: E731
    Xt = as_t(X)
    kernel = plan.kernel
    data = kernel.training_data(Xt)
    yt, mt, alphat = as_t(y), as_t(maskf), as_t(alpha)
    priors = plan.prior_terms(dtype, Xt.device, targets=targets)
    c = y.shape[0]

    def work():
        if optimize:
            def report(iteration, n_active):
                print(f"[skbgp] {label}iteration {iteration}: {n_active} member(s) still "
                      "optimising", flush=True)

            result = fit_hyperparameters(
                with_priors(training_objective(kernel, data, yt, mt, alphat), priors),
                as_t(starts), as_t(lower), as_t(upper),
                torch.as_tensor(plan.free, device=Xt.device), max_iter=max_iter, gtol=tol,
                race_iter=plan.race_iter(max_iter), callback=report if verbose >= 2 else None,
            )
            theta = result.theta
            n_iter = to_numpy(result.n_iter, np.int64)
            converged = to_numpy(result.converged, bool)
            n_evals = to_numpy(result.member_evaluations, np.int64)
        else:
            theta = as_t(starts[0])
            n_iter = np.zeros(c, dtype=np.int64)
            converged = np.ones(c, dtype=bool)
            n_evals = np.zeros(c, dtype=np.int64)
        return theta, n_iter, converged, n_evals, kernel.factorize(theta, data, yt, mt, alphat)

    # single-threaded arithmetic, member blocks on a pool (see skbgp._core.threads)
    theta, n_iter, converged, n_evals, factor = on_member_threads(Xt.device, work)
    with torch.no_grad():
        lp = log_prior(priors, theta, torch.arange(c, device=Xt.device), eval_gradient=False)[0]
    return {
        "theta": to_numpy(theta),
        "n_iter": n_iter,
        "n_evaluations": n_evals,
        "converged": converged,
        "lml": to_numpy(factor.log_marginal_likelihood),
        "alpha": to_numpy(factor.alpha),
        "jitter": to_numpy(factor.jitter),
        "failed": to_numpy(factor.failed, bool),
        "log_prior": to_numpy(lp),
        **({"L": factor.L} if keep_factors else {}),
    }


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
