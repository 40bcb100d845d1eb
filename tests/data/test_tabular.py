import numpy as np
import pandas as pd
import pytest
import torch

from ember.data import from_arrays, to_tensor
from ember.errors import DataError


def test_dtypes_are_mapped_for_training():
    assert to_tensor(np.zeros(3, dtype=np.float64)).dtype == torch.float32
    assert to_tensor(np.zeros(3, dtype=np.int32)).dtype == torch.int64
    assert to_tensor(np.array([True, False])).dtype == torch.float32
    assert to_tensor(torch.zeros(2, dtype=torch.float16)).dtype == torch.float16
    assert to_tensor([[1.0, 2.0]]).shape == (1, 2)


def test_pandas_frames_and_series():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]})
    ds = from_arrays(frame, pd.Series([0, 1]))
    x, y = ds.tensors
    assert x.dtype == torch.float32 and x.tolist() == [[1.0, 3.0], [2.0, 4.0]]
    assert y.dtype == torch.int64 and y.tolist() == [0, 1]


def test_non_numeric_columns_are_named():
    with pytest.raises(DataError, match=r"\['city'\]"):
        from_arrays(pd.DataFrame({"x": [1.0], "city": ["Paris"]}))


def test_length_mismatch_names_both_lengths():
    with pytest.raises(DataError, match="x has 5.*y has 4"):
        from_arrays(np.zeros((5, 2)), np.zeros(4))


def test_several_inputs():
    ds = from_arrays((np.zeros((3, 2)), np.ones((3, 5))), np.arange(3))
    assert [t.shape for t in ds.tensors] == [(3, 2), (3, 5), (3,)]
