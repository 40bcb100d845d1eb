import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ember.data import DeviceLoader, as_batches
from ember.data.adapt import set_epoch
from ember.errors import ConfigError, DataError


def test_dataloaders_are_rebuilt_on_the_resumable_sampler():
    data = TensorDataset(torch.arange(10.0), torch.arange(10))
    rebuilt = as_batches(DataLoader(data, batch_size=4, shuffle=False, drop_last=True))
    assert rebuilt.batch_size is None and len(rebuilt) == 2  # batches come from ember's batch sampler
    assert [b[1].tolist() for b in rebuilt] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    shuffled = as_batches(DataLoader(data, batch_size=4, shuffle=True))
    assert sorted(torch.cat([b[1] for b in shuffled]).tolist()) == list(range(10))
    with pytest.raises(ConfigError, match="DataLoader brings its own batch size"):
        as_batches(DataLoader(data, batch_size=2), batch_size=8)


def test_dataloaders_with_custom_samplers_are_used_as_they_are():
    data = TensorDataset(torch.arange(10.0))
    custom = DataLoader(data, sampler=torch.utils.data.WeightedRandomSampler([1.0] * 10, 10))
    assert as_batches(custom) is custom


def test_dataset_gets_a_loader_with_the_batch_size():
    loader = as_batches(TensorDataset(torch.zeros(10)), batch_size=4)
    assert isinstance(loader, DataLoader) and len(loader) == 3


def test_arrays_become_a_device_loader():
    batches = as_batches((np.zeros((70, 2)), np.zeros(70)))
    assert isinstance(batches, DeviceLoader) and len(batches) == 3  # default batch size 32


def test_empty_data_is_named():
    with pytest.raises(DataError, match="training data has 0 samples"):
        as_batches((np.zeros((0, 2)), np.zeros(0)), what="training data")
    with pytest.raises(DataError, match="empty Dataset"):
        as_batches(TensorDataset(torch.zeros(0)))


def test_set_epoch_reaches_sampler():
    class Sampler(torch.utils.data.Sampler):
        def __init__(self):
            self.epoch = None

        def __iter__(self):
            return iter(range(2))

        def __len__(self):
            return 2

        def set_epoch(self, epoch):
            self.epoch = epoch

    sampler = Sampler()
    set_epoch(DataLoader(TensorDataset(torch.zeros(2)), sampler=sampler), 5)
    assert sampler.epoch == 5


def test_a_seeded_dataloader_keeps_its_order_when_rebuilt():
    data = TensorDataset(torch.arange(20))

    def order(seed):
        loader = DataLoader(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(seed))
        return torch.cat([b[0] for b in as_batches(loader)]).tolist()

    assert order(3) == order(3) and order(3) != order(4)
