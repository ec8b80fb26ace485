"""Kernel-independent Gaussian-process maths on a batch of members.

Everything a GP does once it has a covariance lives here, once: the
Cholesky factor with its per-member jitter, the log marginal likelihood from a
factor, the posterior from a factor, closed-form leave-one-out and joint
sampling. A model kind supplies its covariance pieces (the *covariance
protocol* below) and nothing else; the exact kernels of :mod:`.stationary` and
:mod:`.composite` are the two kinds today, and a sparse kind supplies its
inducing-point blocks to the same factor, likelihood and posterior steps.

Missing observations are a mask: the rows and columns of a masked point are
those of the identity matrix and its residual is zero, so one Cholesky factor
per member gives the exact log marginal likelihood of that member's observed
subset, and members never mix (R&W Alg. 2.1 on each subset).

The covariance protocol (duck-typed; both exact kernels implement it):

``training_data(X)``
    What the training covariance is built from (squared differences, a
    geometry), computed once per fit.
``training_covariance(theta, data, maskf, alpha)``
    Tensor of shape (b, n, n): the masked training covariance (noise and
    ``alpha`` on the observed diagonal, identity where missing), free to
    modify.
``block_side(n)``
    The side of the ``n x n``-equivalent matrices a member's covariance
    holds at once (``n``, or ``2 n`` for a kernel tree's temporaries): sets
    the member blocks.
``cross_covariance(theta, X_query, X_train)``, ``prior_variance(theta, X_query, observation_noise)``, ``prior_covariance(theta, X_query, observation_noise)``
    The query covariances of :func:`posterior`.
``nlml(theta, data, y, maskf, alpha, eval_gradient=True)``
    The negative log marginal likelihood and its gradient: the kernel's
    derivatives contracted with ``K^-1 - a a^T`` (R&W eq. 5.9), built on
    :func:`neg_log_likelihood` and :func:`cholesky_inverse`.
``footprint(n, d, device, dtype)``
    A :class:`Footprint`: how many ``n x n`` matrices the training data, a
    member's likelihood evaluation and a member's factorisation hold, for the
    memory check of a fit (``skbgp._memory``).

Shape glossary: ``b`` members, ``n`` training points, ``p`` query points,
``d`` features, ``P`` hyperparameters per member.
"""

import math
from dataclasses import dataclass

import torch

from .threads import run_blocks, split_blocks

__all__ = [
    "BASE_JITTER",
    "LOG_2PI",
    "Conditioned",
    "Factor",
    "Footprint",
    "add_observed_diagonal_",
    "block_size",
    "cholesky_inverse",
    "factor_members",
    "factorize",
    "jittered_cholesky",
    "log_likelihood",
    "loo_from_factor",
    "mask_",
    "member_blocks",
    "member_rows",
    "neg_log_likelihood",
    "posterior",
    "posterior_cholesky",
    "refactorize",
    "sample_mvn",
]

LOG_2PI = math.log(2.0 * math.pi)

# Members are processed in blocks of at most this many numbers per n x n
# matrix (4 MiB in float64): blocks that small are recycled by the memory
# allocator instead of being mapped afresh, and they bound peak memory
# (doc/benchmarks.rst, "Constants chosen by measurement").
_BLOCK_NUMBERS = 2**19
# A GPU needs large batches to be busy: blocks of up to 2**27 numbers (1 GiB
# in float64) per n x n matrix.
_GPU_BLOCK_NUMBERS = 2**27


def block_size(n, device=None):
    """int: the most members a block of :func:`member_blocks` holds (at least 1).

    Parameters
    ----------
    n : int
        Side of a member's matrices.
    device : torch.device, optional
        Blocks are larger on a GPU.
    """
    numbers = _GPU_BLOCK_NUMBERS if device is not None and device.type == "cuda" else _BLOCK_NUMBERS
    return max(1, numbers // max(1, n * n))


def member_blocks(b, n, device=None):
    """Slices that cut ``b`` members into blocks of ``n x n`` matrices.

    Parameters
    ----------
    b, n : int
    device : torch.device, optional
        Blocks are larger on a GPU.
    """
    return split_blocks(b, block_size(n, device))


@dataclass(frozen=True)
class Footprint:
    """The memory of a kernel's fit, in ``n x n`` matrices of the fit's dtype.

    What a kernel of the covariance protocol reports (``footprint``) for the
    memory check of a fit (``skbgp._memory``). Counted from the code and
    checked against the peak resident memory of fits (doc/scale.rst,
    "Memory of an exact fit").

    Attributes
    ----------
    data : int
        Held by ``training_data(X)`` for the whole fit.
    build : int
        The most held while ``training_data`` builds them.
    evaluation : int
        The most one member's likelihood evaluation (with its gradient) holds
        at once beside the data, alone in its block (:func:`member_blocks`).
    evaluation_per_member : int
        The most each further member of the same block adds.
    factor : int
        The most one member's factorisation holds at once beside the data and
        the factors it writes, alone in its block.
    factor_per_member : int
        The most each further member of the same block adds.
    exact : bool
        False where the counts are a lower bound (a kernel tree holds more
        temporaries for some trees than for others).
    """

    data: int
    build: int
    evaluation: int
    evaluation_per_member: int
    factor: int
    factor_per_member: int
    exact: bool = True


def member_rows(alpha, block):
    """``alpha`` of the members in ``block`` (a slice or an index tensor): per-member rows
    (b, n) are selected, a value shared by all members ((n,) or ()) is not."""
    return alpha[block] if alpha.dim() == 2 else alpha


def mask_(K, maskf):
    """Zero the rows and columns of missing points of ``K`` (b, n, n), in place."""
    if not bool(maskf.bool().all()):
        K.mul_(maskf.unsqueeze(-1)).mul_(maskf.unsqueeze(-2))


def add_observed_diagonal_(K, maskf, diag):
    """Add ``diag`` (broadcastable to (b, n)) on observed points and 1 on missing ones, in place."""
    K.diagonal(dim1=-2, dim2=-1).add_(diag * maskf + (1.0 - maskf))


# ------------------------------------------------------------------ the factor
@dataclass(frozen=True)
class Factor:
    """The factorisation of every member's training covariance.

    Attributes
    ----------
    L : Tensor of shape (b, n, n)
        Lower Cholesky factor of the masked training covariance plus jitter.
    alpha : Tensor of shape (b, n)
        ``K^-1 y`` (zero at missing points).
    log_marginal_likelihood : Tensor of shape (b,)
        ``-inf`` where the factorisation failed.
    jitter : Tensor of shape (b,)
        Diagonal jitter that had to be added (0 where none was needed).
    failed : Tensor of shape (b,)
        True where no jitter up to the largest tried made the matrix positive
        definite.
    """

    L: torch.Tensor
    alpha: torch.Tensor
    log_marginal_likelihood: torch.Tensor
    jitter: torch.Tensor
    failed: torch.Tensor


def jittered_cholesky(K, maskf, max_tries=6):
    """Lower Cholesky factors of ``K``, adding jitter only to failing members.

    A failing member gets ``1e-8 * mean(diag K)`` added to its observed
    diagonal, then ten times more, up to ``max_tries`` times; members that
    succeed are untouched. (The joint posterior of a few query points is
    factorised by :func:`posterior_cholesky` instead.)

    Parameters
    ----------
    K : Tensor of shape (b, n, n)
        Masked training covariances (not modified: a failing member's is copied).
    maskf : Tensor of shape (b, n)
    max_tries : int

    Returns
    -------
    L : Tensor of shape (b, n, n)
        Identity where no jitter helped.
    jitter : Tensor of shape (b,)
    failed : Tensor of shape (b,), bool
    """
    n = K.shape[-1]
    Lb, info = torch.linalg.cholesky_ex(K)
    bad = info != 0
    scale = 1e-8 * K.diagonal(dim1=-2, dim2=-1).mean(-1)
    jit = torch.zeros_like(scale)
    for _ in range(max_tries):
        if not bool(bad.any()):
            break
        idx = bad.nonzero().squeeze(-1)
        jit[idx] = torch.where(jit[idx] > 0, 10.0 * jit[idx], scale[idx])
        Kj = K[idx]
        Kj.diagonal(dim1=-2, dim2=-1).add_(jit[idx, None] * maskf[idx])
        Lj, infoj = torch.linalg.cholesky_ex(Kj)
        Lb[idx] = Lj
        bad[idx] = infoj != 0
    if bool(bad.any()):
        Lb = torch.where(bad[:, None, None], torch.eye(n, dtype=K.dtype, device=K.device), Lb)
    return Lb, jit, bad


BASE_JITTER = 1e-9  # relative jitter on every joint posterior covariance before its Cholesky


# Not jittered_cholesky: a joint posterior of q points is often singular, so every member
# gets a base jitter, and sampling needs a factor even where no jitter helps (the diagonal).
def posterior_cholesky(A, prior_var):
    """Lower Cholesky factor of a batch of covariances, with jitter where needed.

    ``BASE_JITTER * prior_var`` is always added to the diagonal; members that
    still fail get ten times more, up to six times (``1e-3 * prior_var``), and
    a member that fails even then falls back to its diagonal (independent
    points).

    Parameters
    ----------
    A : Tensor of shape (..., m, q, q)
    prior_var : Tensor of shape (m,)
        Scale of the jitter per target.

    Returns
    -------
    L : Tensor of shape (..., m, q, q)
    diagonal : bool
        Whether a member fell back to its diagonal.
    """
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    unit = prior_var[:, None, None] * eye
    L, info = torch.linalg.cholesky_ex(A + BASE_JITTER * unit)
    jitter = BASE_JITTER
    failed = bool(info.any())
    for _ in range(6):
        if not failed:
            break
        jitter *= 10.0
        bad = (info != 0)[..., None, None]
        L2, info2 = torch.linalg.cholesky_ex(A + jitter * unit)
        L = torch.where(bad, L2, L)
        info = torch.where(info != 0, info2, info)
        failed = bool(info.any())
    if failed:
        diag = torch.diag_embed(A.diagonal(dim1=-2, dim2=-1).clamp_min(0.0).sqrt())
        L = torch.where((info != 0)[..., None, None], diag, L)
    return L, failed


def factor_members(covariance, maskf, blocks, max_tries=6, jitter=None):
    """Cholesky factors of every member's training covariance, block by block.

    Parameters
    ----------
    covariance : callable
        ``covariance(block) -> Tensor of shape (k, n, n)``: the masked training
        covariance of the members in ``block`` (a slice), which may be
        modified.
    maskf : Tensor of shape (b, n)
    blocks : list of slice
        From :func:`member_blocks`.
    max_tries : int
        Jitter escalations (see :func:`jittered_cholesky`).
    jitter : Tensor of shape (b,), optional
        Jitter found before: added as it is, which gives the factors of that
        earlier factorisation again; a member that fails with it (in another
        dtype, on another device) gets more, escalating as above.

    Returns
    -------
    L : Tensor of shape (b, n, n)
        Lower factors (the identity where factorisation failed).
    jitter : Tensor of shape (b,)
    failed : Tensor of shape (b,), bool
    """
    b, n = maskf.shape
    L = torch.empty(b, n, n, dtype=maskf.dtype, device=maskf.device)
    jit = torch.zeros(b, dtype=maskf.dtype, device=maskf.device) if jitter is None else jitter
    failed = torch.zeros(b, dtype=torch.bool, device=maskf.device)

    def block(blk):
        K = covariance(blk)
        if jitter is None:
            L[blk], jit[blk], failed[blk] = jittered_cholesky(K, maskf[blk], max_tries)
            return
        if bool((jitter[blk] > 0).any()):
            K.diagonal(dim1=-2, dim2=-1).add_(jitter[blk].unsqueeze(-1) * maskf[blk])
        Lb, info = torch.linalg.cholesky_ex(K)
        bad = info != 0
        if bool(bad.any()):
            # the recorded jitter no longer suffices (another dtype or device):
            # escalate from there, as the fit did, for the failing members only
            idx = bad.nonzero().squeeze(-1)
            Le, extra, still = jittered_cholesky(K[idx], maskf[blk][idx], max_tries)
            Lb[idx] = Le
            jit[blk.start + idx] = jit[blk.start + idx] + extra
            bad[idx] = still
        failed[blk] = bad
        L[blk] = torch.where(bad[:, None, None], torch.eye(n, dtype=K.dtype, device=K.device), Lb)

    run_blocks(block, blocks)
    return L, jit, failed


def _covariance_blocks(kernel, theta, data, maskf, alpha):
    """``(covariance(block), blocks)`` of :func:`factor_members` for a kernel of the protocol."""
    b, n = maskf.shape

    def covariance(blk):
        return kernel.training_covariance(theta[blk], data, maskf[blk], member_rows(alpha, blk))

    return covariance, member_blocks(b, kernel.block_side(n), theta.device)


def factorize(kernel, theta, data, y, maskf, alpha, max_tries=6):
    """Cholesky-factorise every member's training covariance, with per-member jitter.

    Parameters
    ----------
    kernel : a kernel of the covariance protocol (module docstring)
    theta : Tensor of shape (b, P)
    data : object
        ``kernel.training_data(X)``.
    y : Tensor of shape (b, n)
        Targets, 0 where missing.
    maskf : Tensor of shape (b, n)
        1.0 where observed.
    alpha : Tensor of shape (n,), () or (b, n)
        Added to the observed diagonal.
    max_tries : int
        Jitter escalations (see :func:`jittered_cholesky`).

    Returns
    -------
    Factor
    """
    covariance, blocks = _covariance_blocks(kernel, theta, data, maskf, alpha)
    L, jitter, failed = factor_members(covariance, maskf, blocks, max_tries)
    lml, a = log_likelihood(L, y, maskf)
    lml = torch.where(failed, -math.inf, lml)
    return Factor(L=L, alpha=a, log_marginal_likelihood=lml, jitter=jitter, failed=failed)


def refactorize(kernel, theta, data, maskf, alpha, jitter):
    """The Cholesky factors that :func:`factorize` found, computed again.

    Adds each member's recorded jitter to its observed diagonal and factorises;
    the arithmetic is that of :func:`factorize`, so the factors are the same.
    Lets a fitted model keep ``theta`` and ``jitter`` instead of ``b n^2``
    numbers of factors.

    Parameters
    ----------
    kernel, theta, data, maskf, alpha
        As in :func:`factorize`.
    jitter : Tensor of shape (b,)
        ``Factor.jitter`` of these members.

    Returns
    -------
    L : Tensor of shape (b, n, n)
        Lower Cholesky factors (the identity for a member that cannot be
        factorised).
    jitter : Tensor of shape (b,)
        The jitter used: the recorded one, or more where that no longer
        sufficed.
    failed : Tensor of shape (b,), bool
        Members that could not be factorised even with more jitter.
    """
    covariance, blocks = _covariance_blocks(kernel, theta, data, maskf, alpha)
    return factor_members(covariance, maskf, blocks, jitter=jitter.clone())


# ------------------------------------------------------- likelihood from a factor
def log_likelihood(L, y, maskf):
    """Log marginal likelihood and ``K^-1 y`` (R&W Alg. 2.1 lines 2-3 and 7).

    Parameters
    ----------
    L : Tensor of shape (b, n, n)
        Lower factor (only its triangle is read).
    y : Tensor of shape (b, n)
    maskf : Tensor of shape (b, n)

    Returns
    -------
    lml : Tensor of shape (b,)
    a : Tensor of shape (b, n)
    """
    nll, a = neg_log_likelihood(L, y, 0.5 * LOG_2PI * maskf.sum(-1))
    return nll.neg_(), a


def neg_log_likelihood(L, y, const):
    """``-log p(y)`` and ``K^-1 y`` from the lower factor ``L`` (reading only its triangle).

    ``v = L^-1 y``, ``a = L^-T v``, ``-log p = |v|^2 / 2 + sum(log diag L) +
    const``, with ``const = n_observed log(2 pi) / 2`` (a number or a Tensor of
    shape (b,)). Two triangular solves: ``torch.cholesky_solve`` was 2-4x
    slower on small batches.

    Returns
    -------
    nll : Tensor of shape (b,)
    a : Tensor of shape (b, n)
    """
    v = torch.linalg.solve_triangular(L, y.unsqueeze(-1), upper=False)
    a = torch.linalg.solve_triangular(L.mT, v, upper=True).squeeze(-1)
    v = v.squeeze(-1)
    # log diag L is 0 at missing points
    nll = L.diagonal(dim1=-2, dim2=-1).log().sum(-1).add_(torch.linalg.vecdot(v, v), alpha=0.5)
    return nll.add_(const), a


# With several intra-op threads and below this size, K^-1 = L^-T L^-1 by a
# triangular solve and one batched product (matmul-shaped, spread over the
# threads) beats LAPACK's potri (one small call per member); single-threaded,
# and from this size on, potri wins; on a GPU the solve and product win at
# every size (doc/benchmarks.rst, "Constants chosen by measurement").
_POTRI_FROM = 256


def cholesky_inverse(U):
    """Tensor of shape (b, n, n), contiguous: ``K^-1`` from ``K = U^T U``."""
    n = U.shape[-1]
    if U.device.type == "cpu" and (n >= _POTRI_FROM or torch.get_num_threads() == 1):
        Kinv = torch.cholesky_inverse(U, upper=True)
        # the result is exactly symmetric; LAPACK leaves it column-major, so its
        # transpose is the row-major tensor without a copy
        return Kinv.mT if Kinv.mT.is_contiguous() else Kinv.contiguous()
    eye = torch.eye(n, dtype=U.dtype, device=U.device).expand(U.shape)
    Linv = torch.linalg.solve_triangular(U.mT, eye, upper=False)
    return torch.bmm(Linv.mT, Linv)


# -------------------------------------------------------- posterior from a factor
@dataclass(frozen=True)
class Conditioned:
    """Members conditioned on their training data: what :func:`posterior` needs.

    Attributes
    ----------
    kernel : a kernel of the covariance protocol (module docstring)
    theta : Tensor of shape (b, P)
    X : Tensor of shape (n, d), or (b, n, d) for the sparse kind
        Training inputs (the sparse kind: every member's inducing inputs).
    L : Tensor of shape (b, n, n) or None
        Lower factors of the training covariances (the sparse kind: of
        ``K_mm``); ``None`` for the mean only.
    dual : Tensor of shape (b, n)
        ``K^-1 y`` (0 at missing points).
    maskf : Tensor of shape (b, n)
    LB : Tensor of shape (b, n, n) or None
        The sparse kind's second factor (:mod:`.sparse`): the variance gains
        ``|LB^-1 L^-1 k|^2`` back, what the data say beyond the prior's
        projection on the inducing points. ``None`` for the exact kinds.
    """

    kernel: object
    theta: torch.Tensor
    X: torch.Tensor
    L: torch.Tensor
    dual: torch.Tensor
    maskf: torch.Tensor
    LB: torch.Tensor = None


def posterior(model, X_test, full_cov=False, observation_noise=True, chunk_size=None):
    """Posterior mean and variance (or covariance) of every member at query points.

    R&W Alg. 2.1 lines 4-6 on every member, from its factor, with the query
    points in chunks.

    Parameters
    ----------
    model : Conditioned
    X_test : Tensor of shape (p, d)
    full_cov : bool
        Return the full covariance instead of the variance.
    observation_noise : bool
        Count the kernel's white noise in the prior (co)variance, as
        scikit-learn counts a ``WhiteKernel`` in its predictive std; False
        gives the latent function's posterior.
    chunk_size : int or None
        Query points per chunk when ``full_cov`` is False; bounds memory to
        ``b * chunk_size * n`` numbers.

    Returns
    -------
    mean : Tensor of shape (b, p)
    var : Tensor of shape (b, p) or (b, p, p), or None
        Variances clamped at 0 (or the full covariance); ``None`` without a
        factor.
    """
    kernel, theta, L = model.kernel, model.theta, model.L
    p = X_test.shape[0]
    if full_cov or chunk_size is None:
        chunk_size = max(p, 1)
    means, variances, V_all = [], [], []
    for start in range(0, p, chunk_size):
        Xc = X_test[start:start + chunk_size]
        Ks = kernel.cross_covariance(theta, Xc, model.X)  # (b, c, n)
        if L is None:
            # the mean needs the dual coefficients only (0 at missing points)
            means.append(Ks @ model.dual.unsqueeze(-1))
            continue
        Ks = Ks * model.maskf.unsqueeze(-2)  # a composite kernel may return a broadcast view
        means.append(Ks @ model.dual.unsqueeze(-1))
        V = torch.linalg.solve_triangular(L, Ks.mT, upper=False)  # (b, n, c)
        W = None if model.LB is None else torch.linalg.solve_triangular(model.LB, V, upper=False)
        if full_cov:
            V_all.append((V, W))
        else:
            var = kernel.prior_variance(theta, Xc, observation_noise) - V.square().sum(-2)
            variances.append(var if W is None else var + W.square().sum(-2))
    mean = torch.cat(means, dim=-2).squeeze(-1)
    if L is None:
        return mean, None
    if full_cov:
        V = torch.cat([v for v, _ in V_all], dim=-1)
        prior = kernel.prior_covariance(theta, X_test, observation_noise)
        cov = prior.baddbmm_(V.mT, V, alpha=-1.0)
        if model.LB is not None:
            W = torch.cat([w for _, w in V_all], dim=-1)
            cov.baddbmm_(W.mT, W)
        return mean, cov
    return mean, torch.cat(variances, dim=-1).clamp_min_(0.0)


def loo_from_factor(L, alpha, y, maskf):
    r"""Closed-form leave-one-out predictions of every observed point.

    With fixed hyperparameters, leaving point :math:`i` out of a GP's
    training set gives (R&W section 5.4.2, eq. 5.12)

    .. math::

        \mu_{-i} = y_i - \frac{[K^{-1} y]_i}{[K^{-1}]_{ii}}, \qquad
        \sigma^2_{-i} = \frac{1}{[K^{-1}]_{ii}}, \qquad
        \log p(y_i \mid y_{-i}) = -\tfrac12 \log \sigma^2_{-i}
            - \frac{(y_i - \mu_{-i})^2}{2 \sigma^2_{-i}} - \tfrac12 \log 2\pi,

    for every point from one factorisation. ``K`` is the training covariance
    including the noise, so :math:`\sigma^2_{-i}` is the variance of the
    held-out observation. With a mask, ``K^{-1}`` is the inverse of the
    observed block (identity elsewhere), so the formulas hold on the observed
    subset; entries at missing points are NaN.

    Parameters
    ----------
    L : Tensor of shape (b, n, n)
        Lower Cholesky factor of every member's masked training covariance.
    alpha : Tensor of shape (b, n)
        ``K^-1 y``.
    y : Tensor of shape (b, n)
        Targets, 0 where missing.
    maskf : Tensor of shape (b, n)

    Returns
    -------
    mean, var, log_density : Tensor of shape (b, n)
        NaN where ``maskf`` is 0.
    """
    Kinv_diag = torch.cholesky_inverse(L).diagonal(dim1=-2, dim2=-1)
    var = 1.0 / Kinv_diag
    resid = alpha * var  # y_i - mu_{-i}
    log_density = -0.5 * var.log() - 0.5 * resid.square() / var - 0.5 * LOG_2PI
    observed = maskf > 0
    nan = torch.full_like(var, math.nan)
    return (torch.where(observed, y - resid, nan), torch.where(observed, var, nan),
            torch.where(observed, log_density, nan))


# ------------------------------------------------------------------- sampling
def sample_mvn(mean, cov, n_samples, generator=None):
    """Joint samples from a batch of (possibly singular) Gaussians.

    Uses the symmetric square root from an eigendecomposition, so positive
    semi-definite covariances (no noise, duplicate points) are sampled exactly;
    negative eigenvalues from round-off are clipped to zero.

    Parameters
    ----------
    mean : Tensor of shape (b, p)
    cov : Tensor of shape (b, p, p)
    n_samples : int
    generator : torch.Generator or None

    Returns
    -------
    Tensor of shape (b, p, n_samples)
    """
    evals, evecs = torch.linalg.eigh(cov)
    # V diag(sqrt(lambda)) V^T does not depend on the signs LAPACK gives the eigenvectors,
    # which differ between a member alone and in a batch: the same draws either way
    root = (evecs * evals.clamp_min(0.0).sqrt().unsqueeze(-2)) @ evecs.mT  # (b, p, p)
    # drawn where the generator lives (a CPU generator serves every device), member after
    # member: torch fills one large draw in blocks whose tail depends on its size, so a
    # member's numbers would depend on its batch
    where = generator.device if generator is not None else mean.device
    z = torch.stack([
        torch.randn((mean.shape[-1], n_samples), dtype=mean.dtype, device=where, generator=generator)
        for _ in range(mean.shape[0])
    ]).to(mean.device)
    return mean.unsqueeze(-1) + root @ z
