"""
=====================================================
Bayesian optimisation with q points at a time
=====================================================

:class:`skbgp.QBatchSuggester` proposes ``q`` points to evaluate together,
chosen jointly by a Monte-Carlo acquisition function (noisy expected
improvement, ``qLogNEI``). Here it minimises the Branin function on
``[-5, 10] x [0, 15]`` one point at a time (``q = 1``) and four at a time
(``q = 4``), against quasi-random (Sobol) search, from the same initial
design. With ``q = 4`` the loop needs four times fewer rounds for the same
number of evaluations: the price is a little regret per evaluation, the gain
is wall-clock time when the four evaluations run in parallel.
"""

# %%
# The problem and the loop
# ------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import qmc

from skbgp import QBatchSuggester


def branin(X):
    x1, x2 = X[:, 0], X[:, 1]
    return ((x2 - 5.1 / (4 * np.pi**2) * x1**2 + 5 / np.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * np.pi)) * np.cos(x1) + 10)


bounds = np.array([(-5.0, 10.0), (0.0, 15.0)])  # (n_features, 2): (low, high) per feature
optimum = 0.397887
n_init, budget, seeds = 6, 16, range(3)


def sobol(n, seed):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The balance properties")
        return qmc.scale(qmc.Sobol(2, seed=seed).random(n), bounds[:, 0], bounds[:, 1])


def best_so_far(y):
    return np.minimum.accumulate(y) - optimum


def bo_run(q, seed):
    X = sobol(n_init, seed)  # the first points of the Sobol sequence
    opt = QBatchSuggester(bounds=bounds, q=q, num_restarts=5, raw_samples=128,
                          mc_samples=64, random_state=seed).fit(X, branin(X))
    for _ in range(budget // q):
        X_next = opt.ask()  # shape (q, 2)
        opt.tell(X_next, branin(X_next))
    return best_so_far(opt.y_)


curves = {
    "Sobol search": [best_so_far(branin(sobol(n_init + budget, s))) for s in seeds],
    "qLogNEI, q = 1": [bo_run(1, s) for s in seeds],
    "qLogNEI, q = 4": [bo_run(4, s) for s in seeds],
}

# %%
# Regret against evaluations
# --------------------------
# The simple regret ``min f(x) - f*`` over the points evaluated so far, median
# over three seeds; the shaded initial design is the same for every method.
evals = np.arange(1, n_init + budget + 1)
fig, ax = plt.subplots(figsize=(6, 4))
for label, runs in curves.items():
    ax.semilogy(evals, np.median(runs, axis=0), marker=".", label=label)
ax.axvspan(0.5, n_init + 0.5, color="0.9", label="initial design")
ax.set_xlabel("evaluations")
ax.set_ylabel("simple regret")
ax.legend()
fig.tight_layout()
plt.show()

for label, runs in curves.items():
    print(f"{label:>15}: median regret after {n_init + budget} evaluations "
          f"{np.median([r[-1] for r in runs]):.3g}")
