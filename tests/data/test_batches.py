import pytest
import torch

from ember.data import TensorBatches
from ember.errors import DataError


def _orders(batches):
    return torch.cat([b[0] for b in batches]).tolist()


def test_sequential_batches_and_length():
    tb = TensorBatches(torch.arange(10), torch.arange(10) * 2, batch_size=4)
    batches = list(tb)
    assert len(tb) == 3 and [len(b[0]) for b in batches] == [4, 4, 2]
    assert batches[2][1].tolist() == [16, 18]
    assert len(TensorBatches(torch.arange(10), batch_size=4, drop_last=True)) == 2


def test_shuffle_depends_on_seed_and_epoch_only():
    a = TensorBatches(torch.arange(50), batch_size=8, shuffle=True, seed=3)
    b = TensorBatches(torch.arange(50), batch_size=8, shuffle=True, seed=3)
    first = _orders(a)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    a.set_epoch(1)
    second = _orders(a)
    assert second != first
    b.set_epoch(1)
    assert _orders(b) == second  # epoch 1 without running epoch 0 first


def test_state_dict_round_trip():
    a = TensorBatches(torch.arange(20), batch_size=5, shuffle=True, seed=7)
    a.set_epoch(4)
    b = TensorBatches(torch.arange(20), batch_size=5, shuffle=True, seed=0)
    b.load_state_dict(a.state_dict())
    assert _orders(b) == _orders(a)


def test_bad_inputs():
    with pytest.raises(DataError, match=r"\[3, 2\]"):
        TensorBatches(torch.zeros(3), torch.zeros(2))
    with pytest.raises(DataError, match="batch_size"):
        TensorBatches(torch.zeros(3), batch_size=0)
