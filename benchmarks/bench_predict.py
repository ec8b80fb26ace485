"""Prediction-latency benchmark: skbgp vs a scikit-learn GPR loop vs BoTorch's posterior.

For every training size ``n`` and number of targets ``m`` the script draws one
synthetic data set (fixed seed), builds the same GPs three ways at the same
fixed hyperparameters (``outputscale * RBF(ARD) + noise``, one set per target,
no optimisation), and times ``predict`` at 1, 10 and 1000 query points, for
the mean alone and for the mean with the standard deviation:

1. ``skbgp``: ``BatchedGaussianProcessRegressor(kernel, optimizer=None)``
   fitted on all targets; its factors are kept from the fit (the default
   ``cache_size``).
2. ``skbgp no cache``: the same with ``cache_size=0``: the factors are
   recomputed at every call that needs them (the mean never does).
3. ``sklearn loop``: one ``GaussianProcessRegressor(kernel_t, optimizer=None)``
   per target, predicted one after the other.
4. ``BoTorch``: one ``SingleTaskGP`` with the targets as its batch
   (``ScaleKernel(RBFKernel(ard))``, the same hyperparameters), in eval mode;
   ``posterior(X).mean`` and ``.variance`` plus the noise (its predictive
   caches are warm: the first call is not timed).

Every timing is the best of several calls (at least 2; up to 7 while a method
has spent under 0.5 s on that cell); the methods alternate call by call, so
a noisy machine slows them alike. The predictions are checked against the
scikit-learn loop before timing (max relative difference printed).

Usage::

    python benchmarks/bench_predict.py             # n = 200, 500; m = 1, 16, 256
    python benchmarks/bench_predict.py --quick     # n = 200; m = 1, 16
"""

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
for _p in (_ROOT, _HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)  # benchmark the working tree, installed or not

import sklearn  # noqa: E402
import torch  # noqa: E402
from bench_fit import format_table  # noqa: E402
from sklearn.gaussian_process import GaussianProcessRegressor  # noqa: E402
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel  # noqa: E402

import skbgp  # noqa: E402
from skbgp import BatchedGaussianProcessRegressor  # noqa: E402
from skbgp.kernels import RBF as NRBF  # noqa: E402
from skbgp.kernels import ConstantKernel as NC  # noqa: E402
from skbgp.kernels import WhiteKernel as NW  # noqa: E402

D = 4
POINTS = (1, 10, 1000)


def make_problem(n, m, seed=0):
    """Data and every target's hyperparameters (outputscale, length scales, noise)."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(size=(n, D))
    Y = np.sin(X @ rng.randn(D, m) * 3) + 0.1 * rng.randn(n, m)
    s = rng.uniform(0.5, 2.0, m)
    ls = rng.uniform(0.3, 1.5, (m, D))
    noise = rng.uniform(0.005, 0.05, m)
    return X, Y, s, ls, noise


def build_skbgp(X, Y, s, ls, noise, cache_size):
    kernel = NC(s[:, None]) * NRBF(ls) + NW(noise[:, None])
    return BatchedGaussianProcessRegressor(kernel, optimizer=None, cache_size=cache_size).fit(X, Y)


def build_sklearn(X, Y, s, ls, noise):
    return [GaussianProcessRegressor(ConstantKernel(s[t]) * RBF(ls[t]) + WhiteKernel(noise[t]),
                                     optimizer=None).fit(X, Y[:, t]) for t in range(Y.shape[1])]


def build_botorch(X, Y, s, ls, noise):
    from botorch.models import SingleTaskGP
    from gpytorch.kernels import RBFKernel, ScaleKernel

    m = Y.shape[1]
    batch = torch.Size([m])
    covar = ScaleKernel(RBFKernel(ard_num_dims=D, batch_shape=batch), batch_shape=batch)
    model = SingleTaskGP(torch.as_tensor(X), torch.as_tensor(Y), covar_module=covar,
                         outcome_transform=None)
    model.covar_module.outputscale = torch.as_tensor(s)
    model.covar_module.base_kernel.lengthscale = torch.as_tensor(ls).unsqueeze(-2)
    model.likelihood.noise = torch.as_tensor(noise).unsqueeze(-1)
    model.eval()
    return model


def botorch_predict(model, noise, Xq, std):
    with torch.no_grad():
        post = model.posterior(torch.as_tensor(Xq))
        mean = post.mean.numpy()
        if not std:
            return mean
        return mean, np.sqrt(post.variance.numpy() + noise)


def methods(X, Y, s, ls, noise, with_botorch):
    out = {
        "skbgp": build_skbgp(X, Y, s, ls, noise, cache_size=1024),
        "skbgp no cache": build_skbgp(X, Y, s, ls, noise, cache_size=0),
    }
    loop = build_sklearn(X, Y, s, ls, noise)
    calls = {
        "skbgp": lambda Xq, std: out["skbgp"].predict(Xq, return_std=std),
        "skbgp no cache": lambda Xq, std: out["skbgp no cache"].predict(Xq, return_std=std),
        "sklearn loop": lambda Xq, std: _stack([g.predict(Xq, return_std=std) for g in loop], std),
    }
    if with_botorch:
        model = build_botorch(X, Y, s, ls, noise)
        calls["BoTorch"] = lambda Xq, std: botorch_predict(model, noise, Xq, std)
    return calls


def _stack(outs, std):
    if std:
        return np.column_stack([o[0] for o in outs]), np.column_stack([o[1] for o in outs])
    return np.column_stack(outs)


def _check(calls, Xq):
    """Max relative difference of every method's mean and std from the sklearn loop's."""
    ref_mean, ref_std = calls["sklearn loop"](Xq, True)
    diffs = {}
    for name, call in calls.items():
        mean, std = call(Xq, True)
        mean, std = np.asarray(mean).reshape(ref_mean.shape), np.asarray(std).reshape(ref_std.shape)
        scale = np.abs(ref_mean).max() + 1e-300
        diffs[name] = max(np.abs(mean - ref_mean).max() / scale,
                          np.abs(std / ref_std - 1).max())
    return diffs


def time_cell(calls, Xq, std):
    """Best seconds of every method, calls alternating between the methods."""
    best = {name: np.inf for name in calls}
    spent = {name: 0.0 for name in calls}
    for name, call in calls.items():
        call(Xq, std)  # warm-up: first-call caches (skbgp's tensors, GPyTorch's strategy)
    for rep in range(7):
        for name, call in calls.items():
            if rep >= 2 and spent[name] > 0.5:
                continue
            t0 = time.perf_counter()
            call(Xq, std)
            dt = time.perf_counter() - t0
            best[name] = min(best[name], dt)
            spent[name] += dt
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="n = 200, m = 1 and 16")
    p.add_argument("--no-botorch", action="store_true")
    args = p.parse_args(argv)
    sizes = [200] if args.quick else [200, 500]
    targets = [1, 16] if args.quick else [1, 16, 256]
    with_botorch = not args.no_botorch
    if with_botorch:
        try:
            import botorch  # noqa: F401
        except ImportError:
            with_botorch = False

    print("# skbgp prediction benchmark\n")
    print(f"    python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), scikit-learn {sklearn.__version__}"
          + (f", botorch {__import__('botorch').__version__}" if with_botorch else "")
          + f", skbgp from {os.path.dirname(skbgp.__file__)}")
    print(f"    {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs\n")
    warnings.simplefilter("ignore")
    rows = []
    rng = np.random.RandomState(1)
    for n in sizes:
        for m in targets:
            X, Y, s, ls, noise = make_problem(n, m)
            calls = methods(X, Y, s, ls, noise, with_botorch)
            diffs = _check(calls, rng.uniform(size=(10, D)))
            for p_ in POINTS:
                Xq = rng.uniform(size=(p_, D))
                for std in (False, True):
                    best = time_cell(calls, Xq, std)
                    ref = best["sklearn loop"]
                    row = [f"{n}", f"{m}", f"{p_}", "mean, std" if std else "mean"]
                    for name in calls:
                        row.append(f"{best[name] * 1e3:.3g}")
                    for name in calls:
                        if name != "sklearn loop":
                            row.append(f"{ref / best[name]:.1f}x")
                    rows.append(row)
                    print(" | ".join(row), flush=True)
            print(f"n={n}, m={m}: max relative difference from the sklearn loop: "
                  + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()), flush=True)
    names = list(calls)
    header = (["n", "targets", "points", "output"] + [f"{k} ms" for k in names]
              + [f"{k} vs loop" for k in names if k != "sklearn loop"])
    print()
    print(format_table(header, rows, ["r", "r", "r", "l"] + ["r"] * (len(header) - 4)))
    print("\nms: best wall time of one predict call (time.perf_counter), methods alternating; "
          "'X vs loop' = the sklearn loop's time / X's time (> 1: X is faster).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
