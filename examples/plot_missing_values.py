"""
=====================================
Missing values, different per target
=====================================

In multi-target data, targets are often observed at different rows: a sensor
was down, a measurement failed, an experiment was only run for some outputs.
:class:`skbgp.BatchedGaussianProcessRegressor` accepts ``NaN`` in ``y``: a
``NaN`` marks a missing observation **of that target only**, and each target's
Gaussian process is fitted on exactly its own observed rows. The other
targets still use those rows. scikit-learn's
:class:`~sklearn.gaussian_process.GaussianProcessRegressor` rejects ``NaN`` in
``y``.
"""

# %%
# Data with a different gap in every target
# -----------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

from skbgp import BatchedGaussianProcessRegressor

rng = np.random.RandomState(1)
n = 80
X = np.sort(rng.uniform(0.0, 10.0, size=(n, 1)), axis=0)
x = X[:, 0]
y = np.column_stack([
    np.sin(x),
    np.cos(1.5 * x),
    0.5 * x * np.sin(0.7 * x),
]) + 0.1 * rng.randn(n, 3)

y[(x > 2.0) & (x < 5.0), 0] = np.nan    # target 0: a gap at 2 < x < 5
y[(x > 6.0) & (x < 8.5), 1] = np.nan    # target 1: a gap at 6 < x < 8.5
y[rng.rand(n) < 0.6, 2] = np.nan        # target 2: 60% missing at random
observed = ~np.isnan(y)
print("observed rows per target:", observed.sum(axis=0), "of", n)

# %%
# scikit-learn's GPR rejects the ``NaN`` entries:
try:
    GaussianProcessRegressor().fit(X, y)
except ValueError as exc:
    print("scikit-learn:", exc)

# %%
# Fit one GP per target, each on its own rows
# -------------------------------------------
gpr = BatchedGaussianProcessRegressor(n_restarts_optimizer=3, random_state=0).fit(X, y)
for t in range(gpr.n_targets_):
    print(f"target {t}: {observed[:, t].sum():2d} rows, length scale "
          f"{gpr.length_scales_[t, 0]:.3f}, noise {gpr.noise_levels_[t]:.4f}, "
          f"LML {gpr.log_marginal_likelihood_value_[t]:.3f}")

# %%
# Each target uses exactly its observed rows
# ------------------------------------------
# The missing entries are masked out of the likelihood: the result is the
# exact GP of the observed subset, not an imputation. To check this, fit
# scikit-learn's GPR on target ``t``'s observed rows only, with the
# hyperparameters skbgp found for that target held fixed; its log marginal
# likelihood and its predictions agree with skbgp's to round-off.
X_plot = np.linspace(0.0, 10.0, 200)[:, None]
mean, std = gpr.predict(X_plot, return_std=True)  # (200, 3) each

for t in range(gpr.n_targets_):
    rows = observed[:, t]
    kernel = (ConstantKernel(gpr.outputscales_[t], "fixed")
              * RBF(gpr.length_scales_[t], "fixed")
              + WhiteKernel(gpr.noise_levels_[t], "fixed"))
    # the default kernel's model is on standardised targets: normalize_y=True
    alone = GaussianProcessRegressor(kernel, optimizer=None, normalize_y=True).fit(X[rows], y[rows, t])
    mean_t, std_t = alone.predict(X_plot, return_std=True)
    lml_gap = abs(alone.log_marginal_likelihood_value_ - gpr.log_marginal_likelihood_value_[t])
    print(f"target {t}: |LML difference| = {lml_gap:.1e}, "
          f"max |mean difference| = {np.abs(mean_t - mean[:, t]).max():.1e}, "
          f"max |std difference| = {np.abs(std_t - std[:, t]).max():.1e}")

# %%
# Predictions
# -----------
# Every target's uncertainty grows where *that* target has no data, and only
# there: target 0 is uncertain between 2 and 5, target 1 between 6 and 8.5,
# although the other targets were observed at those inputs.
fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True)
for t, ax in enumerate(axes):
    rows = observed[:, t]
    ax.fill_between(X_plot[:, 0], mean[:, t] - 2 * std[:, t], mean[:, t] + 2 * std[:, t],
                    color="C0", alpha=0.25, label="mean ± 2 std")
    ax.plot(X_plot[:, 0], mean[:, t], color="C0", label="mean")
    ax.plot(x[rows], y[rows, t], "k.", ms=5, label="observed")
    ax.plot(x[~rows], np.full((~rows).sum(), ax.get_ylim()[0]), "|", color="C3", ms=10,
            label="missing (x only)")
    ax.set_title(f"target {t}: {rows.sum()} of {n} rows observed", fontsize=10)
    ax.set_xlabel("x")
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9)
fig.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()
