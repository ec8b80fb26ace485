"""
======================================================
Cross-validated predictions of several targets at once
======================================================

Cross-validating one Gaussian process per target means ``k`` folds times
``m`` targets fits. :func:`skbgp.batched_cross_val_predict` fits all of them
as **one batch**: every fold gets a clone of the estimator set up exactly as a
standalone fit on its training rows would be, and the hyperparameters of every
(fold, target) pair are optimised together. The predictions equal those of
scikit-learn's :func:`~sklearn.model_selection.cross_val_predict` on the same
estimator.

Here three targets of different smoothness and noise are cross-validated in
five folds of unequal size, and every observed value is plotted against its
cross-validated prediction, with an error bar of two predictive standard
deviations. :func:`skbgp.loo_predictive` then gives the closed-form
leave-one-out predictions with the hyperparameters of one fit on all rows.
"""

# %%
# Data: three targets on two features
# -----------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import KFold

from skbgp import (
    BatchedGaussianProcessRegressor,
    batched_cross_val_predict,
    batched_cross_validate,
    loo_predictive,
)

rng = np.random.RandomState(0)
n = 96
X = rng.uniform(0.0, 1.0, size=(n, 2)) * np.array([10.0, 2.0])
y = np.column_stack([
    np.sin(X[:, 0]) + 0.05 * rng.randn(n),                        # smooth, little noise
    np.cos(0.5 * X[:, 0]) * X[:, 1] + 0.2 * rng.randn(n),          # smooth, noisier
    np.sin(3.0 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.randn(n),     # wiggly
])
names = ["smooth", "noisy", "wiggly"]

# %%
# Cross-validated predictions with standard deviations
# ----------------------------------------------------
# ``KFold(5)`` on 96 rows gives folds of 20 and 19 rows: unequal sizes are
# handled by padding and masks inside the batch.
gpr = BatchedGaussianProcessRegressor(random_state=0)
cv = KFold(5, shuffle=True, random_state=0)
pred, std = batched_cross_val_predict(gpr, X, y, cv=cv, return_std=True)

scores = batched_cross_validate(gpr, X, y, cv=cv)
print("R^2 per fold and target:\n", np.round(scores["test_score_per_target"], 3))

fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
for t, ax in enumerate(axes):
    ax.errorbar(y[:, t], pred[:, t], yerr=2 * std[:, t], fmt="o", ms=3, alpha=0.6,
                elinewidth=0.8, label="5-fold CV prediction $\\pm 2\\sigma$")
    low, high = y[:, t].min(), y[:, t].max()
    ax.plot([low, high], [low, high], "k--", lw=1)
    r2 = scores["test_score_per_target"][:, t].mean()
    ax.set_title(f"target '{names[t]}': mean $R^2$ = {r2:.3f}")
    ax.set_xlabel("observed")
axes[0].set_ylabel("cross-validated prediction")
axes[0].legend(loc="upper left", fontsize=8)
fig.tight_layout()

# %%
# Are the error bars calibrated?
# ------------------------------
# If the predictive distributions are right, about 95% of the observed values
# lie within two standard deviations of their cross-validated prediction.
inside = np.abs(y - pred) <= 2 * std
print("fraction within 2 std per target:", np.round(inside.mean(axis=0), 3))

# %%
# Closed-form leave-one-out
# -------------------------
# With the hyperparameters of one fit on all rows held fixed, the
# leave-one-out predictions of every point of every target follow from one
# factorisation (Rasmussen & Williams, section 5.4.2): no refit at all.
fitted = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
loo_mean, loo_var, loo_log_density = loo_predictive(fitted)
print("LOO log predictive density per target:", np.round(loo_log_density.sum(axis=0), 2))
print("LOO R^2 per target:",
      np.round(1 - ((y - loo_mean) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0), 3))

fig, ax = plt.subplots(figsize=(4.5, 4))
for t in range(3):
    ax.scatter(pred[:, t], loo_mean[:, t], s=8, label=names[t])
ax.set_xlabel("5-fold CV prediction (refitted per fold)")
ax.set_ylabel("closed-form LOO prediction (fixed)")
ax.legend()
fig.tight_layout()
plt.show()
