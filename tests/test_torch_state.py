"""A fit, a prediction and an unpickled model leave torch as they found it.

Run in a fresh interpreter, with two intra-op threads from the environment
(as a user's process has them), because the failure this guards against is
process-wide and permanent: after ``torch.set_num_threads`` has been called,
torch's batched LU (``torch.linalg.solve``, ``inv``) fails in some builds
(pytorch/pytorch#141358). skbgp runs its single-threaded arithmetic on
threads of its own through thread-local settings instead.

Nor do torch's global defaults change skbgp's numbers: under another default
dtype (``torch.set_default_dtype``) or default device
(``torch.set_default_device``) a fit, its predictions and draws, a
cross-validation and the suggester's points are the same to the last bit.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal

from skbgp import BatchedGaussianProcessRegressor, QBatchSuggester, batched_cross_validate

from .conftest import slow_except

SCRIPT = textwrap.dedent(
    """
    import pickle, warnings
    import numpy as np
    import torch

    def state():
        return dict(
            threads=torch.get_num_threads(),
            interop=torch.get_num_interop_threads(),
            dtype=str(torch.get_default_dtype()),
            grad=torch.is_grad_enabled(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            rng=torch.random.get_rng_state().numpy().tobytes(),
            np_rng=str(np.random.get_state()[1][:5]),
        )

    def batched_lu_works():
        g = torch.Generator().manual_seed(0)
        A = torch.randn(4, 200, 200, dtype=torch.float64, generator=g)
        A = A + 200.0 * torch.eye(200, dtype=torch.float64)
        b = torch.randn(4, 200, 3, dtype=torch.float64, generator=g)
        x = torch.linalg.solve(A, b)
        inv = torch.linalg.inv(A)
        eye = torch.eye(200, dtype=torch.float64)
        assert float((A @ x - b).abs().max()) < 1e-10
        assert float((inv @ A - eye).abs().max()) < 1e-10

    before = state()
    assert before["threads"] == 2, before["threads"]
    from skbgp import BatchedGaussianProcessRegressor, batched_cross_validate
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(60, 2))
    y = np.column_stack([np.sin(4 * X[:, 0]), X[:, 1] ** 2]) + 0.05 * rng.randn(60, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpr = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
        assert state() == before, "fit"
        batched_lu_works()
        gpr.predict(X[:5], return_std=True)
        gpr.sample_y(X[:5], n_samples=3)
        assert state() == before, "predict"
        batched_lu_works()
        again = pickle.loads(pickle.dumps(gpr))
        again.predict(X[:5], return_cov=True)
        assert state() == before, "unpickle"
        batched_lu_works()
        batched_cross_validate(BatchedGaussianProcessRegressor(random_state=0), X, y, cv=3)
        assert state() == before, "cross-validation"
        batched_lu_works()
    print("ok")
    """
)


def test_fit_predict_and_unpickle_leave_torch_state_and_batched_lu_intact():
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            env=env, timeout=120)  # the broken state can hang in LAPACK
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
    assert "DLASWP" not in result.stderr  # MKL's message of the broken state


# ------------------------------------------- torch's default dtype and device (issue 23)
SMALL = dict(num_restarts=3, raw_samples=64, mc_samples=32)


def _numbers():
    """Fit, prediction, draws, and a suggester's asks, all seeded."""
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(14, 2))
    y = np.column_stack([np.sin(5 * X[:, 0]), X[:, 1] ** 2]) + 0.01 * rng.randn(14, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpr = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
        mean, cov = gpr.predict(X[:4], return_cov=True)
        draws = gpr.sample_y(X[:4], n_samples=2, random_state=0)
        cv = batched_cross_validate(BatchedGaussianProcessRegressor(random_state=0), X, y, cv=3)
        opt = QBatchSuggester(bounds=[(0, 1), (0, 1)], q=2, random_state=0, **SMALL).fit(X, y[:, 0])
        asked = opt.ask()
        opt.tell(asked, np.sin(5 * asked[:, 0]))
        analytic = QBatchSuggester(bounds=[(0, 1), (0, 1)], acquisition="LogEI", random_state=0,
                                   **SMALL).fit(X, y[:, 0])
        return [gpr.theta_, mean, cov, draws, cv["test_score"], asked, opt.ask(),
                analytic.ask()]


DEFAULTS_SCRIPT = textwrap.dedent(
    """
    import numpy as np, torch
    from tests.test_torch_state import _numbers
    expected = _numbers()
    for change in ("float32", "float16", "bfloat16", "meta"):
        if change == "meta":
            torch.set_default_device("meta")
        else:
            torch.set_default_dtype(getattr(torch, change))
        try:
            got = _numbers()
        finally:
            torch.set_default_device(None)
            torch.set_default_dtype(torch.float32)  # the default, as this process started
        for a, b in zip(got, expected):
            assert np.array_equal(a, b), change
    print("ok")
    """
)


def _set_default(change):
    if change == "meta":
        torch.set_default_device("meta")
    else:
        torch.set_default_dtype(getattr(torch, change))


@pytest.mark.parametrize("change", slow_except(["float32", "float16", "bfloat16", "meta"],
                                                "float16", "meta"))
def test_torch_default_dtype_and_device_change_nothing(change):
    expected = _numbers()
    dtype = torch.get_default_dtype()
    _set_default(change)
    try:
        got = _numbers()
    finally:
        torch.set_default_device(None)
        torch.set_default_dtype(dtype)
    for a, b in zip(got, expected):
        assert_array_equal(a, b)


@pytest.mark.slow
def test_torch_defaults_change_nothing_with_one_torch_thread():
    # one thread: every computation on the caller's thread, which the default device is set on
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", DEFAULTS_SCRIPT], capture_output=True,
                            text=True, env=env, timeout=300, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
