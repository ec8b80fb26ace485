"""Kernel benchmark: skbgp with scikit-learn kernels vs a scikit-learn loop.

For every kernel and size, one synthetic data set (fixed seed) is fitted with

1. ``skbgp``: ``BatchedGaussianProcessRegressor(kernel, n_restarts_optimizer=0,
   normalize_y=True)``, all targets in one batch;
2. ``sklearn-loop``: ``GaussianProcessRegressor(kernel, normalize_y=True)``
   once per target (its default: no restarts), warnings silenced;

from the same start (the kernel's values). The table shows both fit times,
the speed-up, and the total log marginal likelihood each one's fitted
hyperparameters reach, both evaluated by scikit-learn
(``GaussianProcessRegressor(kernels_[t], optimizer=None)`` for skbgp), so the
LML comparison shares no code with skbgp.

``ConstantKernel * RBF + WhiteKernel`` runs on skbgp's fast stationary path;
``RBF * ConstantKernel + WhiteKernel`` is the same model on the composite path
(the cost of generality). The last row fits the motivating MAP problem
(Gamma priors per length-scale dimension, Uniform(10, 150) on the variance),
which scikit-learn cannot express; it has no sklearn column.

Usage::

    python benchmarks/bench_kernels.py            # 264 x 3 with 4 targets, 100 x 3 with 16
    python benchmarks/bench_kernels.py --quick    # 60 x 3 with 4 targets, seconds
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)  # benchmark the working tree, installed or not

import torch  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.gaussian_process import GaussianProcessRegressor  # noqa: E402
from sklearn.gaussian_process import kernels as skk  # noqa: E402
from torch.distributions import Gamma, Uniform  # noqa: E402

from skbgp import BatchedGaussianProcessRegressor  # noqa: E402
from skbgp import kernels as sk  # noqa: E402


def make_data(n, n_targets, seed=0):
    """X (n, 3) on scales 1000/100/100 (unit-cube inputs for the periodic kernel), y (n, n_targets)."""
    rng = np.random.RandomState(seed)
    U = rng.uniform(size=(n, 3))
    ys = []
    for t in range(n_targets):
        w = rng.uniform(2, 8, size=3) * (rng.rand(3) < 0.8)
        ys.append(np.sin(U @ w + rng.uniform(0, 6)) + 0.5 * np.cos(3 * U[:, t % 3])
                  + 10 ** rng.uniform(-1.5, -0.5) * rng.randn(n))
    return U * np.array([1000.0, 100.0, 100.0]), U, np.column_stack(ys)


KERNELS = {
    "C*RBF(ARD)+W (fast path)": lambda: skk.ConstantKernel() * skk.RBF([300.0, 30.0, 30.0])
    + skk.WhiteKernel(),
    "RBF(ARD)*C+W (composite)": lambda: skk.RBF([300.0, 30.0, 30.0]) * skk.ConstantKernel()
    + skk.WhiteKernel(),
    "C*RQ+W": lambda: skk.ConstantKernel() * skk.RationalQuadratic(100.0, 1.0,
                                                                   alpha_bounds=(1e-2, 1e2))
    + skk.WhiteKernel(),
    "C*Matern52(ARD)+DotProduct+W": lambda: skk.ConstantKernel()
    * skk.Matern([300.0, 30.0, 30.0], nu=2.5) + skk.DotProduct(1.0) + skk.WhiteKernel(),
}
# ExpSineSquared of a distance in several dimensions is not positive definite:
# this row uses the first (unit-scale) feature only
PERIODIC = {"C*ExpSine*RBF+W (1 feature)": lambda: skk.ConstantKernel() * skk.ExpSineSquared(
    1.0, 1.0) * skk.RBF(1.0) + skk.WhiteKernel()}


def motivating_kernel():
    return (
        sk.ConstantKernel(20.0, constant_value_prior=Uniform(10.0, 150.0))
        * sk.RBF([300.0, 30.0, 30.0], length_scale_prior=Gamma(
            torch.tensor([2.0, 2.0, 2.0]), torch.tensor([0.0075, 0.075, 0.075])))
        + sk.WhiteKernel(1.0)
    )


def sklearn_lml(kernel, X, y):
    """LML of ``kernel`` (fixed) on ``y``, by scikit-learn, with normalize_y=True."""
    return GaussianProcessRegressor(kernel, optimizer=None, normalize_y=True).fit(
        X, y).log_marginal_likelihood_value_


def run_row(name, make_kernel, X, Y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        ours = BatchedGaussianProcessRegressor(make_kernel(), n_restarts_optimizer=0,
                                               normalize_y=True).fit(X, Y)
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        fitted = [GaussianProcessRegressor(make_kernel(), normalize_y=True).fit(X, Y[:, t])
                  for t in range(Y.shape[1])]
        sk_s = time.perf_counter() - start
        lml_ours = sum(sklearn_lml(k, X, Y[:, t]) for t, k in enumerate(ours.kernels_))
        lml_sk = sum(g.log_marginal_likelihood_value_ for g in fitted)
    gap = 100 * (lml_ours - lml_sk) / abs(lml_sk)
    return (f"| {name:<30} | {X.shape[0]:>4} | {Y.shape[1]:>7} | {ours_s:7.2f} | {sk_s:14.2f} | "
            f"{sk_s / ours_s:10.1f} | {lml_ours:10.2f} | {lml_sk:11.2f} | {gap:9.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small size, seconds")
    args = parser.parse_args()
    sizes = [(60, 4)] if args.quick else [(264, 4), (100, 16)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.2f}\n")
    print("| kernel                         |    n | targets | skbgp s | sklearn-loop s | "
          "vs sklearn |  LML skbgp | LML sklearn | LML gap % |")
    print("|:-------------------------------|-----:|--------:|--------:|---------------:|"
          "-----------:|-----------:|------------:|----------:|")
    # warm-up: one-off first-call costs (autograd engine, allocator) are not timed
    X, U, Y = make_data(30, 2, seed=1)
    for make_kernel in list(KERNELS.values())[:2]:
        run_row("warm-up", make_kernel, X, Y)
    for n, n_targets in sizes:
        X, U, Y = make_data(n, n_targets)
        for name, make_kernel in KERNELS.items():
            print(run_row(name, make_kernel, X, Y), flush=True)
        for name, make_kernel in PERIODIC.items():
            print(run_row(name, make_kernel, U[:, :1], Y), flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            BatchedGaussianProcessRegressor(motivating_kernel(), n_restarts_optimizer=0,
                                            normalize_y=True).fit(X, Y)
            map_s = time.perf_counter() - start
        print(f"| {'MAP: Gamma/Uniform priors':<30} | {n:>4} | {n_targets:>7} | {map_s:7.2f} | "
              f"{'n/a':>14} | {'n/a':>10} | {'n/a':>10} | {'n/a':>11} | {'n/a':>9} |", flush=True)


if __name__ == "__main__":
    main()
