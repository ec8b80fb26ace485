"""The GPU path of every capability, against the same computation on the CPU.

Skipped without CUDA (CI has no GPU); run on a GPU machine.
"""

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold
from torch.distributions import Gamma, Uniform

from skbgp import (
    BatchedGaussianProcessRegressor,
    QBatchSuggester,
    batched_cross_validate,
    kernels,
    loo_predictive,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.uniform(0, 3, size=(40, 2))
    y = np.column_stack([np.sin(2 * X[:, 0]) + X[:, 1], np.cos(X[:, 1]) * X[:, 0],
                         X[:, 0] ** 2 / 3]) + 0.05 * rng.randn(40, 3)
    return X, y


def _map_kernel():
    return (kernels.ConstantKernel(1.0, constant_value_prior=Uniform(0.05, 50.0))
            * kernels.Matern([1.0, 1.0], nu=2.5,
                             length_scale_prior=Gamma(torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.0])))
            + kernels.DotProduct(1.0) + kernels.WhiteKernel(0.1))


def _quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def test_composite_kernel_with_priors_on_gpu_equals_cpu(data):
    X, y = data
    cpu = _quiet_fit(BatchedGaussianProcessRegressor(_map_kernel(), random_state=0, normalize_y=True), X, y)
    gpu = _quiet_fit(BatchedGaussianProcessRegressor(_map_kernel(), random_state=0, normalize_y=True,
                                                     device="cuda"), X, y)
    assert_allclose(gpu.log_marginal_likelihood_value_ + gpu.log_prior_value_,
                    cpu.log_marginal_likelihood_value_ + cpu.log_prior_value_, rtol=1e-7)
    for ours, theirs in zip(gpu.predict(X, return_std=True), cpu.predict(X, return_std=True)):
        assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_batched_cross_validation_and_loo_on_gpu_equal_cpu(data):
    X, y = data
    cv = KFold(4, shuffle=True, random_state=0)
    scores = {}
    for device in ("cpu", "cuda"):
        est = BatchedGaussianProcessRegressor(random_state=0, device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores[device] = batched_cross_validate(est, X, y, cv=cv)["test_score"]
    assert_allclose(scores["cuda"], scores["cpu"], rtol=1e-5)
    kernel = kernels.ConstantKernel(1.0) * kernels.RBF([1.0, 1.0]) + kernels.WhiteKernel(0.1)
    loo = {d: loo_predictive(BatchedGaussianProcessRegressor(kernel, optimizer=None, device=d)
                             .fit(X, y)) for d in ("cpu", "cuda")}
    for ours, theirs in zip(loo["cuda"], loo["cpu"]):
        assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10)


def test_suggester_on_gpu(data):
    X, y = data
    bounds = np.array([(0.0, 3.0), (0.0, 3.0)])
    est = BatchedGaussianProcessRegressor(
        kernels.ConstantKernel(1.0) * kernels.Matern([0.5, 0.5], nu=2.5) + kernels.WhiteKernel(1e-3),
        normalize_y=True, device="cuda",
    )
    runs = [QBatchSuggester(est, bounds=bounds, q=3, num_restarts=4, raw_samples=64,
                            mc_samples=32, random_state=0).fit(X, y[:, 0]).suggest()
            for _ in range(2)]
    assert runs[0].shape == (3, 2)
    assert np.all(runs[0] >= bounds[:, 0]) and np.all(runs[0] <= bounds[:, 1])
    assert_allclose(runs[0], runs[1])  # same random_state, same suggestion
