"""Pareto fronts and hypervolume against brute-force oracles (and BoTorch's, where installed).

* the front against the definition of dominance, pair by pair;
* the hypervolume against inclusion-exclusion over the boxes [ref, y_i]
  (exact, every subset) for small sets of 2, 3 and 4 objectives, against a
  Monte Carlo estimate for larger ones, and against closed forms;
* the reference point and the hypervolume against BoTorch's
  ``infer_reference_point`` and ``Hypervolume``;
* the boxes of the non-dominated region: with the dominated region they tile
  a bounded box exactly, and the hypervolume improvement summed over them
  (inclusion-exclusion for a batch) is the difference of hypervolumes.
"""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skbgp._pareto import hypervolume, nondominated_boxes, pareto_mask, reference_point


def _dominates(a, b):
    return np.all(a >= b) and np.any(a > b)


def _front_by_definition(Y):
    keep = []
    for i, y in enumerate(Y):
        if np.isnan(y).any():
            keep.append(False)
            continue
        dominated = any(_dominates(Y[j], y) for j in range(len(Y)) if not np.isnan(Y[j]).any())
        duplicate = any(np.array_equal(Y[j], y) for j in range(i))
        keep.append(not dominated and not duplicate)
    return np.array(keep)


def _inclusion_exclusion(Y, ref):
    """Volume of the union of the boxes [ref, y_i]: sum over non-empty subsets, signed."""
    Y = [y for y in Y if np.all(y > ref)]
    total = 0.0
    for size in range(1, len(Y) + 1):
        for subset in itertools.combinations(Y, size):
            corner = np.min(subset, axis=0)  # the boxes' intersection is [ref, min]
            total += (-1) ** (size + 1) * np.prod(corner - ref)
    return total


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("seed", range(4))
def test_front_is_the_definition_of_dominance(m, seed):
    rng = np.random.RandomState(seed)
    Y = np.round(rng.randn(40, m), 1)  # rounded: ties and duplicates
    Y[3] = Y[7]
    Y[5, 1] = np.nan
    assert_array_equal(pareto_mask(Y), _front_by_definition(Y))


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_is_inclusion_exclusion(m, seed):
    rng = np.random.RandomState(seed)
    Y = rng.uniform(size=(9, m))
    Y[:3] = Y[:3] * 0.5  # some dominated points
    Y[4] = Y[6]  # a duplicate
    ref = np.full(m, 0.1)  # some points below it in some objective
    assert_allclose(hypervolume(Y, ref), _inclusion_exclusion(Y, ref), rtol=1e-12)


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_of_a_large_front_is_monte_carlo(m):
    rng = np.random.RandomState(0)
    # points on the sphere: all Pareto optimal
    Y = np.abs(rng.randn(200, m))
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    ref = np.zeros(m)
    U = rng.uniform(size=(400_000, m))
    covered = np.zeros(len(U), dtype=bool)
    for y in Y:
        covered |= (U <= y).all(axis=1)
    estimate = covered.mean()
    se = np.sqrt(estimate * (1 - estimate) / len(U))
    assert abs(hypervolume(Y, ref) - estimate) < 4 * se


def test_hypervolume_closed_forms():
    # one point: its box; a staircase in 2-D: the sum of its steps
    assert_allclose(hypervolume([[3.0, 2.0, 5.0]], [1.0, 0.0, 4.0]), 2 * 2 * 1)
    Y = np.array([[1.0, 4.0], [2.0, 3.0], [3.0, 2.0], [4.0, 1.0]])
    assert_allclose(hypervolume(Y, [0.0, 0.0]), 4 + 3 + 2 + 1)
    # points not above the reference point in every objective add nothing
    assert hypervolume([[1.0, -1.0], [0.0, 2.0]], [0.0, 0.0]) == 0.0
    assert hypervolume(np.empty((0, 2)), [0.0, 0.0]) == 0.0


def test_hypervolume_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="shape"):
        hypervolume([[1.0, 2.0]], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        hypervolume([[1.0, 2.0]], [0.0, np.nan])
    with pytest.raises(ValueError, match="2-D"):
        pareto_mask([1.0, 2.0])
    with pytest.raises(ValueError, match="non-empty"):
        reference_point(np.empty((0, 2)))


def test_against_botorch():
    torch = pytest.importorskip("torch")
    hv_module = pytest.importorskip("botorch.utils.multi_objective.hypervolume")
    rng = np.random.RandomState(1)
    for m in (2, 3):
        for n in (1, 2, 30):
            Y = rng.randn(n, m)
            front = Y[pareto_mask(Y)]
            ref = reference_point(front)
            theirs_ref = hv_module.infer_reference_point(torch.as_tensor(front)).numpy()
            assert_allclose(ref, theirs_ref, rtol=1e-12)
            theirs = hv_module.Hypervolume(torch.as_tensor(ref)).compute(torch.as_tensor(front))
            assert_allclose(hypervolume(Y, ref), float(theirs), rtol=1e-10)
    # a constant objective: its range is BoTorch's minimum
    front = np.array([[1.0, 2.0], [3.0, 2.0]])
    assert_allclose(reference_point(front),
                    hv_module.infer_reference_point(torch.as_tensor(front)).numpy(), rtol=1e-12)


def _improvement(lower, upper, batch):
    """Hypervolume improvement of ``batch`` summed over the boxes, by inclusion-exclusion."""
    total = 0.0
    for size in range(1, len(batch) + 1):
        for subset in itertools.combinations(batch, size):
            corner = np.min(subset, axis=0)
            total += (-1) ** (size + 1) * np.prod(
                np.clip(np.minimum(corner, upper) - lower, 0.0, None), axis=1).sum()
    return total


@pytest.mark.parametrize("m", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", range(4))
def test_nondominated_boxes_give_the_hypervolume_improvement(m, seed):
    rng = np.random.RandomState(seed)
    front = rng.uniform(size=(7, m))
    front[0] = front[1] * 0.9  # dominated
    front[2, 0] = -0.5  # below the reference point
    ref = np.zeros(m)
    lower, upper = nondominated_boxes(front, ref)
    assert np.all(lower < upper)
    before = hypervolume(front, ref)
    for q in (1, 2, 3):
        batch = rng.uniform(0.0, 1.2, size=(q, m))
        after = hypervolume(np.vstack([front, batch]), ref)
        assert_allclose(_improvement(lower, upper, batch), after - before, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("m", [2, 3])
def test_nondominated_boxes_tile_the_rest_of_a_bounded_box(m):
    rng = np.random.RandomState(3)
    front = rng.uniform(size=(12, m))
    ref, top = np.zeros(m), np.full(m, 1.5)
    lower, upper = nondominated_boxes(front, ref)
    inside = np.prod(np.clip(np.minimum(upper, top) - lower, 0.0, None), axis=1)
    # disjoint: their volumes and the dominated volume add up to the whole box
    assert_allclose(inside.sum() + hypervolume(front, ref), np.prod(top - ref), rtol=1e-12)
    # and no two of them overlap
    overlap = np.clip(np.minimum(np.minimum(upper[:, None], upper[None]), top)
                      - np.maximum(lower[:, None], lower[None]), 0.0, None).prod(axis=-1)
    np.fill_diagonal(overlap, 0.0)
    assert overlap.max() == 0.0
    # the grid of the first m - 1 objectives: (n + 1)^(m - 1) boxes of a front in general position
    assert len(lower) == (pareto_mask(front).sum() + 1) ** (m - 1)


def test_nondominated_boxes_of_an_empty_front_is_everything_above_ref():
    lower, upper = nondominated_boxes(np.empty((0, 3)), [1.0, 2.0, 3.0])
    assert_array_equal(lower, [[1.0, 2.0, 3.0]])
    assert_array_equal(upper, [[np.inf] * 3])
