"""Held-out model quality on real data: skbgp's defaults vs scikit-learn and BoTorch.

Every problem of :mod:`real_data` (data shipped inside scikit-learn,
statsmodels and vega_datasets; nothing is downloaded) is fitted on its
training rows and scored on its test rows, per target, by three methods:

1. ``skbgp``: ``BatchedGaussianProcessRegressor(random_state=0)`` with its
   defaults (``kernel=None``), all targets of a problem in one fit.
2. ``sklearn``: what a careful scikit-learn user writes, one fit per target:
   ``GaussianProcessRegressor(ConstantKernel() * RBF(np.ones(d)) + WhiteKernel(),
   normalize_y=True, n_restarts_optimizer=3, random_state=0)``.
3. ``botorch``: BoTorch's ``SingleTaskGP`` with its defaults (``Standardize``
   outcome transform, constant mean, RBF kernel with the dimension-scaled
   LogNormal length-scale prior, LogNormal(-4, 1) noise prior), all targets of
   a problem as one batched model, fitted by ``fit_gpytorch_mll``. Its priors
   assume inputs in the unit cube, so it gets BoTorch's ``Normalize`` input
   transform, as BoTorch's documentation asks. Skipped when BoTorch is not
   installed.

Scores per target on the test rows: R^2; the mean Gaussian negative log
predictive density (NLPD, nats per test point; the predictive variance
includes the fitted noise); and the fraction of test values inside the
central 95% predictive interval. Fit seconds are per problem (all targets),
one run each (the fits take seconds; this is a quality benchmark, for speed
see ``bench_fit.py``).

The targets: on every target skbgp's R^2 is at least the best anchor's minus
0.02 and its NLPD at most the best anchor's plus 0.05; the gap columns flag
the targets that miss. With test sets of 5 to 400 rows these gaps are noisy:
``R2 gap se`` is the paired bootstrap standard error of the R^2 gap, and
``--splits K`` repeats everything on K other random splits of the same sizes
and reports the averages, with the paired standard error of every gap over
the splits (the better anchor is the one with the better mean; '!' marks a
target on which skbgp is worse than it by more than 2 standard errors). ``objective gap`` checks the optimiser: skbgp's
objective (log marginal likelihood plus log prior) at its optimum minus the
same objective at the better anchor's fitted hyperparameters (below -0.1
means skbgp stopped in a worse optimum of its own objective).

Usage::

    python benchmarks/bench_quality.py                 # every problem
    python benchmarks/bench_quality.py --problems linnerud,elnino
    python benchmarks/bench_quality.py --no-botorch
    python benchmarks/bench_quality.py --splits 8       # also the mean over 8 other splits
    python benchmarks/bench_quality.py --splits 8 --no-split0   # only the mean over splits 1-8
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
for path in (_ROOT, _HERE):
    if path not in sys.path:
        sys.path.insert(0, path)  # the working tree's skbgp, and real_data beside this file

import sklearn  # noqa: E402
import torch  # noqa: E402
from scipy.stats import norm  # noqa: E402
from sklearn.gaussian_process import GaussianProcessRegressor  # noqa: E402
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel  # noqa: E402

import real_data  # noqa: E402
import skbgp  # noqa: E402
from skbgp import BatchedGaussianProcessRegressor  # noqa: E402

try:
    import botorch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.input import Normalize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    HAVE_BOTORCH = True
except Exception:  # noqa: BLE001 - any import failure means "not available"
    HAVE_BOTORCH = False

R2_MARGIN = 0.02
NLPD_MARGIN = 0.05
_Z95 = norm.ppf(0.975)


# ------------------------------------------------------------------ methods
def fit_skbgp(X, Y, Xtest, **params):
    """skbgp's defaults: (mean, std) of shape (n_test, n_targets), seconds, the fitted model."""
    start = time.perf_counter()
    gpr = BatchedGaussianProcessRegressor(random_state=0, **params).fit(X, Y)
    seconds = time.perf_counter() - start
    mean, std = gpr.predict(Xtest, return_std=True)
    return mean.reshape(len(Xtest), -1), std.reshape(len(Xtest), -1), seconds, gpr


def sklearn_kernel(d):
    return ConstantKernel() * RBF(np.ones(d)) + WhiteKernel()


def fit_sklearn(X, Y, Xtest, n_restarts=3):
    """One scikit-learn GPR per target; (mean, std), seconds, theta (n_targets, 5)."""
    means, stds, models = [], [], []
    start = time.perf_counter()
    for t in range(Y.shape[1]):
        gpr = GaussianProcessRegressor(sklearn_kernel(X.shape[1]), normalize_y=True,
                                       n_restarts_optimizer=n_restarts, random_state=0)
        models.append(gpr.fit(X, Y[:, t]))
    seconds = time.perf_counter() - start
    for gpr in models:
        mean, std = gpr.predict(Xtest, return_std=True)
        means.append(mean)
        stds.append(std)
    theta = np.array([gpr.kernel_.theta for gpr in models])
    return np.column_stack(means), np.column_stack(stds), seconds, theta


def fit_botorch(X, Y, Xtest):
    """BoTorch's SingleTaskGP defaults (one batched model); (mean, std), seconds, theta.

    ``theta`` (n_targets, d + 2) is BoTorch's fit in the layout of skbgp's
    default kernel: log outputscale (0: BoTorch has none on its standardised
    targets), log length scales in the raw units, log noise.
    """
    tX = torch.as_tensor(X, dtype=torch.float64)
    start = time.perf_counter()
    model = SingleTaskGP(tX, torch.as_tensor(Y, dtype=torch.float64),
                         input_transform=Normalize(X.shape[1]))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        post = model.posterior(torch.as_tensor(Xtest, dtype=torch.float64),
                               observation_noise=True)
        mean = post.mean.numpy().reshape(len(Xtest), -1)
        std = post.variance.clamp_min(0).sqrt().numpy().reshape(len(Xtest), -1)
        span = X.max(axis=0) - X.min(axis=0)
        ls = model.covar_module.lengthscale.reshape(Y.shape[1], -1).numpy() * span
        noise = model.likelihood.noise.reshape(Y.shape[1], -1).numpy()
    theta = np.log(np.column_stack([np.ones(Y.shape[1]), ls, noise]))
    return mean, std, seconds, theta


# ------------------------------------------------------------------ scores
def scores(Y, mean, std):
    """R^2, mean Gaussian NLPD and 95% coverage of every target (column)."""
    resid = Y - mean
    r2 = 1.0 - (resid**2).sum(0) / ((Y - Y.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = std**2
        nlpd = (0.5 * np.log(2 * np.pi * var) + 0.5 * resid**2 / var).mean(0)
        cover = (np.abs(resid) <= _Z95 * std).mean(0)
    return r2, nlpd, cover


def bootstrap_se(Y, mean_a, mean_b, reps=200, seed=0):
    """Standard error of R^2(a) - R^2(b) per target, by a paired bootstrap over the test rows."""
    rng = np.random.RandomState(seed)
    diffs = []
    for _ in range(reps):
        rows = rng.randint(0, len(Y), len(Y))
        denom = ((Y[rows] - Y[rows].mean(0)) ** 2).sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            diffs.append((((Y[rows] - mean_b[rows]) ** 2).sum(0) - ((Y[rows] - mean_a[rows]) ** 2).sum(0))
                         / denom)
    diffs = np.array(diffs)
    diffs[~np.isfinite(diffs)] = np.nan  # resamples of one repeated row (5 test rows)
    return np.nanstd(diffs, axis=0)


def evaluate(problem, methods):
    """Scores of every method on every target of ``problem``.

    Returns
    -------
    dict
        method -> dict(r2, nlpd, cover: arrays (n_targets,), seconds: float,
        mean: (n_test, n_targets), extra: the fitted skbgp model or the
        method's theta).
    """
    out = {}
    for name, fit in methods.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mean, std, seconds, extra = fit(problem.X_train, problem.Y_train, problem.X_test)
        r2, nlpd, cover = scores(problem.Y_test, mean, std)
        out[name] = dict(r2=r2, nlpd=nlpd, cover=cover, seconds=seconds, mean=mean, extra=extra)
    return out


def objective_gaps(res, anchors):
    """skbgp's objective at its optimum minus its objective at each anchor's hyperparameters."""
    gpr = res["skbgp"]["extra"]
    own = gpr.log_marginal_likelihood_value_ + gpr.log_prior_value_
    gaps = [own - (gpr.log_marginal_likelihood(res[a]["extra"]) + gpr.log_prior(res[a]["extra"]))
            for a in anchors]
    return np.min(gaps, axis=0)


# ------------------------------------------------------------------ report
def _cell(x, fmt="{:.3f}"):
    return "nan" if not np.isfinite(x) else fmt.format(x)


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def report(problems, results, anchors, split_label=""):
    """The per-target table and the per-problem summary, as text, and the number of misses.

    ``results[name]`` is :func:`evaluate`'s dict, or (several splits) one whose
    r2, nlpd, cover are averages and which has no "mean".
    """
    names = ["skbgp"] + anchors
    single = all("mean" in results[p.name]["skbgp"] for p in problems)
    header = (["problem", "target"] + [f"R2 {m}" for m in names] + [f"NLPD {m}" for m in names]
              + [f"cov {m}" for m in names] + ["R2 gap", "NLPD gap"])
    if single and anchors:
        header += ["R2 gap se", "objective gap"]
    paired = not single and anchors and all("r2_runs" in results[p.name]["skbgp"] for p in problems)
    if paired:
        header += ["R2 gap se", "NLPD gap se"]
    rows, summary = [], []
    misses = {"r2": 0, "nlpd": 0, "objective": 0, "r2_se": 0, "nlpd_se": 0}
    total = 0
    for problem in problems:
        res = results[problem.name]
        if single and anchors:
            best = np.argmax([res[a]["r2"] for a in anchors], axis=0)
            best_mean = np.stack([res[a]["mean"] for a in anchors])[best, :, np.arange(len(best))].T
            se = bootstrap_se(problem.Y_test, res["skbgp"]["mean"], best_mean)
            obj = objective_gaps(res, anchors)
        for t, target in enumerate(problem.target_names):
            best_r2 = max(res[a]["r2"][t] for a in anchors) if anchors else np.nan
            best_nlpd = min(res[a]["nlpd"][t] for a in anchors) if anchors else np.nan
            gap_r2 = res["skbgp"]["r2"][t] - best_r2
            gap_nlpd = res["skbgp"]["nlpd"][t] - best_nlpd
            miss_r2 = not gap_r2 >= -R2_MARGIN
            miss_nlpd = not gap_nlpd <= NLPD_MARGIN
            misses["r2"] += miss_r2
            misses["nlpd"] += miss_nlpd
            total += 1
            row = ([problem.name, target]
                   + [_cell(res[m]["r2"][t]) for m in names]
                   + [_cell(res[m]["nlpd"][t]) for m in names]
                   + [_cell(res[m]["cover"][t], "{:.2f}") for m in names]
                   + [f"{gap_r2:+.3f}" + (" *" if miss_r2 else ""),
                      f"{gap_nlpd:+.3f}" + (" *" if miss_nlpd else "")])
            if single and anchors:
                misses["objective"] += obj[t] < -0.1
                row += [f"{se[t]:.3f}", f"{obj[t]:+.2f}" + (" *" if obj[t] < -0.1 else "")]
            if paired:
                # worse than the better anchor by more than 2 paired standard errors: "!"
                for key, sign in (("r2", 1.0), ("nlpd", -1.0)):
                    gap, gap_se = paired_gap(res, anchors, key, t)
                    worse = not sign * gap >= -2.0 * gap_se
                    misses[f"{key}_se"] += worse
                    row.append(f"{gap_se:.3f}" + (" !" if worse else ""))
            rows.append(row)
        summary.append(
            [problem.name, str(len(problem.target_names)), str(len(problem.X_train))]
            + [_cell(np.mean(res[m]["r2"])) for m in names]
            + [_cell(np.mean(res[m]["nlpd"])) for m in names]
            + [_cell(res[m]["seconds"], "{:.2f}") for m in names]
        )
    sum_header = (["problem", "targets", "n_train"] + [f"mean R2 {m}" for m in names]
                  + [f"mean NLPD {m}" for m in names] + [f"fit s {m}" for m in names])
    text = [table(rows, header), "", table(summary, sum_header), ""]
    text.append(
        f"{split_label}targets missed: R2 {misses['r2']} of {total} (skbgp below the best anchor "
        f"by more than {R2_MARGIN}), NLPD {misses['nlpd']} of {total} (above the best anchor by "
        f"more than {NLPD_MARGIN}); '*' marks a miss."
    )
    if paired:
        n_splits = len(results[problems[0].name]["skbgp"]["r2_runs"])
        text.append(
            f"{split_label}worse than the better anchor (by its mean) by more than 2 paired standard "
            f"errors: R2 {misses['r2_se']} of {total}, NLPD {misses['nlpd_se']} of {total} ('!'). "
            f"gap se: standard error of the mean over the {n_splits} splits of the per-split "
            "difference skbgp minus that anchor."
        )
    if single and anchors:
        text.append(
            f"objective gap: skbgp's objective (LML + log prior) at its optimum minus the same "
            f"objective at the anchor hyperparameters where it is higher; below -0.1 on "
            f"{misses['objective']} of {total} targets ('*'). R2 gap se: paired bootstrap "
            "standard error of the R2 gap over the test rows."
        )
    return "\n".join(text), misses


def _average(runs):
    """Per-target means of r2, nlpd, cover (and fit seconds) over several splits.

    Also keeps every split's r2 and nlpd (``r2_runs``, ``nlpd_runs``: arrays of
    shape (n_splits, n_targets)) for the paired standard errors.
    """
    out = {}
    for method in runs[0]:
        out[method] = {key: np.mean([run[method][key] for run in runs], axis=0)
                       for key in ("r2", "nlpd", "cover", "seconds")}
        for key in ("r2", "nlpd"):
            out[method][f"{key}_runs"] = np.array([run[method][key] for run in runs])
    return out


def paired_gap(res, anchors, key, t):
    """skbgp minus the better anchor (by its mean over the splits) on target ``t``: (mean, se).

    ``key`` is "r2" (the better anchor has the higher mean) or "nlpd" (the
    lower); the standard error is that of the mean of the per-split
    differences (paired: the same split for both methods).
    """
    means = [res[a][key][t] for a in anchors]
    best = anchors[int(np.nanargmax(means) if key == "r2" else np.nanargmin(means))]
    diffs = res["skbgp"][f"{key}_runs"][:, t] - res[best][f"{key}_runs"][:, t]
    return diffs.mean(), diffs.std(ddof=1) / np.sqrt(len(diffs))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--problems", default=",".join(real_data.PROBLEMS),
                   help="comma-separated names (default: all)")
    p.add_argument("--no-botorch", action="store_true", help="skip BoTorch")
    p.add_argument("--splits", type=int, default=0,
                   help="also average every score over the K other splits 1..K (seeds of the "
                        "permutation; the benchmark's own split is 0), with paired standard errors")
    p.add_argument("--no-split0", action="store_true",
                   help="with --splits: report only the average over splits 1..K")
    args = p.parse_args(argv)
    if args.splits == 1:
        p.error("--splits needs at least 2 splits for a standard error")
    names = args.problems.split(",")
    problems, skipped = real_data.load_all(names)
    methods = {"skbgp": fit_skbgp, "sklearn": fit_sklearn}
    if HAVE_BOTORCH and not args.no_botorch:
        methods["botorch"] = fit_botorch
    anchors = [m for m in methods if m != "skbgp"]
    print(f"skbgp {skbgp.__version__}, scikit-learn {sklearn.__version__}, torch "
          f"{torch.__version__}, botorch "
          + (botorch.__version__ if "botorch" in methods else "n/a"))
    if skipped:
        print(f"skipped (package not installed): {', '.join(skipped)}")
    if not (args.no_split0 and args.splits):
        results = {}
        for problem in problems:
            print(f"{problem.name} ...", flush=True)
            results[problem.name] = evaluate(problem, methods)
        text, _ = report(problems, results, anchors, "split 0: ")
        print(text)
    if args.splits:
        averaged = {}
        for problem in problems:
            runs = []
            for seed in range(1, args.splits + 1):
                print(f"{problem.name}, split {seed} ...", flush=True)
                runs.append(evaluate(real_data.load(problem.name, seed), methods))
            averaged[problem.name] = _average(runs)
        text, _ = report(problems, averaged, anchors, f"mean of splits 1-{args.splits}: ")
        print(f"\nscores averaged over splits 1-{args.splits}:\n" + text)


if __name__ == "__main__":
    main()
