"""Conversions between numpy and torch, and parameter checks.

This is the one module of skbgp that touches both numpy-facing code and
torch; the estimators call it, the core never does.
"""

import numbers
import os
import sys
import warnings

import numpy as np
import torch
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.validation import _check_sample_weight, _num_samples

__all__ = [
    "external_stacklevel",
    "resolve_device",
    "resolve_dtype",
    "compute_device",
    "to_tensor",
    "to_numpy",
    "torch_generator",
    "safe_indexing",
    "num_samples",
    "check_sample_weight",
    "column_sums",
    "log_mean_square",
    "reject_grad_tensors",
    "check_numeric_y",
]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def reject_grad_tensors(**arrays):
    """Raise a TypeError for a torch tensor that requires grad (it cannot become a numpy array)."""
    for name, a in arrays.items():
        if isinstance(a, torch.Tensor) and a.requires_grad:
            raise TypeError(
                f"{name} is a torch tensor that requires grad; pass {name}.detach() (skbgp "
                "fits and predicts from values and does not differentiate through its inputs)."
            )


def check_numeric_y(y):
    """Raise a ValueError naming the column of ``y`` that holds a string that is not a number.

    Called when scikit-learn's validation of ``y`` failed, so that its
    message (``could not convert string to float: 'a'``) says that it is
    ``y`` and which column; returns when no such string is found.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
    """
    values = np.asarray(y, dtype=object)
    if values.ndim not in (1, 2) or values.size == 0:
        return
    names = list(getattr(y, "columns", []))
    columns = values.reshape(values.shape[0], -1)
    for j in range(columns.shape[1]):
        for value in columns[:, j]:
            if not isinstance(value, (str, bytes)):
                continue
            try:
                float(value)
            except ValueError:
                where = "" if values.ndim == 1 else (
                    f" column {j}" + (f" ({names[j]!r})" if len(names) == columns.shape[1] else ""))
                raise ValueError(
                    f"y{where} holds a value that is not a number: {value!r}. y must hold "
                    "numbers (NaN marks a missing value); encode or drop that column."
                ) from None


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def external_stacklevel():
    """The ``stacklevel`` that makes a warning point at the first caller outside skbgp.

    For ``warnings.warn(..., stacklevel=external_stacklevel())`` in the
    function that calls this one: the user's ``fit`` line, however deep in
    skbgp the warning is raised (a fixed stacklevel names a line of skbgp's
    own when the call path changes).
    """
    frame = sys._getframe(1)  # the function that warns
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level


def column_sums(A):
    """ndarray of shape (n_columns,): the sum of every column of ``A`` (n_rows, n_columns).

    Each column is summed as a contiguous row of ``A.T``, so its rounding does
    not depend on the other columns: numpy sums along axis 0 of a matrix row
    after row, but a single column pairwise, and a target fitted alone would
    get other statistics than among others.
    """
    return np.ascontiguousarray(np.asarray(A).T).sum(axis=1)


def log_mean_square(Y, n_obs):
    """ndarray of shape (n_columns,): the log of every column's mean square, without overflow.

    Computed in units of each column's largest magnitude, so that targets near
    float64's limits (1e160, 1e-160) keep a finite value; ``-inf`` for a
    column of zeros.

    Parameters
    ----------
    Y : ndarray of shape (n_rows, n_columns)
        Zeros where a value is missing.
    n_obs : ndarray of shape (n_columns,)
        Observed values of every column (at least 1).
    """
    peak = np.abs(Y).max(axis=0)
    scaled = Y / np.where(peak > 0, peak, 1.0)
    with np.errstate(divide="ignore"):
        return 2.0 * np.log(peak) + np.log(column_sums(scaled**2) / n_obs)


def resolve_device(device):
    """Turn a user's ``device`` parameter into a ``torch.device``.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.

    Returns
    -------
    torch.device
    """
    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str):
        try:
            resolved = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(
                f"device={device!r} is not a valid torch device; use 'cpu', 'cuda' "
                "or 'cuda:<index>'."
            ) from exc
    else:
        raise TypeError(
            f"device must be a string such as 'cpu' or 'cuda', or a torch.device; "
            f"got {type(device).__name__}."
        )
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device={device!r} is not supported: skbgp runs on 'cpu' or 'cuda' (it needs "
            "float64 Cholesky factorisations, which other torch devices lack or emulate)."
        )
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this "
            "machine; use device='cpu'."
        )
    return resolved


def compute_device(device):
    """``resolve_device(device)``, or the CPU with a warning where a CUDA device is gone.

    A model fitted on a GPU keeps ``device="cuda"``; unpickled on a machine
    without one it still predicts.
    """
    try:
        return resolve_device(device)
    except ValueError:
        wanted = torch.device(device) if isinstance(device, str) else device
        if isinstance(wanted, torch.device) and wanted.type == "cuda":
            warnings.warn(
                f"device={device!r} is not available on this machine; predicting "
                "on the CPU. Call set_params(device='cpu') to silence this warning.",
                UserWarning,
            )
            return torch.device("cpu")
        raise


def resolve_dtype(dtype):
    """Turn a user's ``dtype`` parameter into a floating ``torch.dtype``.

    Parameters
    ----------
    dtype : {"float64", "float32"}, numpy dtype or torch.dtype

    Returns
    -------
    torch.dtype
    """
    if isinstance(dtype, torch.dtype):
        if dtype in _DTYPES.values():
            return dtype
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
        if name in _DTYPES:
            return _DTYPES[name]
    raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}.")


def to_tensor(array, dtype, device):
    """A numpy array as a tensor of the given dtype on the given device.

    Read-only arrays (memory maps) are copied instead of shared, so torch never
    writes to, or warns about, memory it does not own.
    """
    array = np.asarray(array)
    if array.flags.writeable and array.flags.c_contiguous:
        tensor = torch.from_numpy(array)
    else:
        tensor = torch.tensor(np.ascontiguousarray(array), device="cpu")
    return tensor.to(dtype=dtype, device=device)


def to_numpy(tensor, dtype=np.float64):
    """A tensor (or an array) as a numpy array on the CPU (float64 unless told otherwise)."""
    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach().cpu().numpy()
    return np.asarray(tensor).astype(dtype, copy=False)


def torch_generator(random_state):
    """A local CPU ``torch.Generator`` seeded from a scikit-learn ``random_state``.

    Parameters
    ----------
    random_state : int, numpy.random.RandomState or None
        As everywhere in scikit-learn; ``None`` draws a fresh seed.

    Returns
    -------
    torch.Generator
    """
    if isinstance(random_state, numbers.Integral):
        seed = int(random_state)
    else:
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def safe_indexing(array, indices):
    """Rows ``indices`` of an array, list, sparse matrix or DataFrame (scikit-learn's helper)."""
    return _safe_indexing(array, indices)


def num_samples(array):
    """Number of samples (rows) of an array-like (scikit-learn's helper)."""
    return _num_samples(array)


def check_sample_weight(sample_weight, X):
    """``sample_weight`` as a float array of shape (n_samples,), checked (scikit-learn's helper)."""
    return _check_sample_weight(sample_weight, X)
