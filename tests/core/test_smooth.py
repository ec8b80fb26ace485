"""Smooth approximations: every ``*_and_grad`` against its value function, autograd and
closed forms (BoTorch's formulas, the exact maximum of one element, continuity)."""

import math

import pytest
import torch
from torch.testing import assert_close

from skbgp._core.acquisition.smooth import (
    fatmax,
    fatmax_and_grad,
    fatmoid,
    fatmoid_and_grad,
    log_fatplus,
    log_fatplus_and_grad,
    logmeanexp,
    logmeanexp_and_grad,
)

CASES = {
    # name: (value function, value and gradient, scale of the inputs); x / tau within +-20 for
    # log_fatplus, where torch's softplus is not yet linear (its gradient there is exactly 1,
    # where sigmoid(u) is 1 - 2e-9)
    "log_fatplus": (lambda x: log_fatplus(x, 1e-6), lambda x: log_fatplus_and_grad(x, 1e-6), 4e-6),
    "fatmax": (lambda x: fatmax(x, 1e-2, dim=-2), lambda x: fatmax_and_grad(x, 1e-2, dim=-2), 0.05),
    "fatmoid": (fatmoid, fatmoid_and_grad, 3.0),
    "logmeanexp": (lambda x: logmeanexp(x, dim=-1), lambda x: logmeanexp_and_grad(x, dim=-1), 5.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_value_and_grad_matches_value_and_autograd(rng, name):
    value_fn, and_grad, scale = CASES[name]
    x = torch.tensor(scale * rng.randn(4, 3, 7), requires_grad=True)
    value, grad = and_grad(x.detach())
    auto = value_fn(x)
    (auto_grad,) = torch.autograd.grad(auto.sum(), x)
    assert torch.equal(value, auto.detach())  # the same arithmetic
    assert grad.shape == x.shape
    assert_close(grad, auto_grad, rtol=1e-10, atol=1e-12)


def test_log_fatplus_closed_form():
    x = torch.tensor([-1e-3, -1e-6, 0.0, 2e-6, 1e-3], dtype=torch.float64)
    tau = 1e-6
    z = x / tau
    softplus = torch.log1p(torch.exp(-z.abs())) + z.clamp_min(0)  # log(1 + e^z), stably
    expected = torch.log(tau * (softplus + 0.1 / (1 + z * z)))
    assert_close(log_fatplus(x, tau), expected, rtol=1e-12, atol=0)


def test_fatmax_of_one_element_is_that_element_and_bounds_the_max(rng):
    x = torch.tensor(rng.randn(5, 1, 3))
    assert torch.equal(fatmax(x, 0.1, dim=-2), x[:, 0])
    y = torch.tensor(rng.randn(5, 4, 3))
    assert bool((fatmax(y, 0.01, dim=-2) >= y.amax(-2)).all())


def test_fatmoid_limits_and_slope_sign():
    z = torch.tensor([-1e3, -1.0, 0.0, 1.0, 1e3], dtype=torch.float64)
    fat, slope = fatmoid_and_grad(z)
    assert 0 < float(fat[0]) < 1e-6 and abs(float(fat[-1]) - 1.0) < 1e-6
    assert bool((slope > 0).all())
    # a z^-2 tail: 2/3 cauchy(z - 1/sqrt 3) ~ 2 / (3 z^2)
    assert_close(fat[0], torch.tensor(2.0 / 3.0 / (1.0 + (1e3 + 1.0 / math.sqrt(3.0)) ** 2),
                                      dtype=torch.float64), rtol=1e-12, atol=0)


@pytest.mark.xfail(strict=True, reason="fatmoid switches branches at z = -1/sqrt 3, where they "
                   "jump from 2/7 to 1/3; BoTorch's switches at z = 0, where both are 1/2. "
                   "Kept while the acquisition's numbers must not move.")
def test_fatmoid_is_continuous_at_its_branch_point():
    m = 1.0 / math.sqrt(3.0)
    fat = fatmoid(torch.tensor([-m - 1e-12, -m + 1e-12], dtype=torch.float64))
    assert_close(fat[0], fat[1], rtol=0, atol=1e-9)
