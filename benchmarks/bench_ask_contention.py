"""Time ``QBatchSuggester.ask()`` on a quiet machine and beside two busy processes.

One suggestion on Branin (``[-5, 10] x [0, 15]``, 10 evaluated points of a
scrambled Sobol design, the default GP, ``qLogNEI``, ``q = 1`` and the
default ``num_restarts=10``, ``raw_samples=512``, ``mc_samples=128``), timed
in two placements of its numeric work:

* ``skbgp thread``: as :meth:`~skbgp.QBatchSuggester.ask` runs it, on a
  single-threaded thread of skbgp's own (``skbgp._core.threads``), the
  caller's torch threads untouched;
* ``caller thread``: the same work on the calling thread with torch's
  default intra-op threads (how ``ask`` ran before issue 23), for contrast.

Each placement is timed quiet and with two busy processes beside it (each
spinning a Python loop on one core), the four conditions interleaved within
every repeat so that a change of the machine's load hits all of them alike;
the table shows the best and the median of the repeats, and the ratio of the
best busy time to the best quiet one. The fit before each ``ask`` is not
timed. The target (issue 23): ``skbgp thread`` busy within 3x of quiet.

Run from the repository root: ``python benchmarks/bench_ask_contention.py``
(about a minute on two idle cores; ``--repeats`` to change the 5 repeats).
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from scipy.stats import qmc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import skbgp._suggest  # noqa: E402
from skbgp import QBatchSuggester  # noqa: E402

BOUNDS = np.array([(-5.0, 10.0), (0.0, 15.0)])
N_BUSY = 2


def branin(X):
    x1, x2 = X[:, 0], X[:, 1]
    return ((x2 - 5.1 / (4 * np.pi**2) * x1**2 + 5 / np.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * np.pi)) * np.cos(x1) + 10)


def spin(stop):
    """A busy process: one core's worth of Python until ``stop`` is set."""
    while not stop.is_set():
        for _ in range(100_000):
            pass


def on_caller_thread(device, fn):
    """The placement before issue 23: the work on the caller's thread, torch's threads."""
    return fn()


def time_ask(placement, repeat):
    """Seconds of one ``ask()`` after a fit (not timed) of 10 Branin points."""
    X = qmc.scale(qmc.Sobol(2, seed=repeat).random_base2(4)[:10], BOUNDS[:, 0], BOUNDS[:, 1])
    opt = QBatchSuggester(bounds=BOUNDS, random_state=repeat).fit(X, branin(X))
    runner = skbgp._suggest.on_member_threads
    if placement == "caller thread":
        skbgp._suggest.on_member_threads = on_caller_thread
    try:
        start = time.perf_counter()
        opt.ask()
        return time.perf_counter() - start
    finally:
        skbgp._suggest.on_member_threads = runner


def busy(placement, repeat, context):
    """``time_ask`` with ``N_BUSY`` spinning processes beside it."""
    stop = context.Event()
    workers = [context.Process(target=spin, args=(stop,), daemon=True) for _ in range(N_BUSY)]
    for w in workers:
        w.start()
    time.sleep(0.5)  # the spinners are running
    try:
        return time_ask(placement, repeat)
    finally:
        stop.set()
        for w in workers:
            w.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    context = multiprocessing.get_context("fork")  # the spinners use no torch
    placements = ("skbgp thread", "caller thread")
    times = {(p, c): [] for p in placements for c in ("quiet", "busy")}
    time_ask("skbgp thread", 0)  # imports and first-use set-up, not timed
    for repeat in range(args.repeats):
        for p in placements:
            times[p, "quiet"].append(time_ask(p, repeat))
            times[p, "busy"].append(busy(p, repeat, context))
    print(f"cores: {os.cpu_count()}, torch intra-op threads: {torch.get_num_threads()}, "
          f"busy processes: {N_BUSY}, repeats: {args.repeats}")
    print(f"{'placement':<15}{'quiet best':>12}{'quiet median':>14}{'busy best':>12}"
          f"{'busy median':>13}{'busy/quiet':>12}")
    for p in placements:
        quiet, loaded = times[p, "quiet"], times[p, "busy"]
        print(f"{p:<15}{min(quiet):>11.3f}s{statistics.median(quiet):>13.3f}s"
              f"{min(loaded):>11.3f}s{statistics.median(loaded):>12.3f}s"
              f"{min(loaded) / min(quiet):>11.2f}x")


if __name__ == "__main__":
    main()
