"""In-place LAPACK Cholesky routines against torch's factor and inverse."""

import platform
import sys

import numpy as np
import pytest
import torch

from skbgp._core import lapack

needs_lapack = pytest.mark.skipif(not lapack.usable(torch.device("cpu"), torch.float64),
                                  reason="torch's LAPACK routines are not reachable here")


def _spd_with_garbage_below(b, n, dtype, seed=0):
    """SPD matrices above the diagonal, unrelated numbers below it."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(b, n, n, generator=g, dtype=torch.float64)
    K = (A @ A.mT / n + 0.5 * torch.eye(n, dtype=torch.float64)).to(dtype)
    below = torch.randn(b, n, n, generator=g, dtype=torch.float64).to(dtype).tril(-1)
    return K, K.triu() + below, below


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"),
                    reason="checked for the Linux x86-64 wheels of torch, which link MKL")
def test_routines_are_found_with_the_linux_wheels_of_torch():
    assert lapack.usable(torch.device("cpu"), torch.float64)
    assert lapack.usable(torch.device("cpu"), torch.float32)


@needs_lapack
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_factor_and_inverse_match_torch_and_leave_the_lower_triangle(dtype, rtol):
    K, B, below = _spd_with_garbage_below(4, 37, dtype)
    info = lapack.potrf_upper_(B)
    assert info.tolist() == [0, 0, 0, 0]
    torch.testing.assert_close(B.triu(), torch.linalg.cholesky(K, upper=True), rtol=rtol, atol=rtol)
    assert torch.equal(B.tril(-1), below)
    lapack.potri_upper_(B)
    inverse = torch.from_numpy(np.linalg.inv(K.double().numpy())).to(dtype)
    torch.testing.assert_close(B.triu(), inverse.triu(), rtol=100 * rtol, atol=100 * rtol)
    assert torch.equal(B.tril(-1), below)


@needs_lapack
def test_member_that_is_not_positive_definite_reports_its_minor_and_others_are_exact():
    K, B, _ = _spd_with_garbage_below(3, 12, torch.float64, seed=1)
    B[1, 4, 4] = -1.0  # the leading minor of order 5 of member 1 is not positive definite
    info = lapack.potrf_upper_(B)
    assert info.tolist() == [0, 5, 0]
    for i in (0, 2):
        torch.testing.assert_close(B[i].triu(), torch.linalg.cholesky(K[i], upper=True), rtol=1e-12, atol=0)


def test_not_usable_off_the_cpu_for_other_dtypes_or_when_switched_off(monkeypatch):
    assert not lapack.usable(torch.device("meta"), torch.float64)
    assert not lapack.usable(torch.device("cpu"), torch.complex128)
    assert not lapack.usable(torch.device("cpu"), torch.int64)
    monkeypatch.setattr(lapack, "ENABLED", False)
    assert not lapack.usable(torch.device("cpu"), torch.float64)
