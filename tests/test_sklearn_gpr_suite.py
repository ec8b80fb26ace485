"""scikit-learn's own GPR test suite, run on BatchedGaussianProcessRegressor.

The installed scikit-learn's ``gaussian_process/tests/test_gpr.py`` is copied
at test time (never vendored) with its one import of
``GaussianProcessRegressor`` replaced by skbgp's estimator, and run in a
subprocess. Every test must pass except those listed in
``DELIBERATE_DIFFERENCES`` (which must fail) and ``WITHIN_TOLERANCE`` (random
restarts: which may), each with the reason that ``doc/sklearn_differences.rst`` gives; a new scikit-learn release that adds,
renames or changes a test shows here as an unexpected failure or pass.
"""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sklearn

SUITE = Path(sklearn.__file__).parent / "gaussian_process" / "tests" / "test_gpr.py"
DOC = Path(__file__).resolve().parents[1] / "doc" / "sklearn_differences.rst"
IMPORT = "from sklearn.gaussian_process import GaussianProcessRegressor\n"

# test id (scikit-learn's) -> why skbgp behaves otherwise; doc/sklearn_differences.rst says the same
_CONSTANT_TARGET = "reads scikit-learn's private _y_train_mean and _y_train_std (skbgp: gps_.y_mean, gps_.y_std)"
_NO_CLONE = "log_marginal_likelihood(clone_kernel=False) changes kernel_ in scikit-learn; skbgp never changes a fitted model there"
DELIBERATE_DIFFERENCES = {
    **{f"test_constant_target[kernel{i}]": _CONSTANT_TARGET for i in range(6)},
    **{f"test_lml_without_cloning_kernel[kernel{i}]": _NO_CLONE for i in (0, 2, 3, 4, 5)},
    "test_no_optimizer[None-None]": "kernel=None is skbgp's default model (data-driven starts, "
                                    "priors, fitted), not scikit-learn's fixed 1.0 * RBF(1.0)",
    "test_y_multioutput": "a 2-D y gets one kernel per target (kernels_), not one shared kernel_",
    "test_gpr_correct_error_message": "a covariance that is not positive definite gets jitter "
                                      "with a ConvergenceWarning instead of a LinAlgError",
    "test_gpr_fit_error[params1-ValueError-requires that all bounds are finite]":
        "a bound <= 0 is an error at once (its log is not a number), before the restarts' check",
}
# tests that compare two optimised fits to 1.5e-7 (7 decimals): skbgp's default of 2 restarts
# (scikit-learn's: 0) with random_state=None starts them from fresh random points, and a
# restart that wins in one fit and not the other moves the optimum by up to 7e-7; they pass
# every time with n_restarts_optimizer=0, so either outcome is allowed here
_TOLERANCE = ("n_restarts_optimizer=2 by default (scikit-learn: 0) with random_state=None: "
              "random restarts, two optima up to 7e-7 apart where 7 decimals are asked")
WITHIN_TOLERANCE = {
    **{f"test_duplicate_input[kernel{i}]": _TOLERANCE for i in (0, 2, 3, 4, 5)},
    **{f"test_y_normalization[kernel{i}]": _TOLERANCE for i in (0, 2, 3, 4, 5)},
}


def _outcomes(xml_path):
    """Test id -> "passed", "failed", "skipped" or "xfailed" from a JUnit XML report."""
    out = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            outcome = "failed"
        elif "skipped" in kinds:
            message = case.find("skipped").get("type", "") + case.find("skipped").get("message", "")
            outcome = "xfailed" if "xfail" in message.lower() else "skipped"
        else:
            outcome = "passed"
        out[case.get("name")] = outcome
    return out


@pytest.mark.skipif(not SUITE.exists(), reason="this scikit-learn installation has no tests")
@pytest.mark.slow
def test_scikit_learns_gpr_tests_pass_except_the_documented_differences(tmp_path):
    source = SUITE.read_text()
    assert source.count(IMPORT) == 1, "scikit-learn's test_gpr.py no longer imports its GPR as before"
    suite = tmp_path / "test_gpr_on_skbgp.py"
    suite.write_text(source.replace(
        IMPORT, "from skbgp import BatchedGaussianProcessRegressor as GaussianProcessRegressor\n"))
    report = tmp_path / "report.xml"
    # this checkout's skbgp, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1])] + os.environ.get("PYTHONPATH", "").split(os.pathsep))}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider",
         "-p", "no:randomly", f"--junitxml={report}", "-o", "addopts=", "-W", "ignore"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env,
    )
    outcomes = _outcomes(report)
    assert sum(o == "passed" for o in outcomes.values()) > 100, run.stdout[-3000:]
    failed = {name for name, outcome in outcomes.items() if outcome == "failed"}
    unexpected = sorted(failed - set(DELIBERATE_DIFFERENCES) - set(WITHIN_TOLERANCE))
    now_passing = sorted(set(DELIBERATE_DIFFERENCES) - failed)
    assert not unexpected, f"scikit-learn's tests that fail on skbgp: {unexpected}\n{run.stdout[-3000:]}"
    assert not now_passing, f"listed as differences but passing (or renamed): {now_passing}"


def test_every_difference_is_on_the_docs_page():
    page = DOC.read_text()
    for name in {**DELIBERATE_DIFFERENCES, **WITHIN_TOLERANCE}:
        assert re.sub(r"\[.*", "", name) in page, name
