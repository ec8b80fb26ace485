"""Peak memory of one exact fit: measured against skbgp's estimate (the memory check's).

Every row fits one ``BatchedGaussianProcessRegressor`` in a fresh process
and prints the growth of its peak resident memory (VmHWM of ``/proc/self/status``
less the resident memory before the fit, after a small warm-up fit) beside
``skbgp._resources.peak_bytes`` of the same fit, both also in ``n x n``
matrices of float64. ``max_iter=2``: the peak does not depend on the number
of iterations. The estimate of a composite kernel is a lower bound.

Below ``n = 2048`` a matrix is smaller than glibc's largest mmap threshold
(32 MiB), so freed matrices stay in the heap and the measured peak
fluctuates with the order of frees; from there on every matrix is mapped
and returned, and the peak is that of the live matrices.

Usage::

    python benchmarks/bench_memory.py            # the table of doc/scale.rst (about 5 minutes)
    python benchmarks/bench_memory.py --quick    # two small rows, a few seconds
"""

import argparse
import json
import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# n, d, targets, kernel, optimise
ROWS = [
    (1000, 5, 1, "default", True),
    (2000, 5, 1, "default", True),
    (3000, 5, 1, "default", True),
    (2100, 1, 1, "default", True),
    (2100, 20, 1, "default", True),
    (2000, 5, 1, "default", False),
    (2100, 5, 4, "default", False),
    (2100, 5, 1, "matern", True),
    (2100, 5, 1, "rq", True),
    (2100, 5, 4, "rq", False),
]
QUICK = [(400, 3, 1, "default", True), (400, 3, 2, "rq", False)]

_CHILD = """
import json, os, sys, warnings
import numpy as np
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, RationalQuadratic, WhiteKernel
from skbgp import BatchedGaussianProcessRegressor
from skbgp._engine import Engine
from skbgp._resources import peak_bytes

n, d, m, name, optimise = json.loads(sys.argv[1])
kernel = {"default": None,
          "matern": ConstantKernel() * Matern(np.ones(d), nu=2.5) + WhiteKernel(),
          "rq": ConstantKernel() * RationalQuadratic() + WhiteKernel()}[name]
rng = np.random.default_rng(0)
X = rng.uniform(size=(n, d))
Y = np.sin(X @ rng.normal(size=(d, m))) + 0.1 * rng.normal(size=(n, m))
warnings.simplefilter("ignore")
make = lambda: BatchedGaussianProcessRegressor(kernel, max_iter=2, random_state=0,
                                               optimizer="lbfgs" if optimise else None)
make().fit(X[:50], Y[:50])
with open("/proc/self/statm") as f:
    resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
# this process's own high-water mark from here on: ru_maxrss would also count the parent's
# resident memory when it started this process (Linux keeps it across fork and exec)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
estimator = make()
problem = estimator.prepare_fit(X, Y)
work = Engine.of(estimator).workload(problem, problem.starts_np.shape[0], optimise)
estimator.finish_fit(problem)
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
print(json.dumps(dict(measured=peak - resident, estimated=peak_bytes(work),
                      exact=work.footprint().exact, threads=work.placement.threads)))
"""


def measure(row):
    env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(row)], capture_output=True,
                            text=True, env=env, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"measuring {row} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    rows = QUICK if parser.parse_args().quick else ROWS
    print(f"{'n':>5} {'d':>3} {'targets':>7} {'kernel':>8} {'fit':>9} {'threads':>7} "
          f"{'measured GB':>11} {'estimated GB':>12} {'measured':>8} {'estimated':>9}")
    for n, d, m, kernel, optimise in rows:
        r = measure([n, d, m, kernel, optimise])
        square = n * n * 8
        bound = "" if r["exact"] else ">="
        print(f"{n:>5} {d:>3} {m:>7} {kernel:>8} {'lbfgs' if optimise else 'factorise':>9} "
              f"{r['threads']:>7} {r['measured'] / 1e9:>11.3f} "
              f"{bound + format(r['estimated'] / 1e9, '.3f'):>12} {r['measured'] / square:>8.1f} "
              f"{bound + format(r['estimated'] / square, '.1f'):>9}", flush=True)


if __name__ == "__main__":
    main()
