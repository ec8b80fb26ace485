"""The one stationary correlation against scikit-learn, finite differences and autograd."""

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.gaussian_process.kernels import RBF, Matern

from skbgp._core.kernels import correlation

from ..conftest import KERNEL_IDS, NUS

# the fit's numerics (the defaults) and the acquisition functions'
NUMERICS = {
    "fit": {},
    "acquisition": {"r2_floor": 1e-30, "exp_floor": -math.inf},
}


def _sklearn(name, length_scale):
    return RBF(length_scale) if name == "rbf" else Matern(length_scale, nu=NUS[name])


def _points(rng):
    """X (9, 3) with a duplicate row (zero distance), Y (6, 3), ARD length scales (3,)."""
    X = rng.uniform(-1, 2, size=(9, 3))
    X[4] = X[1]
    Y = np.vstack([rng.uniform(-1, 2, size=(5, 3)), X[1]])
    return X, Y, np.array([0.4, 1.3, 2.5])


def _scaled_r2(X, Y, length_scale):
    """Tensor of shape (n, p): sum_j (x_j - z_j)^2 / ell_j^2."""
    diff = (X[:, None, :] - Y[None, :, :]) / length_scale
    return torch.tensor((diff * diff).sum(-1))


@pytest.mark.parametrize("numerics", list(NUMERICS))
@pytest.mark.parametrize("name", KERNEL_IDS)
def test_correlation_matches_sklearn(rng, name, numerics):
    X, Y, ls = _points(rng)
    rho, drho = correlation(NUS[name], _scaled_r2(X, Y, ls), **NUMERICS[numerics])
    assert drho is None
    assert_allclose(rho.numpy(), _sklearn(name, ls)(X, Y), rtol=1e-12, atol=0)


@pytest.mark.parametrize("numerics", list(NUMERICS))
@pytest.mark.parametrize("name", KERNEL_IDS)
def test_slope_matches_finite_differences_and_autograd(rng, name, numerics):
    nu = NUS[name]
    r2 = torch.tensor(rng.uniform(0.05, 6.0, size=40), requires_grad=True)
    rho, drho = correlation(nu, r2, slope=True, **NUMERICS[numerics])
    (auto,) = torch.autograd.grad(rho.sum(), r2)
    r2 = r2.detach()
    h = 1e-5 * r2
    up = correlation(nu, r2 + h, **NUMERICS[numerics])[0]
    down = correlation(nu, r2 - h, **NUMERICS[numerics])[0]
    torch.testing.assert_close(drho, (up - down) / (2 * h), rtol=1e-8, atol=0)
    torch.testing.assert_close(drho, auto, rtol=1e-13, atol=0)
    # the slope's correlation is the correlation
    assert torch.equal(rho.detach(), correlation(nu, r2, **NUMERICS[numerics])[0])


@pytest.mark.parametrize("name", KERNEL_IDS)
def test_zero_distance_has_finite_slope_and_zero_gradient(name):
    # the limits d rho / d r2 at r2 = 0: -1/2, -3/2, -5/6 (infinite for nu = 1/2: given as 0)
    nu = NUS[name]
    limit = {"rbf": -0.5, "matern05": 0.0, "matern15": -1.5, "matern25": -5.0 / 6.0}[name]
    for kwargs in NUMERICS.values():
        r2 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        rho, drho = correlation(nu, r2, slope=True, **kwargs)
        (grad,) = torch.autograd.grad(rho.sum(), r2)
        torch.testing.assert_close(rho.detach(), torch.ones(3, dtype=torch.float64),
                                   rtol=0, atol=2e-15)
        # the acquisition's clamp leaves a = sqrt(2 nu 1e-30), about 2e-15
        torch.testing.assert_close(drho, torch.full((3,), limit, dtype=torch.float64),
                                   rtol=1e-14, atol=0)
        assert bool(torch.isfinite(grad).all())
    # the fit's guarded root: exactly 1 at zero distance, as scikit-learn
    assert bool((correlation(nu, torch.zeros(3, dtype=torch.float64))[0] == 1.0).all())


@pytest.mark.parametrize("name", KERNEL_IDS)
def test_exponent_floor(name):
    # far apart (a = sqrt(2 nu r2) or r2 / 2 well above 345): the fit's floor, or none.
    # A Matern kernel's a is floored with its exponent, so the correlation stays at the
    # value at a = 345 however far apart, even where r2 overflowed to inf
    nu = NUS[name]
    a = 345.0
    polynomial = {"rbf": 1.0, "matern05": 1.0, "matern15": 1.0 + a,
                  "matern25": 1.0 + a + a * a / 3.0}[name]
    expected = polynomial * math.exp(-345.0)
    for far in (1e6, 1e300, math.inf):
        r2 = torch.tensor([far], dtype=torch.float64)
        assert_allclose(correlation(nu, r2)[0].numpy(), [expected], rtol=1e-13)
        assert float(correlation(nu, r2, exp_floor=-math.inf)[0]) == 0.0
