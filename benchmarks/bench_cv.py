"""Cross-validation benchmark: batched_cross_validate vs cross_validate vs a sklearn loop.

On one synthetic data set (``bench_fit.make_data``: ``n`` points, ``d``
features on unequal scales, ``m`` standardised targets; fixed seed) the script
runs ``KFold(k)`` cross-validation (no shuffling) of one independent exact GP
per target five ways and prints one table with wall-clock times, speed-ups and
the test scores each way achieves:

1. ``batched exact``: ``skbgp.batched_cross_validate(est, X, Y, cv=KFold(k))``
   with ``est = BatchedGaussianProcessRegressor(random_state=0)`` (defaults:
   default kernel, 2 extra starts raced) and ``mode="exact"``: every
   fold starts as a standalone fit would, all ``k * m`` (fold, target) pairs
   in one batch.
2. ``batched warm_start``: the same with ``mode="warm_start"``: one fit on all
   rows, then every fold is optimised from those hyperparameters, without
   restarts.
3. ``batched full_data``: ``mode="full_data"``: one fit on all rows, every
   fold keeps its hyperparameters (no optimisation per fold).
4. ``cross_validate``: ``sklearn.model_selection.cross_validate(est, X, Y,
   cv=KFold(k))`` with the same estimator (one batched fit of the ``m``
   targets per fold, folds one after the other).
5. ``sklearn loop``: one ``sklearn.gaussian_process.GaussianProcessRegressor(
   ConstantKernel(1.0) * RBF(np.ones(d)) + WhiteKernel(1.0), random_state=0)``
   fit per fold and target (``k * m`` scipy optimisations), warnings silenced.
   ``--sklearn-folds F --sklearn-targets T`` time only the first F folds and
   T targets and extrapolate the time linearly (x ``k m / (F T)``), marked '*'.

Scores: test R^2 of every (fold, target) pair (``r2_score`` of the target
column on the fold's test rows); the table gives their mean over the pairs the
sklearn loop covered (all pairs without subsampling; '*' marks a subset) and,
for the skbgp rows, the largest absolute difference of a pair's R^2 from
``cross_validate``'s.

A second table times the small real problem: the first 301 rows of
scikit-learn's diabetes data (inputs age, sex, BMI, blood pressure; targets
the serum measurements s1-s4), ``KFold(6)`` (folds of 51 and 50 rows), the
batched modes against ``cross_validate``, each run three times in turn
(A B A B ...), best time of each; fold scores compared as above.

Usage::

    python benchmarks/bench_cv.py                       # n=500, d=5, 16 targets, 10 folds
    python benchmarks/bench_cv.py --quick               # tiny size, seconds
    python benchmarks/bench_cv.py --sklearn-folds 2 --sklearn-targets 4
    python benchmarks/bench_cv.py --device cuda         # skbgp rows on a GPU
    python benchmarks/bench_cv.py --real-only           # only the real-data table
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
from bench_fit import format_table, make_data  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.gaussian_process import GaussianProcessRegressor  # noqa: E402
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402
from sklearn.model_selection import KFold, cross_validate  # noqa: E402

import skbgp  # noqa: E402
from skbgp import BatchedGaussianProcessRegressor, batched_cross_validate  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_skbgp(X, Y, k, mode, device="cpu"):
    est = BatchedGaussianProcessRegressor(random_state=0, device=device)
    seconds, res = _timed(lambda: batched_cross_validate(
        est, X, Y, cv=KFold(k), mode=mode, scoring="r2"))
    return seconds, res["test_score_per_target"]  # (k, m)


def run_cross_validate(X, Y, k, device="cpu"):
    est = BatchedGaussianProcessRegressor(random_state=0, device=device)
    seconds, res = _timed(lambda: cross_validate(
        est, X, Y, cv=KFold(k), scoring="r2", return_estimator=True, return_indices=True))
    per_target = np.array([
        r2_score(Y[test], e.predict(X[test]), multioutput="raw_values")
        for e, test in zip(res["estimator"], res["indices"]["test"])
    ])
    return seconds, per_target


def run_sklearn_loop(X, Y, k, folds, targets):
    d = X.shape[1]
    scores = np.full((k, Y.shape[1]), np.nan)
    t0 = time.perf_counter()
    for f, (train, test) in enumerate(KFold(k).split(X)):
        if f >= folds:
            break
        for t in range(targets):
            kernel = ConstantKernel(1.0) * RBF(np.ones(d)) + WhiteKernel(1.0)
            gpr = GaussianProcessRegressor(kernel, random_state=0).fit(X[train], Y[train, t])
            scores[f, t] = r2_score(Y[test, t], gpr.predict(X[test]))
    seconds = time.perf_counter() - t0
    return seconds * (k * Y.shape[1]) / (folds * targets), scores


def real_problem():
    """The diabetes rows of the real-data table: X (301, 4), Y (301, 4)."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    names = list(data.feature_names)
    X = data.data[:301, [names.index(c) for c in ("age", "sex", "bmi", "bp")]]
    Y = data.data[:301, [names.index(c) for c in ("s1", "s2", "s3", "s4")]]
    return X, Y


def run_real(device="cpu", repeats=3):
    X, Y = real_problem()
    k = 6
    runs = {f"batched {mode}": (lambda mode=mode: run_skbgp(X, Y, k, mode, device))
            for mode in ("exact", "warm_start", "full_data")}
    runs["cross_validate"] = lambda: run_cross_validate(X, Y, k, device)
    best, scores = {}, {}
    for _ in range(repeats):  # interleaved: a noisy moment slows every method alike
        for name, fn in runs.items():
            seconds, sc = fn()
            best[name] = min(best.get(name, np.inf), seconds)
            scores[name] = sc
    ref = scores["cross_validate"]
    rows = []
    for name in runs:
        diff = float(np.max(np.abs(scores[name] - ref)))
        rows.append([name, f"{best[name]:.2f}", f"{best['cross_validate'] / best[name]:.2f}x",
                     f"{float(np.mean(scores[name])):.4f}",
                     "n/a" if name == "cross_validate" else f"{diff:.1e}"])
    header = ["method", "best time s", "vs cross_validate", "mean R2", "max |dR2| vs cross_validate"]
    print(f"\n## real data: diabetes, first 301 rows, 4 inputs, 4 targets (s1-s4), KFold({k}); "
          f"best of {repeats}\n")
    print(format_table(header, rows, ["l"] + ["r"] * (len(header) - 1)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--targets", type=int, default=16)
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="n=60, d=3, 4 targets, 5 folds")
    p.add_argument("--sklearn-folds", type=int, default=None,
                   help="time the sklearn loop on the first F folds only (extrapolated, '*')")
    p.add_argument("--sklearn-targets", type=int, default=None,
                   help="time the sklearn loop on the first T targets only (extrapolated, '*')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--real-only", action="store_true", help="only the real-data table")
    p.add_argument("--device", default="cpu",
                   help="device of the skbgp estimator in every skbgp row, e.g. cuda (default cpu)")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.d, args.targets, args.folds = 60, 3, 4, 5
    n, d, m, k = args.n, args.d, args.targets, args.folds
    F = min(args.sklearn_folds or k, k)
    T = min(args.sklearn_targets or m, m)
    subset = (F, T) != (k, m)

    print("# skbgp cross-validation benchmark\n")
    print(f"    python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), scikit-learn {sklearn.__version__}, "
          f"skbgp from {os.path.dirname(skbgp.__file__)}")
    print(f"    {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs")
    if args.device != "cpu":
        print(f"    skbgp rows on device={args.device!r}: {torch.cuda.get_device_name(args.device)}")
    print(f"\ndata: bench_fit.make_data(n={n}, d={d}, targets={m}, seed={args.seed}); "
          f"KFold({k}) (train sets of {n - n // k}-{n - (n + k - 1) // k} rows)")
    X, Y = make_data(n, d, m, seed=args.seed)

    warnings.simplefilter("ignore", ConvergenceWarning)
    # warm-up: first calls of torch and scipy paths
    Xw, Yw = make_data(30, d, 2, seed=1)
    batched_cross_validate(BatchedGaussianProcessRegressor(random_state=0, device=args.device),
                           Xw, Yw, cv=3)
    if args.real_only:
        run_real(args.device)
        return 0

    results = {}
    for mode in ("exact", "warm_start", "full_data"):
        name = f"batched {mode}"
        results[name] = run_skbgp(X, Y, k, mode, args.device)
        print(f"{name}: {results[name][0]:.2f} s", flush=True)
    results["cross_validate"] = run_cross_validate(X, Y, k, args.device)
    print(f"cross_validate: {results['cross_validate'][0]:.2f} s", flush=True)
    results["sklearn loop"] = run_sklearn_loop(X, Y, k, F, T)
    print(f"sklearn loop{' (extrapolated)' if subset else ''}: "
          f"{results['sklearn loop'][0]:.2f} s", flush=True)

    t_cv = results["cross_validate"][0]
    t_loop = results["sklearn loop"][0]
    ref = results["cross_validate"][1]
    star = "*" if subset else ""
    rows = []
    for name, (seconds, scores) in results.items():
        loop = name == "sklearn loop"
        mean_sub = float(np.mean(scores[:F, :T]))
        mean_all = float(np.mean(scores)) if not loop or not subset else None
        diff = float(np.max(np.abs(scores - ref))) if name.startswith("batched") else None
        rows.append([
            name,
            f"{seconds:.2f}" + (star if loop else ""),
            f"{t_cv / seconds:.1f}x" + (star if loop else ""),
            f"{t_loop / seconds:.1f}x" + star,
            f"{mean_sub:.4f}" + star,
            "n/a" if mean_all is None else f"{mean_all:.4f}",
            "n/a" if diff is None else f"{diff:.1e}",
        ])
    header = ["method", "time s", "vs cross_validate", "vs sklearn loop",
              "mean R2 (loop's pairs)", "mean R2 (all pairs)", "max |dR2| vs cross_validate"]
    print(f"\n## {k}-fold CV, n={n}, d={d}, {m} targets\n")
    print(format_table(header, rows, ["l"] + ["r"] * (len(header) - 1)))
    print()
    print("Times: wall seconds (time.perf_counter) of the whole cross-validation, scoring "
          "included. 'vs X' = X's time / this row's time (> 1: this row is faster).")
    print("R2: test R^2 of a (fold, target) pair; means over pairs. 'max |dR2|': largest "
          "difference of a pair's R^2 from cross_validate's with the same estimator.")
    if subset:
        print(f"* the sklearn loop ran the first {F} of {k} folds and the first {T} of {m} "
              f"targets; its time is extrapolated x{k * m / (F * T):g}, and the 'loop's pairs' "
              "R^2 column averages those same pairs for every method.")
    run_real(args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
