"""skbgp: many independent exact Gaussian processes, fitted as one batch."""

from ._cross_validation import batched_cross_val_predict, batched_cross_validate, loo_predictive
from ._fitted import FittedGPs
from ._regressor import BatchedGaussianProcessRegressor
from ._resources import FitMemoryError, SlowFitWarning
from ._sparse import SparseBatchedGaussianProcessRegressor
from ._suggest import QBatchSuggester

__all__ = [
    "BatchedGaussianProcessRegressor",
    "FitMemoryError",
    "FittedGPs",
    "QBatchSuggester",
    "SlowFitWarning",
    "SparseBatchedGaussianProcessRegressor",
    "batched_cross_validate",
    "batched_cross_val_predict",
    "loo_predictive",
    "__version__",
]

__version__ = "0.1.0"
