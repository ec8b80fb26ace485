"""Any scikit-learn kernel through scikit-learn's kernel API (skbgp/_generic_kernel.py).

Oracles: scikit-learn's GaussianProcessRegressor with the same kernel (fixed
hyperparameters, and an optimised fit from the same start), a target alone
against the same target in a batch, and scikit-learn's ``theta``/``bounds``.
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy.spatial.distance import cdist
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as skk
from sklearn.gaussian_process.kernels import (ConstantKernel, GenericKernelMixin, Hyperparameter,
                                              Kernel, NormalizedKernelMixin, StationaryKernelMixin,
                                              WhiteKernel)
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_validate

from skbgp import BatchedGaussianProcessRegressor, SparseBatchedGaussianProcessRegressor, batched_cross_validate
from skbgp import kernels as sk
from skbgp._generic_kernel import decode_points, encode_points
from skbgp._sklearn_kernels import GENERIC_WARNING


class Tanimoto(Kernel):
    """Tanimoto similarity of binary fingerprints, no hyperparameters."""

    def __init__(self):
        pass

    def __call__(self, X, Y=None, eval_gradient=False):
        Y = X if Y is None else Y
        inner = X @ Y.T
        K = inner / ((X * X).sum(1)[:, None] + (Y * Y).sum(1)[None, :] - inner)
        return (K, np.empty(K.shape + (0,))) if eval_gradient else K

    def diag(self, X):
        return np.ones(X.shape[0])

    def is_stationary(self):
        return False


class MyRBF(StationaryKernelMixin, NormalizedKernelMixin, Kernel):
    """A user's copy of scikit-learn's isotropic RBF, with its analytic gradient."""

    def __init__(self, length_scale=1.0, length_scale_bounds=(1e-5, 1e5)):
        self.length_scale = length_scale
        self.length_scale_bounds = length_scale_bounds

    @property
    def hyperparameter_length_scale(self):
        return Hyperparameter("length_scale", "numeric", self.length_scale_bounds)

    def __call__(self, X, Y=None, eval_gradient=False):
        d2 = cdist(X / self.length_scale, (X if Y is None else Y) / self.length_scale, "sqeuclidean")
        K = np.exp(-0.5 * d2)
        if not eval_gradient:
            return K
        if self.hyperparameter_length_scale.fixed:
            return K, np.empty(K.shape + (0,))
        return K, (K * d2)[:, :, None]


class Letters(GenericKernelMixin, StationaryKernelMixin, Kernel):
    """Strings: 1 per equal pair of letters, ``s`` per other pair (scikit-learn's MiniSeqKernel)."""

    def __init__(self, s=0.5, s_bounds=(1e-5, 1)):
        self.s = s
        self.s_bounds = s_bounds

    @property
    def hyperparameter_s(self):
        return Hyperparameter("s", "numeric", self.s_bounds)

    def __call__(self, X, Y=None, eval_gradient=False):
        Y = X if Y is None else Y
        K = np.array([[sum(1.0 if a == b else self.s for a in x for b in y) for y in Y] for x in X])
        if not eval_gradient:
            return K
        G = np.array([[[sum(0.0 if a == b else self.s for a in x for b in y)] for y in Y] for x in X])
        return K, G

    def diag(self, X):
        return np.array([sum(1.0 if a == b else self.s for a in x for b in x) for x in X])

    def clone_with_theta(self, theta):
        out = Letters(self.s, self.s_bounds)
        out.theta = theta
        return out


def _data(n=24, m=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 2))
    Y = np.column_stack([np.sin(6 * X[:, 0]), np.cos(4 * X[:, 1]), X[:, 0] * X[:, 1]][:m])
    return X, Y + 0.05 * rng.normal(size=Y.shape)


def _fingerprints(n=30, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.uniform(size=(n, 32)) < 0.3).astype(float)
    X[:, 0] = 1.0  # no empty fingerprint
    Y = np.column_stack([X[:, :6].sum(1), X[:, 6:12].sum(1) - X[:, 12:14].sum(1)])
    return X, Y + 0.1 * rng.normal(size=Y.shape)


def _fit(kernel, X, Y, **params):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=GENERIC_WARNING)
        return BatchedGaussianProcessRegressor(kernel, **params).fit(X, Y)


KERNELS = {
    "my_rbf": (lambda: ConstantKernel(1.0) * MyRBF(0.3) + WhiteKernel(0.01), _data),
    "tanimoto": (lambda: ConstantKernel(2.0) * Tanimoto() + WhiteKernel(0.1), _fingerprints),
    "matern_nu_3.5": (lambda: ConstantKernel(1.0) * skk.Matern(0.4, nu=3.5) + WhiteKernel(0.01), _data),
    "pairwise": (lambda: skk.PairwiseKernel(gamma=0.5, metric="laplacian") + WhiteKernel(0.01), _data),
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_fixed_hyperparameters_equal_scikit_learn(name):
    make, data = KERNELS[name]
    X, Y = data()
    Xq = X[:7] + 0.05
    ours = _fit(make(), X, Y, optimizer=None)
    assert ours.gps_.kernel.stationary is False and ours.gps_.kernel.n_params == len(make().theta)
    mean, std = ours.predict(Xq, return_std=True)
    _, cov = ours.predict(Xq, return_cov=True)
    _, latent = ours.predict(Xq, return_std=True, observation_noise=False)
    theta = np.tile(make().theta, (Y.shape[1], 1))
    lml, grad = ours.log_marginal_likelihood(theta, eval_gradient=True)
    on_train = []
    for t in range(Y.shape[1]):
        ref = GaussianProcessRegressor(make(), optimizer=None).fit(X, Y[:, t])
        on_train.append(ref.predict(X))
        m_ref, s_ref = ref.predict(Xq, return_std=True)
        assert_allclose(mean[:, t], m_ref, rtol=1e-8, atol=1e-12)
        assert_allclose(std[:, t], s_ref, rtol=1e-8)
        assert_allclose(cov[..., t], ref.predict(Xq, return_cov=True)[1], rtol=1e-8, atol=1e-12)
        l_ref, g_ref = ref.log_marginal_likelihood(make().theta, eval_gradient=True)
        assert_allclose(lml[t], l_ref, rtol=1e-8)
        assert_allclose(ours.log_marginal_likelihood_value_[t], l_ref, rtol=1e-8)
        assert_allclose(grad[t], g_ref, rtol=1e-8, atol=1e-10)
        # without the WhiteKernel's noise: scikit-learn's std of the kernel without it
        ref_latent = GaussianProcessRegressor(make().k1, optimizer=None, alpha=0.01 if name != "tanimoto" else 0.1)
        ref_latent.fit(X, Y[:, t])
        assert_allclose(latent[:, t], ref_latent.predict(Xq, return_std=True)[1], rtol=1e-7)
    # the score: R^2 of scikit-learn's predictions, averaged over targets as r2_score does
    assert_allclose(ours.score(X, Y), r2_score(Y, np.column_stack(on_train)), rtol=1e-8)


@pytest.mark.parametrize("name", ["my_rbf", "tanimoto"])
def test_optimised_fit_reaches_scikit_learns_optimum(name):
    make, data = KERNELS[name]
    X, Y = data()
    ours = _fit(make(), X, Y, n_restarts_optimizer=0)
    for t in range(Y.shape[1]):
        ref = GaussianProcessRegressor(make()).fit(X, Y[:, t])
        # from the same start: the same optimum (as good to 1e-6, hyperparameters to 1e-3)
        assert ours.log_marginal_likelihood_value_[t] >= ref.log_marginal_likelihood_value_ - 1e-6
        assert_allclose(ours.log_marginal_likelihood_value_[t], ref.log_marginal_likelihood_value_,
                        rtol=1e-6, atol=1e-6)
        assert_allclose(ours.kernels_[t].theta, ref.kernel_.theta, rtol=1e-3, atol=1e-3)
        assert type(ours.kernels_[t].k1.k2) is type(make().k1.k2)
    assert np.isnan(ours.length_scales_).all() and np.isnan(ours.noise_levels_).all()
    assert ours.hyperparameter_names_ == [h.name for h in make().hyperparameters]


def test_a_target_alone_and_in_a_batch_to_the_bit():
    make, data = KERNELS["my_rbf"]
    X, Y = data()
    Y[3, 1] = np.nan  # a missing entry on one target
    batch = _fit(make(), X, Y, random_state=0)
    Xq = X[:5] + 0.03
    mean, std = batch.predict(Xq, return_std=True)
    for t in range(Y.shape[1]):
        alone = _fit(make(), X, Y[:, t:t + 1], random_state=0)
        assert_array_equal(alone.theta_[0], batch.theta_[t])
        # a float for one target (scikit-learn's shape)
        assert_array_equal(alone.log_marginal_likelihood_value_, batch.log_marginal_likelihood_value_[t])
        m, s = alone.predict(Xq, return_std=True)
        assert_array_equal(m, mean[:, t])
        assert_array_equal(s, std[:, t])


def test_missing_targets_equal_scikit_learn_on_the_observed_rows():
    make, data = KERNELS["tanimoto"]
    X, Y = data()
    Y[[2, 5, 11], 0] = np.nan
    ours = _fit(make(), X, Y, optimizer=None)
    keep = ~np.isnan(Y[:, 0])
    ref = GaussianProcessRegressor(make(), optimizer=None).fit(X[keep], Y[keep, 0])
    assert_allclose(ours.predict(X[:6])[:, 0], ref.predict(X[:6]), rtol=1e-8, atol=1e-12)
    assert_allclose(ours.log_marginal_likelihood_value_[0], ref.log_marginal_likelihood_value_, rtol=1e-8)


def test_sample_y_pickle_and_cross_validation_work():
    make, data = KERNELS["my_rbf"]
    X, Y = data()
    ours = _fit(make(), X, Y, optimizer=None)
    draws = ours.sample_y(X[:4], n_samples=2000, random_state=0)
    assert draws.shape == (4, 3, 2000)
    _, cov = ours.predict(X[:4], return_cov=True)
    assert_allclose(draws.var(-1), np.diagonal(cov).T, rtol=0.2)
    again = pickle.loads(pickle.dumps(ours))
    assert_array_equal(again.predict(X[:4]), ours.predict(X[:4]))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=GENERIC_WARNING)
        ours_cv = batched_cross_validate(BatchedGaussianProcessRegressor(make(), optimizer=None),
                                         X, Y[:, 0], cv=KFold(3))
    ref_cv = cross_validate(GaussianProcessRegressor(make(), optimizer=None), X, Y[:, 0], cv=KFold(3))
    assert_allclose(ours_cv["test_score"], ref_cv["test_score"], rtol=1e-8)


def test_one_warning_per_fit_and_none_for_translated_kernels():
    X, Y = _data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BatchedGaussianProcessRegressor(ConstantKernel() * MyRBF(), optimizer=None).fit(X, Y)
    generic = [w for w in caught if str(w.message).startswith(GENERIC_WARNING)]
    assert len(generic) == 1 and issubclass(generic[0].category, UserWarning)
    assert "contains MyRBF" in str(generic[0].message)
    # it names the user's line (here), not one of skbgp's
    assert generic[0].filename == __file__
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BatchedGaussianProcessRegressor(ConstantKernel() * skk.RBF() * skk.DotProduct(),
                                        optimizer=None).fit(X, Y)
    assert not [w for w in caught if str(w.message).startswith(GENERIC_WARNING)]


def test_structured_inputs_equal_scikit_learn():
    X = ["AB", "B", "CA", "AAC", "BC"]
    y = np.array([1.0, 2.0, 3.0, 2.5, 1.5])
    Xq = ["A", "ABC", "CC"]
    # letter counts span few dimensions: alpha keeps the covariance well conditioned
    ours = _fit(Letters(), X, y, optimizer=None, alpha=1e-2)
    ref = GaussianProcessRegressor(Letters(), optimizer=None, alpha=1e-2).fit(X, y)
    for kind in ("return_std", "return_cov"):
        for a, b in zip(ours.predict(Xq, **{kind: True}), ref.predict(Xq, **{kind: True})):
            assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    assert_allclose(ours.log_marginal_likelihood(Letters().theta), ref.log_marginal_likelihood(Letters().theta),
                    rtol=1e-8)
    assert not hasattr(ours, "n_features_in_")
    assert_array_equal(ours.X_train_, np.asarray(X))  # the points as given, as scikit-learn keeps them
    assert ours.sample_y(Xq, 3).shape == (3, 3)
    fitted = _fit(Letters(), X, y, n_restarts_optimizer=0, alpha=1e-2)
    fitted_ref = GaussianProcessRegressor(Letters(), alpha=1e-2).fit(X, y)
    assert_allclose(fitted.log_marginal_likelihood_value_, fitted_ref.log_marginal_likelihood_value_,
                    rtol=1e-6)


@pytest.mark.parametrize("points", [["a", "bcd", ""], [np.arange(3.0), np.ones(5)], [("x", 1), None]],
                         ids=["strings", "ragged arrays", "objects"])
def test_encoded_points_decode_to_themselves(points):
    back = decode_points(encode_points(points))
    assert len(back) == len(points)
    for a, b in zip(back, points):
        assert np.array_equal(a, b) if isinstance(b, np.ndarray) else a == b


def test_sparse_estimator_refuses_a_generic_kernel_before_any_warning():
    X, Y = _data(n=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "evaluates the kernel through ..." before the refusal
        with pytest.raises(ValueError, match="supports kernel=None and the kernels"):
            SparseBatchedGaussianProcessRegressor(ConstantKernel() * MyRBF()).fit(X, Y)


class _WrongShape(Tanimoto):
    def diag(self, X):
        return np.ones((X.shape[0], 2))


def test_a_kernel_that_breaks_the_api_is_a_clear_error():
    X, Y = _fingerprints()
    gpr = _fit(_WrongShape(), X, Y, optimizer=None)
    with pytest.raises(ValueError, match=r"returned a diag of shape \(3, 2\); expected \(3,\)"):
        gpr.predict(X[:3], return_std=True)
    with pytest.raises(ValueError, match="An skbgp.kernels object combines only these classes"):
        BatchedGaussianProcessRegressor(sk.Matern(nu=3.5)).fit(*_data())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_generic_kernel_on_a_gpu_equals_the_cpu():
    make, data = KERNELS["my_rbf"]
    X, Y = data()
    cpu = _fit(make(), X, Y, optimizer=None)
    gpu = _fit(make(), X, Y, optimizer=None, device="cuda")
    for a, b in zip(gpu.predict(X[:5], return_std=True), cpu.predict(X[:5], return_std=True)):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert_allclose(gpu.log_marginal_likelihood_value_, cpu.log_marginal_likelihood_value_, rtol=1e-10)
