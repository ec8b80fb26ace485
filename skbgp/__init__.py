"""skbgp: many independent exact Gaussian processes, fitted as one batch."""

from ._regressor import BatchedGaussianProcessRegressor

__all__ = ["BatchedGaussianProcessRegressor", "__version__"]

__version__ = "0.1.0"
