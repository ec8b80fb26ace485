import importlib.util
import math
import os

import numpy as np
import pytest
import torch
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

_BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def benchmark_module(name):
    """A module of the benchmarks folder, loaded from its file (the tests use their oracles'
    set-ups: real_data's loaders, bench_quality's anchors, bench_memory's measurement)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(_BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


KERNEL_IDS = ["rbf", "matern05", "matern15", "matern25"]
NUS = {"rbf": math.inf, "matern05": 0.5, "matern15": 1.5, "matern25": 2.5}


def sklearn_kernel(name, length_scale, constant=1.3, noise=0.05):
    """``ConstantKernel * base + WhiteKernel`` for one of ``KERNEL_IDS``."""
    if name == "rbf":
        base = RBF(length_scale)
    else:
        base = Matern(length_scale, nu=NUS[name])
    return ConstantKernel(constant) * base + WhiteKernel(noise)


def slow_except(values, *quick):
    """``values`` for ``pytest.mark.parametrize`` with all but ``quick`` marked slow.

    The quick run (``python -m pytest -m "not slow"``) keeps the ``quick`` cases;
    the full run (``python -m pytest``, CI) runs every case.
    """
    return [v if v in quick else pytest.param(v, marks=pytest.mark.slow) for v in values]


# scikit-learn's estimator checks (test_common.py) come from parametrize_with_checks,
# which takes no marks per case: the quick run keeps those of the default estimator
# (kernel=None) but its slowest checks
_SLOW_CHECKS = (
    "check_regressors_train", "check_regressor_data_not_an_array", "check_fit_idempotent",
    "check_supervised_y_2d", "check_estimators_dtypes", "check_regressors_int",
    "check_n_features_in", "check_pipeline_consistency", "check_dtype_object",
)


def pytest_collection_modifyitems(config, items):
    """Marks scikit-learn's estimator checks slow: all but the default estimator's quick ones."""
    for item in items:
        if getattr(item, "originalname", None) != "test_sklearn_compatible_estimator":
            continue
        estimator, check = item.callspec.params["estimator"], item.callspec.params["check"]
        check_name = getattr(check, "func", check).__name__
        if estimator.kernel is not None or check_name in _SLOW_CHECKS:
            item.add_marker(pytest.mark.slow)


_QUICK_RUN_LIMIT_S = 20.0  # a test the quick run keeps should take well under this


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """In the quick run (-m "not slow"), name the kept tests that took over the limit."""
    if "not slow" not in (config.getoption("markexpr") or ""):
        return
    stats = terminalreporter.stats
    reports = [r for outcome in ("passed", "failed") for r in stats.get(outcome, [])]
    long = sorted((r for r in reports if r.when == "call" and r.duration > _QUICK_RUN_LIMIT_S),
                  key=lambda r: -r.duration)
    if long:
        terminalreporter.write_sep("=", f"quick run: over {_QUICK_RUN_LIMIT_S:.0f} s, mark slow?")
        for r in long:
            terminalreporter.write_line(f"{r.duration:.1f}s {r.nodeid}")


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


@pytest.fixture(params=["whole", "row-blocks"])
def differences(request, monkeypatch):
    """Both forms of the exact likelihood's training data: the augmented squared
    differences held whole (small n) and built in blocks of rows (large n), the
    latter forced at small n (a block is then a few rows)."""
    from skbgp._core import stationary

    if request.param == "row-blocks":
        monkeypatch.setattr(stationary, "_FULL_MAX_NUMBERS", 0)
        # blocks of 7 rows, the last one shorter (at these n the rule would give 1 row)
        monkeypatch.setattr(stationary, "row_block", lambda n, d: 7)
    return request.param
