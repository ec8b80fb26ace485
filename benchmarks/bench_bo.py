"""Bayesian-optimisation benchmark: skbgp's QBatchSuggester vs Sobol search vs BoTorch.

Three test problems, minimised, each from the same initial design for every
method and seed:

* ``branin``: Branin on [-5, 10] x [0, 15], minimum 0.397887.
* ``hartmann6``: Hartmann-6 on [0, 1]^6, minimum -3.32237.
* ``branin-disk``: Branin subject to the disk constraint
  ``(x1 - 2.5)^2 + (x2 - 7.5)^2 <= 50`` (a second, modelled output
  ``c(x) = (x1 - 2.5)^2 + (x2 - 7.5)^2 - 50 <= 0``); the constrained minimum is
  still 0.397887 (at (pi, 2.275)).

Methods, with ``q`` points per iteration until the evaluation budget is spent:

1. ``sobol``: the scrambled Sobol sequence the initial design starts (same
   seed), continued for the whole budget.
2. ``skbgp``: ``QBatchSuggester(acquisition="qLogNEI", q=q, num_restarts=R,
   raw_samples=RAW, mc_samples=MC, random_state=seed)`` with its default GP;
   ``ask`` / ``tell``.
3. ``botorch`` (if installed): ``SingleTaskGP(X in [0, 1]^d, Y,
   outcome_transform=Standardize)`` (BoTorch's default GP, one batched
   multi-output model for the constrained problem) fitted by
   ``fit_gpytorch_mll`` (BoTorch 0.18 fits each output of a batched
   multi-output model with its own L-BFGS-B state), then
   ``qLogNoisyExpectedImprovement(model, X_baseline=X,
   sampler=SobolQMCNormalSampler([MC]), prune_baseline=True)`` (with
   ``constraints=[c]`` and an objective selecting the first output for
   ``branin-disk``) and ``optimize_acqf(q=q, num_restarts=R, raw_samples=RAW)``
   with its default options (in BoTorch 0.18, with scipy 1.13-1.17, one
   L-BFGS-B state per restart): the same ``q``, restarts, raw samples and
   Monte-Carlo samples as skbgp.

Bounds are ``(low, high)`` pairs per feature, shape ``(n_features, 2)``, as
``QBatchSuggester`` takes them; BoTorch gets the unit cube in its own
``(2, d)`` layout.

The simple regret of a run is ``min f(x) - f*`` over its feasible evaluations
(initial design included; the largest evaluated ``f`` if none is feasible: the
suggester's own incumbent rule, ``skbgp._suggest.incumbent``).
The first table gives the median over seeds. The second times one suggestion
(fit the GP, then maximise the acquisition) of each method on the same data:
the initial design plus 12 Sobol points, median of 3 repetitions.

Usage::

    python benchmarks/bench_bo.py            # 10 seeds, full budgets (about 10 minutes)
    python benchmarks/bench_bo.py --quick    # 2 seeds, small budgets (about a minute)
"""

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np
from scipy.stats import qmc

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)  # benchmark the working tree, installed or not

import torch  # noqa: E402

import skbgp  # noqa: E402
from skbgp import QBatchSuggester  # noqa: E402
from skbgp._suggest import incumbent  # noqa: E402

try:
    import botorch
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.acquisition.objective import GenericMCObjective
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler
    from gpytorch.mlls import ExactMarginalLogLikelihood
except ImportError:  # the BoTorch columns read n/a
    botorch = None


# ------------------------------------------------------------------ problems
def branin(X):
    x1, x2 = X[:, 0], X[:, 1]
    return ((x2 - 5.1 / (4 * np.pi**2) * x1**2 + 5 / np.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * np.pi)) * np.cos(x1) + 10)


def disk(X):
    return (X[:, 0] - 2.5) ** 2 + (X[:, 1] - 7.5) ** 2 - 50.0


_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
               [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(X):
    return -(_ALPHA * np.exp(-(_A * (X[:, None, :] - _P) ** 2).sum(-1))).sum(-1)


BRANIN_BOUNDS = np.array([(-5.0, 10.0), (0.0, 15.0)])  # (low, high) per feature
PROBLEMS = {
    # name: (objective, constraint or None, bounds, optimum, initial points, budget)
    "branin": (branin, None, BRANIN_BOUNDS, 0.397887, 6, 16),
    "hartmann6": (hartmann6, None, np.array([(0.0, 1.0)] * 6), -3.32237, 10, 20),
    "branin-disk": (branin, disk, BRANIN_BOUNDS, 0.397887, 6, 12),
}


def evaluate(problem, X):
    """Targets of shape (n,) or (n, 2) (objective, constraint)."""
    f, c, *_ = PROBLEMS[problem]
    return f(X) if c is None else np.column_stack([f(X), c(X)])


def regret(problem, Y):
    """Best feasible objective minus the optimum (the worst objective if none is feasible)."""
    _, c, _, opt, *_ = PROBLEMS[problem]
    Y = Y.reshape(len(Y), -1)
    best = incumbent(Y, np.eye(Y.shape[1])[0], {} if c is None else {1: 0.0}, maximize=False)
    return best.value - opt


def sobol(bounds, n, seed):
    """n scrambled Sobol' points scaled to the box (n_features, 2)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The balance properties")
        U = qmc.Sobol(len(bounds), scramble=True, seed=seed).random(n)
    return qmc.scale(U, bounds[:, 0], bounds[:, 1])


# ------------------------------------------------------------------- methods
class SkbgpMethod:
    def __init__(self, problem, q, settings, seed, X, Y):
        _, c, bounds, *_ = PROBLEMS[problem]
        self.opt = QBatchSuggester(
            bounds=bounds, acquisition="qLogNEI", q=q, random_state=seed,
            constraints=None if c is None else {1: 0.0}, **settings,
        ).fit(X, Y)

    def ask(self):
        return self.opt.ask()

    def tell(self, X, Y):
        self.opt.tell(X, Y)


class BotorchMethod:
    def __init__(self, problem, q, settings, seed, X, Y):
        _, c, self.bounds, *_ = PROBLEMS[problem]
        self.constrained = c is not None
        self.q, self.settings, self.seed = q, settings, seed
        self.X, self.Y, self.it = X, Y, 0

    def ask(self):
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        U = torch.tensor((self.X - lo) / (hi - lo))
        Y = self.Y.reshape(len(self.Y), -1).copy()
        Y[:, 0] = -Y[:, 0]  # BoTorch maximises
        model = SingleTaskGP(U, torch.tensor(Y), outcome_transform=Standardize(m=Y.shape[1]))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        sampler = SobolQMCNormalSampler(torch.Size([self.settings["mc_samples"]]),
                                        seed=1000 * self.seed + self.it)
        kw = {}
        if self.constrained:
            kw = dict(objective=GenericMCObjective(lambda Z, X=None: Z[..., 0]),
                      constraints=[lambda Z: Z[..., 1]])
        acq = qLogNoisyExpectedImprovement(model, U, sampler=sampler, prune_baseline=True, **kw)
        unit = torch.stack([torch.zeros(U.shape[1]), torch.ones(U.shape[1])]).to(U)
        cand, _ = optimize_acqf(acq, unit, q=self.q, num_restarts=self.settings["num_restarts"],
                                raw_samples=self.settings["raw_samples"])
        self.it += 1
        return lo + cand.detach().numpy() * (hi - lo)

    def tell(self, X, Y):
        self.X = np.vstack([self.X, X])
        self.Y = np.concatenate([self.Y, Y])


def run_loop(method_cls, problem, q, settings, seed):
    _, _, bounds, _, n_init, budget = PROBLEMS[problem]
    X = sobol(bounds, n_init, seed)
    Y = evaluate(problem, X)
    torch.manual_seed(seed)  # BoTorch draws its raw samples from the global generator
    method = method_cls(problem, q, settings, seed, X, Y)
    Ys = [Y]
    for _ in range(budget // q):
        Xn = method.ask()
        Yn = evaluate(problem, Xn)
        method.tell(Xn, Yn)
        Ys.append(Yn)
    return regret(problem, np.concatenate(Ys))


def sobol_regret(problem, seed):
    _, _, bounds, _, n_init, budget = PROBLEMS[problem]
    X = sobol(bounds, n_init + budget, seed)
    return regret(problem, evaluate(problem, X))


def time_suggest(method_cls, problem, q, settings, repeats=3):
    _, _, bounds, _, n_init, _ = PROBLEMS[problem]
    X = sobol(bounds, n_init + 12, 12345)
    Y = evaluate(problem, X)
    times = []
    for r in range(repeats):
        torch.manual_seed(r)
        t = time.perf_counter()
        method = method_cls(problem, q, settings, r, X, Y)  # skbgp fits here
        method.ask()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


# ---------------------------------------------------------------------- main
def machine_info():
    lines = [
        f"python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), skbgp {skbgp.__version__}, "
        f"botorch {botorch.__version__ if botorch else 'n/a'}",
        f"os.cpu_count()={os.cpu_count()}, load average {os.getloadavg()[0]:.2f}",
    ]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 seeds, budgets / 2 (about a minute)")
    p.add_argument("--seeds", type=int, default=10, help="number of seeds (default 10)")
    p.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated problem names")
    p.add_argument("--qs", default="1,4", help="comma-separated q values (default 1,4)")
    p.add_argument("--num-restarts", type=int, default=10)
    p.add_argument("--raw-samples", type=int, default=256)
    p.add_argument("--mc-samples", type=int, default=128)
    p.add_argument("--no-botorch", action="store_true", help="skip BoTorch")
    args = p.parse_args(argv)

    seeds = range(2 if args.quick else args.seeds)
    if args.quick:
        for name, (f, c, b, opt, n0, budget) in list(PROBLEMS.items()):
            PROBLEMS[name] = (f, c, b, opt, n0, budget // 2)
    problems = args.problems.split(",")
    qs = [int(q) for q in args.qs.split(",")]
    settings = dict(num_restarts=args.num_restarts, raw_samples=args.raw_samples,
                    mc_samples=args.mc_samples)
    use_botorch = botorch is not None and not args.no_botorch
    warnings.filterwarnings("ignore")  # BoTorch's and the GP fits' advice is not the point here

    print(machine_info())
    print(f"settings: {settings}, seeds: {len(seeds)}\n", flush=True)
    rows, trows = [], []
    t_start = time.perf_counter()
    for problem in problems:
        _, _, bounds, _, n_init, budget = PROBLEMS[problem]
        for q in qs:
            reg = {"sobol": [sobol_regret(problem, s) for s in seeds]}
            reg["skbgp"] = [run_loop(SkbgpMethod, problem, q, settings, s) for s in seeds]
            reg["botorch"] = ([run_loop(BotorchMethod, problem, q, settings, s) for s in seeds]
                              if use_botorch else [np.nan])
            med = {k: float(np.median(v)) for k, v in reg.items()}
            quart = {k: np.percentile(v, [25, 75]) for k, v in reg.items()}
            rows.append((problem, q, n_init, budget, med, quart))
            t_sk = time_suggest(SkbgpMethod, problem, q, settings)
            t_bt = time_suggest(BotorchMethod, problem, q, settings) if use_botorch else np.nan
            trows.append((problem, q, n_init + 12, t_sk, t_bt))
            print(f"{problem} q={q}: median regret sobol {med['sobol']:.4g}, "
                  f"skbgp {med['skbgp']:.4g}, botorch {med['botorch']:.4g}; "
                  f"suggest {t_sk:.3f} s vs {t_bt:.3f} s "
                  f"[{time.perf_counter() - t_start:.0f} s so far]", flush=True)

    print("\nMedian simple regret over seeds (lower is better)\n")
    head = (f"{'problem':<12} {'q':>2} {'init':>5} {'evals':>6} {'sobol':>10} {'skbgp':>10} "
            f"{'botorch':>10} {'skbgp/botorch':>14}")
    print(head)
    print("-" * len(head))
    for problem, q, n_init, budget, med, _ in rows:
        ratio = med["skbgp"] / med["botorch"] if med["botorch"] > 0 else np.nan
        print(f"{problem:<12} {q:>2} {n_init:>5} {budget:>6} {med['sobol']:>10.4g} "
              f"{med['skbgp']:>10.4g} {med['botorch']:>10.4g} {ratio:>14.2f}")
    print("\nSpread over seeds: 25th - 75th percentile of the simple regret\n")
    head = f"{'problem':<12} {'q':>2} {'sobol':>17} {'skbgp':>17} {'botorch':>17}"
    print(head)
    print("-" * len(head))
    for problem, q, _, _, _, quart in rows:
        cells = " ".join(f"{lo:>8.3g}-{hi:<8.3g}" for lo, hi in
                         (quart[k] for k in ("sobol", "skbgp", "botorch")))
        print(f"{problem:<12} {q:>2} {cells}")
    print("\nWall time of one suggestion (GP fit + acquisition optimisation), seconds\n")
    head = f"{'problem':<12} {'q':>2} {'n':>4} {'skbgp s':>9} {'botorch s':>10} {'speed-up':>9}"
    print(head)
    print("-" * len(head))
    for problem, q, n, t_sk, t_bt in trows:
        print(f"{problem:<12} {q:>2} {n:>4} {t_sk:>9.3f} {t_bt:>10.3f} {t_bt / t_sk:>9.2f}")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
