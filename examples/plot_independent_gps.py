"""
=====================================================
One Gaussian process per target, versus shared ones
=====================================================

Three targets are observed at the same inputs, but they vary on very different
scales: one wiggles quickly, one slowly, one is almost a straight line with
more noise.

scikit-learn's :class:`~sklearn.gaussian_process.GaussianProcessRegressor`,
given the 2-D ``y``, fits **one** set of hyperparameters for all three
targets. :class:`skbgp.BatchedGaussianProcessRegressor` fits every target its
own Gaussian process (length scale, signal variance, noise), all in one batch.
"""

# %%
# Data: three targets with different length scales
# ------------------------------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

from skbgp import BatchedGaussianProcessRegressor

rng = np.random.RandomState(0)
n = 60
X = np.sort(rng.uniform(0.0, 10.0, size=(n, 1)), axis=0)
x = X[:, 0]
y = np.column_stack([
    np.sin(3.0 * x) + 0.1 * rng.randn(n),            # fast: length scale ~ 0.3
    2.0 * np.sin(0.6 * x) + 0.1 * rng.randn(n),      # slow: length scale ~ 1.5
    0.3 * x - 1.5 + 0.4 * rng.randn(n),              # nearly linear, noisier
])
names = ["fast", "slow", "linear + noise"]

# %%
# Fit every target its own GP, in one batch
# -----------------------------------------
# The default kernel is ``outputscale * RBF(ARD) + noise`` per standardised
# target, with weak priors on the length scales and the noise (a MAP fit; see
# "How the defaults were chosen"). The default ``n_restarts_optimizer=2`` adds
# two starting points per target; all starts of all targets are one batch,
# raced for 5 iterations, after which only the starts that beat every earlier
# start go on.
batched = BatchedGaussianProcessRegressor(random_state=0).fit(X, y)
print("iterations per target:", batched.n_iter_, " converged:", batched.converged_)

# %%
# Why restarts matter
# ~~~~~~~~~~~~~~~~~~~
# The likelihood of a quickly varying target often has a second, worse local
# optimum that explains everything as noise (a huge length scale, a tiny
# signal variance). A single start can end there; compare the objectives (log
# marginal likelihood plus log prior), which are per target. Here the default
# start (at the mode of the length-scale prior) already reaches the signal of
# every target; restarts are the insurance for harder data, and more restarts
# never end lower. skbgp's warnings name the targets they concern.
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    single = BatchedGaussianProcessRegressor(n_restarts_optimizer=0).fit(X, y)
for w in caught:
    print(f"{w.category.__name__}: {w.message}")
for label, est in (("one start   ", single), ("three starts", batched)):
    print(label, ": length scales", np.round(est.length_scales_[:, 0], 3), " objective",
          np.round(est.log_marginal_likelihood_value_ + est.log_prior_value_, 2))

# %%
# Fit scikit-learn's GPR once on the 2-D ``y``
# --------------------------------------------
# The same kernel family on standardised targets, but one length scale, one
# signal variance and one noise level shared by all targets.
kernel = ConstantKernel() * RBF(1.0) + WhiteKernel(0.1)
shared = GaussianProcessRegressor(kernel, n_restarts_optimizer=2, normalize_y=True,
                                  random_state=0).fit(X, y)
print("scikit-learn kernel_:", shared.kernel_)

# %%
# Per-target length scales and log marginal likelihoods
# -----------------------------------------------------
# scikit-learn reports one log marginal likelihood, the sum over targets. To
# split it per target, we evaluate the shared hyperparameters with skbgp:
# passing the fitted scikit-learn kernel with ``optimizer=None`` keeps them
# fixed and gives each target's log marginal likelihood under them.
at_shared = BatchedGaussianProcessRegressor(shared.kernel_, optimizer=None, normalize_y=True).fit(X, y)
print(f"sum of per-target LMLs at the shared hyperparameters: "
      f"{at_shared.log_marginal_likelihood_value_.sum():.3f} "
      f"(scikit-learn: {shared.log_marginal_likelihood_value_:.3f})\n")

shared_ls = at_shared.length_scales_[0, 0]
print(f"{'':>15} | {'skbgp: one GP per target':^30} | {'sklearn: shared':^30}")
print(f"{'target':>15} | {'length scale':>12} {'noise':>8} {'LML':>8} | "
      f"{'length scale':>12} {'noise':>8} {'LML':>8}")
for t, name in enumerate(names):
    print(f"{name:>15} | {batched.length_scales_[t, 0]:12.3f} "
          f"{batched.noise_levels_[t]:8.4f} {batched.log_marginal_likelihood_value_[t]:8.2f} | "
          f"{shared_ls:12.3f} {at_shared.noise_levels_[t]:8.4f} "
          f"{at_shared.log_marginal_likelihood_value_[t]:8.2f}")
print(f"{'total':>15} | {'':>21} {batched.log_marginal_likelihood_value_.sum():8.2f} | "
      f"{'':>21} {at_shared.log_marginal_likelihood_value_.sum():8.2f}")

# %%
# Every target's own GP has a higher log marginal likelihood than under the
# shared hyperparameters, and its hyperparameters follow its data: a short
# length scale for the fast target, longer ones for the slow and the nearly
# linear targets, and a larger noise level (relative to its variance) for the
# noisy third target. The shared fit has to compromise on one length scale
# and one noise level for all three. (Both LMLs are of the standardised
# targets.)
#
# Predictions
# -----------
# Both estimators return arrays of shape ``(n_points, n_targets)``.
X_plot = np.linspace(-0.5, 10.5, 300)[:, None]
mean_b, std_b = batched.predict(X_plot, return_std=True)
mean_s, std_s = shared.predict(X_plot, return_std=True)
print("mean:", mean_b.shape, " std:", std_b.shape)

fig, axes = plt.subplots(2, 3, figsize=(11, 5.5), sharex=True, sharey="col")
for t, name in enumerate(names):
    for row, (mean, std, label) in enumerate([
        (mean_b, std_b, "skbgp: own GP"),
        (mean_s, std_s, "sklearn: shared GP"),
    ]):
        ax = axes[row, t]
        ax.plot(x, y[:, t], "k.", ms=4, label="data")
        ax.plot(X_plot[:, 0], mean[:, t], color=f"C{row}", label="mean")
        ax.fill_between(X_plot[:, 0], mean[:, t] - 2 * std[:, t], mean[:, t] + 2 * std[:, t],
                        color=f"C{row}", alpha=0.25, label="mean ± 2 std")
        ax.set_title(f"{name} — {label}", fontsize=9)
for ax in axes[1]:
    ax.set_xlabel("x")
handles, labels = axes[0, 0].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9)
fig.tight_layout(rect=(0, 0.06, 1, 1))
plt.show()

# %%
# The latent function
# -------------------
# ``std`` counts every target's fitted noise level, as scikit-learn does: it
# is the spread of a new observation. ``observation_noise=False`` gives the
# spread of the latent function instead (BoTorch's ``posterior(X,
# observation_noise=False)``, GPflow's ``predict_f``), whose variance is
# ``std**2`` less the noise level (in the targets' units).
_, latent_b = batched.predict(X_plot, return_std=True, observation_noise=False)
noise = batched.noise_levels_ * batched.gps_.y_std**2
print("largest |latent^2 - (std^2 - noise)|:", np.abs(latent_b**2 - (std_b**2 - noise)).max())

t = 2  # the noisy target
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(x, y[:, t], "k.", ms=4, label="data")
ax.fill_between(X_plot[:, 0], mean_b[:, t] - 2 * std_b[:, t], mean_b[:, t] + 2 * std_b[:, t],
                color="C0", alpha=0.2, label="new observation ± 2 std")
ax.fill_between(X_plot[:, 0], mean_b[:, t] - 2 * latent_b[:, t], mean_b[:, t] + 2 * latent_b[:, t],
                color="C0", alpha=0.5, label="latent function ± 2 std")
ax.plot(X_plot[:, 0], mean_b[:, t], color="C0")
ax.set_title(f"{names[t]}: observation and latent bands", fontsize=9)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
