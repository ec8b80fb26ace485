"""Composite kernels: a tree of batched kernel nodes over one theta layout.

This is the general path, for every kernel that is not the fast
``outputscale * stationary + noise`` form of :mod:`.kernels`. A kernel is a
tree of small frozen dataclasses (leaves such as :class:`RBFNode`, and
:class:`SumNode`, :class:`ProductNode`, :class:`PowerNode`); every leaf reads
its hyperparameters from fixed columns of the members' log hyperparameters
``theta`` of shape (b, P), laid out in scikit-learn's order (operands left to
right, a leaf's hyperparameters by name).

Gradients. The covariance is built with differentiable torch operations, and
the gradient of the log marginal likelihood is the analytic formula
:math:`\\tfrac12 \\operatorname{tr}(W\\, \\partial K/\\partial\\theta_k)`,
:math:`W = \\alpha\\alpha^T - K^{-1}` (R&W eq. 5.9), obtained for all ``k``
at once as one vector-Jacobian product of the covariance with ``W / 2``
(reverse-mode autograd on ``K`` only, never through the Cholesky factor).
Members are independent, so member ``i``'s gradient only sees ``K[i]``.

Shape glossary: ``b`` members, ``n`` and ``p`` points, ``d`` features, ``P``
hyperparameters per member.
"""

import math
from dataclasses import dataclass

import torch

from .gp import (Footprint, add_observed_diagonal_, cholesky_inverse, log_likelihood, member_blocks,
                 member_rows)
from .kernels import correlation, exp_floored, row_product, squared_differences, weighted_sums
from .threads import run_blocks

__all__ = [
    "Geometry",
    "geometry",
    "RBFNode",
    "MaternNode",
    "RationalQuadraticNode",
    "ExpSineSquaredNode",
    "DotProductNode",
    "ConstantNode",
    "WhiteNode",
    "SumNode",
    "ProductNode",
    "PowerNode",
    "CompositeKernel",
    "covariance_gradient",
    "neg_log_marginal_likelihood",
]


@dataclass(frozen=True)
class Geometry:
    """The data every node needs about two sets of points.

    Attributes
    ----------
    X1 : Tensor of shape (n, d)
    X2 : Tensor of shape (p, d)
    D2 : Tensor of shape (d, n, p)
        Per-dimension squared differences.
    sqdist : Tensor of shape (n, p)
        Squared Euclidean distances.
    dist : Tensor of shape (n, p)
        Euclidean distances.
    inner : Tensor of shape (n, p)
        Inner products ``X1 @ X2.T``.
    same : bool
        Whether the second set is the first one given once (scikit-learn's
        ``kernel(X)`` rather than ``kernel(X, Y)``): only then does a white
        noise node add its variance to the diagonal.
    """

    X1: torch.Tensor
    X2: torch.Tensor
    D2: torch.Tensor
    sqdist: torch.Tensor
    dist: torch.Tensor
    inner: torch.Tensor
    same: bool


def geometry(X1, X2=None):
    """Build the :class:`Geometry` of ``X1`` with ``X2`` (or with itself).

    Parameters
    ----------
    X1 : Tensor of shape (n, d)
    X2 : Tensor of shape (p, d) or None
        ``None`` means ``X1`` itself, with white noise on the diagonal.

    Returns
    -------
    Geometry
    """
    same = X2 is None
    X2 = X1 if same else X2
    # contiguous: the broadcast difference comes out in X's layout, and a
    # product with a transposed operand rounds differently with the batch
    D2 = squared_differences(X1, X2).contiguous()
    sqdist = D2.sum(0)
    return Geometry(X1=X1, X2=X2, D2=D2, sqdist=sqdist, dist=sqdist.sqrt(),
                    inner=X1 @ X2.mT, same=same)


def _scaled_sqdist(theta, start, n_ls, geom):
    """Tensor of shape (b, n, p): ``sum_j (x_j - z_j)^2 / ell_j^2``."""
    inv_ls2 = torch.exp(-2.0 * theta[:, start:start + n_ls])  # (b, n_ls)
    if n_ls == 1:
        return inv_ls2[:, :, None] * geom.sqdist
    # r2[b, i, k] = sum_j inv_ls2[b, j] D2[j, i, k]
    d, n, p = geom.D2.shape
    return _RowProduct.apply(inv_ls2, geom.D2.reshape(d, n * p)).view(-1, n, p)


class _RowProduct(torch.autograd.Function):
    """``A @ B`` (A of shape (b, k), B of shape (k, N)); rows and gradient rows batch-independent.

    The product goes through :func:`~skbgp._core.kernels.row_product` (rows
    padded to a multiple of four) and its gradient ``G @ B^T``, a (b, N) x
    (N, k) product whose rows round differently below four rows (a
    matrix-vector kernel), through :func:`skbgp._core.kernels.weighted_sums`
    (padded to four rows): a member's covariance and gradient are the same
    alone and in any batch.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(A, B):
        return row_product(A, B)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])
        ctx.save_for_forward(inputs[0], inputs[1])

    @staticmethod
    def jvp(ctx, A_t, B_t):
        A, B = ctx.saved_tensors
        out = row_product(A_t, B)
        return out if B_t is None else out + row_product(A, B_t)

    @staticmethod
    def backward(ctx, grad):
        (B,) = ctx.saved_tensors
        return weighted_sums(grad.contiguous(), B), None


def _column(theta, index):
    """Tensor of shape (b, 1, 1): ``exp(theta[:, index])``."""
    return theta[:, index].exp()[:, None, None]


@dataclass(frozen=True)
class RBFNode:
    r"""Squared exponential: :math:`k = \exp(-r^2 / 2)`, :math:`r^2 = \sum_j (x_j - z_j)^2 / \ell_j^2`.

    ``theta[:, start:start + n_lengthscales]`` are the log length scales
    (``n_lengthscales`` 1 for an isotropic kernel, ``d`` for ARD).
    """

    start: int
    n_lengthscales: int

    def covariance(self, theta, geom):
        """Tensor of shape (b, n, p)."""
        r2 = _scaled_sqdist(theta, self.start, self.n_lengthscales, geom)
        return correlation(math.inf, r2)[0]

    def diag(self, theta, X):
        """Tensor of shape (b, n): ``k(x, x) = 1``."""
        return theta.new_ones(theta.shape[0], X.shape[0])


@dataclass(frozen=True)
class MaternNode:
    r"""Matern kernel: :math:`k = \rho_\nu(r)`, closed forms in :func:`.kernels.correlation`.

    ``theta[:, start:start + n_lengthscales]`` are the log length scales;
    ``nu`` is 0.5, 1.5, 2.5 or ``math.inf``.
    """

    start: int
    n_lengthscales: int
    nu: float

    def covariance(self, theta, geom):
        """Tensor of shape (b, n, p)."""
        r2 = _scaled_sqdist(theta, self.start, self.n_lengthscales, geom)
        return correlation(self.nu, r2)[0]

    def diag(self, theta, X):
        """Tensor of shape (b, n): ones."""
        return theta.new_ones(theta.shape[0], X.shape[0])


@dataclass(frozen=True)
class RationalQuadraticNode:
    r"""Rational quadratic: :math:`k = (1 + r^2 / (2 \alpha))^{-\alpha}`.

    ``theta[:, start]`` is :math:`\log\alpha`, the next ``n_lengthscales``
    columns the log length scales (scikit-learn's order: ``alpha``, then
    ``length_scale``).
    """

    start: int
    n_lengthscales: int = 1

    def covariance(self, theta, geom):
        """Tensor of shape (b, n, p)."""
        shape = _column(theta, self.start)
        r2 = _scaled_sqdist(theta, self.start + 1, self.n_lengthscales, geom)
        return exp_floored(-shape * torch.log1p(r2 / (2.0 * shape)))

    def diag(self, theta, X):
        """Tensor of shape (b, n): ones."""
        return theta.new_ones(theta.shape[0], X.shape[0])


@dataclass(frozen=True)
class ExpSineSquaredNode:
    r"""Periodic kernel: :math:`k = \exp(-2 \sin^2(\pi \|x - z\| / p) / \ell^2)`.

    ``theta[:, start]`` is :math:`\log \ell`, ``theta[:, start + 1]``
    :math:`\log p` (scikit-learn's ``length_scale`` and ``periodicity``).
    """

    start: int

    def covariance(self, theta, geom):
        """Tensor of shape (b, n, p)."""
        ls = _column(theta, self.start)
        period = _column(theta, self.start + 1)
        s = torch.sin(math.pi * geom.dist / period) / ls
        return exp_floored(-2.0 * s.square())

    def diag(self, theta, X):
        """Tensor of shape (b, n): ones."""
        return theta.new_ones(theta.shape[0], X.shape[0])


@dataclass(frozen=True)
class DotProductNode:
    r"""Dot product: :math:`k = \sigma_0^2 + x \cdot z`; ``theta[:, start]`` is :math:`\log \sigma_0`."""

    start: int

    def covariance(self, theta, geom):
        """Tensor of shape (b, n, p)."""
        return torch.exp(2.0 * theta[:, self.start])[:, None, None] + geom.inner

    def diag(self, theta, X):
        """Tensor of shape (b, n): :math:`\\sigma_0^2 + \\|x\\|^2`."""
        return torch.exp(2.0 * theta[:, self.start])[:, None] + X.square().sum(-1)


@dataclass(frozen=True)
class ConstantNode:
    r"""Constant: :math:`k = c`; ``theta[:, start]`` is :math:`\log c`."""

    start: int

    def covariance(self, theta, geom):
        """Tensor of shape (b, n, p)."""
        return _column(theta, self.start).expand(theta.shape[0], *geom.sqdist.shape)

    def diag(self, theta, X):
        """Tensor of shape (b, n)."""
        return theta[:, self.start].exp()[:, None].expand(theta.shape[0], X.shape[0])


@dataclass(frozen=True)
class WhiteNode:
    r"""White noise: :math:`k = \sigma_n^2 [x = z]` on ``kernel(X)`` only.

    As scikit-learn's ``WhiteKernel``: the variance is added to the diagonal
    when a set of points is compared with itself (``Geometry.same``), and
    the cross-covariance between two sets is zero. ``theta[:, start]`` is
    :math:`\log \sigma_n^2`.
    """

    start: int

    def covariance(self, theta, geom):
        """Tensor of shape (b, n, p)."""
        b = theta.shape[0]
        if not geom.same:
            return theta.new_zeros(b, *geom.sqdist.shape)
        eye = torch.eye(geom.sqdist.shape[0], dtype=theta.dtype, device=theta.device)
        return _column(theta, self.start) * eye

    def diag(self, theta, X):
        """Tensor of shape (b, n)."""
        return theta[:, self.start].exp()[:, None].expand(theta.shape[0], X.shape[0])


@dataclass(frozen=True)
class SumNode:
    """``k1 + k2``."""

    k1: object
    k2: object

    def covariance(self, theta, geom):
        """Tensor of shape (b, n, p)."""
        return self.k1.covariance(theta, geom) + self.k2.covariance(theta, geom)

    def diag(self, theta, X):
        """Tensor of shape (b, n)."""
        return self.k1.diag(theta, X) + self.k2.diag(theta, X)


@dataclass(frozen=True)
class ProductNode:
    """``k1 * k2`` (elementwise)."""

    k1: object
    k2: object

    def covariance(self, theta, geom):
        """Tensor of shape (b, n, p)."""
        return self.k1.covariance(theta, geom) * self.k2.covariance(theta, geom)

    def diag(self, theta, X):
        """Tensor of shape (b, n)."""
        return self.k1.diag(theta, X) * self.k2.diag(theta, X)


@dataclass(frozen=True)
class PowerNode:
    """``k ** exponent`` (elementwise; scikit-learn's ``Exponentiation``)."""

    k: object
    exponent: float

    def covariance(self, theta, geom):
        """Tensor of shape (b, n, p)."""
        return self.k.covariance(theta, geom) ** self.exponent

    def diag(self, theta, X):
        """Tensor of shape (b, n)."""
        return self.k.diag(theta, X) ** self.exponent


@dataclass(frozen=True)
class CompositeKernel:
    """A kernel tree and the number of hyperparameters it reads.

    Attributes
    ----------
    root : node
        The tree (leaves and Sum/Product/Power nodes of this module).
    n_params : int
        ``P``, the width of ``theta``.
    """

    root: object
    n_params: int

    # no closed-form stationary correlation: the acquisition model cannot use it
    stationary = False

    def covariance(self, theta, geom):
        """Tensor of shape (b, n, p): ``k(X1, X2)`` of every member.

        Parameters
        ----------
        theta : Tensor of shape (b, P)
        geom : Geometry
        """
        return self.root.covariance(theta, geom)

    def diag(self, theta, X):
        """Tensor of shape (b, n): ``k(x, x)`` of every member, white noise included."""
        return self.root.diag(theta, X)

    # ------------------------------------------- the covariance protocol of .gp
    def training_data(self, X):
        """:class:`Geometry` of the training inputs ``X`` (n, d) with themselves."""
        return geometry(X)

    def training_covariance(self, theta, data, maskf, alpha):
        """Tensor of shape (b, n, n): the masked training covariance on the :class:`Geometry` ``data``."""
        return _training_covariance(self.covariance(theta, data), maskf, alpha)

    def block_side(self, n):
        """A tree holds a few ``n x n`` temporaries per node: blocks of ``2n x 2n``."""
        return 2 * n

    def nlml(self, theta, data, y, maskf, alpha, eval_gradient=True):
        """:func:`neg_log_marginal_likelihood` of every member and its gradient."""
        return neg_log_marginal_likelihood(self, theta, data, y, maskf, alpha, eval_gradient)

    def footprint(self, n, d, device, dtype):
        """:class:`~.gp.Footprint` of a fit on ``d`` features: a lower bound.

        The :class:`Geometry` holds ``D2``, the squared distances, the
        distances and the inner products (``d + 3``); building it holds a
        copy of ``D2`` (``2 d``). A likelihood evaluation holds the tree's
        temporaries, saved for the vector-Jacobian product, beside the
        covariance, its factor and ``W``: 6 to 15 matrices per member in the
        trees measured (doc/scale.rst), so 6, and 3 per further member of a
        block; a factorisation at least the covariance and the factor.
        """
        return Footprint(d + 3, max(2 * d, d + 3), 6, 3, 2, 2, exact=False)

    def cross_covariance(self, theta, X_query, X_train):
        """Tensor of shape (b, p, n): ``k(X_query, X_train)`` (white noise absent, as scikit-learn)."""
        return self.covariance(theta, geometry(X_query, X_train))

    def prior_variance(self, theta, X_query, observation_noise=True):
        """Tensor of shape (b, p): ``k.diag(X_query)``, white noise counted unless left out."""
        return self.diag(theta if observation_noise else _without_white_noise(self, theta), X_query)

    def prior_covariance(self, theta, X_query, observation_noise=True):
        """Tensor of shape (b, p, p): ``k(X_query)``, white noise counted unless left out."""
        prior = theta if observation_noise else _without_white_noise(self, theta)
        return self.covariance(prior, geometry(X_query)).clone()



def covariance_gradient(kernel, theta, geom):
    """Covariance and its derivatives with respect to every log hyperparameter.

    One forward-mode derivative per hyperparameter; meant for inspection and
    tests (the likelihood gradient never forms this tensor).

    Parameters
    ----------
    kernel : CompositeKernel
    theta : Tensor of shape (b, P)
    geom : Geometry

    Returns
    -------
    K : Tensor of shape (b, n, p)
    dK : Tensor of shape (b, n, p, P)
        ``dK[..., k] = dK / dtheta_k`` (scikit-learn's layout).
    """
    theta = theta.detach()
    K = kernel.covariance(theta, geom)
    columns = []
    for k in range(theta.shape[-1]):
        tangent = torch.zeros_like(theta)
        tangent[:, k] = 1.0
        _, dk = torch.func.jvp(lambda t: kernel.covariance(t, geom), (theta,), (tangent,))
        columns.append(dk)
    return K, torch.stack(columns, dim=-1)


def _training_covariance(K, maskf, alpha):
    """Masked training covariance from ``K`` (not modified).

    The rows and columns of missing points become those of the identity; the
    observed diagonal gets ``alpha``.
    """
    out = K * maskf.unsqueeze(-1) * maskf.unsqueeze(-2)  # out of place: K may be a view
    add_observed_diagonal_(out, maskf, alpha)
    return out


def neg_log_marginal_likelihood(kernel, theta, geom, y, maskf, alpha, eval_gradient=True):
    """Negative log marginal likelihood of every member and its gradient.

    Same contract as :func:`skbgp._core.stationary.neg_log_marginal_likelihood`,
    for a :class:`CompositeKernel` on the training :class:`Geometry`.

    Parameters
    ----------
    kernel : CompositeKernel
    theta : Tensor of shape (b, P)
    geom : Geometry
        Of the training inputs with themselves (``geometry(X)``).
    y : Tensor of shape (b, n)
        Targets with missing entries set to 0.
    maskf : Tensor of shape (b, n)
    alpha : Tensor of shape (n,), () or (b, n)
    eval_gradient : bool

    Returns
    -------
    loss : Tensor of shape (b,)
        ``inf`` for a member whose covariance is not positive definite.
    grad : Tensor of shape (b, P) or None
        Zero where ``loss`` is ``inf``.
    """
    b = theta.shape[0]
    n = geom.sqdist.shape[-1]
    loss = torch.empty(b, dtype=theta.dtype, device=theta.device)
    grad = torch.zeros_like(theta) if eval_gradient else None
    # a composite tree holds a few n x n temporaries per node: smaller blocks
    run_blocks(
        lambda blk: _nlml_block(kernel, theta[blk], geom, y[blk], maskf[blk],
                                member_rows(alpha, blk),
                                loss[blk], None if grad is None else grad[blk]),
        member_blocks(b, 2 * n),
    )
    return loss, grad


def _nlml_block(kernel, theta, geom, y, maskf, alpha, loss_out, grad_out):
    """One block of :func:`neg_log_marginal_likelihood`, written into the outputs."""
    n = y.shape[-1]
    with torch.enable_grad():
        th = theta.detach().requires_grad_(grad_out is not None)
        K_graph = kernel.covariance(th, geom)
    K = _training_covariance(K_graph.detach(), maskf, alpha)
    # no jitter, as in stationary._nlml_block: a member that is not positive definite scores inf
    U, info = torch.linalg.cholesky_ex(K, upper=True)
    L = U.mT
    ok = info == 0
    if not bool(ok.all()):
        L = torch.where(ok[:, None, None], L, torch.eye(n, dtype=L.dtype, device=L.device))
    lml, a = log_likelihood(L, y, maskf)
    loss_out.copy_(torch.where(ok, -lml, math.inf))
    if grad_out is None:
        return
    # d lml / d theta_k = 0.5 tr(W dK/dtheta_k), W = a a^T - K^-1  (R&W eq. 5.9),
    # for all k at once as a vector-Jacobian product of K with W / 2; missing
    # rows and columns of K do not depend on theta, so W is zeroed there
    # a a^T added elementwise: a batched product's kernel (and rounding)
    # would depend on the batch size
    W = cholesky_inverse(L.mT).neg_()
    W.addcmul_(a.unsqueeze(-1), a.unsqueeze(-2))
    W.mul_(maskf.unsqueeze(-1)).mul_(maskf.unsqueeze(-2)).mul_(0.5)
    W = torch.where(ok[:, None, None], W, 0.0)
    (g,) = torch.autograd.grad(K_graph, th, grad_outputs=W)
    grad_out.copy_(torch.where(ok[:, None], -g, 0.0))


def _white_columns(node):
    """Columns of ``theta`` that hold a white-noise node's log variance."""
    if isinstance(node, WhiteNode):
        return [node.start]
    return [c for child in (getattr(node, "k1", None), getattr(node, "k2", None),
                            getattr(node, "k", None)) if child is not None
            for c in _white_columns(child)]


def _without_white_noise(kernel, theta):
    """``theta`` with every white-noise variance at 0 (its log at -inf), for the latent function."""
    theta = theta.clone()
    theta[:, _white_columns(kernel.root)] = -math.inf
    return theta
