"""Epochs of a fixed number of batches cut from data without a length (a stream, a generator, an
``IterableDataset``'s loader): ``fit(steps_per_epoch=n)`` over such data.

One iterator runs across epochs, so each epoch continues where the last one stopped; when the data
runs out it is iterated again from its start (a new pass). Data with a length is cut by the fit
loop instead, each epoch from the start of that epoch's order. Knows nothing but Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ember.errors import DataError

__all__ = ["StreamEpochs"]


class StreamEpochs:
    """``steps`` batches per iteration from ``batches``, continuing one iterator across iterations.

    Example:
        >>> epochs = StreamEpochs(range(5), steps=3)
        >>> list(epochs), list(epochs)
        ([0, 1, 2], [3, 4, 0])
    """

    def __init__(self, batches: Iterable[Any], steps: int) -> None:
        self.batches = batches
        self.steps = steps
        self._iterator: Iterator[Any] | None = None
        self._yielded = 0  # batches taken from the data so far

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Any]:
        for _ in range(self.steps):
            yield self._next()

    def _next(self) -> Any:
        """The next batch, starting a new pass over the data when the current one ended."""
        for fresh in (False, True):
            if self._iterator is None or fresh:
                self._iterator = iter(self.batches)
            try:
                batch = next(self._iterator)
            except StopIteration:
                continue
            self._yielded += 1
            return batch
        if self._yielded:
            raise DataError(
                f"the training data ended after {self._yielded} batches and a new pass over it yielded "
                "none (a generator can be read once): give fit data that can be iterated again (a "
                "DataLoader, an IterableDataset, a list), or a generator that never ends"
            )
        raise DataError("the training data yielded no batches")
