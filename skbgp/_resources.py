"""What a fit needs: its peak memory, checked before anything is allocated, and its time.

An exact GP holds a few ``n x n`` matrices at once: the training data's
squared differences, and per member in flight its covariance and the
temporaries of its likelihood evaluation or factorisation. At ``n = 20,000``
one such matrix is 3.2 GB in float64, so a fit that does not fit must stop
before it starts, with what it needs and what to do, instead of dying in the
allocator. The fitting engine (:mod:`._engine`) describes the work of a fit,
or of the batched cross-validation's optimisation, as a :class:`Workload`;
:func:`check_memory` compares its :func:`peak_bytes` with the memory this
process can still get (:func:`available_bytes`) and raises
:class:`FitMemoryError`; :func:`announce` says when a fit will take minutes.
The counts behind :func:`peak_bytes` are each kernel's ``footprint``
(:class:`skbgp._core.gp.Footprint`); doc/scale.rst ("Memory of an exact fit")
compares them with measured peaks.
"""

import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from joblib import cpu_count, effective_n_jobs
from joblib.parallel import BACKENDS, get_active_backend

from ._core.gp import block_size
from ._core.threads import pool_threads

try:
    import resource
except ImportError:  # not on Windows: no address-space limits to read
    resource = None

__all__ = ["FitMemoryError", "SlowFitWarning", "Placement", "Workload", "MARGIN", "SLOW_SECONDS",
           "allocation_failures", "assumed_evaluations", "available_bytes", "announce",
           "check_memory", "fit_seconds", "is_out_of_memory", "out_of_memory", "peak_bytes",
           "placement"]

GB = 1e9

# A fit is refused only when its estimate exceeds the memory available by more than
# 10%: the estimate of the stationary kernel agrees with measured peaks to a few
# percent (doc/scale.rst), MemAvailable is itself an estimate, and a fit that
# would have fitted must not be refused. Within the margin an allocation that
# fails is still reported as a FitMemoryError (:func:`out_of_memory`).
MARGIN = 1.1

# Fits estimated to take longer than this say so (once per fit).
SLOW_SECONDS = 60.0
# Rough speed of a member's likelihood evaluation, in n**3 operations (a Cholesky
# factor and an inverse) per second and thread: measured at n = 1000-3000 on the
# project's 2-core machine (between 5e9 and 8e9); at n of a few hundred with many
# targets per block a fit runs up to 3 times faster than this predicts.
_RATE = 6e9
# Evaluations of one start run to convergence (assumed): with the default kernel's
# two raced restarts, 30 + 2 * 5 = 40, where benchmarks/bench_scale.py counts 37.
_CONVERGED_EVALUATIONS = 30

# The sparse estimator: memory linear in n_samples (doc/scale.rst).
_SPARSE = "SparseBatchedGaussianProcessRegressor"


class FitMemoryError(MemoryError):
    """A fit needs more memory than this machine (or its limits) can give it.

    Raised by ``fit`` and the batched cross-validation before anything large
    is allocated, when the estimated peak memory of the fit exceeds the
    memory available by more than 10%, and when an allocation fails during a
    fit despite the estimate. Its message names the estimate, the memory
    available and the remedies: the sparse estimator, a subset of the rows,
    fewer targets per chunk (``batch_size``) and ``dtype="float32"``. A
    subclass of :class:`MemoryError`, which numpy raises for an array that
    cannot be allocated.
    """


class SlowFitWarning(UserWarning):
    """A fit will take minutes (a rough estimate).

    Warned once per fit, before it starts, when ``verbose=0`` and the
    estimate exceeds a minute; with ``verbose >= 1`` the estimate is printed
    instead and the fit reports its progress. Silence it with
    ``warnings.filterwarnings("ignore", category=SlowFitWarning)``.
    """


@dataclass(frozen=True)
class Placement:
    """Where the chunks of a fit run.

    Attributes
    ----------
    processes : int
        Processes working at once (1: this process).
    threads : int
        Blocks of members each process evaluates at once.
    local : bool
        Whether the processes run on this machine (this process or joblib's
        loky, multiprocessing and threading backends, not a Dask cluster).
    """

    processes: int
    threads: int
    local: bool


def placement(n_jobs, n_tasks, device):
    """The :class:`Placement` of ``n_tasks`` chunks given to joblib with ``n_jobs``.

    Parameters
    ----------
    n_jobs : int or None
        As :class:`sklearn.utils.parallel.Parallel` takes it.
    n_tasks : int
    device : torch.device
    """
    jobs = effective_n_jobs(n_jobs)
    if jobs == 1:  # joblib runs them in turn in this process
        return Placement(1, pool_threads(device), True)
    backend, _ = get_active_backend()
    local = isinstance(backend, tuple(BACKENDS[name] for name in ("loky", "multiprocessing",
                                                                  "threading") if name in BACKENDS))
    # joblib gives each worker cpu_count() // n_jobs threads; fewer than two run blocks in turn
    threads = cpu_count() // jobs
    return Placement(min(jobs, n_tasks), threads if device.type == "cpu" and threads >= 2 else 1,
                     local)


@dataclass(frozen=True)
class Workload:
    """The work of a fit, or of the cross-validation's optimisation, as it lands on the machine.

    Attributes
    ----------
    kernel : StationaryKernel or CompositeKernel
        Its ``footprint`` and ``block_side``.
    n, d : int
        Training rows (of the largest fold) and features.
    device : torch.device
    dtype : torch.dtype
    members : int
        Members one process evaluates together (starts x targets of a chunk,
        x folds); 0 when nothing is optimised.
    factors : int
        Targets one process factorises together (a chunk); 0 for none.
    chunk : int
        Targets per chunk.
    targets : int
        Targets of the whole task (x folds in the cross-validation).
    placement : Placement
    evaluations : int
        Likelihood evaluations per target, all starts together (assumed, for
        :func:`fit_seconds`).
    kept : int
        Factors of earlier chunks kept in memory for the prediction cache.
    joined : int
        Factors concatenated at the end of the fit (all kept ones, when
        there were several chunks).
    folds : int
        Folds whose members are evaluated together (1 for a fit).
    folds_kept : bool
        Whether the folds' training data are kept for the whole optimisation
        (else every block in flight builds its fold's).
    task : str
        "fit" or "cross-validation", for the messages.
    """

    kernel: object
    n: int
    d: int
    device: torch.device
    dtype: torch.dtype
    members: int
    factors: int
    chunk: int
    targets: int
    placement: Placement
    evaluations: int = 0
    kept: int = 0
    joined: int = 0
    folds: int = 1
    folds_kept: bool = True
    task: str = "fit"

    def footprint(self):
        """The kernel's :class:`~skbgp._core.gp.Footprint` for this data."""
        return self.kernel.footprint(self.n, self.d, self.device, self.dtype)

    def matrix_bytes(self):
        """Bytes of one ``n x n`` matrix."""
        return self.n * self.n * self.dtype.itemsize


def assumed_evaluations(n_starts, max_iter, race_iter):
    """Assumed likelihood evaluations per target: its first start to convergence, the others
    for their race (``race_iter`` iterations; all of them without a race)."""
    converged = min(max_iter, _CONVERGED_EVALUATIONS)
    return converged + (n_starts - 1) * min(race_iter, converged)


def _in_flight(work, alone, per_member, members):
    """``(blocks, matrices)``: blocks of ``members`` evaluated at once by one process and the
    ``n x n`` matrices they hold (``alone`` for a block's first member, ``per_member`` for each
    further one)."""
    size = min(members, block_size(work.kernel.block_side(work.n), work.device))
    blocks = min(work.placement.threads, math.ceil(members / size))
    return blocks, blocks * (alone + (size - 1) * per_member)


def _process_matrices(work):
    """``(matrices, blocks)``: the most ``n x n`` matrices one process holds at once, and the
    blocks of members it evaluates at once."""
    fp = work.footprint()
    matrices, blocks = fp.build, 0  # building the training data
    if work.members:
        blocks, held = _in_flight(work, fp.evaluation, fp.evaluation_per_member, work.members)
        if work.folds_kept:
            # every fold's data kept, the last one built beside the others, then the blocks
            matrices = max((work.folds - 1) * fp.data + fp.build, work.folds * fp.data + held)
        else:
            # every block in flight builds its fold's data and evaluates on them
            matrices = blocks * max(fp.build, fp.data + held // blocks)
    if work.factors:
        _, held = _in_flight(work, fp.factor, fp.factor_per_member, work.factors)
        matrices = max(matrices, fp.data + work.factors + held)
    return matrices, blocks


def peak_bytes(work):
    """int: the estimated peak memory of ``work`` on its device, in bytes.

    The most ``n x n`` matrices a process holds at once (the largest of:
    building the training data; the data and the likelihood evaluations of
    the blocks in flight; the data, a chunk's factors and the factorisations
    in flight), times the processes, plus the factors kept from earlier
    chunks and the dual coefficients of every target.
    """
    square = work.matrix_bytes()
    matrices, _ = _process_matrices(work)
    working = work.placement.processes * matrices * square + work.kept * square
    # the dual coefficients of every target (float64), and their concatenation
    return max(working, 2 * work.joined * square) + 2 * work.targets * work.n * 8


def fit_seconds(work):
    """float: a rough estimate of the seconds ``work`` takes (see ``_RATE``)."""
    parallel = max(1, min(work.placement.processes * work.placement.threads, work.targets))
    per_target = work.evaluations + (1 / 3 if work.factors else 0)  # and a Cholesky factor
    return work.targets * per_target * float(work.n) ** 3 / (_RATE * parallel)


# ------------------------------------------------------------ available memory
def _read_fields(path):
    """``{name: value}`` of a file of ``name value`` or ``name: value kB`` lines (in bytes for
    kB); empty where it cannot be read."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[1].isdigit():
            fields[parts[0]] = int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
    return fields


def _read_int(path):
    """The integer a file holds; None for "max" or where it cannot be read."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo(path="/proc/meminfo"):
    """``[(bytes, source)]``: MemAvailable and SwapFree of the machine (Linux)."""
    fields = _read_fields(path)
    if "MemAvailable" not in fields:
        return []
    return [(fields["MemAvailable"] + fields.get("SwapFree", 0),
             "MemAvailable and SwapFree in /proc/meminfo")]


# cgroup v2 and v1: the limit, the usage, and memory.stat's page cache and shared memory
_CGROUP_FILES = {
    2: ("memory.max", "memory.current", "file", "shmem"),
    1: ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_cache", "total_shmem"),
}


def _cgroup_limits(root="/sys/fs/cgroup", own="/proc/self/cgroup"):
    """``[(bytes, source)]``: what every memory limit of this process's control group and of its
    parents leaves (the limit less the usage, page cache counted as free: it is reclaimed)."""
    try:
        with open(own) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[1] == "":
            version, base = 2, root
        elif "memory" in parts[1].split(","):
            version, base = 1, os.path.join(root, "memory")
        else:
            continue
        limit_file, usage_file, cache, shmem = _CGROUP_FILES[version]
        base = os.path.normpath(base)
        group = os.path.normpath(os.path.join(base, parts[2].lstrip("/")))
        while True:
            limit = _read_int(os.path.join(group, limit_file))
            usage = _read_int(os.path.join(group, usage_file))
            if limit is not None and usage is not None and limit < 2**60:  # v1: huge is none
                stat = _read_fields(os.path.join(group, "memory.stat"))
                reclaimable = max(0, stat.get(cache, 0) - stat.get(shmem, 0))
                found.append((limit - usage + reclaimable,
                              f"the memory limit of the control group {group}"))
            if group == base or not group.startswith(base):
                break
            group = os.path.dirname(group)
    return found


def _address_limits(status="/proc/self/status"):
    """``[(bytes, source)]``: what the limits RLIMIT_AS and RLIMIT_DATA leave this process."""
    if resource is None:
        return []
    found = []
    for name, used in (("RLIMIT_AS", "VmSize"), ("RLIMIT_DATA", "VmData")):
        soft, _ = resource.getrlimit(getattr(resource, name))
        if soft == resource.RLIM_INFINITY:
            continue
        fields = _read_fields(status)
        if used in fields:
            found.append((soft - fields[used],
                          f"the limit {name} of {soft / GB:.1f} GB less the "
                          f"{fields[used] / GB:.1f} GB this process maps"))
    return found


def available_bytes(device):
    """The memory this process can still get on ``device``.

    On the CPU (Linux), the least of: MemAvailable plus SwapFree of
    /proc/meminfo; what the memory limit of this process's control group
    (cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``), and of each
    of its parents, leaves; what ``RLIMIT_AS`` and ``RLIMIT_DATA`` leave. On
    a GPU, ``torch.cuda.mem_get_info``'s free memory plus what torch's
    caching allocator holds unused.

    Parameters
    ----------
    device : torch.device

    Returns
    -------
    bytes : int or None
        None where nothing is known (another platform): no check.
    source : str or None
        Where the binding number comes from, for the message.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return free, f"free memory of {device}"
    if device.type != "cpu":
        return None, None
    limits = _meminfo() + _cgroup_limits() + _address_limits()
    if not limits:
        return None, None
    return min(limits, key=lambda limit: limit[0])


# --------------------------------------------------------------------- checks
def _round_down(x):
    """``x`` rounded down to two significant digits."""
    if x < 100:
        return int(x)
    scale = 10 ** (int(math.log10(x)) - 1)
    return int(x // scale * scale)


def _remedies(work, needed, available):
    """What a :class:`FitMemoryError` says after its first sentence: the estimate's parts and the
    remedies."""
    fp = work.footprint()
    matrices, blocks = _process_matrices(work)
    pieces = [f"{fp.data} for the training data"] if fp.data else []
    more = " more" if fp.data else ""
    if blocks:
        pieces.append(f"up to {matrices - fp.data}{more} while {blocks} likelihood evaluation(s) "
                      "run at once")
    else:
        pieces.append(f"up to {matrices - fp.data}{more} while the covariances are factorised")
    parts = ", ".join(pieces)
    if work.placement.processes > 1:
        parts += f", in each of {work.placement.processes} worker processes"
    alone = peak_bytes(replace(work, members=work.members // work.chunk,
                               factors=min(work.factors, 1), chunk=1, kept=0, joined=0))
    rows = "fewer rows"
    if 0 < available < needed:
        rows = f"at most about {_round_down(work.n * math.sqrt(available / needed))} rows"
    remedies = [f"use the sparse estimator {_SPARSE} (memory linear in n_samples)",
                f"fit a random subset of {rows}"]
    helps = work.chunk > 1 and alone < needed / MARGIN
    if helps:
        remedies.append(f"fit fewer targets per chunk (batch_size=1 needs {alone / GB:.1f} GB)")
    if work.placement.processes > 1:
        remedies.append("fit in one process (n_jobs=1)")
    remedies.append("compute in dtype='float32' (half the memory, less accurate)")
    text = (
        f"With n_samples={work.n} rows an exact Gaussian process holds n_samples x n_samples "
        f"matrices of {work.matrix_bytes() / GB:.2f} GB each "
        f"({str(work.dtype).replace('torch.', '')}): {parts}. Memory grows as n_samples**2: "
        f"{', '.join(remedies[:-1])} or {remedies[-1]}."
    )
    if not helps:
        text += (f" Fewer targets per chunk (batch_size) would not help: one target alone "
                 f"needs {alone / GB:.1f} GB.")
    return text


def _estimate(work, needed, available, source):
    """The first sentence of a :class:`FitMemoryError`: the estimate and the memory available."""
    at_least = "" if work.footprint().exact else "at least "
    return (f"This {work.task} needs {at_least}about {needed / GB:.1f} GB of memory at its peak; "
            f"{available / GB:.1f} GB are available ({source}).")


def check_memory(work):
    """Raise :class:`FitMemoryError` when ``work`` clearly needs more memory than is available.

    Called before a fit allocates anything. Refuses only when the estimate
    (:func:`peak_bytes`) exceeds the memory available (:func:`available_bytes`)
    by more than ``MARGIN``; does nothing for chunks that run on another
    machine, or where the memory available is not known.

    Parameters
    ----------
    work : Workload

    Raises
    ------
    FitMemoryError
    """
    if not work.placement.local:
        return
    needed = peak_bytes(work)
    available, source = available_bytes(work.device)
    if available is not None and needed > MARGIN * available:
        raise FitMemoryError(f"{_estimate(work, needed, available, source)} "
                             f"{_remedies(work, needed, available)} Nothing was allocated.")


def is_out_of_memory(exc):
    """bool: whether ``exc`` is torch's report of an allocation that failed (CPU or GPU)."""
    return (isinstance(exc, torch.OutOfMemoryError)
            or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)))


def out_of_memory(work, exc):
    """The :class:`FitMemoryError` to raise, from ``exc``, for an allocation that failed in
    ``work``."""
    needed = peak_bytes(work)
    available, source = available_bytes(work.device)
    if available is None:
        available, source = 0, "not known here"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return FitMemoryError(f"An allocation failed during this {work.task} ({first}). "
                          f"{_estimate(work, needed, available, source)} "
                          f"{_remedies(work, needed, available)}")


@contextmanager
def allocation_failures(work):
    """Raise an allocation that fails inside the block as :func:`out_of_memory`'s error."""
    try:
        yield
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        raise out_of_memory(work, exc) from exc


def announce(work, verbose):
    """Say, once, that ``work`` will take minutes; return its estimated seconds.

    Over ``SLOW_SECONDS`` (a rough estimate, :func:`fit_seconds`): a
    :class:`SlowFitWarning` when ``verbose`` is 0, a printed line otherwise.

    Parameters
    ----------
    work : Workload
    verbose : int
    """
    seconds = fit_seconds(work)
    if seconds < SLOW_SECONDS:
        return seconds
    folds = f"{work.folds} folds x " if work.folds > 1 else ""
    text = (
        f"This {work.task} will take roughly {seconds / 60:.0f} minute(s): {folds}"
        f"{work.targets // work.folds} target(s) on n_samples={work.n} rows, about "
        f"{work.evaluations} likelihood evaluations per target of about n_samples**3 = "
        f"{float(work.n) ** 3:.1e} operations each (a rough estimate; time grows as "
        "n_samples**3)."
    )
    if verbose:
        print(f"[skbgp] {text}", flush=True)
    else:
        warnings.warn(
            f"{text} Pass verbose=1 to see its progress; a subset of the rows or the sparse "
            f"estimator {_SPARSE} is much faster.", SlowFitWarning)
    return seconds
