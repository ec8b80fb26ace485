"""Member blocks on CPU threads, each with single-threaded torch operations.

Torch's CPU linear algebra on a batch of small matrices (a Cholesky factor, a
triangular solve, ``potri``) calls LAPACK once per member, and with several
intra-op threads each call splits one small matrix over all of them, which
scales poorly. Members are independent, so the better split is by member:
inside :func:`member_threads`, torch runs single-threaded and the blocks of
members of one batched evaluation run on as many Python threads as torch had
intra-op threads (torch releases the GIL in its operations). Measured on the
project's 2-core machine, one likelihood-and-gradient evaluation of a batch of
ARD-RBF members: n = 200, 555 us per member with 2 intra-op threads against
about 290 us with 2 single-threaded member threads.

Every member is then computed by single-threaded kernels whatever its batch,
chunk or worker, which also makes its arithmetic the same in one process, in a
loky worker (single-threaded there) and on a Dask worker.
"""

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

__all__ = ["member_threads", "run_blocks", "block_workers", "split_blocks"]

_local = threading.local()
_lock = threading.Lock()
_users = 0
_saved_threads = 1


@contextmanager
def member_threads(device):
    """Run the member blocks of the enclosed evaluations on CPU threads.

    On a CPU device with more than one torch intra-op thread, sets torch's
    intra-op threads to 1 and opens a pool of as many threads for
    :func:`run_blocks`; the thread count is restored when the last enclosing
    block (of any thread) exits. Does nothing on other devices, when torch
    runs single-threaded, or when already inside.

    Parameters
    ----------
    device : torch.device or str
    """
    global _users, _saved_threads

    workers = torch.get_num_threads()
    if torch.device(device).type != "cpu" or workers < 2 or getattr(_local, "pool", None):
        yield
        return
    with _lock:
        if _users == 0:
            _saved_threads = workers
            torch.set_num_threads(1)
        _users += 1
    pool = ThreadPoolExecutor(workers, thread_name_prefix="skbgp-members")
    _local.pool, _local.workers = pool, workers
    try:
        yield
    finally:
        _local.pool, _local.workers = None, 1
        pool.shutdown()
        with _lock:
            _users -= 1
            if _users == 0:
                torch.set_num_threads(_saved_threads)


def block_workers():
    """int: threads that :func:`run_blocks` spreads blocks over (1 outside)."""
    return getattr(_local, "workers", 1) if getattr(_local, "pool", None) else 1


def run_blocks(fn, blocks):
    """Call ``fn(block)`` for every block, on the pool inside :func:`member_threads`.

    ``fn`` must write disjoint outputs; its exceptions propagate. On a pool
    thread, :func:`run_blocks` and :func:`block_workers` act as outside
    :func:`member_threads` (no nested pool).

    Parameters
    ----------
    fn : callable
    blocks : list
        The items ``fn`` takes: slices of members, or any other pieces of work.
    """
    pool = getattr(_local, "pool", None)
    if pool is None or len(blocks) < 2:
        for blk in blocks:
            fn(blk)
        return
    for _ in pool.map(fn, blocks):
        pass


def split_blocks(b, size):
    """Slices that cut ``b`` members into blocks of at most ``size``.

    Inside :func:`member_threads` the number of blocks is a multiple of the
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
