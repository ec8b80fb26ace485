"""Chunks of targets, joblib and Dask workers, devices, progress, bad targets."""

import os
import pickle
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning

import skbgp._engine
from skbgp import BatchedGaussianProcessRegressor
from skbgp._engine import auto_batch_size

from .conftest import slow_except


@pytest.fixture(scope="module")
def many_targets():
    """X (30, 2) and 9 targets of different smoothness and scale, a few NaN."""
    rng = np.random.RandomState(3)
    X = rng.uniform(0, 2, size=(30, 2))
    freq = rng.uniform(0.5, 4, size=9)
    scale = 10.0 ** rng.uniform(-2, 2, size=9)
    y = scale * np.sin(freq * X[:, [0]] + X[:, [1]]) + 0.05 * scale * rng.randn(30, 9)
    y[rng.rand(30, 9) < 0.1] = np.nan
    return X, y


def fit_quietly(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return BatchedGaussianProcessRegressor(random_state=0, **params).fit(X, y)


def assert_same_fit(a, b, rtol=1e-10):
    X = a.X_train_
    assert_allclose(a.theta_, b.theta_, rtol=rtol, atol=1e-12)
    assert_allclose(a.log_marginal_likelihood_value_, b.log_marginal_likelihood_value_, rtol=rtol)
    assert_array_equal(a.n_iter_, b.n_iter_)
    assert_array_equal(a.converged_, b.converged_)
    for ours, theirs in zip(a.predict(X, return_std=True), b.predict(X, return_std=True)):
        assert_allclose(ours, theirs, rtol=rtol, atol=1e-12)


@pytest.fixture(scope="module")
def whole(many_targets):
    return fit_quietly(*many_targets, batch_size=100)


@pytest.mark.parametrize("batch_size", slow_except([1, 2, 4, 7], 7))
def test_chunked_fit_equals_one_chunk(many_targets, whole, batch_size):
    assert_same_fit(fit_quietly(*many_targets, batch_size=batch_size), whole)


@pytest.fixture
def workers_for_any_fit(monkeypatch):
    """Workers even for the small fits of these tests (which n_jobs otherwise runs in-process)."""
    monkeypatch.setattr(skbgp._engine, "MIN_WORKER_WORK", 0)


@pytest.mark.slow
def test_loky_workers_give_the_single_process_result(many_targets, whole, workers_for_any_fit):
    assert_same_fit(fit_quietly(*many_targets, batch_size=3, n_jobs=2), whole)


@pytest.mark.slow
def test_small_fits_stay_in_this_process_whatever_n_jobs(many_targets, whole, monkeypatch):
    ours = fit_quietly(*many_targets, batch_size=3, n_jobs=2)
    assert ours.gps_.cached  # the fit's own factors: it ran here, not on workers
    assert_same_fit(ours, whole)
    X, y = many_targets
    monkeypatch.setattr(skbgp._engine, "MIN_WORKER_WORK", y.shape[1] * 3 * X.shape[0] ** 2)
    assert not fit_quietly(*many_targets, batch_size=3, n_jobs=2).gps_.cached  # just enough work
    assert fit_quietly(*many_targets, batch_size=3, n_jobs=1).gps_.cached


@pytest.mark.slow
def test_dask_cluster_gives_the_single_process_result(many_targets, whole, workers_for_any_fit):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with joblib.parallel_config(backend="dask"):
            ours = fit_quietly(*many_targets, batch_size=3)
        # the chunks really ran on the cluster's worker processes
        assert client.run(lambda: os.getpid()).values()
    assert_same_fit(ours, whole)


def test_default_batch_size_follows_the_memory_budget():
    cpu = torch.device("cpu")
    # 1 GiB of float64 factors at n = 200 is 3355 targets
    assert auto_batch_size(200, 10_000, 3, 1, cpu, 8) == 2**30 // (200 * 200 * 8)
    assert auto_batch_size(200, 10, 3, 1, cpu, 8) == 10
    assert auto_batch_size(5000, 10, 3, 1, cpu, 8) == 2**30 // (5000 * 5000 * 8)
    assert auto_batch_size(20_000, 10, 3, 1, cpu, 8) == 1
    # two workers get at least two chunks each
    assert auto_batch_size(200, 10_000, 3, 2, cpu, 8) == 2500


@pytest.mark.slow
def test_bad_targets_are_warned_recorded_and_do_not_spoil_the_others(many_targets):
    X, y = many_targets
    good = y[:, :3]
    bad = np.column_stack([
        good[:, 0],
        np.full(len(X), np.nan),  # no observation
        good[:, 1],
        1e160 * good[:, 2],  # its covariance overflows
        np.full(len(X), 2.5),  # constant: a valid, if dull, target
        good[:, 2],
    ])
    bad[np.isnan(good[:, 2]), 3] = np.nan
    # unstandardised: target 3's covariance overflows (standardised, it is fitted:
    # test_huge_and_tiny_targets_are_fitted_like_the_same_target_in_units)
    with pytest.warns(UserWarning, match=r"Target\(s\) \[1\] have no observed value"), \
            pytest.warns(ConvergenceWarning, match=r"target\(s\) \[3\] is not positive definite"):
        ours = BatchedGaussianProcessRegressor(random_state=0, batch_size=2, normalize_y=False).fit(X, bad)
    assert_array_equal(ours.failed_targets_, [1, 3])
    alone = fit_quietly(X, good, normalize_y=False)
    keep = [0, 2, 5]
    assert_allclose(ours.theta_[keep], alone.theta_, rtol=1e-10)
    with pytest.warns(UserWarning, match=r"Target\(s\) \[1, 3\] could not be fitted"):
        mean, std = ours.predict(X, return_std=True)
    ref_mean, ref_std = alone.predict(X, return_std=True)
    assert_allclose(mean[:, keep], ref_mean, rtol=1e-10)
    assert_allclose(std[:, keep], ref_std, rtol=1e-10)
    assert np.isnan(mean[:, [1, 3]]).all() and np.isnan(std[:, [1, 3]]).all()
    # unstandardised, the prior keeps the length scale finite: 2.5 up to the model's noise
    assert np.all(np.abs(mean[:, 4] - 2.5) <= 3 * std[:, 4])
    assert np.isnan(ours.log_marginal_likelihood_value_[[1, 3]]).all()
    assert np.isfinite(ours.log_marginal_likelihood_value_[keep + [4]]).all()


def test_huge_tiny_and_constant_targets_are_fitted_like_the_same_target_in_units(many_targets):
    X, y = many_targets
    base = y[:, :2]
    scaled = np.column_stack([1e160 * base[:, 0], 1e-160 * base[:, 1] - 1e-158, np.full(len(X), 2.5)])
    ours = fit_quietly(X, scaled)
    ref = fit_quietly(X, base)
    assert ours.failed_targets_.size == 0
    assert_allclose(ours.theta_[:2], ref.theta_, rtol=1e-8)
    mean, std = ours.predict(X[:7], return_std=True)
    ref_mean, ref_std = ref.predict(X[:7], return_std=True)
    assert_allclose(mean[:, 0], 1e160 * ref_mean[:, 0], rtol=1e-8)
    assert_allclose(std[:, 1], 1e-160 * ref_std[:, 1], rtol=1e-8)
    assert_allclose(mean[:, 1], 1e-160 * ref_mean[:, 1] - 1e-158, rtol=1e-8)
    assert_array_equal(mean[:, 2], 2.5)  # standardised to zeros: its mean exactly


@pytest.mark.slow
def test_verbose_reports_chunks_and_iterations(many_targets, capsys, monkeypatch):
    X, y = many_targets
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # as if tqdm were not installed
    fit_quietly(X, y, batch_size=4, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("[skbgp] chunk 1/3: 4/9 targets fitted")
    assert lines[-1].startswith("[skbgp] chunk 3/3: 9/9 targets fitted")
    fit_quietly(X, y, batch_size=5, verbose=2)
    out = capsys.readouterr().out
    assert "[skbgp] chunk 1/2: iteration 1:" in out
    fit_quietly(X, y, verbose=0)
    assert capsys.readouterr().out == ""


def test_verbose_shows_a_tqdm_bar_when_installed(many_targets, capsys):
    pytest.importorskip("tqdm")
    fit_quietly(*many_targets, batch_size=4, verbose=1)
    captured = capsys.readouterr()
    assert "skbgp fit" in captured.err and "9/9" in captured.err
    assert captured.out == ""


def test_factors_are_recomputed_exactly(many_targets, whole):
    """``L_`` is the Cholesky factor of each target's observed covariance."""
    X, y = many_targets
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    L = whole.L_
    for t in (0, 4):
        obs = ~np.isnan(y[:, t])
        kernel = (ConstantKernel(whole.outputscales_[t]) * RBF(whole.length_scales_[t])
                  + WhiteKernel(whole.noise_levels_[t]))
        K = kernel(X[obs]) + whole.alpha * np.eye(obs.sum())
        assert_allclose(L[t][np.ix_(obs, obs)], np.linalg.cholesky(K), rtol=1e-9, atol=1e-12)


def test_bad_scale_parameters_are_clear_errors(many_targets):
    X, y = many_targets
    for params, match in [({"batch_size": 0}, "batch_size must be an integer >= 1"),
                          ({"n_jobs": 0}, "n_jobs must be None or a non-zero integer"),
                          ({"verbose": -1}, "verbose must be an integer >= 0")]:
        with pytest.raises(ValueError, match=match):
            BatchedGaussianProcessRegressor(**params).fit(X, y)


def test_model_with_unavailable_gpu_device_loads_and_predicts_on_cpu(many_targets, whole, monkeypatch):
    """A GPU model unpickled where CUDA is absent (simulated on any machine)."""
    X, _ = many_targets
    state = pickle.dumps(whole)
    again = pickle.loads(state)
    again.device = "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="not available on this machine; predicting on the CPU"):
        mean = again.predict(X)
    assert_allclose(mean, whole.predict(X), rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fit_equals_cpu_fit_and_loads_without_gpu(many_targets, whole, tmp_path):
    X, y = many_targets
    gpu = fit_quietly(X, y, device="cuda")
    assert_same_fit(gpu, whole, rtol=1e-6)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(gpu))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "mean.npy", gpu.predict(X))
    script = (
        "import pickle, warnings, numpy as np, torch, sys\n"
        "assert not torch.cuda.is_available()\n"
        f"model = pickle.loads(open({str(path)!r}, 'rb').read())\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore', UserWarning)\n"
        f"    mean = model.predict(np.load({str(tmp_path / 'X.npy')!r}))\n"
        f"np.testing.assert_allclose(mean, np.load({str(tmp_path / 'mean.npy')!r}), rtol=1e-9)\n"
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", script], check=True, env=env)


def _map_composite_estimator(n_targets, **params):
    """Per-target Gamma priors on ARD length scales, a Uniform prior on the
    variance, and a composite kernel (Matern + DotProduct): the general path."""
    from torch.distributions import Gamma, Uniform

    from skbgp import kernels

    rate = torch.linspace(0.5, 2.0, n_targets)[:, None].expand(n_targets, 2).contiguous()
    kernel = (
        kernels.ConstantKernel(1.0, constant_value_prior=Uniform(0.05, 50.0))
        * kernels.Matern([0.5, 0.5], nu=2.5,
                         length_scale_prior=Gamma(torch.full((n_targets, 2), 2.0), rate))
        + kernels.DotProduct(1.0) + kernels.WhiteKernel(0.1)
    )
    return BatchedGaussianProcessRegressor(kernel, random_state=0, normalize_y=True, **params)


@pytest.mark.slow
def test_chunks_and_workers_keep_per_target_priors_and_composite_kernels(many_targets,
                                                                         workers_for_any_fit):
    X, y = many_targets
    y = y[:, :5]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        whole = _map_composite_estimator(5, batch_size=5).fit(X, y)
        for params in ({"batch_size": 1}, {"batch_size": 2, "n_jobs": 2}):
            chunked = _map_composite_estimator(5, **params).fit(X, y)
            # The composite path's likelihood (autograd through K) differs by
            # ~1e-14 between batch compositions, unlike the stationary path's
            # (bit-identical, checked above to 1e-10); the optimiser then stops
            # within tol of the same optimum, so compare the objective and the
            # predictions, not the bits of theta along flat directions.
            objective = chunked.log_marginal_likelihood_value_ + chunked.log_prior_value_
            assert_allclose(objective, whole.log_marginal_likelihood_value_
                            + whole.log_prior_value_, rtol=1e-8)
            for ours, theirs in zip(chunked.predict(X, return_std=True),
                                    whole.predict(X, return_std=True)):
                assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 * np.nanstd(y))
    # each chunk used its own targets' rows of the per-target prior: the
    # fitted MAP differs from a fit with target 0's prior everywhere
    assert np.ptp(whole.log_prior_value_) > 0


# ------------------------------------------------- the exact fit at large n
@pytest.mark.parametrize("kernel", ["rbf", "matern"])
def test_covariance_in_row_blocks_predicts_like_sklearn(differences, kernel):
    # at large n the training inputs' squared differences are built in blocks of rows at every
    # use (forced here at small n); scikit-learn's GPR at the same hyperparameters is the oracle
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

    rng = np.random.RandomState(0)
    X = rng.uniform(size=(40, 3))
    y = np.sin(4 * X[:, 0]) + X[:, 1] ** 2 + 0.05 * rng.randn(40)
    base = RBF([0.3, 0.7, 2.0]) if kernel == "rbf" else Matern([0.3, 0.7, 2.0], nu=2.5)
    k = ConstantKernel(1.3) * base + WhiteKernel(0.01)
    ours = BatchedGaussianProcessRegressor(k, optimizer=None).fit(X, y)
    theirs = GaussianProcessRegressor(k, optimizer=None).fit(X, y)
    Xq = rng.uniform(size=(7, 3))
    for a, b in zip(ours.predict(Xq, return_std=True), theirs.predict(Xq, return_std=True)):
        assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    lml, grad = ours.log_marginal_likelihood(k.theta, eval_gradient=True)
    lml_sk, grad_sk = theirs.log_marginal_likelihood(k.theta, eval_gradient=True)
    assert_allclose(np.ravel(lml), lml_sk, rtol=1e-10)  # ravel: (1,) or () for a 1-D y
    assert_allclose(np.ravel(grad), grad_sk, rtol=1e-8, atol=1e-10)


def test_fit_in_row_blocks_keeps_each_target_independent_of_its_batch(many_targets, monkeypatch):
    from skbgp._core import stationary

    monkeypatch.setattr(stationary, "_FULL_MAX_NUMBERS", 0)
    monkeypatch.setattr(stationary, "row_block", lambda n, d: 7)  # several rows, a short last block
    X, y = many_targets
    together = fit_quietly(X, y[:, :4], max_iter=15)
    for t in range(4):
        alone = fit_quietly(X, y[:, t], max_iter=15)
        assert_array_equal(alone.theta_[0], together.theta_[t])  # to the bit
        assert_array_equal(alone.log_marginal_likelihood_value_,  # a float for one target
                           together.log_marginal_likelihood_value_[t])
        assert_allclose(alone.predict(X), together.predict(X)[:, t], rtol=1e-12, atol=1e-13)

