"""Fingerprint of every number skbgp fits, to check that a refactoring changes none.

``record`` fits skbgp on a fixed set of cases (every one seeded) and saves
every fitted number to an ``.npz`` file; ``compare`` prints, key by key, the
largest relative difference between two such files and fails when any key
differs by more than 1e-10 or is missing from either. Record the code before
a restructuring and after it (same machine, same torch), then compare::

    cd /path/to/checkout/with/this/script
    PYTHONPATH=/path/to/old/checkout python benchmarks/fingerprint.py record old.npz
    PYTHONPATH=/path/to/new/checkout python benchmarks/fingerprint.py record new.npz
    python benchmarks/fingerprint.py compare old.npz new.npz

The skbgp that is recorded is the one Python imports first, so ``PYTHONPATH``
chooses the checkout (without it, an installed skbgp); ``record`` prints its
path and the workers' (the benchmark helpers this script imports put this
checkout's root on ``sys.path``; the script undoes that, so that it never
fingerprints the wrong code). Two records of the same code on the same machine
are identical to the bit; across machines or torch builds expect rounding
differences.

``record`` takes 10 to 15 minutes on the project's shared 2-core machine, 7 to
9 of them for the 1000x5x32 row; ``--skip-large`` leaves that row out (3 to 4
minutes).

Cases, every one with ``random_state=0``:

1. ``real/<problem>``: the default model on every problem of ``real_data.py``
   (``bench_quality.py``'s problems, split 0), predicting its test rows.
2. ``synth/<n>x<d>x<targets>``: the default model on ``bench_fit.py``'s four
   default rows (``bench_fit.make_data``, seed 0), predicting 50 points drawn
   in the data's box.
3. ``kernel/*``: scikit-learn kernels on elnino: ``ConstantKernel() *
   RBF(ones(d)) + WhiteKernel()`` (fast path), ``ConstantKernel() *
   RationalQuadratic() + WhiteKernel()`` and ``Matern(nu=1.5) + DotProduct()``
   (composite path).
4. ``nan/diabetes``: diabetes with 15% of ``y`` missing; ``noise/*``: a
   synthetic row with known ``noise_variance`` per sample, and per sample and
   target (with missing values).
5. ``workers/elnino``: ``n_jobs=2``, ``batch_size=3`` (4 chunks), with
   ``MIN_WORKER_WORK`` (``skbgp._chunks``, or ``skbgp._engine`` after the
   restructuring) set to 0 so that the small fit really runs on loky workers
   (as ``tests/test_scale.py`` does; checked: the model holds no factors of
   its own fit); and
   ``cv_workers/<mode>``: the batched cross-validation (exact, warm_start) on
   those workers.
6. ``callable/linnerud``: a callable optimizer (scipy's L-BFGS-B in
   scikit-learn's ``optimizer(obj_func, initial_theta, bounds)`` interface).
7. ``cv/<mode>``: ``batched_cross_validate`` (test scores, per-target scores,
   every fold's ``theta_``) and ``batched_cross_val_predict`` (mean and std)
   on macro, ``KFold(5, shuffle=True, random_state=0)``, for the modes exact,
   warm_start and full_data.
8. ``suggest/branin``: ``QBatchSuggester`` (default acquisition, ``q=2``) on
   Branin: a Sobol' design of 6 points, then 3 rounds of ask/tell.

For every fitted regressor (cases 1-6, not ``cv_workers``) the keys are ``theta_``, ``gps_.theta``,
``log_marginal_likelihood_value_``, ``log_prior_value_``, ``n_iter_``,
``n_evaluations_``, ``converged_``, ``jitter_``, ``alpha_``, the predictive
mean and std, the predictive covariance at 5 points, ``sample_y`` at 5 points
(3 samples, ``random_state=0``), ``loo_predictive`` and
``log_marginal_likelihood(theta_, eval_gradient=True)``.

Usage::

    python benchmarks/fingerprint.py record OUT.npz [--skip-large]
    python benchmarks/fingerprint.py compare A.npz B.npz
"""

import argparse
import contextlib
import os
import sys
import time
import warnings

import numpy as np
import scipy.optimize

import skbgp  # first, as Python finds it: PYTHONPATH chooses the checkout to record

_SYS_PATH = list(sys.path)
import bench_fit  # noqa: E402  (puts this checkout's root first on sys.path)
import real_data  # noqa: E402

sys.path[:] = _SYS_PATH  # so that loky workers import the same skbgp as this process
assert bench_fit.skbgp is skbgp

import joblib  # noqa: E402
from sklearn.gaussian_process.kernels import (RBF, ConstantKernel, DotProduct, Matern,  # noqa: E402
                                              RationalQuadratic, WhiteKernel)
from sklearn.model_selection import KFold  # noqa: E402

from skbgp import (BatchedGaussianProcessRegressor, QBatchSuggester,  # noqa: E402
                   batched_cross_val_predict, batched_cross_validate, loo_predictive)

THRESHOLD = 1e-10
LARGE_ROW = (1000, 5, 32)
CV_MODES = ("exact", "warm_start", "full_data")


# ------------------------------------------------------------------ recording
def model_numbers(model, X_test):
    """Every fitted number of a fitted regressor, and its predictions at ``X_test``.

    Returns
    -------
    dict of str to ndarray
    """
    mean, std = model.predict(X_test, return_std=True)
    cov_mean, cov = model.predict(X_test[:5], return_cov=True)
    loo_mean, loo_var, loo_logp = loo_predictive(model)
    lml, lml_grad = model.log_marginal_likelihood(model.theta_, eval_gradient=True)
    return {
        "theta_": model.theta_,
        "gps_.theta": model.gps_.theta,
        "log_marginal_likelihood_value_": model.log_marginal_likelihood_value_,
        "log_prior_value_": model.log_prior_value_,
        "n_iter_": model.n_iter_,
        "n_evaluations_": model.n_evaluations_,
        "converged_": model.converged_,
        "jitter_": model.jitter_,
        "alpha_": model.alpha_,
        "predict.mean": mean,
        "predict.std": std,
        "predict_cov.mean": cov_mean,
        "predict_cov.cov": cov,
        "sample_y": model.sample_y(X_test[:5], 3, random_state=0),
        "loo.mean": loo_mean,
        "loo.variance": loo_var,
        "loo.log_density": loo_logp,
        "lml_at_theta": lml,
        "lml_gradient_at_theta": lml_grad,
    }


def fit(X, y, **params):
    """``BatchedGaussianProcessRegressor(random_state=0, **params).fit(X, y)``, warnings silenced."""
    noise = params.pop("noise_variance", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BatchedGaussianProcessRegressor(random_state=0, **params).fit(
            X, y, noise_variance=noise)


def lbfgsb(obj_func, initial_theta, bounds):
    """scipy's L-BFGS-B in scikit-learn's ``optimizer`` interface."""
    res = scipy.optimize.minimize(obj_func, initial_theta, method="L-BFGS-B", jac=True,
                                  bounds=bounds)
    return res.x, res.fun


def box_points(X, n_points, seed=1):
    """``n_points`` uniform in the bounding box of ``X``."""
    rng = np.random.default_rng(seed)
    return rng.uniform(X.min(axis=0), X.max(axis=0), size=(n_points, X.shape[1]))


def branin(X):
    """Branin-Hoo on [-5, 10] x [0, 15] (minimum 0.397887)."""
    x1, x2 = X[:, 0], X[:, 1]
    b, c, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 1 / (8 * np.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


def skbgp_file():
    """Where this process imports skbgp from (run on a worker to check its path)."""
    return os.path.dirname(os.path.abspath(skbgp.__file__))


@contextlib.contextmanager
def workers_for_any_fit():
    """``MIN_WORKER_WORK = 0`` wherever skbgp defines it, so that ``n_jobs`` uses workers.

    As the tests do (``tests/test_scale.py``); the constant lives in
    ``skbgp._chunks`` or, after the restructuring, ``skbgp._engine``.
    """
    holders = [m for name, m in list(sys.modules.items())
               if name.split(".")[0] == "skbgp" and "MIN_WORKER_WORK" in vars(m)]
    if not holders:
        raise RuntimeError("no skbgp module defines MIN_WORKER_WORK; update workers_for_any_fit")
    old = [m.MIN_WORKER_WORK for m in holders]
    for m in holders:
        m.MIN_WORKER_WORK = 0
    try:
        yield
    finally:
        for m, value in zip(holders, old):
            m.MIN_WORKER_WORK = value


def model_cases(problems, skip_large):
    """(name, thunk) of every case whose result is one fitted regressor: thunk() -> (model, X_test)."""
    by_name = {p.name: p for p in problems}
    cases = []
    for p in problems:
        cases.append((f"real/{p.name}", lambda p=p: (fit(p.X_train, p.Y_train), p.X_test)))
    for n, d, m in bench_fit.DEFAULT_ROWS:
        if skip_large and (n, d, m) == LARGE_ROW:
            continue

        def synthetic(n=n, d=d, m=m):
            X, Y = bench_fit.make_data(n, d, m, seed=0)
            return fit(X, Y), box_points(X, 50)

        cases.append((f"synth/{n}x{d}x{m}", synthetic))

    el, di, li = by_name["elnino"], by_name["diabetes"], by_name["linnerud"]
    kernels = {
        "fast_rbf": lambda d: ConstantKernel() * RBF(np.ones(d)) + WhiteKernel(),
        "composite_rq": lambda d: ConstantKernel() * RationalQuadratic() + WhiteKernel(),
        "composite_matern_dot": lambda d: Matern(nu=1.5) + DotProduct(),
    }
    for name, make in kernels.items():
        cases.append((f"kernel/{name}", lambda make=make: (
            fit(el.X_train, el.Y_train, kernel=make(el.X_train.shape[1])), el.X_test)))

    def missing():
        y = di.Y_train.copy()
        y[np.random.RandomState(0).rand(*y.shape) < 0.15] = np.nan
        return fit(di.X_train, y), di.X_test

    def noise(per_target):
        X, Y = bench_fit.make_data(264, 3, 4, seed=0)
        rng = np.random.RandomState(0)
        shape = Y.shape if per_target else Y.shape[:1]
        variance = 10.0 ** rng.uniform(-3, -1, size=shape)
        if per_target:
            Y = Y.copy()
            Y[rng.rand(*Y.shape) < 0.1] = np.nan
        return fit(X, Y, noise_variance=variance), box_points(X, 50)

    cases.append(("nan/diabetes", missing))
    cases.append(("noise/per_sample", lambda: noise(False)))
    cases.append(("noise/per_sample_and_target_nan", lambda: noise(True)))

    def on_workers():
        with workers_for_any_fit():
            model = fit(el.X_train, el.Y_train, n_jobs=2, batch_size=3)
        if model.gps_.cached:  # the fit's own factors: it ran in this process
            raise RuntimeError("n_jobs=2 ran in this process; MIN_WORKER_WORK not honoured")
        return model, el.X_test

    cases.append(("workers/elnino", on_workers))
    cases.append(("callable/linnerud", lambda: (
        fit(li.X_train, li.Y_train, optimizer=lbfgsb), li.X_test)))
    return cases


def cv_numbers(X, y, n_jobs=None, modes=CV_MODES, predict=True):
    """Scores, per-target scores, fold thetas and cross-validated predictions of every mode."""
    out = {}
    cv = KFold(5, shuffle=True, random_state=0)
    est = BatchedGaussianProcessRegressor(random_state=0)
    for mode in modes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = batched_cross_validate(est, X, y, cv=cv, mode=mode, return_estimator=True,
                                         n_jobs=n_jobs)
            keys = {k: res[k] for k in sorted(res) if k.startswith("test_")}
            for k, v in keys.items():
                out[f"{mode}/{k}"] = v
            for f, fitted in enumerate(res["estimator"]):
                out[f"{mode}/fold{f}.theta_"] = fitted.theta_
                out[f"{mode}/fold{f}.log_marginal_likelihood_value_"] = (
                    fitted.log_marginal_likelihood_value_)
            if predict:
                mean, std = batched_cross_val_predict(est, X, y, cv=cv, mode=mode,
                                                      return_std=True, n_jobs=n_jobs)
                out[f"{mode}/cross_val_predict.mean"] = mean
                out[f"{mode}/cross_val_predict.std"] = std
    return out


def suggest_numbers():
    """Suggested points of 3 ask/tell rounds of QBatchSuggester on Branin (q=2)."""
    opt = QBatchSuggester(bounds=[(-5, 10), (0, 15)], q=2, random_state=0)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X = opt.ask(n_points=6)
        out["design"] = X
        opt.tell(X, branin(X))
        for r in range(3):
            X = opt.ask()
            out[f"round{r}"] = X
            opt.tell(X, branin(X))
    out["final.theta_"] = opt.estimator_.theta_
    out["final.log_marginal_likelihood_value_"] = opt.estimator_.log_marginal_likelihood_value_
    return out


def as_array(value):
    """A float64 array of a fitted value (bools and ints as float)."""
    a = np.asarray(value)
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float64)
    return a.astype(np.float64, copy=False)


def record(path, skip_large=False):
    """Fit every case and save its numbers to ``path`` (an ``.npz``)."""
    here = skbgp_file()
    print(f"skbgp {skbgp.__version__} imported from {here}", flush=True)
    numbers, seconds = {}, {}
    t_all = time.perf_counter()

    def add(case, values):
        for key, value in values.items():
            numbers[f"{case}/{key}"] = as_array(value)

    def timed(case, work):
        t0 = time.perf_counter()
        add(case, work())
        seconds[case] = time.perf_counter() - t0
        print(f"  {case:40s} {seconds[case]:7.1f} s", flush=True)

    problems, skipped = real_data.load_all()
    if skipped:
        raise SystemExit(f"real data sets missing (install their packages): {skipped}")
    for case, thunk in model_cases(problems, skip_large):
        timed(case, lambda thunk=thunk: model_numbers(*thunk()))

    by_name = {p.name: p for p in problems}
    macro, el = by_name["macro"], by_name["elnino"]
    timed("cv", lambda: cv_numbers(macro.X_train, macro.Y_train))
    with workers_for_any_fit():
        timed("cv_workers", lambda: cv_numbers(el.X_train, el.Y_train, n_jobs=2,
                                               modes=("exact", "warm_start"), predict=False))
    workers = set(joblib.Parallel(n_jobs=2)(joblib.delayed(skbgp_file)() for _ in range(4)))
    print(f"  loky workers imported skbgp from {sorted(workers)}")
    if workers != {here}:
        raise RuntimeError(f"workers imported another skbgp ({sorted(workers)}) than {here}")
    timed("suggest/branin", suggest_numbers)

    total = time.perf_counter() - t_all
    meta = {"_meta/skbgp_path": np.array(here), "_meta/seconds": np.array(total)}
    np.savez(path, **numbers, **meta)
    print(f"{len(numbers)} keys from {len(seconds)} cases saved to {path}; record took "
          f"{total:.1f} s")


# ------------------------------------------------------------------ comparing
def difference(a, b):
    """Largest relative difference ``|a - b| / max(|a|, tiny)`` (NaN == NaN), and bitwise equality."""
    if a.shape != b.shape:
        return np.inf, False
    bitwise = a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if a.size == 0:
        return 0.0, bitwise
    both_nan = np.isnan(a) & np.isnan(b)
    same = (a == b) | both_nan  # equal infinities too
    with np.errstate(invalid="ignore", over="ignore"):
        rel = np.abs(a - b) / np.maximum(np.abs(a), np.finfo(float).tiny)
    rel = np.where(same, 0.0, rel)
    rel = np.where(np.isnan(rel), np.inf, rel)  # NaN against a number, or inf against inf
    return float(rel.max()), bitwise


def compare(path_a, path_b):
    """Print the table of differences; return 1 if a key is missing or differs by > THRESHOLD."""
    with np.load(path_a) as fa, np.load(path_b) as fb:
        A = {k: fa[k] for k in fa.files}
        B = {k: fb[k] for k in fb.files}
    for label, data in (("A", A), ("B", B)):
        print(f"{label}: skbgp from {data.get('_meta/skbgp_path', '?')}, record took "
              f"{float(data.get('_meta/seconds', np.nan)):.1f} s")
    keys = sorted(k for k in set(A) | set(B) if not k.startswith("_meta/"))
    rows, missing = [], []
    for key in keys:
        if key not in A or key not in B:
            missing.append(f"{key} (only in {'A' if key in A else 'B'})")
            continue
        diff, bitwise = difference(A[key], B[key])
        rows.append((diff, key, bitwise, A[key].shape))
    rows.sort(key=lambda r: (-r[0], r[1]))
    width = max([len(r[1]) for r in rows] + [3])
    print(f"{'key':{width}s}  {'max rel diff':>12s}  bitwise  shape")
    for diff, key, bitwise, shape in rows:
        print(f"{key:{width}s}  {diff:12.3e}  {'yes' if bitwise else 'no':7s}  {shape}")
    for m in missing:
        print(f"MISSING: {m}")
    worst = max([r[0] for r in rows] + [0.0])
    n_bitwise = sum(r[2] for r in rows)
    over = [r[1] for r in rows if r[0] > THRESHOLD]
    print(f"{len(rows)} keys compared, {n_bitwise} bitwise equal, {len(over)} above "
          f"{THRESHOLD:g}, {len(missing)} missing")
    print(f"max relative difference over all keys: {worst:.3e}")
    return 1 if over or missing else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="fit every case and save its numbers")
    r.add_argument("out", help="the .npz file to write")
    r.add_argument("--skip-large", action="store_true",
                   help="leave out the 1000x5x32 row (the slowest case)")
    c = sub.add_parser("compare", help="compare two records")
    c.add_argument("a")
    c.add_argument("b")
    args = p.parse_args(argv)
    if args.command == "record":
        record(args.out, args.skip_large)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
