"""The memory check before a fit, its estimate against measured peaks, and the slow-fit notice."""

import os
import resource
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

import skbgp._resources as resources
from skbgp import (BatchedGaussianProcessRegressor, FitMemoryError, SlowFitWarning,
                   batched_cross_validate)
from skbgp._engine import Engine

from .conftest import benchmark_module

GB = 1e9


def _data(n, d=5, m=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    y = np.sin(X @ rng.normal(size=(d, m))) + 0.1 * rng.normal(size=(n, m))
    return X, y[:, 0] if m == 1 else y


@pytest.fixture
def six_gigabytes(monkeypatch):
    """As if the machine had 6 GB available (the process of issue 22)."""
    monkeypatch.setattr(resources, "available_bytes", lambda device: (6 * GB, "a test's 6 GB"))


def _sklearn_minimize(obj_func, initial_theta, bounds):  # pragma: no cover - never called
    raise AssertionError("the memory check must stop the fit before the optimizer runs")


@pytest.mark.parametrize("optimizer", ["lbfgs", None, _sklearn_minimize],
                         ids=["lbfgs", "factorise-only", "callable"])
def test_a_fit_that_cannot_fit_stops_before_allocating(six_gigabytes, optimizer):
    n, d = 40_000, 5
    X, y = _data(n, d)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    with pytest.raises(FitMemoryError) as info:
        BatchedGaussianProcessRegressor(optimizer=optimizer).fit(X, y)
    assert time.perf_counter() - start < 10
    # one n x n matrix is 12.8 GB: none was touched
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before < 1 * GB
    error = info.value
    assert isinstance(error, MemoryError)
    assert error.__cause__ is None  # the check, not a failed allocation
    message = str(error)
    for remedy in ("SparseBatchedGaussianProcessRegressor", "batch_size", "subset",
                   "float32", "n_samples=40000", "6.0 GB are available", "Nothing was allocated"):
        assert remedy in message, remedy
    # the estimate is at least the covariance matrix that every fit must hold
    needed = float(message.split("needs about ")[1].split(" GB")[0])
    assert needed >= n**2 * 8 / GB
    # fewer rows: memory grows as n**2, so the subset it names fits the 6 GB
    rows = int(message.split("at most about ")[1].split(" rows")[0])
    assert 0.9 * n * np.sqrt(6 / needed) <= rows <= n * np.sqrt(6 / needed)


def test_the_subset_of_rows_it_names_passes_the_same_check(six_gigabytes):
    """The advice is consistent: a fit on the rows it names is not refused."""
    X, y = _data(40_000)
    with pytest.raises(FitMemoryError, match="at most about") as info:
        BatchedGaussianProcessRegressor().fit(X, y)
    rows = int(str(info.value).split("at most about ")[1].split(" rows")[0])
    estimator = BatchedGaussianProcessRegressor()
    problem = estimator.prepare_fit(X[:rows], y[:rows])
    work = Engine.of(estimator).workload(problem, problem.starts_np.shape[0], True)
    assert resources.peak_bytes(work) <= 6 * GB


def test_batch_size_is_named_with_its_effect_when_it_helps(six_gigabytes):
    # 600 targets at n = 3000: a chunk of 600 factors is 43 GB, one target's fit 0.3 GB
    # (doc/scale.rst: 4 matrices of 0.072 GB, measured 0.28 GB)
    X, y = _data(3000, m=600)
    with pytest.raises(FitMemoryError, match=r"batch_size=1 needs 0\.\d GB"):
        BatchedGaussianProcessRegressor(batch_size=600).fit(X, y)
    # at n = 40,000 one target is already too much
    X, y = _data(40_000)
    with pytest.raises(FitMemoryError, match="batch_size\\) would not help"):
        BatchedGaussianProcessRegressor().fit(X, y)


def test_cross_validation_stops_before_allocating(six_gigabytes):
    X, y = _data(40_000)
    with pytest.raises(FitMemoryError, match="This cross-validation needs about"):
        batched_cross_validate(BatchedGaussianProcessRegressor(), X, y, cv=3)


def test_a_small_fit_is_allowed(six_gigabytes):
    X, y = _data(200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("error", SlowFitWarning)
        model = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
    assert np.isfinite(model.log_marginal_likelihood_value_).all()


def test_a_fit_runs_with_the_memory_this_machine_reports():
    available, source = resources.available_bytes(torch.device("cpu"))
    if sys.platform.startswith("linux"):
        assert available > 0 and ("/proc/meminfo" in source or "limit" in source)
    X, y = _data(100)
    BatchedGaussianProcessRegressor(random_state=0, max_iter=5).fit(X, y)


def test_meminfo_and_cgroup_limits_are_read(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemAvailable:    6000000 kB\n"
                       "SwapFree:        1000000 kB\n")
    assert resources._meminfo(str(meminfo)) == [(7_000_000 * 1024, "MemAvailable and SwapFree "
                                                                   "in /proc/meminfo")]
    # cgroup v2: a limit on the parent group, none on the process's own
    own = tmp_path / "cgroup"
    own.write_text("0::/parent/job\n")
    root = tmp_path / "fs"
    (root / "parent" / "job").mkdir(parents=True)
    (root / "parent" / "job" / "memory.max").write_text("max\n")
    (root / "parent" / "job" / "memory.current").write_text("100\n")
    (root / "parent" / "memory.max").write_text("6000000000\n")
    (root / "parent" / "memory.current").write_text("2500000000\n")
    (root / "parent" / "memory.stat").write_text("anon 2000000000\nfile 600000000\n"
                                                 "shmem 100000000\n")
    # 6 GB less 2.5 GB in use, of which 0.5 GB of page cache (file less shmem) is reclaimable
    (limit, source), = resources._cgroup_limits(str(root), str(own))
    assert limit == 6_000_000_000 - 2_500_000_000 + 500_000_000
    assert source.endswith(os.path.join("parent"))
    # cgroup v1: the memory controller's hierarchy; a huge limit is none
    own.write_text("4:memory:/job\n3:cpu:/job\n")
    (root / "memory" / "job").mkdir(parents=True)
    (root / "memory" / "job" / "memory.limit_in_bytes").write_text("3000000000\n")
    (root / "memory" / "job" / "memory.usage_in_bytes").write_text("1000000000\n")
    (root / "memory" / "job" / "memory.stat").write_text("total_cache 200000000\ntotal_shmem 0\n")
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (root / "memory" / "memory.usage_in_bytes").write_text("5000000000\n")
    assert [b for b, _ in resources._cgroup_limits(str(root), str(own))] == [2_200_000_000]


def test_available_memory_is_the_least_of_its_sources(monkeypatch):
    monkeypatch.setattr(resources, "_meminfo", lambda: [(8 * GB, "meminfo")])
    monkeypatch.setattr(resources, "_cgroup_limits", lambda: [(5 * GB, "cgroup")])
    monkeypatch.setattr(resources, "_address_limits", lambda: [(7 * GB, "rlimit")])
    assert resources.available_bytes(torch.device("cpu")) == (5 * GB, "cgroup")
    monkeypatch.setattr(resources, "_meminfo", lambda: [])
    monkeypatch.setattr(resources, "_cgroup_limits", lambda: [])
    monkeypatch.setattr(resources, "_address_limits", lambda: [])
    assert resources.available_bytes(torch.device("cpu")) == (None, None)


# A fresh process under an address-space limit (ulimit -v): the check refuses from
# what RLIMIT_AS leaves, and without the check the allocator's own failure becomes
# the same error, not torch's bare "DefaultCPUAllocator: can't allocate memory".
_LIMITED = textwrap.dedent(
    """
    import resource, warnings
    import numpy as np
    import skbgp._resources as resources
    from skbgp import BatchedGaussianProcessRegressor, FitMemoryError

    rng = np.random.default_rng(0)
    X, y = rng.uniform(size=(6000, 5)), rng.normal(size=6000)
    BatchedGaussianProcessRegressor(max_iter=2).fit(X[:50], y[:50])  # threads, libraries
    with open("/proc/self/status") as f:
        mapped = [int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize")][0]
    resource.setrlimit(resource.RLIMIT_AS, (mapped + 512 * 2**20, resource.RLIM_INFINITY))
    try:
        BatchedGaussianProcessRegressor().fit(X, y)
    except FitMemoryError as exc:
        assert "RLIMIT_AS" in str(exc) and exc.__cause__ is None, exc
    else:
        raise AssertionError("the fit was not refused")
    resources.available_bytes = lambda device: (None, None)  # no check: the allocation fails
    try:
        BatchedGaussianProcessRegressor().fit(X, y)
    except FitMemoryError as exc:
        assert isinstance(exc.__cause__, RuntimeError), exc
        assert "An allocation failed during this fit" in str(exc), exc
        assert "SparseBatchedGaussianProcessRegressor" in str(exc), exc
    else:
        raise AssertionError("the allocation did not fail")
    print("ok")
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_an_address_space_limit_is_respected_and_allocation_failures_are_reported():
    result = subprocess.run([sys.executable, "-c", _LIMITED], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/statm is Linux's")
@pytest.mark.parametrize("kernel, optimizer", [("default", "lbfgs"), ("default", "none"),
                                               ("composite", "none")])
def test_the_estimate_matches_the_peak_resident_memory_of_a_fit(kernel, optimizer):
    # n = 2100: every matrix is mapped and returned (doc/scale.rst), so the peak is the live ones;
    # measured in a fresh process as benchmarks/bench_memory.py measures it
    sizes = benchmark_module("bench_memory").measure(
        [2100, 5, 1, {"default": "default", "composite": "rq"}[kernel], optimizer != "none"])
    ratio = sizes["measured"] / sizes["estimated"]
    if sizes["exact"]:
        assert 1 / 1.5 <= ratio <= 1.5, sizes
    else:  # a lower bound
        assert 0.95 <= ratio <= 2.5, sizes


@pytest.fixture
def slow_machine(monkeypatch):
    """As if every member evaluation took a million times longer."""
    monkeypatch.setattr(resources, "_RATE", resources._RATE / 1e6)


def test_a_fit_that_takes_minutes_says_so_once(slow_machine, capsys):
    X, y = _data(60, m=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BatchedGaussianProcessRegressor(random_state=0, max_iter=20).fit(X, y)
    slow = [w for w in caught if issubclass(w.category, SlowFitWarning)]
    assert len(slow) == 1
    assert "will take roughly" in str(slow[0].message)
    assert "verbose=1" in str(slow[0].message)
    assert capsys.readouterr().out == ""
    # verbose=1: the estimate is printed instead, and every iteration reported
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BatchedGaussianProcessRegressor(random_state=0, max_iter=20, verbose=1).fit(X, y)
    assert not [w for w in caught if issubclass(w.category, SlowFitWarning)]
    out = capsys.readouterr().out
    assert "[skbgp] This fit will take roughly" in out
    assert "iteration 1:" in out


def test_a_cross_validation_that_takes_minutes_says_so_once(slow_machine, capsys):
    X, y = _data(60, m=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batched_cross_validate(BatchedGaussianProcessRegressor(random_state=0, max_iter=10),
                               X, y, cv=3)
    slow = [w for w in caught if issubclass(w.category, SlowFitWarning)]
    assert len(slow) == 1
    assert "This cross-validation will take roughly" in str(slow[0].message)
    assert "3 folds x 2 target(s)" in str(slow[0].message)
    assert capsys.readouterr().out == ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("error", SlowFitWarning)
        batched_cross_validate(BatchedGaussianProcessRegressor(random_state=0, max_iter=10,
                                                               verbose=1), X, y, cv=3)
    out = capsys.readouterr().out
    assert "[skbgp] This cross-validation will take roughly" in out
    assert "[skbgp] cross-validation: iteration 1:" in out


def test_a_quick_fit_says_nothing(capsys):
    X, y = _data(60, m=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("error", SlowFitWarning)
        BatchedGaussianProcessRegressor(random_state=0, max_iter=20, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "will take" not in out and "iteration" not in out
