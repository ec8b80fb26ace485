"""Cross-validation folds as one batch of members.

Every (fold, target) pair is one member of the batch: member ``i`` is fold
``i // m`` and target ``i % m``. Each fold has its own training inputs (its
training rows, possibly transformed by transformers fitted on them), padded to
a common ``n`` rows for storage; a member is evaluated on its fold's own rows
(the first ``n_f``), with missing observations masked, so its likelihood is
the exact one of its fold's observed training subset (see
:mod:`skbgp._core.gp`) and its arithmetic that of a fit on that fold alone.

Shape glossary: ``k`` folds, ``m`` targets, ``n`` padded training points,
``d`` features, ``P`` hyperparameters.
"""

from dataclasses import dataclass

import torch

from .gp import member_blocks
from .threads import block_workers, run_blocks

__all__ = ["FoldBatch", "pack_folds", "fold_objective", "keeps_data"]

# The folds' training data are built once and kept while they take at most this
# many bytes together (rebuilt at every call they cost a third of a 10-fold fit;
# doc/benchmarks.rst, "Constants chosen by measurement"); beyond it every
# evaluation builds the data of the folds it needs.
_CACHE_BYTES = 2**28


@dataclass(frozen=True)
class FoldBatch:
    """The training data of ``k`` folds, padded to the same number of rows.

    Attributes
    ----------
    X : Tensor of shape (k, n, d)
        Training inputs of every fold (zeros in the padding rows).
    y : Tensor of shape (k * m, n)
        Targets of every member (fold-major), 0 where masked.
    maskf : Tensor of shape (k * m, n)
        1.0 where the member's target is observed in its fold's training rows.
    alpha : Tensor of shape (k * m, n)
        Value added to the observed diagonal of every member.
    n_targets : int
        ``m``.
    sizes : tuple of int
        Training rows ``n_f`` of every fold (its rows are the first ``n_f``).
    """

    X: torch.Tensor
    y: torch.Tensor
    maskf: torch.Tensor
    alpha: torch.Tensor
    n_targets: int
    sizes: tuple


def pack_folds(inputs, targets, masks, alphas):
    """Pad the training data of every fold to the largest fold.

    Parameters
    ----------
    inputs : list of k Tensors of shape (n_f, d)
        Training inputs of fold ``f``.
    targets : list of k Tensors of shape (m, n_f)
        Targets of fold ``f`` (missing entries set to 0).
    masks : list of k Tensors of shape (m, n_f)
        1.0 where observed.
    alphas : list of k Tensors of shape (n_f,), () or (m, n_f)
        Value added to fold ``f``'s observed diagonal (per target when 2-D).

    Returns
    -------
    FoldBatch
    """
    k = len(inputs)
    n = max(x.shape[0] for x in inputs)
    d = inputs[0].shape[1]
    m = targets[0].shape[0]
    ref = inputs[0]
    X = torch.zeros(k, n, d, dtype=ref.dtype, device=ref.device)
    y = torch.zeros(k, m, n, dtype=ref.dtype, device=ref.device)
    maskf = torch.zeros_like(y)
    alpha = torch.zeros_like(y)
    for f in range(k):
        n_f = inputs[f].shape[0]
        X[f, :n_f] = inputs[f]
        y[f, :, :n_f] = targets[f]
        maskf[f, :, :n_f] = masks[f]
        alpha[f, :, :n_f] = alphas[f]
    # (k, m, n) -> (k * m, n): member i is fold i // m, target i % m
    return FoldBatch(X=X, y=y.reshape(k * m, n), maskf=maskf.reshape(k * m, n),
                     alpha=alpha.reshape(k * m, n), n_targets=m,
                     sizes=tuple(x.shape[0] for x in inputs))


def keeps_data(k, n, d, itemsize):
    """bool: whether :func:`fold_objective` keeps the training data of ``k`` folds of ``n`` rows
    and ``d`` features (at about ``(d + 3) n^2`` numbers each) or builds them at every call."""
    return k * (d + 3) * n * n * itemsize <= _CACHE_BYTES


def fold_objective(kernel, batch):
    """The negative log marginal likelihood of members with per-fold inputs.

    Parameters
    ----------
    kernel : StationaryKernel or CompositeKernel
        Its ``nlml`` and ``training_data`` evaluate every fold. Each fold's
        data are built once when all folds' fit in 256 MiB (at about
        ``(d + 3) n^2`` numbers per fold), else at every call.
    batch : FoldBatch

    Returns
    -------
    callable
        ``objective(theta, members) -> (loss, grad)`` with ``theta`` a Tensor
        of shape (b, P), ``members`` a Tensor of shape (b,), int64, indexing
        the ``k * m`` members; ``loss`` of shape (b,), ``grad`` of shape
        (b, P), as :func:`neg_log_marginal_likelihood` gives them. One call
        evaluates the members of each fold present in one batched call with
        that fold's squared differences; inside
        :func:`~skbgp._core.threads.on_member_threads` the member blocks of all
        folds are spread over the threads together.
    """
    m = batch.n_targets
    k, n, d = batch.X.shape
    keep = keeps_data(k, n, d, batch.X.element_size())
    cache = {}

    def fold_data(f):
        if f in cache:
            return cache[f]
        data = kernel.training_data(batch.X[f, :batch.sizes[f]])
        if keep:
            cache[f] = data
        return data

    def objective(theta, members):
        loss = torch.empty(theta.shape[0], dtype=theta.dtype, device=theta.device)
        grad = torch.empty_like(theta)
        fold = torch.div(members, m, rounding_mode="floor")
        work = []  # (fold, positions in this call) of every piece of work
        for f in torch.unique(fold).tolist():
            sel = (fold == f).nonzero().squeeze(-1)
            if block_workers() > 1:
                # inside member threads: the member blocks of all folds share the
                # threads (a fold's own blocks would leave threads idle whenever
                # few members of each fold are left)
                work += [(f, sel[blk]) for blk in member_blocks(sel.numel(), n, theta.device)]
            else:
                work.append((f, sel))

        def evaluate(piece):
            f, sel = piece
            mem = members[sel]
            rows = batch.sizes[f]  # the fold's own rows: a fit on that fold alone computes the same
            loss[sel], grad[sel] = kernel.nlml(
                theta[sel], fold_data(f), batch.y[mem, :rows], batch.maskf[mem, :rows],
                batch.alpha[mem, :rows],
            )

        run_blocks(evaluate, work)
        return loss, grad

    return objective
