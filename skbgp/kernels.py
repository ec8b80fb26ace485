r"""Kernel specifications with per-target values and priors.

These are descriptions, not computations: they hold initial values, bounds
and priors, and :class:`~skbgp.BatchedGaussianProcessRegressor` turns them
into the batched core. They mirror scikit-learn's kernels of the same names
(same formulas, parameter names, log-space ``theta`` and ``"fixed"`` bounds)
and add two things to every hyperparameter ``<name>``:

* ``<name>`` may be **per target**: an array with a leading ``n_targets``
  axis (``(n_targets,)`` for a scalar hyperparameter, ``(n_targets,
  n_features)`` for ARD length scales) gives every target its own initial
  value;
* ``<name>_prior``: a univariate ``torch.distributions`` object on the
  hyperparameter's natural value. Its batch shape may be ``()``, the
  hyperparameter's shape (``(n_features,)`` for ARD length scales: one prior
  per dimension) or per target (``(n_targets,)`` for a scalar,
  ``(n_targets, n_features)`` for ARD length scales). With priors the
  estimator fits by maximum a posteriori (see :mod:`skbgp._core.priors` and
  the "Kernels and priors" page). Its parameters are taken as the
  distribution holds them and converted to the estimator's ``dtype`` and
  ``device``: numbers passed to a ``torch.distributions`` constructor become
  tensors of torch's default dtype (float32 unless changed), so
  ``Gamma(2.0, 0.0075)`` holds 0.0075 rounded to float32; pass float64
  tensors (``torch.tensor(0.0075, dtype=torch.float64)``) where the last
  digits matter, and the fit does not depend on torch's default dtype.

Combine them with ``+``, ``*`` and ``**``; a number becomes a
:class:`ConstantKernel` with the default bounds, as in scikit-learn.

Examples
--------
The kernel of the motivating problem (pyro-ppl/pyro issue 1679):

>>> import torch
>>> from torch.distributions import Gamma, Uniform
>>> from skbgp.kernels import RBF, ConstantKernel, WhiteKernel
>>> kernel = (
...     ConstantKernel(20.0, constant_value_bounds=(1e-5, 1e5),
...                    constant_value_prior=Uniform(10.0, 150.0))
...     * RBF([300.0, 30.0, 30.0], length_scale_prior=Gamma(
...         torch.tensor([2.0, 2.0, 2.0]), torch.tensor([0.0075, 0.075, 0.075])))
...     + WhiteKernel(1.0)
... )
>>> kernel.get_params()["k1__k2__length_scale"]
[300.0, 30.0, 30.0]
"""

from sklearn.base import BaseEstimator

__all__ = [
    "RBF",
    "Matern",
    "RationalQuadratic",
    "ExpSineSquared",
    "DotProduct",
    "ConstantKernel",
    "WhiteKernel",
    "Sum",
    "Product",
    "Exponentiation",
]

_BOUNDS = (1e-5, 1e5)


class _Operators:
    """``+``, ``*`` and ``**`` between kernel specifications (and numbers)."""

    def __add__(self, other):
        return Sum(self, _as_kernel(other, "+"))

    def __radd__(self, other):
        return Sum(_as_kernel(other, "+"), self)

    def __mul__(self, other):
        return Product(self, _as_kernel(other, "*"))

    def __rmul__(self, other):
        return Product(_as_kernel(other, "*"), self)

    def __pow__(self, exponent):
        return Exponentiation(self, exponent)


def _as_kernel(other, op):
    if isinstance(other, _Operators):
        return other
    if isinstance(other, (int, float)) and not isinstance(other, bool):
        return ConstantKernel(float(other))
    raise TypeError(
        f"Cannot combine an skbgp kernel with {type(other).__name__} by '{op}': use "
        "skbgp.kernels objects (or numbers) on both sides; scikit-learn kernels and skbgp "
        "kernels do not mix in one expression."
    )


class RBF(_Operators, BaseEstimator):
    r"""Squared exponential kernel, with ARD.

    .. math::

        k(x, z) = \exp\!\Big(-\tfrac12 \sum_j (x_j - z_j)^2 / \ell_j^2\Big)

    Parameters
    ----------
    length_scale : float or array-like of shape (n_features,) or (n_targets, n_features), default=1.0
        Initial length scale(s): a scalar (isotropic), one per feature (ARD),
        or one row per target (``(n_targets, 1)`` for isotropic per target).
    length_scale_bounds : pair of floats, array-like of shape (n_features, 2) or "fixed", default=(1e-5, 1e5)
    length_scale_prior : torch.distributions.Distribution or None, default=None
        Prior on the length scale(s), batch shape ``()``, ``(n_features,)``
        or ``(n_targets, n_features)``.
    """

    def __init__(self, length_scale=1.0, length_scale_bounds=_BOUNDS, length_scale_prior=None):
        self.length_scale = length_scale
        self.length_scale_bounds = length_scale_bounds
        self.length_scale_prior = length_scale_prior


class Matern(_Operators, BaseEstimator):
    r"""Matern kernel with ``nu`` in 0.5, 1.5, 2.5 or inf, with ARD.

    With :math:`r^2 = \sum_j (x_j - z_j)^2 / \ell_j^2` and
    :math:`a = \sqrt{2\nu}\, r`:

    .. math::

        k_{1/2} = e^{-a},\quad k_{3/2} = (1 + a)\, e^{-a},\quad
        k_{5/2} = (1 + a + a^2/3)\, e^{-a},\quad k_\infty = e^{-r^2/2}.

    Parameters
    ----------
    length_scale : float or array-like of shape (n_features,) or (n_targets, n_features), default=1.0
    length_scale_bounds : pair of floats, array-like of shape (n_features, 2) or "fixed", default=(1e-5, 1e5)
    nu : {0.5, 1.5, 2.5, inf}, default=1.5
    length_scale_prior : torch.distributions.Distribution or None, default=None
    """

    def __init__(self, length_scale=1.0, length_scale_bounds=_BOUNDS, nu=1.5,
                 length_scale_prior=None):
        self.length_scale = length_scale
        self.length_scale_bounds = length_scale_bounds
        self.nu = nu
        self.length_scale_prior = length_scale_prior


class RationalQuadratic(_Operators, BaseEstimator):
    r"""Rational quadratic kernel (isotropic).

    .. math::

        k(x, z) = \Big(1 + \frac{\|x - z\|^2}{2 \alpha \ell^2}\Big)^{-\alpha}

    Parameters
    ----------
    length_scale : float or array-like of shape (n_targets,), default=1.0
    alpha : float or array-like of shape (n_targets,), default=1.0
    length_scale_bounds, alpha_bounds : pair of floats or "fixed", default=(1e-5, 1e5)
    length_scale_prior, alpha_prior : torch.distributions.Distribution or None, default=None
    """

    def __init__(self, length_scale=1.0, alpha=1.0, length_scale_bounds=_BOUNDS,
                 alpha_bounds=_BOUNDS, length_scale_prior=None, alpha_prior=None):
        self.length_scale = length_scale
        self.alpha = alpha
        self.length_scale_bounds = length_scale_bounds
        self.alpha_bounds = alpha_bounds
        self.length_scale_prior = length_scale_prior
        self.alpha_prior = alpha_prior


class ExpSineSquared(_Operators, BaseEstimator):
    r"""Periodic kernel (isotropic).

    .. math::

        k(x, z) = \exp\!\Big(-2 \sin^2(\pi \|x - z\| / p) / \ell^2\Big)

    Parameters
    ----------
    length_scale : float or array-like of shape (n_targets,), default=1.0
    periodicity : float or array-like of shape (n_targets,), default=1.0
    length_scale_bounds, periodicity_bounds : pair of floats or "fixed", default=(1e-5, 1e5)
    length_scale_prior, periodicity_prior : torch.distributions.Distribution or None, default=None
    """

    def __init__(self, length_scale=1.0, periodicity=1.0, length_scale_bounds=_BOUNDS,
                 periodicity_bounds=_BOUNDS, length_scale_prior=None, periodicity_prior=None):
        self.length_scale = length_scale
        self.periodicity = periodicity
        self.length_scale_bounds = length_scale_bounds
        self.periodicity_bounds = periodicity_bounds
        self.length_scale_prior = length_scale_prior
        self.periodicity_prior = periodicity_prior


class DotProduct(_Operators, BaseEstimator):
    r"""Linear (dot-product) kernel.

    .. math::

        k(x, z) = \sigma_0^2 + x \cdot z

    Parameters
    ----------
    sigma_0 : float or array-like of shape (n_targets,), default=1.0
    sigma_0_bounds : pair of floats or "fixed", default=(1e-5, 1e5)
    sigma_0_prior : torch.distributions.Distribution or None, default=None
    """

    def __init__(self, sigma_0=1.0, sigma_0_bounds=_BOUNDS, sigma_0_prior=None):
        self.sigma_0 = sigma_0
        self.sigma_0_bounds = sigma_0_bounds
        self.sigma_0_prior = sigma_0_prior


class ConstantKernel(_Operators, BaseEstimator):
    r"""Constant kernel :math:`k(x, z) = c`; multiplied with another, a signal variance.

    Parameters
    ----------
    constant_value : float or array-like of shape (n_targets,), default=1.0
    constant_value_bounds : pair of floats or "fixed", default=(1e-5, 1e5)
    constant_value_prior : torch.distributions.Distribution or None, default=None
    """

    def __init__(self, constant_value=1.0, constant_value_bounds=_BOUNDS,
                 constant_value_prior=None):
        self.constant_value = constant_value
        self.constant_value_bounds = constant_value_bounds
        self.constant_value_prior = constant_value_prior


class WhiteKernel(_Operators, BaseEstimator):
    r"""White noise :math:`k(x, z) = \sigma_n^2 [x = z]`, on the training covariance only.

    As scikit-learn's ``WhiteKernel``: the noise enters ``k(X)`` (and the
    predictive standard deviation), not the cross-covariance ``k(X, Z)``.

    Parameters
    ----------
    noise_level : float or array-like of shape (n_targets,), default=1.0
    noise_level_bounds : pair of floats or "fixed", default=(1e-5, 1e5)
    noise_level_prior : torch.distributions.Distribution or None, default=None
    """

    def __init__(self, noise_level=1.0, noise_level_bounds=_BOUNDS, noise_level_prior=None):
        self.noise_level = noise_level
        self.noise_level_bounds = noise_level_bounds
        self.noise_level_prior = noise_level_prior


class Sum(_Operators, BaseEstimator):
    """``k1 + k2``.

    Parameters
    ----------
    k1, k2 : skbgp kernel
    """

    def __init__(self, k1, k2):
        self.k1 = k1
        self.k2 = k2

    def __repr__(self, N_CHAR_MAX=700):
        return f"{self.k1!r} + {self.k2!r}"


class Product(_Operators, BaseEstimator):
    """``k1 * k2`` (elementwise).

    Parameters
    ----------
    k1, k2 : skbgp kernel
    """

    def __init__(self, k1, k2):
        self.k1 = k1
        self.k2 = k2

    def __repr__(self, N_CHAR_MAX=700):
        def wrap(k):
            return f"({k!r})" if isinstance(k, Sum) else repr(k)
        return f"{wrap(self.k1)} * {wrap(self.k2)}"


class Exponentiation(_Operators, BaseEstimator):
    """``kernel ** exponent`` (elementwise).

    Parameters
    ----------
    kernel : skbgp kernel
    exponent : float
    """

    def __init__(self, kernel, exponent):
        self.kernel = kernel
        self.exponent = exponent

    def __repr__(self, N_CHAR_MAX=700):
        return f"({self.kernel!r}) ** {self.exponent}"
