"""Member threads and floored exponents: results against unthreaded runs, sklearn and closed forms."""

import _thread
import math
import threading
import time

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

from skbgp import BatchedGaussianProcessRegressor
from skbgp._core.gp import member_blocks
from skbgp._core.stationary import StationaryKernel, neg_log_marginal_likelihood, training_differences
from skbgp._core.kernels import (
    augmented_differences,
    signal_covariance,
    squared_differences,
)
from skbgp._core.threads import available, block_workers, on_member_threads, run_blocks, split_blocks

DT = torch.float64


def _problem(b=23, n=60, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, dtype=DT, generator=gen)
    theta = torch.empty(b, d + 2, dtype=DT)
    theta[:, 0] = torch.randn(b, dtype=DT, generator=gen) * 0.5
    theta[:, 1:1 + d] = math.log(0.3) + torch.randn(b, d, dtype=DT, generator=gen) * 0.5
    theta[:, -1] = math.log(1e-2) + torch.randn(b, dtype=DT, generator=gen)
    y = torch.randn(b, n, dtype=DT, generator=gen)
    mask = (torch.rand(b, n, generator=gen) > 0.1).to(DT)
    return X, theta, y * mask, mask


def test_member_threads_leave_the_callers_threads_alone(two_threads):
    assert available()
    seen = {}

    def inside():
        seen["torch"] = torch.get_num_threads()
        seen["workers"] = block_workers()
        seen["nested"] = on_member_threads("cpu", block_workers)  # no second driver
        seen["pool"] = []
        run_blocks(lambda blk: seen["pool"].append(torch.get_num_threads()), [slice(0, 1)] * 3)
        return "done"

    assert on_member_threads("cpu", inside) == "done"
    assert seen == {"torch": 1, "workers": 2, "nested": 2, "pool": [1, 1, 1]}
    assert torch.get_num_threads() == 2 and block_workers() == 1


def test_member_threads_pass_errors_through(two_threads):
    def failing():
        run_blocks(lambda blk: (_ for _ in ()).throw(RuntimeError("boom")), [slice(0, 1), slice(1, 2)])

    with pytest.raises(RuntimeError, match="boom"):
        on_member_threads("cpu", failing)
    assert torch.get_num_threads() == 2


def test_member_threads_do_nothing_single_threaded_or_off_cpu(two_threads):
    assert on_member_threads("meta", lambda: (torch.get_num_threads(), block_workers())) == (2, 1)
    torch.set_num_threads(1)
    assert on_member_threads("cpu", block_workers) == 1


def test_an_interrupted_caller_stops_the_driver(two_threads):
    """KeyboardInterrupt while waiting: the driver stops at its next block and the error reaches the caller."""
    blocks_run = []

    def long_fit():
        for i in range(200):
            run_blocks(lambda blk: (blocks_run.append(i), time.sleep(0.01)), [slice(0, 1)])

    timer = threading.Timer(0.1, lambda: _thread.interrupt_main())
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        on_member_threads("cpu", long_fit)
    timer.join()
    assert 0 < len(blocks_run) < 200
    assert not [t for t in threading.enumerate() if t.name == "skbgp-driver" and t.is_alive()]


@pytest.mark.parametrize("b,size", [(1, 5), (2, 5), (7, 3), (23, 4), (40, 100), (9, 1)])
def test_split_blocks_cover_the_members_evenly_over_threads(two_threads, b, size):
    for threaded in (False, True):
        blocks = on_member_threads("cpu", lambda: split_blocks(b, size)) if threaded else split_blocks(b, size)
        covered = [i for blk in blocks for i in range(blk.start, blk.stop)]
        assert covered == list(range(b))
        assert max(blk.stop - blk.start for blk in blocks) <= size
        if threaded and b >= 2:
            assert len(blocks) >= 2
            lengths = [blk.stop - blk.start for blk in blocks]
            assert max(lengths) - min(lengths) <= 1 or len(blocks) % 2 == 0


def test_likelihood_in_member_threads_equals_one_member_at_a_time(two_threads):
    X, theta, y, mask = _problem()
    kernel = StationaryKernel(math.inf, X.shape[1])
    D2 = training_differences(X)
    alpha = torch.tensor(1e-10, dtype=DT)
    def threaded():
        assert len(member_blocks(theta.shape[0], X.shape[0])) >= 2
        return neg_log_marginal_likelihood(kernel, theta, D2, y, mask, alpha)

    loss, grad = on_member_threads("cpu", threaded)
    for i in range(theta.shape[0]):
        li, gi = neg_log_marginal_likelihood(kernel, theta[i:i + 1], D2, y[i:i + 1], mask[i:i + 1], alpha)
        assert_allclose(loss[i].item(), li.item(), rtol=1e-12)
        assert_allclose(grad[i].numpy(), gi[0].numpy(), rtol=1e-9, atol=1e-10)


def test_concurrent_fits_in_two_threads_equal_sequential_fits(two_threads, multi_target_data):
    X, y = multi_target_data
    seq = [BatchedGaussianProcessRegressor(random_state=s).fit(X, y).theta_ for s in (0, 1)]
    out = [None, None]

    def work(s):
        out[s] = BatchedGaussianProcessRegressor(random_state=s).fit(X, y).theta_

    workers = [threading.Thread(target=work, args=(s,)) for s in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for s in (0, 1):
        assert_allclose(out[s], seq[s], rtol=1e-6, atol=1e-8)
    assert torch.get_num_threads() == 2


# --------------------------------------------------------------------------- floored exponents
@pytest.mark.parametrize("nu", [0.5, 1.5, 2.5, math.inf])
def test_short_length_scales_give_no_subnormal_covariance(nu):
    X = torch.rand(50, 2, dtype=DT, generator=torch.Generator().manual_seed(1))
    kernel = StationaryKernel(nu, 2)
    theta = torch.tensor([[0.0, math.log(1e-3), math.log(2e-3), math.log(1e-2)]], dtype=DT)
    K, _ = signal_covariance(kernel, theta, augmented_differences(squared_differences(X, X)), 50, 50)
    tiny = torch.finfo(DT).tiny
    assert not bool(((K != 0) & (K.abs() < tiny)).any())
    # the closed form, evaluated in float64 with exact underflow to 0
    r = ((X[:, None, :] - X[None, :, :]) / torch.tensor([1e-3, 2e-3], dtype=DT)).norm(dim=-1)
    a = math.sqrt(2 * nu) * r if nu != math.inf else r
    exact = {0.5: torch.exp(-a), 1.5: (1 + a) * torch.exp(-a),
             2.5: (1 + a + a**2 / 3) * torch.exp(-a), math.inf: torch.exp(-0.5 * r**2)}[nu]
    assert_allclose(K[0].numpy(), exact.numpy(), rtol=1e-12, atol=1e-140)


@pytest.mark.parametrize("nu", [1.5, math.inf])
def test_short_length_scale_likelihood_matches_sklearn(nu):
    rng = np.random.RandomState(3)
    X = rng.uniform(0, 1, size=(40, 2))
    y = rng.randn(40)
    base = RBF([2e-3, 5e-3]) if nu == math.inf else Matern([2e-3, 5e-3], nu=nu)
    kernel = ConstantKernel(1.3) * base + WhiteKernel(0.1)
    ours = BatchedGaussianProcessRegressor(kernel, optimizer=None).fit(X, y)
    ref = GaussianProcessRegressor(kernel, optimizer=None).fit(X, y)
    lml, grad = ours.log_marginal_likelihood(ours.theta_, eval_gradient=True)
    lml_ref, grad_ref = ref.log_marginal_likelihood(kernel.theta, eval_gradient=True)
    assert_allclose(lml, lml_ref, rtol=1e-10)  # a float and (n_free,) for one target
    assert_allclose(grad, grad_ref, rtol=1e-8, atol=1e-10)
