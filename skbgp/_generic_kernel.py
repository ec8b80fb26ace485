"""Any scikit-learn kernel, through scikit-learn's own kernel API: the generic path.

A kernel that :mod:`skbgp._sklearn_kernels` cannot translate into the batched
core (a user's own ``sklearn.gaussian_process.kernels.Kernel`` subclass, such
as a Tanimoto kernel on fingerprints, or a scikit-learn class outside the
translated ones) is wrapped in a :class:`GenericKernel`. It implements the
covariance protocol of :mod:`skbgp._core.gp` (``training_data``,
``training_covariance``, ``nlml``, ``cross_covariance``, ``prior_variance``,
``prior_covariance``, ``footprint``, ``block_side``) by calling the kernel
object member by member, in numpy: ``kernel.clone_with_theta(theta)`` at a
member's log hyperparameters (scikit-learn's ``theta``: the free ones, in
log space), then ``kernel(X, eval_gradient=True)``, ``kernel(X, Y)`` and
``kernel.diag(X)``. Everything else (the batched optimiser, restarts,
missing targets, jitter, the posterior, sampling) is the engine's and the
core's, as for the translated kernels; so is a member's arithmetic, one
member at a time, which makes a member's result the same alone and in any
batch.

It lives beside the scikit-learn layer, not in the core: it calls
scikit-learn objects and numpy, which the core never does.

Kernels on structured inputs (``requires_vector_input`` False: strings,
graphs) reach the core as numbers: :func:`encode_points` writes every input
as the bytes of its pickle, one byte per number (``-1`` pads a row), and
the kernel reads them back with :func:`decode_points`.

Shape glossary: ``b`` members, ``n`` training points, ``p`` query points,
``d`` features (or bytes per encoded point), ``P`` free hyperparameters.
"""

import pickle
from dataclasses import dataclass

import numpy as np
import torch

from ._core.gp import Footprint, add_observed_diagonal_, cholesky_inverse, log_likelihood, member_rows

__all__ = ["GenericKernel", "GenericData", "encode_points", "decode_points"]

# Query points whose latent prior variance (diag of k(X, X)) is computed at once.
_DIAG_CHUNK = 256


def encode_points(X):
    """Structured inputs as numbers: the bytes of every point's pickle.

    Parameters
    ----------
    X : sequence of length n
        Any picklable points (strings, arrays of any length, objects).

    Returns
    -------
    ndarray of shape (n, L)
        Row ``i`` holds the ``L_i <= L`` bytes of ``pickle.dumps(X[i])`` as
        numbers 0..255, then ``-1``; exact in float32 and float64.
    """
    blobs = [np.frombuffer(pickle.dumps(x, protocol=4), dtype=np.uint8) for x in X]
    width = max((b.size for b in blobs), default=0)
    out = np.full((len(blobs), width), -1.0)
    for i, b in enumerate(blobs):
        out[i, :b.size] = b
    return out


def decode_points(codes):
    """The points that :func:`encode_points` wrote.

    Parameters
    ----------
    codes : ndarray of shape (n, L)

    Returns
    -------
    ndarray of shape (n, ...)
        The points as one array when they stack (strings, equal-shape
        arrays), else an object array of them.
    """
    points = [pickle.loads(row[row >= 0].astype(np.uint8).tobytes()) for row in codes]
    try:
        out = np.asarray(points)
        if out.shape[:1] == (len(points),) and out.dtype != object:
            return out
    except ValueError:  # ragged
        pass
    out = np.empty(len(points), dtype=object)
    for i, point in enumerate(points):
        out[i] = point
    return out


@dataclass(frozen=True)
class GenericData:
    """The training inputs as the scikit-learn kernel takes them (``GenericKernel.training_data``).

    Attributes
    ----------
    points : ndarray of shape (n, d) or (n,)
        Numbers for a kernel on vectors, the decoded points otherwise.
    """

    points: np.ndarray


@dataclass(frozen=True, eq=True)
class GenericKernel:
    """A scikit-learn kernel object evaluated member by member: the covariance protocol of :mod:`skbgp._core.gp`.

    Attributes
    ----------
    template : sklearn.gaussian_process.kernels.Kernel
        The user's kernel (a copy); a member's kernel is
        ``template.clone_with_theta(theta)``.
    n_params : int
        ``P = len(template.theta)``: its free hyperparameters.
    structured : bool
        Inputs are encoded points (:func:`encode_points`), the kernel's
        ``requires_vector_input`` being False.
    """

    template: object
    n_params: int
    structured: bool = False

    # no closed-form stationary correlation: the acquisition model cannot use it
    stationary = False

    def __hash__(self):
        # scikit-learn kernels compare by their parameters and are not hashable
        return hash((type(self.template), self.n_params, self.structured))

    # -------------------------------------------------------------- numpy side
    def points(self, X):
        """What the scikit-learn kernel takes for the inputs ``X`` (Tensor of shape (n, d))."""
        X = X.detach().cpu().numpy().astype(np.float64, copy=False)
        return decode_points(X) if self.structured else X

    def member(self, theta):
        """The scikit-learn kernel at one member's log hyperparameters (Tensor of shape (P,))."""
        theta = theta.detach().cpu().numpy().astype(np.float64)
        return _call(self.template, "clone_with_theta", self.template.clone_with_theta, theta)

    def _stack(self, matrices, like):
        """Tensor of shape (b, ...) from a list of numpy arrays, in ``like``'s dtype and device."""
        return torch.as_tensor(np.stack(matrices), dtype=like.dtype, device=like.device)

    def _covariances(self, theta, A, B=None):
        """Tensor of shape (b, n, p): every member's ``k(A, B)`` (``k(A)`` when B is None)."""
        out = []
        for i in range(theta.shape[0]):
            kernel = self.member(theta[i])
            K = _call(kernel, "k(X)", kernel, A) if B is None else _call(kernel, "k(X, Y)", kernel, A, B)
            out.append(_checked(K, (len(A), len(A) if B is None else len(B)), self.template))
        return self._stack(out, theta)

    # --------------------------------------------- the covariance protocol of .gp
    def training_data(self, X):
        """:class:`GenericData` of the training inputs ``X`` (Tensor of shape (n, d))."""
        return GenericData(self.points(X))

    def training_covariance(self, theta, data, maskf, alpha):
        """Tensor of shape (b, n, n): the masked training covariance (identity where missing)."""
        K = self._covariances(theta, data.points)
        K.mul_(maskf.unsqueeze(-1)).mul_(maskf.unsqueeze(-2))
        add_observed_diagonal_(K, maskf, alpha)
        return K

    def block_side(self, n):
        """Members are evaluated one at a time: blocks of ``n x n``."""
        return n

    def nlml(self, theta, data, y, maskf, alpha, eval_gradient=True):
        """Negative log marginal likelihood of every member and its gradient.

        Parameters
        ----------
        theta : Tensor of shape (b, P)
        data : GenericData
        y : Tensor of shape (b, n)
            Targets, 0 where missing.
        maskf : Tensor of shape (b, n)
        alpha : Tensor of shape (n,), () or (b, n)
        eval_gradient : bool

        Returns
        -------
        loss : Tensor of shape (b,)
            ``inf`` where the covariance is not positive definite.
        grad : Tensor of shape (b, P) or None
            Zero where ``loss`` is ``inf``.
        """
        b = theta.shape[0]
        loss = torch.empty(b, dtype=theta.dtype, device=theta.device)
        grad = torch.zeros_like(theta) if eval_gradient else None

        # one member at a time, in this thread: its numbers do not depend on the batch, and a
        # user's kernel (perhaps with caches of its own) is never called from two threads at once
        for i in range(b):
            one = slice(i, i + 1)
            loss[i], g = self._member_nlml(theta[i], data, y[one], maskf[one],
                                           member_rows(alpha, one), eval_gradient)
            if grad is not None:
                grad[i] = g
        return loss, grad

    def _member_nlml(self, theta, data, y, maskf, alpha, eval_gradient):
        """``(loss, grad)`` of one member: Tensor of shape () and Tensor of shape (P,) or None."""
        kernel = self.member(theta)
        n = y.shape[-1]
        if eval_gradient and self.n_params == 0:  # nothing to differentiate (scikit-learn asks for no gradient)
            K = _call(kernel, "k(X)", kernel, data.points)
            dK = np.zeros((n, n, 0))
        elif eval_gradient:
            K, dK = _call(kernel, "k(X, eval_gradient=True)", kernel, data.points, eval_gradient=True)
            dK = _checked(dK, (n, n, self.n_params), self.template, "gradient")
        else:
            K, dK = _call(kernel, "k(X)", kernel, data.points), None
        K = torch.as_tensor(_checked(K, (n, n), self.template), dtype=theta.dtype,
                            device=theta.device).unsqueeze(0)
        K = K * maskf.unsqueeze(-1) * maskf.unsqueeze(-2)
        add_observed_diagonal_(K, maskf, alpha)
        zero = torch.zeros_like(theta) if eval_gradient else None
        if not bool(torch.isfinite(K).all()):
            return theta.new_tensor(np.inf), zero
        # no jitter, as the other kernels' likelihood: not positive definite scores inf
        L, info = torch.linalg.cholesky_ex(K)
        if int(info[0]) != 0:
            return theta.new_tensor(np.inf), zero
        lml, a = log_likelihood(L, y, maskf)
        if not bool(torch.isfinite(lml).all()):
            return theta.new_tensor(np.inf), zero
        if not eval_gradient:
            return -lml[0], None
        # d lml / d theta_k = 0.5 tr(W dK/dtheta_k), W = a a^T - K^-1 (R&W eq. 5.9), as
        # scikit-learn contracts it; missing rows and columns do not depend on theta
        W = cholesky_inverse(L.mT).neg_()[0]
        W.addcmul_(a[0].unsqueeze(-1), a[0].unsqueeze(-2))
        W.mul_(maskf[0].unsqueeze(-1)).mul_(maskf[0].unsqueeze(-2))
        W = W.cpu().numpy().astype(np.float64, copy=False)
        g = 0.5 * np.einsum("ij,jik->k", W, dK)
        return -lml[0], -torch.as_tensor(g, dtype=theta.dtype, device=theta.device)

    def footprint(self, n, d, device, dtype):
        """:class:`~skbgp._core.gp.Footprint`: a lower bound.

        The training inputs are kept as the kernel takes them (no ``n x n``
        data). A member's evaluation holds scikit-learn's covariance and its
        ``P`` derivatives, the covariance as a tensor, its factor and ``W``;
        members of a block are evaluated one after the other.
        """
        return Footprint(0, 0, self.n_params + 5, 0, 3, 2, exact=False)

    def cross_covariance(self, theta, X_query, X_train):
        """Tensor of shape (b, p, n): every member's ``k(X_query, X_train)``."""
        return self._covariances(theta, self.points(X_query), self.points(X_train))

    def prior_variance(self, theta, X_query, observation_noise=True):
        """Tensor of shape (b, p): ``k.diag(X_query)``; without observation noise, the
        diagonal of ``k(X_query, X_query)`` (a ``WhiteKernel`` adds nothing between two sets)."""
        A = self.points(X_query)
        out = []
        for i in range(theta.shape[0]):
            kernel = self.member(theta[i])
            if observation_noise:
                out.append(_checked(_call(kernel, "k.diag(X)", kernel.diag, A), (len(A),),
                                    self.template, "diag"))
                continue
            out.append(np.concatenate([
                np.diagonal(_checked(_call(kernel, "k(X, Y)", kernel, A[s:s + _DIAG_CHUNK],
                                           A[s:s + _DIAG_CHUNK]),
                                     (len(A[s:s + _DIAG_CHUNK]),) * 2, self.template))
                for s in range(0, len(A), _DIAG_CHUNK)] or [np.empty(0)]))
        return self._stack(out, theta)

    def prior_covariance(self, theta, X_query, observation_noise=True):
        """Tensor of shape (b, p, p): ``k(X_query)``, or ``k(X_query, X_query)`` without observation noise."""
        A = self.points(X_query)
        return self._covariances(theta, A, None if observation_noise else A)


def _call(kernel, what, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, a call into the user's kernel; its failure a ValueError naming it."""
    try:
        return fn(*args, **kwargs)
    except Exception as error:  # the user's code: any failure, told with its kernel and call
        raise ValueError(
            f"The kernel {type(kernel).__name__} failed in {what} ({type(error).__name__}: "
            f"{error}). A kernel for BatchedGaussianProcessRegressor must follow scikit-learn's "
            "Kernel API (theta, bounds, clone_with_theta, __call__(X, Y=None, "
            "eval_gradient=False), diag(X))."
        ) from error


def _checked(value, shape, kernel, what="covariance"):
    """``value`` as a float64 array of ``shape``; a clear error naming the kernel otherwise."""
    value = np.asarray(value, dtype=np.float64)
    if value.shape != shape:
        raise ValueError(
            f"The kernel {kernel!r} ({type(kernel).__name__}) returned a {what} of shape "
            f"{value.shape}; expected {shape}. A kernel for BatchedGaussianProcessRegressor "
            "must follow scikit-learn's Kernel API: k(X) of shape (n, n), k(X, Y) of shape "
            "(n, p), k(X, eval_gradient=True) with a gradient of shape (n, n, len(theta)) and "
            "k.diag(X) of shape (n,)."
        )
    return value
