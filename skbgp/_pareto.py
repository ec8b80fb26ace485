r"""Pareto fronts and their hypervolume, for multi-objective optimisation.

Every function here *maximises* every objective (the convention of BoTorch's
multi-objective utilities); a caller that minimises passes ``-Y``.

* :func:`pareto_mask`: the rows of ``Y`` that no other row dominates;
* :func:`hypervolume`: the exact volume dominated by a set of points and
  bounded below by a reference point, by slicing along the last objective
  (Lebesgue measure of the union of the boxes ``[ref, y]``);
* :func:`reference_point`: the reference point inferred from a front, as
  BoTorch's ``infer_reference_point`` does without a user's bound (the nadir
  of the front less a tenth of its range);
* :func:`nondominated_boxes`: disjoint boxes that tile the region above the
  reference point that the front does not dominate, so that the
  hypervolume improvement of new points is a sum over boxes.

These are the observed-front pieces of a Pareto mode of
:class:`~skbgp.QBatchSuggester` (the planned ``pareto_indices_``, ``hypervolume_``
and ``ref_point_``); the suggester does not use them yet.

Shapes: ``n`` points, ``m`` objectives.
"""

import numpy as np

__all__ = ["pareto_mask", "hypervolume", "reference_point", "nondominated_boxes"]

# The smallest range of an objective used to scale the reference point back
# from the nadir (a constant objective; BoTorch's MIN_Y_RANGE).
MIN_RANGE = 1e-7


def pareto_mask(Y):
    """Which rows of ``Y`` are Pareto optimal (maximising every column).

    A row is dominated when another row is at least as large in every
    objective and larger in one. Of several equal optimal rows the first is
    kept, so that the front has no duplicates. Rows with a NaN are never
    optimal. Compares every pair: :math:`O(n^2 m)` time and memory, meant for
    the observations of an optimisation (thousands of rows at most).

    Parameters
    ----------
    Y : array-like of shape (n, m)

    Returns
    -------
    ndarray of shape (n,), bool
    """
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D (n_points, n_objectives); got shape {Y.shape}.")
    valid = ~np.isnan(Y).any(axis=1)
    mask = np.zeros(len(Y), dtype=bool)
    rows = np.flatnonzero(valid)
    Z = Y[rows]
    # i is dominated by j: Z[j] >= Z[i] everywhere and > somewhere
    geq = (Z[None, :, :] >= Z[:, None, :]).all(axis=-1)  # [i, j]: j weakly above i
    gt = (Z[None, :, :] > Z[:, None, :]).any(axis=-1)
    dominated = (geq & gt).any(axis=1)
    # an equal row earlier in Y
    equal = (Z[None, :, :] == Z[:, None, :]).all(axis=-1)
    duplicate = np.tril(equal, k=-1).any(axis=1)
    mask[rows] = ~dominated & ~duplicate
    return mask


def hypervolume(Y, ref):
    r"""The volume dominated by the points of ``Y`` above the reference point.

    The Lebesgue measure of :math:`\bigcup_i [r, y_i]` over the points
    :math:`y_i` above :math:`r` in every objective (others add nothing). The
    union is cut into slabs between consecutive values of the last
    objective; each slab's cross-section is the hypervolume, in one objective
    fewer, of the points reaching above it. Exact; :math:`O(n \log n)` for 2
    objectives, :math:`O(n^2 \log n)` for 3, and :math:`O(n^{m-1} \log n)` in
    general, so meant for up to about 4 objectives.

    Parameters
    ----------
    Y : array-like of shape (n, m)
        Points (dominated ones may be included; rows with a NaN are ignored).
    ref : array-like of shape (m,)

    Returns
    -------
    float
    """
    Y = np.asarray(Y, dtype=float)
    ref = np.asarray(ref, dtype=float).reshape(-1)
    if Y.ndim != 2 or Y.shape[1] != ref.size:
        raise ValueError(
            f"Y must have shape (n_points, {ref.size}) for a reference point of {ref.size} "
            f"objectives; got {Y.shape}."
        )
    if not np.isfinite(ref).all():
        raise ValueError(f"The reference point must be finite; got {ref}.")
    Y = Y[~np.isnan(Y).any(axis=1)]
    Y = Y[(Y > ref).all(axis=1)]
    if len(Y) == 0:
        return 0.0
    return float(_volume(Y[pareto_mask(Y)] - ref))


def _volume(P):
    """Hypervolume of the points ``P`` (n, m), all positive, against the origin."""
    if P.shape[1] == 1:
        return P[:, 0].max()
    if P.shape[1] == 2:
        order = np.argsort(-P[:, 0], kind="stable")
        x, y = P[order, 0], P[order, 1]
        best = np.maximum.accumulate(y)  # highest second objective among x >= this x
        widths = x - np.append(x[1:], 0.0)
        return float((widths * best).sum())
    order = np.argsort(-P[:, -1], kind="stable")
    P = P[order]
    levels = np.append(P[:, -1], 0.0)
    total = 0.0
    for k in range(len(P)):
        height = levels[k] - levels[k + 1]
        if height > 0:
            above = P[: k + 1, :-1]  # every point reaching this slab
            total += height * _volume(above[pareto_mask(above)])
    return total


def reference_point(front, scale=0.1):
    """The reference point of a front: its nadir less ``scale`` times its range.

    BoTorch's ``infer_reference_point`` without a user's bound: the worst
    value of every objective over the front, moved back by a tenth of the
    front's range in that objective (Ishibuchi et al., 2011), so that the
    front's extreme points contribute to the hypervolume. A range below
    ``MIN_RANGE`` (a constant objective) counts as ``MIN_RANGE``; a front of
    one point is moved back by ``scale`` times its magnitude (at least
    ``MIN_RANGE``).

    Parameters
    ----------
    front : array-like of shape (n, m)
        Pareto-optimal points (maximised), n >= 1.
    scale : float, default=0.1

    Returns
    -------
    ndarray of shape (m,)
    """
    front = np.asarray(front, dtype=float)
    if front.ndim != 2 or len(front) == 0 or np.isnan(front).any():
        raise ValueError("The front must be a non-empty 2-D array without NaN.")
    nadir = front.min(axis=0)
    span = np.abs(nadir) if len(front) == 1 else front.max(axis=0) - nadir
    return nadir - scale * np.maximum(span, MIN_RANGE)


def nondominated_boxes(front, ref):
    r"""Disjoint boxes tiling the region above ``ref`` that no point of ``front`` dominates.

    The first :math:`m - 1` objectives are cut into a grid at the front's
    values (and ``ref``); above every grid cell the dominated region is one
    interval of the last objective, from ``ref`` to the highest point of the
    front that dominates the cell's upper corner, so the rest of that column
    is one box reaching to :math:`+\infty`. That gives at most
    :math:`(n + 1)^{m - 1}` boxes: :math:`n + 1` for 2 objectives (the
    fewest possible), :math:`(n + 1)^2` for 3. The hypervolume improvement
    of a point :math:`y` over the front is then

    .. math::

        \sum_k \prod_j \max\big(0, \min(y_j, u_{kj}) - l_{kj}\big),

    and that of a batch of points follows by inclusion-exclusion over its
    subsets (each subset's componentwise minimum).

    Parameters
    ----------
    front : array-like of shape (n, m)
        Points (maximised; dominated ones and points not above ``ref`` may be
        included). n may be 0.
    ref : array-like of shape (m,)

    Returns
    -------
    lower, upper : ndarray of shape (k, m)
        The boxes' corners; ``upper`` is ``inf`` where a box is unbounded.
    """
    ref = np.asarray(ref, dtype=float).reshape(-1)
    front = np.asarray(front, dtype=float).reshape(-1, ref.size)
    front = front[~np.isnan(front).any(axis=1)]
    front = front[(front > ref).all(axis=1)]
    front = front[pareto_mask(front)] if len(front) else front
    m = ref.size
    # the grid of the first m - 1 objectives: [ref, v1), [v1, v2), ..., [v_last, inf)
    edges = [np.concatenate([[ref[j]], np.unique(front[:, j]), [np.inf]]) for j in range(m - 1)]
    lows = np.meshgrid(*[e[:-1] for e in edges], indexing="ij")
    highs = np.meshgrid(*[e[1:] for e in edges], indexing="ij")
    lower = np.stack([g.ravel() for g in lows] + [np.full(lows[0].size, ref[-1])], axis=1) \
        if m > 1 else ref.reshape(1, 1).copy()
    upper = np.stack([g.ravel() for g in highs] + [np.full(lows[0].size, np.inf)], axis=1) \
        if m > 1 else np.full((1, 1), np.inf)
    if len(front):
        # a front point dominates a whole cell of the grid iff it reaches its upper corner
        reaches = (front[None, :, :m - 1] >= upper[:, None, :m - 1]).all(axis=-1)  # (cells, n)
        top = np.where(reaches, front[None, :, -1], -np.inf).max(axis=1)
        lower[:, -1] = np.maximum(ref[-1], top)
    return lower, upper
