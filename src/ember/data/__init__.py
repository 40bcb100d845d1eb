"""ember.data: datasets from tensors and arrays, and the adapter that turns any input into batches."""

from ember.data.adapt import as_batches
from ember.data.batches import TensorBatches
from ember.data.tabular import from_arrays, to_tensor

__all__ = ["TensorBatches", "as_batches", "from_arrays", "to_tensor"]
