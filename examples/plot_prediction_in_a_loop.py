"""
======================================
Predicting in a loop: the factor cache
======================================

Plots, an optimiser running over an emulator, a service answering one query
at a time: all call ``predict`` many times on few points. A fitted
:class:`skbgp.BatchedGaussianProcessRegressor` keeps every target's fitted GP
in one object, ``gps_`` (:class:`skbgp.FittedGPs`), which keeps the Cholesky
factors of the fit in memory while all of them fit ``cache_size`` (MiB,
default 1024). The predictive mean needs no factor at all; the standard
deviation reads the kept factors instead of factorising every target's
covariance again at every call.

This example times one-point predictions of 32 targets three ways: with the
cache, with ``cache_size=0`` (factors recomputed at every call, the same
numbers) and with a loop of scikit-learn GPRs at the same hyperparameters.
"""

# %%
# 32 targets fitted at once
# -------------------------
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor

from skbgp import BatchedGaussianProcessRegressor

rng = np.random.RandomState(0)
n, n_targets = 200, 32
X = rng.uniform(0.0, 1.0, size=(n, 3))
Y = np.sin(X @ rng.uniform(1.0, 6.0, size=(3, n_targets))) + 0.05 * rng.randn(n, n_targets)

cached = BatchedGaussianProcessRegressor(random_state=0).fit(X, Y)
print(f"factors kept: {cached.gps_.cached}, "
      f"{n_targets * n * n * 8 / 2**20:.0f} MiB of the {cached.cache_size} MiB budget")

# the same fitted GPs without the cache, and scikit-learn's GPR at every
# target's fitted hyperparameters
uncached = BatchedGaussianProcessRegressor(random_state=0, cache_size=0).fit(X, Y)
loop = [GaussianProcessRegressor(cached.kernels_[t], optimizer=None, normalize_y=True)
        .fit(X, Y[:, t]) for t in range(n_targets)]

# %%
# The same predictions
# --------------------
Xq = rng.uniform(0.0, 1.0, size=(5, 3))
mean, std = cached.predict(Xq, return_std=True)
ref = [g.predict(Xq, return_std=True) for g in loop]
print("largest difference from scikit-learn: mean "
      f"{max(np.abs(mean[:, t] - r[0]).max() for t, r in enumerate(ref)):.1e}, std "
      f"{max(np.abs(std[:, t] - r[1]).max() for t, r in enumerate(ref)):.1e}")


# %%
# One point at a time
# -------------------
# The best of 15 calls for each way, one way after the other.
def best_time(call, repeats=15):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


x = Xq[:1]
ways = {
    "skbgp (cache)": lambda std: cached.predict(x, return_std=std),
    "skbgp, cache_size=0": lambda std: uncached.predict(x, return_std=std),
    "scikit-learn loop": lambda std: [g.predict(x, return_std=std) for g in loop],
}
timings = {name: [best_time(lambda: call(False)) * 1e3, best_time(lambda: call(True)) * 1e3]
           for name, call in ways.items()}
for name, (t_mean, t_std) in timings.items():
    print(f"{name:22s} mean {t_mean:6.2f} ms   mean and std {t_std:6.2f} ms")

fig, ax = plt.subplots(figsize=(6, 3.5))
width = 0.35
positions = np.arange(len(timings))
ax.bar(positions - width / 2, [v[0] for v in timings.values()], width, label="mean")
ax.bar(positions + width / 2, [v[1] for v in timings.values()], width, label="mean and std")
ax.set_xticks(positions, list(timings), fontsize=8)
ax.set_ylabel("ms per call (best of 15)")
ax.set_title(f"One query point, {n_targets} targets, n = {n}")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The mean is the same without the cache: it never factorises. With the
# cache, the std costs one triangular solve per target; without it, a
# Cholesky factorisation per target per call. Pickles never hold the factors:
# an unpickled model computes them on its first prediction with std.
