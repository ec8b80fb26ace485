import math

import numpy as np
import pytest
import torch
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

KERNEL_IDS = ["rbf", "matern05", "matern15", "matern25"]
NUS = {"rbf": math.inf, "matern05": 0.5, "matern15": 1.5, "matern25": 2.5}


def sklearn_kernel(name, length_scale, constant=1.3, noise=0.05):
    """``ConstantKernel * base + WhiteKernel`` for one of ``KERNEL_IDS``."""
    if name == "rbf":
        base = RBF(length_scale)
    else:
        base = Matern(length_scale, nu=NUS[name])
    return ConstantKernel(constant) * base + WhiteKernel(noise)


@pytest.fixture
def rng():
    return np.random.RandomState(0)


@pytest.fixture
def multi_target_data():
    """X (40, 3) on unequal scales, y (40, 4) with different smoothness."""
    rng = np.random.RandomState(1)
    X = rng.uniform(0, 1, size=(40, 3)) * np.array([1.0, 3.0, 0.5])
    y = np.column_stack([
        np.sin(4 * X[:, 0]) + 0.1 * rng.randn(40),
        np.cos(X[:, 1]) * X[:, 2] + 0.05 * rng.randn(40),
        X[:, 0] ** 2 - X[:, 2] + 0.2 * rng.randn(40),
        np.sin(2 * X[:, 1] + X[:, 0]) + 0.1 * rng.randn(40),
    ])
    return X, y


@pytest.fixture
def two_threads():
    """Torch with two intra-op threads (the CI machine may have one core)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(params=["lapack", "torch"], ids=["in-place-lapack", "torch-linalg"])
def linalg_path(request, monkeypatch):
    """Both CPU paths of the likelihood: in-place LAPACK (where it is usable) and torch's functions."""
    from skbgp._core import lapack

    if request.param == "torch":
        monkeypatch.setattr(lapack, "ENABLED", False)
    return request.param
