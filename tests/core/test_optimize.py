"""Seeding of the random-restart optimiser: the caller's generator only."""

import pytest
import torch

from skbgp._core.optimize import OptimizeOptions, maximize_acquisition


def _bumpy(X):
    """A multimodal function of (b, q, d) candidates: (b,) values."""
    return torch.cos(9.0 * X).sum((-1, -2)) - ((X - 0.3) ** 2).sum((-1, -2))


def _run(seed, max_iter=5):
    options = OptimizeOptions(num_restarts=4, raw_samples=64, max_iter=max_iter)
    return maximize_acquisition(_bumpy, 2, 3, options,
                                generator=torch.Generator().manual_seed(seed))


def test_same_generator_seed_same_result_and_global_generator_untouched():
    state = torch.get_rng_state()
    first, again = _run(3), _run(3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.X_restarts, again.X_restarts)
    assert torch.equal(first.values, again.values)
    # another seed, other starts (after 0 iterations the restarts are the starts)
    assert not torch.equal(_run(3, max_iter=0).X_restarts, _run(4, max_iter=0).X_restarts)


def test_generator_is_required():
    with pytest.raises(TypeError, match="generator"):
        maximize_acquisition(_bumpy, 2, 3, OptimizeOptions(num_restarts=4, raw_samples=64))
