"""
=====================================================
Large n: a sparse GP per target, on every row
=====================================================

An exact GP costs ``O(n^3)`` time and ``O(n^2)`` memory per target: a few
thousand rows are its limit on a laptop. The usual shortcut is to fit it on a
random subset of the rows, which throws most of the data away.
:class:`skbgp.SparseBatchedGaussianProcessRegressor` keeps every row: each
target takes its hyperparameters from an exact fit on a subset, chooses
``n_inducing`` inducing points of its own among the rows by greedy variance
selection, and is conditioned on every row through them (Titsias' SGPR
posterior). Here 10,000 noisy rows of
three targets, two of them with fine structure: the exact GP on 500 rows
against the sparse GP on all of them, scored against the noise-free truth.
"""

# %%
# Data: three targets with different length scales
# ------------------------------------------------
import time

import matplotlib.pyplot as plt
import numpy as np

from skbgp import BatchedGaussianProcessRegressor, SparseBatchedGaussianProcessRegressor


def truth(X):
    return np.column_stack([
        np.sin(9 * X[:, 0]) * np.cos(7 * X[:, 1]),       # fine structure in both features
        np.sin(2 * X[:, 0]) + 0.5 * X[:, 1],             # smooth
        np.tanh(10 * (X[:, 0] - X[:, 1] ** 2)),           # a sharp ridge
    ])


rng = np.random.RandomState(0)
n = 10_000
X = rng.uniform(-1, 1, size=(n, 2))
Y = truth(X) + 0.2 * rng.randn(n, 3)
X_test = rng.uniform(-1, 1, size=(2_000, 2))
F_test = truth(X_test)

# %%
# The exact GP on a random subset, the sparse GP on every row
# -----------------------------------------------------------
# The sparse fit starts with an exact fit on ``init_subset_size`` rows, so its
# extra cost over that subset is choosing the inducing points and one pass over
# every row.
start = time.perf_counter()
subset = rng.choice(n, 500, replace=False)
exact = BatchedGaussianProcessRegressor(random_state=0).fit(X[subset], Y[subset])
exact_s = time.perf_counter() - start

start = time.perf_counter()
sparse = SparseBatchedGaussianProcessRegressor(n_inducing=500, init_subset_size=500,
                                               random_state=0).fit(X, Y)
sparse_s = time.perf_counter() - start

# %%
# Scores against the noise-free function: R^2 of the mean, and the negative log
# density of the truth under the latent posterior (``observation_noise=False``).


def scores(model):
    mean, std = model.predict(X_test, return_std=True, observation_noise=False)
    r2 = 1 - ((mean - F_test) ** 2).mean(0) / F_test.var(0)
    nlpd = (0.5 * np.log(2 * np.pi * std**2) + 0.5 * ((F_test - mean) / std) ** 2).mean(0)
    return r2, nlpd


for name, model, seconds in (("exact, 500 rows", exact, exact_s),
                             ("sparse, 10,000 rows", sparse, sparse_s)):
    r2, nlpd = scores(model)
    print(f"{name:20s} fit {seconds:5.1f} s   R^2 {np.round(r2, 4)}   NLPD {np.round(nlpd, 3)}")
print("inducing points used per target:", sparse.n_inducing_)
print("collapsed bound per target (log_marginal_likelihood_value_):",
      np.round(sparse.log_marginal_likelihood_value_, 1))

# %%
# The sparse model has as many inducing points as the subset has rows, but
# chosen where they are needed and informed by all 10,000 rows: its means are
# better on every target. Its latent uncertainty is not everywhere: along the
# sharp ridge the inducing points cannot follow every turn, the posterior
# treats what they miss as noise, and its latent standard deviation there is
# too small (NLPD worse than the subset's). Always check held-out NLPD.

# %%
# Where the inducing points went
# ------------------------------
# Greedy variance selection puts each where the prior, given the points so far,
# is least certain: evenly for the target with short length scales in both
# features, along the ridge for the third, spread thin for the smooth one.
fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
grid = np.linspace(-1, 1, 80)
G = np.array(np.meshgrid(grid, grid)).reshape(2, -1).T
mean = sparse.predict(G)
for t, ax in enumerate(axes):
    ax.contourf(grid, grid, mean[:, t].reshape(80, 80), levels=20, cmap="viridis")
    Z = sparse.inducing_points_[t, : sparse.n_inducing_[t]]
    ax.plot(Z[:, 0], Z[:, 1], "w.", ms=2)
    ax.set_title(f"target {t}: {sparse.n_inducing_[t]} inducing points")
    ax.set_xlabel("x0")
axes[0].set_ylabel("x1")
fig.tight_layout()
plt.show()
