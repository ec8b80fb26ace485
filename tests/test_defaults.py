"""The default model and the restarts, against oracles.

* a target's fit depends on its own data, kernel and ``random_state`` only:
  alone == in a batch == in any order == chunked == on joblib workers;
* more restarts never end lower, and the starts with fewer restarts are a
  prefix of those with more;
* a scikit-learn kernel's restarts are scikit-learn's own draws;
* a target far from zero predicts like the same target centred;
* a target recorded to a step keeps its noise at least the rounding
  variance (Sheppard's correction), and a small smooth problem with rounded,
  replicated targets is not memorised (scikit-learn's fit as the oracle);
* on real data (shipped with scikit-learn and statsmodels), every target's
  optimum of skbgp's own objective is at least that objective at
  scikit-learn's and BoTorch's fitted hyperparameters, minus 0.1 nats.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.metrics import r2_score

import skbgp._engine
import skbgp._sklearn_kernels
from skbgp import BatchedGaussianProcessRegressor

from .conftest import benchmark_module

def _fit(X, y, **params):
    params.setdefault("random_state", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return BatchedGaussianProcessRegressor(**params).fit(X, y)


def _objective(est):
    return est.log_marginal_likelihood_value_ + est.log_prior_value_


@pytest.fixture(scope="module")
def scaled_targets():
    """Real inputs and 6 targets on scales from 1e-6 to 1e6, some far from zero, a few NaN."""
    data = load_diabetes(scaled=False)
    X = data.data[:70, [0, 2, 3]]  # age, BMI, blood pressure
    Y = np.column_stack([data.data[:70, 4:8], data.target[:70], data.data[:70, 9]])
    Y = Y * np.array([1e-6, 1.0, 1e3, 1.0, 1e6, 1.0]) + np.array([0.0, 5e3, 0.0, -40.0, 0.0, 0.0])
    Y[::9, 1] = np.nan
    Y[3::11, 4] = np.nan
    return X, Y


KERNELS = {
    "default": lambda d: None,
    "sklearn": lambda d: ConstantKernel() * RBF(np.ones(d)) + WhiteKernel(),
}


@pytest.mark.parametrize("kernel_name", list(KERNELS))
@pytest.mark.slow
def test_a_target_alone_equals_in_any_batch_order_chunk_or_worker(scaled_targets, kernel_name,
                                                                  monkeypatch):
    monkeypatch.setattr(skbgp._engine, "MIN_WORKER_WORK", 0)  # workers even for this small fit
    X, Y = scaled_targets
    kernel = KERNELS[kernel_name](X.shape[1])
    params = dict(kernel=kernel, n_restarts_optimizer=3, normalize_y=True)
    together = _fit(X, Y, **params)
    order = [4, 0, 5, 2, 1, 3]
    fits = {
        "reversed": (_fit(X, Y[:, order], **params), order),
        "chunks of 2": (_fit(X, Y, batch_size=2, **params), range(6)),
        "2 loky workers": (_fit(X, Y, batch_size=3, n_jobs=2, **params), range(6)),
    }
    for t in range(Y.shape[1]):
        fits[f"alone {t}"] = (_fit(X, Y[:, t], **params), [t])
    Xq = X[:9] * 1.01
    mean, std = together.predict(Xq, return_std=True)
    for name, (est, columns) in fits.items():
        columns = list(columns)
        # the same numbers, not only the same optimum: every target's
        # arithmetic is independent of the others'
        assert_allclose(est.theta_, together.theta_[columns], rtol=1e-8, atol=1e-12, err_msg=name)
        assert_array_equal(est.n_iter_, together.n_iter_[columns], err_msg=name)
        m, s = est.predict(Xq, return_std=True)
        assert_allclose(m.reshape(9, -1), mean[:, columns], rtol=1e-8, err_msg=name)
        assert_allclose(s.reshape(9, -1), std[:, columns], rtol=1e-8, err_msg=name)


def _weak_signal():
    """A real noisy target (diabetes progression from age and BMI) and a synthetic weak one."""
    data = load_diabetes(scaled=False)
    X = data.data[:120, [0, 2]]
    rng = np.random.RandomState(5)
    signal = np.sin(X[:, 1] / 3.0)
    weak = signal + 2.0 * rng.randn(120) * signal.std()  # the signal explains 20% of the variance
    return X, np.column_stack([data.target[:120], weak])


def _linnerud():
    from sklearn.datasets import load_linnerud

    return load_linnerud(return_X_y=True)


@pytest.mark.parametrize("dataset", [_weak_signal, _linnerud], ids=["weak-signal", "linnerud"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.slow
def test_more_restarts_never_end_lower(dataset, seed):
    X, Y = dataset()
    previous = None
    for k in range(7):
        est = _fit(X, Y, n_restarts_optimizer=k, random_state=seed)
        objective = _objective(est)
        if previous is not None:
            assert np.all(objective >= previous - 1e-9 * np.abs(previous)), (k, objective - previous)
        previous = objective
    # the starts with fewer restarts are a prefix of those with more
    for kernel in (None, ConstantKernel() * RBF(np.ones(X.shape[1])) + WhiteKernel()):
        most = BatchedGaussianProcessRegressor(kernel, n_restarts_optimizer=6, random_state=seed)
        starts = most.prepare_fit(X, Y).starts_np
        for k in range(6):
            fewer = BatchedGaussianProcessRegressor(kernel, n_restarts_optimizer=k, random_state=seed)
            assert_array_equal(fewer.prepare_fit(X, Y).starts_np, starts[:k + 1])


def test_sklearn_kernel_restarts_are_sklearns_own_draws(scaled_targets):
    X, Y = scaled_targets
    kernel = ConstantKernel() * RBF(np.ones(X.shape[1]), length_scale_bounds=(1e-2, 1e3)) + WhiteKernel()
    for seed in (0, 7):
        seen = []

        def record(obj_func, initial_theta, bounds):  # scikit-learn's optimizer interface
            seen.append(np.array(initial_theta))
            return initial_theta, obj_func(initial_theta, eval_gradient=False)

        GaussianProcessRegressor(kernel, optimizer=record, n_restarts_optimizer=4,
                                 random_state=seed).fit(X, Y[:, 3])
        ours = BatchedGaussianProcessRegressor(kernel, n_restarts_optimizer=4, random_state=seed)
        starts = ours.prepare_fit(X, Y).starts_np  # (5 starts, 6 targets, 5 hyperparameters)
        for t in range(Y.shape[1]):  # every target starts where sklearn would
            assert_array_equal(starts[:, t], np.array(seen))


@pytest.mark.slow
def test_a_target_far_from_zero_predicts_like_the_same_target_centred():
    data = load_diabetes(scaled=False)
    X, y = data.data[:, [0, 2, 3]], data.target
    train, test = np.arange(0, 442, 2), np.arange(1, 442, 2)
    centred = y - y[train].mean()
    far = centred + 1e3 * y.std()
    a = _fit(X[train], centred[train])
    b = _fit(X[train], far[train])
    r2_a = r2_score(centred[test], a.predict(X[test]))
    r2_b = r2_score(far[test], b.predict(X[test]))
    assert r2_a > 0.3
    assert abs(r2_a - r2_b) < 1e-3


def test_recording_step_is_the_grid_of_the_values():
    observed = np.ones((6, 6), dtype=bool)
    Y = np.column_stack([
        [16.7, 11.0, 17.2, 11.0, 20.1, 13.3],  # recorded to 0.1
        [0.0, 0.2, 0.5, 0.9, 0.2, 1.3],  # gaps 0.2 and 0.3: a grid of 0.1, not of the smallest gap
        [180.0, 200.0, 176.0, 192.0, 160.0, 176.0],  # whole pounds, all multiples of 4
        np.random.RandomState(0).randn(6),  # continuous: no grid
        [1e-6, 3e-6, 2e-6, 1e-6, 5e-6, 4e-6],  # a grid far below 1 (data in other units)
        [0.0, 1.0, 1.0, 0.0, 1.0, 0.0],  # two levels with ties: their gap
    ])
    assert_allclose(skbgp._sklearn_kernels.recording_step(Y, observed),
                    [0.1, 0.1, 4.0, 0.0, 1e-6, 1.0], rtol=1e-9)
    # missing values are ignored; two distinct values without a tie, or one, are no grid
    Y[:, 0] = [16.7, np.nan, 17.2, 11.0, np.nan, 13.3]
    Y[:, 5] = [0.3, np.nan, np.nan, 0.7, np.nan, np.nan]
    Y[:, 3] = 2.5
    steps = skbgp._sklearn_kernels.recording_step(Y, ~np.isnan(Y))
    assert_allclose(steps[[0, 3, 5]], [0.1, 0.0, 0.0], rtol=1e-9)
    # sums and differences of rounded values: equal values may differ in their last bits
    rng = np.random.RandomState(1)
    a, b = np.round(rng.uniform(0, 10, (2, 500)), 1)
    assert_allclose(skbgp._sklearn_kernels.recording_step(
        np.column_stack([a + b, a - b, 3.7 * a]), np.ones((500, 3), dtype=bool)),
        [0.1, 0.1, 0.37], rtol=1e-9)
    # float64's extremes: no warning, no grid beyond its range
    Y = np.array([[-1.5e308, 0.0], [1.5e308, 1e160], [0.0, 2e160], [1.0, 3e160]])
    assert_allclose(skbgp._sklearn_kernels.recording_step(Y, np.ones((4, 2), dtype=bool)),
                    [0.0, 1e160], rtol=1e-9)


def test_noise_floor_is_the_rounding_variance_of_each_target():
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(40, 2))
    smooth = np.sin(6 * X[:, 0]) + X[:, 1]
    Y = np.column_stack([np.round(30 * smooth, 1), np.round(30 * smooth), 30 * smooth,
                         (smooth > 0.9).astype(float), np.round(smooth, 1) + 100.0])
    Y[::7, 0] = np.nan
    steps = np.array([0.1, 1.0, 0.0, 1.0, 0.1])
    for normalize_y, alpha in ((True, 1e-10), (False, 1e-10), (True, 1e-5)):
        std = np.nanstd(Y, axis=0) if normalize_y else np.ones(5)
        power = np.ones(5) if normalize_y else np.nanmean(Y**2, axis=0)
        est = BatchedGaussianProcessRegressor(normalize_y=normalize_y, alpha=alpha)
        problem = est.prepare_fit(X, Y)
        # Sheppard's correction step^2 / 12 in the units of the fit, less the known noise
        # alpha, at most 1% of the target's variance (0/1: 1/12 of 1 is a third of it; the
        # last target is far from zero, its power far above its variance), at least 1e-8
        expected = np.maximum(1e-8 * power, np.minimum(
            steps**2 / 12 / std**2 - alpha, 1e-2 * np.nanvar(Y, axis=0) / std**2))
        assert_allclose(np.exp(problem.bounds[:, -1, 0]), expected, rtol=1e-9)
        # every restart starts inside the bounds
        assert np.all(problem.starts_np[..., -1] >= problem.bounds[None, :, -1, 0] - 1e-12)
    # known noise of every sample (noise_variance, in y's units) explains the rounding first
    known = np.full(Y.shape[0], 1e-3)
    problem = BatchedGaussianProcessRegressor().prepare_fit(X, Y, noise_variance=known)
    std = np.nanstd(Y, axis=0)
    expected = np.maximum(1e-8, np.minimum((steps**2 / 12 - 1e-3) / std**2 - 1e-10,
                                           1e-2 * np.ones(5)))
    assert_allclose(np.exp(problem.bounds[:, -1, 0]), expected, rtol=1e-9)


def _replicated_rounded_spectra(seed):
    """A small smooth chemometrics-like problem on which a fit can memorise.

    130 samples of 10 smooth, strongly correlated "absorbance" features
    driven by 3 latent properties, a target recorded to 0.1 (sd about 1.7,
    noise sd 0.3), and 40 replicate scans: the same sample's features again
    with tiny measurement noise and the same recorded target. Ties between
    rounded values of near-duplicate inputs let the likelihood grow without
    bound as the noise goes to 0.
    """
    rng = np.random.RandomState(seed)
    z = rng.uniform(-1, 1, size=(130, 3))
    wave = np.linspace(0, 1, 10)
    X = (2.5 + z[:, :1] * np.exp(-((wave - 0.3) / 0.3) ** 2)
         + 0.5 * z[:, 1:2] * np.exp(-((wave - 0.7) / 0.2) ** 2) + 0.2 * z[:, 2:3] * wave)
    y = np.round(17 + 2 * z[:, 0] - 1.5 * z[:, 1] ** 2 + np.sin(3 * z[:, 2]) + 0.3 * rng.randn(130), 1)
    replicates = rng.choice(130, 40, replace=False)
    X = np.vstack([X, X[replicates] + 1e-4 * rng.randn(40, 10)])
    y = np.concatenate([y, y[replicates]])
    order = rng.permutation(170)
    return X[order], y[order]


@pytest.mark.parametrize("seed", [0, 1])
def test_rounded_replicated_targets_are_not_memorised(seed):
    """Before the noise floor, the default put the noise at 1e-8 on 5 of seeds 0-5, losing up to 0.16 in R^2."""
    X, y = _replicated_rounded_spectra(seed)
    train, test = slice(0, 120), slice(120, None)
    ours = _fit(X[train], y[train])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = GaussianProcessRegressor(ConstantKernel() * RBF(np.ones(10)) + WhiteKernel(),
                                          normalize_y=True, n_restarts_optimizer=3,
                                          random_state=0).fit(X[train], y[train])
    # the fitted noise (in units of the target's variance) is scikit-learn's, far above the floor
    ours_noise = np.exp(ours.theta_[0, -1])
    assert ours_noise > 1e-2, ours_noise
    assert_allclose(ours_noise, theirs.kernel_.k2.noise_level, rtol=0.1)
    r2_ours = r2_score(y[test], ours.predict(X[test]))
    r2_theirs = r2_score(y[test], theirs.predict(X[test]))
    assert r2_ours >= r2_theirs - 0.01, (r2_ours, r2_theirs)


_REAL = {"linnerud": 3, "diabetes": 7, "macro": 8, "elnino": 12}
# Targets whose default fit ends in another local optimum than scikit-learn's
# GPR (4 starts) or BoTorch (1 start) finds, with the gaps measured when this
# list was written; strict: the test fails once a target stops missing.
_KNOWN_MISSES = {
    ("diabetes", 4): "s5: -0.97 nats against BoTorch's optimum",
    ("diabetes", 5): "s6: -0.77 nats against scikit-learn's optimum",
    ("macro", 0): "realgdp: -0.29 nats (length scale 3.3 against sklearn's 2.8 years)",
    ("macro", 1): "realcons: -1.47 nats (length scale 3.5 against sklearn's 2.5 years)",
}
_real_cases = {}


def _real_case(name):
    """A real problem's training data and its anchors' fits, once per problem.

    ``X, Y``; ``sklearn_theta`` and ``sklearn_lml``: scikit-learn's GPR per
    target as the quality benchmark runs it (``bench_quality.sklearn_kernel``,
    ``normalize_y=True``, 3 restarts); ``botorch_theta`` when BoTorch is
    installed (``bench_quality.fit_botorch``).
    """
    if name not in _real_cases:
        try:
            problem = benchmark_module("real_data").load(name)
        except ImportError as exc:
            pytest.skip(f"{name} needs {exc.name}")
        X, Y = problem.X_train, problem.Y_train
        if name == "diabetes":
            X, Y = X[:150], Y[:150]  # scikit-learn's fits of all 300 rows take a minute
        bench = benchmark_module("bench_quality")
        fits = []
        for t in range(Y.shape[1]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits.append(GaussianProcessRegressor(
                    bench.sklearn_kernel(X.shape[1]), normalize_y=True, n_restarts_optimizer=3,
                    random_state=0).fit(X, Y[:, t]))
        case = dict(X=X, Y=Y, sklearn_kernel=bench.sklearn_kernel(X.shape[1]),
                    sklearn_theta=np.array([f.kernel_.theta for f in fits]),
                    sklearn_lml=np.array([f.log_marginal_likelihood_value_ for f in fits]))
        if bench.HAVE_BOTORCH:
            case["botorch_theta"] = bench.fit_botorch(X, Y, X[:1])[3]
        case["default"] = _fit(X, Y)
        _real_cases[name] = case
    return _real_cases[name]


def _every_real_target(known_misses):
    """pytest params (problem, target) of every real target, known misses as strict xfails."""
    return [pytest.param(name, t, id=f"{name}-{t}", marks=(
                [pytest.mark.xfail(strict=True, reason=known_misses[name, t])]
                if (name, t) in known_misses else []))
            for name, m in _REAL.items() for t in range(m)]


@pytest.mark.parametrize("name,target", _every_real_target(_KNOWN_MISSES))
@pytest.mark.slow
def test_real_data_optimum_is_at_least_the_objective_at_the_anchors_hyperparameters(name, target):
    case = _real_case(name)
    ours = case["default"]
    for anchor in ("sklearn_theta", "botorch_theta"):
        if anchor not in case:
            continue
        theta = case[anchor]
        at_anchor = ours.log_marginal_likelihood(theta) + ours.log_prior(theta)
        gap = _objective(ours)[target] - at_anchor[target]
        assert gap >= -0.1, (anchor, gap)


# From the same starts, skbgp's L-BFGS and scipy's L-BFGS-B take other paths and
# can end in other local optima (the gaps measured when this list was written).
_KNOWN_SKLEARN_KERNEL_MISSES = {
    ("diabetes", 6): "progression (150 rows): -1.30 nats",
    ("macro", 1): "realcons: -1.67 nats",
}


@pytest.mark.parametrize("name,target", _every_real_target(_KNOWN_SKLEARN_KERNEL_MISSES))
@pytest.mark.slow
def test_real_data_sklearn_kernel_optimum_is_at_least_sklearns(name, target):
    """scikit-learn's kernel, normalize_y=True and 3 restarts in both: the same starts, each run to convergence."""
    case = _real_case(name)
    if "sklearn_kernel_lml" not in case:
        ours = _fit(case["X"], case["Y"], kernel=case["sklearn_kernel"], normalize_y=True,
                    n_restarts_optimizer=3)
        case["sklearn_kernel_lml"] = ours.log_marginal_likelihood_value_
    ours, theirs = case["sklearn_kernel_lml"], case["sklearn_lml"]
    assert ours[target] >= theirs[target] - 0.1, ours[target] - theirs[target]
