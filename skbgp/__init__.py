"""skbgp: many independent exact Gaussian processes, fitted as one batch."""

from ._regressor import BatchedGaussianProcessRegressor
from ._suggest import QBatchSuggester

__all__ = ["BatchedGaussianProcessRegressor", "QBatchSuggester", "__version__"]

__version__ = "0.1.0"
