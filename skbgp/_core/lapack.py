"""Cholesky factors and inverses in place, on CPU tensors, without copies.

``torch.linalg.cholesky_ex`` copies its input and zeroes the other triangle
of the factor, and ``torch.cholesky_inverse`` copies the factor and mirrors
its result: for the matrices of a batched fit, passes of a size comparable to
LAPACK's own work (doc/design.rst, "The gradient"). LAPACK's ``potrf`` and
``potri`` work in place and touch one triangle only, so one buffer can hold
the factor, then the inverse, above its diagonal while below its diagonal it
keeps the covariance matrix that the gradient needs
(:func:`skbgp._core.stationary.neg_log_marginal_likelihood`).

The routines are those of the LAPACK that torch's CPU library is linked with
(MKL in the Linux x86-64 wheels), called through :mod:`ctypes`, which releases
the GIL during each call, so member threads (:mod:`.threads`) factorise in
parallel. They are found and checked against torch's own functions on first
use; where they cannot be found or the check fails, :func:`usable` is False
and callers use torch's functions. Integer arguments are passed as 64-bit
integers, which a 32-bit (LP64) LAPACK reads correctly on a little-endian
machine and a 64-bit (ILP64) one reads as they are.
"""

import ctypes
import os
import sys

import torch

__all__ = ["usable", "potrf_upper_", "potri_upper_"]

# Switched off by the tests to cover the path through torch's functions.
ENABLED = True

_NAMES = {torch.float64: ("dpotrf_", "dpotri_"), torch.float32: ("spotrf_", "spotri_")}
_routines = None  # dtype -> (potrf, potri), filled on first use ({} if unusable)


def _library_paths():
    lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    return [os.path.join(lib, name) for name in ("libtorch_cpu.so", "libtorch_cpu.dylib")]


def _load():
    found = {}
    if sys.byteorder != "little":
        return found
    for path in _library_paths():
        if not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path)
            for dtype, names in _NAMES.items():
                fns = tuple(getattr(lib, name) for name in names)
                for fn in fns:
                    fn.restype = None
                    # uplo, n, a, lda, info, and the length of uplo that
                    # gfortran-built LAPACKs take as a hidden last argument
                    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
                found[dtype] = fns
        except (OSError, AttributeError):
            found = {}
            continue
        break
    return {dtype: fns for dtype, fns in found.items() if _self_test(fns, dtype)}


def _self_test(fns, dtype):
    """Whether the routines give torch's factor and inverse of a small matrix."""
    A = torch.tensor([[4.0, 2.0, 0.6], [2.0, 5.0, 1.0], [0.6, 1.0, 3.0]], dtype=dtype,
                     device="cpu")
    # below the diagonal: other numbers, which must survive
    lower = torch.tensor([[0.0, 0.0, 0.0], [7.0, 0.0, 0.0], [-8.0, 9.0, 0.0]], dtype=dtype,
                         device="cpu")
    B = (A.triu() + lower).unsqueeze(0)
    try:
        info = _call(fns[0], B)
        U = B.triu()
        ok = int(info[0]) == 0 and torch.allclose(U[0], torch.linalg.cholesky(A, upper=True))
        ok = ok and torch.equal(B[0].tril(-1), lower)
        _call(fns[1], B)
        inv = B.triu()[0]
        ok = ok and torch.allclose(inv + inv.triu(1).mT, torch.cholesky_inverse(torch.linalg.cholesky(A)),
                                   rtol=1e-4)
        return bool(ok) and torch.equal(B[0].tril(-1), lower)
    except Exception:  # pragma: no cover - an unusable library
        return False


def _call(fn, B):
    """Apply ``fn`` (``potrf`` or ``potri``) to every matrix of ``B``; the infos."""
    b, n = B.shape[0], B.shape[-1]
    size, info = ctypes.c_int64(n), ctypes.c_int64(0)
    psize, pinfo = ctypes.byref(size), ctypes.byref(info)
    base, step = B.data_ptr(), n * n * B.element_size()
    infos = [0] * b
    for i in range(b):
        info.value = 0
        # the row-major upper triangle is LAPACK's column-major lower one
        fn(b"L", psize, base + i * step, psize, pinfo, 1)
        infos[i] = info.value
    return torch.tensor(infos, dtype=torch.int64, device=B.device)


def usable(device, dtype):
    """Whether :func:`potrf_upper_` and :func:`potri_upper_` work on such tensors.

    Parameters
    ----------
    device : torch.device
    dtype : torch.dtype

    Returns
    -------
    bool
        True on the CPU for float32 and float64 when the LAPACK routines were
        found and passed their check.
    """
    global _routines
    if not ENABLED or device.type != "cpu":
        return False
    if _routines is None:
        _routines = _load()
    return dtype in _routines


def potrf_upper_(B):
    """Cholesky factors above the diagonal of every matrix, in place.

    Only the entries on and above the diagonal are read and written: on
    return they hold ``U`` with ``U^T U = K``, where ``K`` is the symmetric
    matrix that they held; the entries below the diagonal are unchanged.

    Parameters
    ----------
    B : Tensor of shape (b, n, n)
        Contiguous, on a device and of a dtype for which :func:`usable` is True.

    Returns
    -------
    Tensor of shape (b,), int64
        LAPACK's ``info``: 0 where the factorisation succeeded, ``j > 0`` where
        the leading minor of order ``j`` is not positive definite.
    """
    return _call(_routines[B.dtype][0], B)


def potri_upper_(B):
    """Inverses from the factors of :func:`potrf_upper_`, in place.

    Replaces ``U`` on and above the diagonal by the same triangle of
    ``(U^T U)^-1``; the entries below the diagonal are unchanged.

    Parameters
    ----------
    B : Tensor of shape (b, n, n)
        Holding nonsingular factors above the diagonal.
    """
    _call(_routines[B.dtype][1], B)
