"""Scale benchmark: thousands of independent GPs, one process, workers, a GPU.

Fits ``--targets`` independent exact GPs (default 10,000) on one ``X`` of
shape ``(n, d)`` (default ``n = 200, d = 3``) and prints, side by side:

* skbgp in one process (default ``batch_size``), with ``n_jobs=2`` (loky
  worker processes), and on a GPU when one is present (``device="cuda"``);
* a loop of scikit-learn ``GaussianProcessRegressor`` fits, timed on the first
  ``--sklearn-targets`` targets (default 100) and extrapolated linearly;
* BoTorch's batched ``SingleTaskGP``, on the first ``--botorch-targets``
  targets (default 256) and extrapolated linearly, on the CPU (and on the GPU
  with all targets when one is present and ``--botorch-gpu`` is given).

Every method runs in its own subprocess, so its peak resident memory (RSS,
``getrusage``) is its own; the RSS of loky workers is read after they exit.
The same data, kernel, competitors and common log marginal likelihood as in
``bench_fit.py``; the LML columns are totals over the first
``--sklearn-targets`` targets, the targets every method fitted.

A second table shows where skbgp's time goes: one batched likelihood-and-
gradient evaluation at this ``n``, split into its parts, and the number of
evaluations per target.

Usage::

    python benchmarks/bench_scale.py                 # 10,000 targets (about 15 minutes)
    python benchmarks/bench_scale.py --quick         # 400 targets, a minute
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
for path in (_ROOT, _HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

import torch  # noqa: E402

import bench_fit  # noqa: E402
from skbgp import BatchedGaussianProcessRegressor  # noqa: E402


def _rss_gb(who):
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(who).ru_maxrss * 1024 / 1e9


def run_method(method, args):
    """Runs in a subprocess: fit with one method, print a JSON line of results."""
    X, Y = bench_fit.make_data(args.n, args.d, args.targets, seed=args.seed)
    k = min(args.sklearn_targets, args.targets)
    out = {}
    if method.startswith("skbgp"):
        params = {"random_state": 0}
        if method == "skbgp-2jobs":
            params["n_jobs"] = 2
        if method == "skbgp-cuda":
            params["device"] = "cuda"
        BatchedGaussianProcessRegressor(**params).fit(X[:20, :], Y[:20, :3])  # warm-up
        if method == "skbgp-cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            gpr = BatchedGaussianProcessRegressor(**params).fit(X, Y)
            if method == "skbgp-cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        out["evals_per_target"] = float(gpr.n_evaluations_.mean())  # counted in workers too
        if method == "skbgp-2jobs":
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=True)
        if method == "skbgp-cuda":
            out["gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
        out.update(seconds=seconds, fitted=args.targets, batch_size=_default_batch(gpr, X, Y),
                   converged=int(gpr.converged_.sum()))
        hyper = (gpr.length_scales_[:k], gpr.outputscales_[:k], gpr.noise_levels_[:k])
    elif method == "sklearn":
        bench_fit.fit_sklearn_loop(X[:20], Y[:20], range(2))  # warm-up
        seconds, hyper = bench_fit.fit_sklearn_loop(X, Y, range(k))
        hyper = tuple(h[:k] for h in hyper)
        out.update(seconds=seconds, fitted=k)
    elif method.startswith("botorch"):
        b = args.targets if method == "botorch-cuda" else min(args.botorch_targets, args.targets)
        if method == "botorch-cuda":
            torch.set_default_device("cuda")
        bench_fit.fit_botorch(X[:20], Y[:20, :2])  # warm-up
        seconds, hyper, _ = bench_fit.fit_botorch(X, Y[:, :b])
        hyper = tuple(np.asarray(h)[:k] for h in hyper)
        out.update(seconds=seconds, fitted=b)
    else:
        raise ValueError(method)
    D2 = bench_fit.squared_differences(X)
    kk = min(k, len(hyper[1]))
    out["lml"] = float(bench_fit.lml_per_target(D2, Y, hyper, range(kk)).sum())
    out["lml_targets"] = kk
    out["rss_gb"] = _rss_gb(resource.RUSAGE_SELF)
    out["children_rss_gb"] = _rss_gb(resource.RUSAGE_CHILDREN)
    print("RESULT " + json.dumps(out), flush=True)


def _default_batch(gpr, X, Y):
    from skbgp._engine import auto_batch_size

    from joblib import effective_n_jobs

    return auto_batch_size(X.shape[0], Y.shape[1], gpr.n_restarts_optimizer + 1,
                           effective_n_jobs(gpr.n_jobs), torch.device(gpr.device), 8)


def spawn(method, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method,
           "--targets", str(args.targets), "--n", str(args.n), "--d", str(args.d),
           "--sklearn-targets", str(args.sklearn_targets),
           "--botorch-targets", str(args.botorch_targets), "--seed", str(args.seed)]
    print(f"  {method} ...", end="", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(" failed:\n" + proc.stderr[-2000:], flush=True)
        return None
    result = json.loads(lines[-1][len("RESULT "):])
    print(f" {result['seconds']:.1f} s on {result['fitted']} targets", flush=True)
    return result


def where_time_goes(args):
    """Per-member milliseconds of one likelihood-and-gradient evaluation and of its parts.

    Returns the per-member time as the fit runs it (member threads: torch
    single-threaded, blocks spread over ``torch.get_num_threads()`` Python
    threads), the same evaluation on one core, and its parts on one core.
    """
    from skbgp._core import lapack
    from skbgp._core.gp import cholesky_inverse, member_blocks
    from skbgp._core.stationary import StationaryKernel, neg_log_marginal_likelihood, training_differences
    from skbgp._core.kernels import augmented_differences, signal_covariance, squared_differences
    from skbgp._core.threads import on_member_threads

    n, d = args.n, args.d
    threads = torch.get_num_threads()
    # the parts on one block of members (as one thread evaluates them); the
    # threaded evaluation on a few blocks per thread
    block = member_blocks(10**6, n)[0].stop
    b = 4 * threads * block
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(n, d, dtype=torch.float64, generator=gen)
    D2 = training_differences(X)  # what a fit passes to every evaluation
    D2aug = augmented_differences(squared_differences(X, X))  # the parts below take it whole
    kernel = StationaryKernel(math.inf, d, True, True)
    theta = torch.zeros(b, d + 2, dtype=torch.float64)
    theta[:, 1:1 + d] = math.log(0.3)
    theta[:, -1] = math.log(1e-2)
    y = torch.randn(b, n, dtype=torch.float64, generator=gen)
    mask = torch.ones(b, n, dtype=torch.float64)
    alpha = torch.tensor(1e-10, dtype=torch.float64)
    K, _ = signal_covariance(kernel, theta, D2aug, n, n)
    K.diagonal(dim1=-2, dim2=-1).add_(1e-2)
    U = torch.linalg.cholesky(K, upper=True)

    def per_member_ms(fn, members, reps=20):
        fn()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        return 1e3 * (time.perf_counter() - start) / reps / members

    threaded = on_member_threads("cpu", lambda: per_member_ms(
        lambda: neg_log_marginal_likelihood(kernel, theta, D2, y, mask, alpha), b))
    th, Kb, Ub = theta[:block], K[:block], U[:block]
    torch.set_num_threads(1)
    try:
        one_core = per_member_ms(lambda: neg_log_marginal_likelihood(
            kernel, th, D2, y[:block], mask[:block], alpha), block)
        in_place = lapack.usable(Kb.device, Kb.dtype)
        if in_place:
            # the path a fit takes (skbgp._core.lapack): in place, no copies;
            # each call works on a fresh copy, whose time is subtracted
            work = Kb.clone()
            copy = per_member_ms(lambda: work.copy_(Kb), block)
            names = ("Cholesky (LAPACK potrf, in place)", "K^-1 from the factor (potri, in place)")
            chol = per_member_ms(lambda: lapack.potrf_upper_(work.copy_(Kb)), block) - copy
            lapack.potrf_upper_(work.copy_(Kb))
            factor = work.clone()
            inv = per_member_ms(lambda: lapack.potri_upper_(work.copy_(factor)), block) - copy
        else:
            names = ("Cholesky (torch.linalg.cholesky_ex)", "K^-1 from the factor (potri, for the gradient)")
            chol = per_member_ms(lambda: torch.linalg.cholesky_ex(Kb, upper=True), block)
            inv = per_member_ms(lambda: cholesky_inverse(Ub), block)
        parts = [
            ("covariance (exp of one (b, d+1) @ (d+1, n^2) product)",
             per_member_ms(lambda: signal_covariance(kernel, th, D2aug, n, n), block)),
            (names[0], chol),
            (names[1], inv),
        ]
    finally:
        torch.set_num_threads(threads)
    parts.append(("the rest (solves, traces of the gradient, copies)", one_core - sum(p[1] for p in parts)))
    flops = {names[0]: n**3 / 3, names[1]: 2 * n**3 / 3}
    return threaded, one_core, parts, flops, threads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--d", type=int, default=3)
    parser.add_argument("--sklearn-targets", type=int, default=100)
    parser.add_argument("--botorch-targets", type=int, default=256)
    parser.add_argument("--botorch-gpu", action="store_true",
                        help="also fit BoTorch on the GPU with all targets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="400 targets, 40 for sklearn")
    parser.add_argument("--no-botorch", action="store_true")
    parser.add_argument("--methods", help="comma-separated subset of skbgp, skbgp-2jobs, "
                        "skbgp-cuda, sklearn, botorch, botorch-cuda (default: what is available)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.targets, args.sklearn_targets, args.botorch_targets = 400, 40, 100
    if args.worker:
        run_method(args.worker, args)
        return 0

    print("\n".join(bench_fit.machine_info()))
    print(f"\n{args.targets} targets, n = {args.n}, d = {args.d}:", flush=True)
    methods = ["skbgp", "skbgp-2jobs"]
    gpu = torch.cuda.is_available()
    if gpu:
        methods.append("skbgp-cuda")
    methods.append("sklearn")
    if bench_fit.HAVE_BOTORCH and not args.no_botorch:
        methods.append("botorch")
        if gpu and args.botorch_gpu:
            methods.append("botorch-cuda")
    if args.methods:
        methods = args.methods.split(",")
    results = {m: spawn(m, args) for m in methods}

    base = results.get("skbgp") or results.get("skbgp-cuda")
    labels = {
        "skbgp": "skbgp, 1 process",
        "skbgp-2jobs": "skbgp, n_jobs=2",
        "skbgp-cuda": "skbgp, device='cuda'",
        "sklearn": "sklearn loop",
        "botorch": "BoTorch SingleTaskGP (batched)",
        "botorch-cuda": "BoTorch SingleTaskGP on the GPU",
    }
    rows = []
    for m in methods:
        r = results[m]
        if r is None:
            rows.append([labels[m], "failed"] + [""] * 6)
            continue
        star = r["fitted"] < args.targets
        total = r["seconds"] * args.targets / r["fitted"]
        mem = f"{r['rss_gb']:.2f}"
        if r.get("children_rss_gb", 0) > 0.05 and m == "skbgp-2jobs":
            mem += f" + 2 x {r['children_rss_gb']:.2f}"
        if "gpu_gb" in r:
            mem += f" (GPU {r['gpu_gb']:.2f})"
        speed = (f"{total / (base['seconds'] * args.targets / base['fitted']):.1f}x"
                 + ("*" if star else "")) if base else "n/a"
        rows.append([
            labels[m], str(r["fitted"]), f"{r['seconds']:.1f}",
            bench_fit.fmt_s(total, star), speed, mem,
            f"{r['lml']:.2f}", str(r["lml_targets"]),
        ])
    print()
    print(bench_fit.format_table(
        ["method", "targets fitted", "wall s", f"s for {args.targets}", "time / skbgp",
         "peak RSS GB", "LML", "LML over"],
        rows, ["l", "r", "r", "r", "r", "r", "r", "r"]))
    print("* extrapolated linearly from the targets fitted. 'time / skbgp' is each "
          "method's time for all targets divided by skbgp's (one process; on the GPU when only "
          "the GPU run is asked for). LML: total exact "
          "log marginal likelihood (common function of bench_fit.py) over the first "
          "'LML over' targets. Peak RSS of the fitting process (n_jobs=2: parent + each "
          "worker's peak).")
    if base:
        print(f"skbgp default batch_size here: {base['batch_size']} targets per chunk; "
              f"{base['converged']} of {args.targets} targets converged.")

    threaded, one_core, parts, flops, threads = where_time_goes(args)
    if results.get("skbgp") and base.get("evals_per_target"):
        evals = base["evals_per_target"]
        print(f"\nskbgp, 1 process: {evals:.1f} likelihood-and-gradient evaluations per target "
              f"(all starts); at the per-member cost below ({threads} member threads) that is "
              f"{evals * threaded * 1e-3 * args.targets:.0f} s of the {base['seconds']:.0f} s fit.")
    rows = []
    for name, ms in parts:
        gf = f"{flops[name] / (ms * 1e-3) / 1e9:.1f}" if name in flops and ms > 0 else ""
        rows.append([name, f"{ms * 1e3:.0f}", f"{100 * ms / one_core:.0f}%", gf])
    rows.append(["one likelihood + gradient evaluation, one core", f"{one_core * 1e3:.0f}", "100%", ""])
    rows.append([f"the same as the fit runs it ({threads} member threads)", f"{threaded * 1e3:.0f}",
                 "", ""])
    print(f"\nWhere the time goes on the CPU: one batched evaluation of members at "
          f"n = {args.n}, d = {args.d}; parts timed on one core (torch single-threaded) "
          "on one block of members")
    print(bench_fit.format_table(["part", "us per member", "share", "GFLOP/s"], rows,
                                 ["l", "r", "r", "r"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
