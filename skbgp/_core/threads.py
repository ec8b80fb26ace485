"""A fit's arithmetic on skbgp's own threads, each one single-threaded.

Torch's CPU linear algebra on a batch of small matrices calls LAPACK once per
member, and with several intra-op threads each call splits one small matrix
over all of them, which scales poorly. Members are independent, so the better
split is by member: :func:`on_member_threads` runs a computation on a driver
thread of skbgp's own, and :func:`run_blocks` spreads its blocks of members
over a pool of worker threads (as many as torch has intra-op threads; torch
releases the GIL in its operations).

Every one of those threads is made single-threaded through *thread-local*
settings of the OpenMP runtime and of MKL that torch's CPU library uses
(``omp_set_num_threads`` and ``MKL_Set_Num_Threads_Local`` act on the calling
thread only). Torch's process-wide settings are never touched: calling
``torch.set_num_threads`` after torch has run, even to restore a value, breaks
its batched LU in some builds (pytorch/pytorch#141358: ``torch.linalg.solve``
then fails with "Pivots given to lu_solve must all be greater or equal to
1"), and the caller's thread keeps its own settings.

Single-threaded arithmetic also makes every member's numbers independent of
its batch: a reduction or a matrix product split over several threads adds in
an order that depends on the shapes, so the same member in a batch of 1 and of
100 would differ by rounding, which an optimiser amplifies. Here a member is
computed by the same single-threaded kernels whatever its batch, chunk or
worker (a loky or Dask worker runs torch single-threaded too).

Where the thread-local settings cannot be found (a torch build without
OpenMP, a platform whose runtime is not located), nothing runs on extra
threads: :func:`on_member_threads` calls the function in the caller's thread
with torch's own threading, and a target's result may then differ by rounding
with its batch.
"""

import ctypes
import glob
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["on_member_threads", "run_blocks", "map_blocks", "block_workers", "split_blocks",
           "available", "pool_threads", "check_cancelled"]

_local = threading.local()
_lock = threading.Lock()
_pool = None  # (ThreadPoolExecutor, number of workers), made on first use
_controls = None  # (omp_set_num_threads, MKL_Set_Num_Threads_Local or None), or () if unusable


class _Cancelled(Exception):
    """Raised on the driver thread when its caller was interrupted."""


def _runtime_paths():
    """Shared libraries that may hold torch's OpenMP runtime and MKL, most likely first."""
    lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    names = ["libgomp*.so*", "libiomp5*.so*", "libomp*.so*", "libomp*.dylib", "libiomp5*.dylib"]
    found = [p for pattern in names for p in sorted(glob.glob(os.path.join(lib, pattern)))]
    try:  # what this process has loaded (Linux), e.g. a system libgomp
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if line.strip() else ""
                base = os.path.basename(path)
                if base.startswith(("libgomp", "libiomp5", "libomp")) and path not in found:
                    found.append(path)
    except OSError:
        pass
    return found


def _find_controls():
    omp = None
    for path in _runtime_paths():
        try:
            omp = ctypes.CDLL(path).omp_set_num_threads
            break
        except (OSError, AttributeError):
            continue
    if omp is None:
        return ()
    omp.argtypes, omp.restype = [ctypes.c_int], None
    mkl = None
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        path = os.path.join(os.path.dirname(torch.__file__), "lib", name)
        try:
            # the C interface (by value); the Fortran one, mkl_set_num_threads_local, takes a pointer
            mkl = ctypes.CDLL(path).MKL_Set_Num_Threads_Local
            mkl.argtypes, mkl.restype = [ctypes.c_int], ctypes.c_int
            break
        except (OSError, AttributeError):
            continue
    return (omp, mkl)


def _make_single_threaded(controls=None):
    """Make the calling (skbgp-owned) thread's torch and LAPACK single-threaded."""
    omp, mkl = controls or _controls
    torch.get_num_threads()  # torch's per-thread start-up first, which would set its own count
    omp(1)
    if mkl is not None:
        mkl(1)
    _local.single = True


def available():
    """bool: whether threads can be made single-threaded on their own (found and checked)."""
    global _controls
    if _controls is None:
        with _lock:
            if _controls is None:
                controls = _find_controls()
                if controls:  # checked on a thread of its own, which then ends
                    ok = []
                    checker = threading.Thread(target=lambda: (
                        _make_single_threaded(controls), ok.append(torch.get_num_threads() == 1)))
                    checker.start()
                    checker.join()
                    controls = controls if ok == [True] else ()
                _controls = controls
    return bool(_controls)


def _reset_after_fork():
    global _pool
    _pool = None  # a forked child has none of the parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _workers(n):
    """The shared pool of ``n`` single-threaded worker threads (made anew if ``n`` changed)."""
    global _pool
    with _lock:
        if _pool is None or _pool[1] != n:
            old = _pool
            _pool = (ThreadPoolExecutor(n, thread_name_prefix="skbgp-member",
                                        initializer=_make_single_threaded), n)
            if old is not None:
                old[0].shutdown(wait=False)
        return _pool[0]


def on_member_threads(device, fn):
    """``fn()``, its arithmetic single-threaded on skbgp's threads, its blocks on a pool.

    On a CPU device, when torch has several intra-op threads and their
    thread-local settings are :func:`available`, ``fn`` runs on a new driver
    thread made single-threaded, and :func:`run_blocks` inside it spreads
    blocks over a shared pool of as many single-threaded worker threads as
    torch has intra-op threads. The caller's thread and torch's process-wide
    settings are left as they are. If the caller is interrupted (an exception
    such as KeyboardInterrupt while it waits), the driver stops at its next
    block. Otherwise, and when called from one of these threads, ``fn()`` is
    simply called.

    Parameters
    ----------
    device : torch.device or str
    fn : callable
        Without arguments.

    Returns
    -------
    The value of ``fn()``; its exceptions propagate.
    """
    n = pool_threads(device)
    if n == 1 or getattr(_local, "single", False):
        return fn()
    pool = _workers(n)
    cancel = threading.Event()
    box = {}

    def drive():
        _make_single_threaded()
        _local.pool, _local.workers, _local.cancel = pool, n, cancel
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc

    driver = threading.Thread(target=drive, name="skbgp-driver", daemon=True)
    driver.start()
    try:
        while driver.is_alive():  # short waits: an interrupt is seen within 50 ms
            driver.join(0.05)
    except BaseException:
        cancel.set()
        driver.join()
        raise
    if "error" in box:
        raise box.pop("error")
    return box["value"]


def pool_threads(device):
    """int: how many blocks of members :func:`on_member_threads` runs at once on ``device``.

    Torch's intra-op thread count on a CPU whose thread-local settings are
    :func:`available`; 1 on a GPU, with a single thread, or where the blocks
    run in turn.
    """
    n = torch.get_num_threads()
    if torch.device(device).type != "cpu" or n < 2 or not available():
        return 1
    return n


def block_workers():
    """int: threads that :func:`run_blocks` spreads blocks over (1 outside a driver thread)."""
    return getattr(_local, "workers", 1) if getattr(_local, "pool", None) else 1


def run_blocks(fn, blocks):
    """Call ``fn(block)`` for every block, on the worker threads inside :func:`on_member_threads`.

    ``fn`` must write disjoint outputs; its exceptions propagate. Outside a
    driver thread (and on a worker thread) the blocks are called in turn.
    Inside, even a single block goes to a worker, so that every member's
    arithmetic is that of a single-threaded worker.

    Parameters
    ----------
    fn : callable
    blocks : list
        The items ``fn`` takes: slices of members, or any other pieces of work.
    """
    pool = getattr(_local, "pool", None)
    if pool is None:
        for blk in blocks:
            fn(blk)
        return
    if _local.cancel.is_set():
        raise _Cancelled("interrupted")
    for _ in pool.map(fn, blocks):
        pass


def map_blocks(fn, items):
    """``[fn(item) for item in items]``, on the worker threads inside :func:`on_member_threads`.

    As :func:`run_blocks`, but ``fn`` returns its piece of work's result: the
    results come back in the order of ``items``, so that sums of them are
    the same whichever thread computed which.
    """
    pool = getattr(_local, "pool", None)
    if pool is None:
        return [fn(item) for item in items]
    if _local.cancel.is_set():
        raise _Cancelled("interrupted")
    return list(pool.map(fn, items))


def check_cancelled():
    """Stop a driver thread of :func:`on_member_threads` whose caller was interrupted.

    For computations without blocks (the suggester's optimiser), called
    between their steps; :func:`run_blocks` and :func:`map_blocks` check the
    same on their own. Elsewhere it does nothing.
    """
    cancel = getattr(_local, "cancel", None)
    if cancel is not None and cancel.is_set():
        raise _Cancelled("interrupted")


def split_blocks(b, size):
    """Slices that cut ``b`` members into blocks of at most ``size``.

    Inside :func:`on_member_threads` the number of blocks is a multiple of the
    pool's threads (when ``b`` allows) and the blocks are of equal size, so the
    threads get equal work.

    Parameters
    ----------
    b, size : int

    Returns
    -------
    list of slice
    """
    size = max(1, min(size, b))
    n_blocks = math.ceil(b / size) if b else 0
    workers = block_workers()
    if workers > 1 and b:
        n_blocks = min(b, workers * math.ceil(n_blocks / workers))
        size = math.ceil(b / n_blocks)
    return [slice(i, min(i + size, b)) for i in range(0, b, size)]
