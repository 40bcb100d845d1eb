import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ember.data import DeviceLoader, as_batches
from ember.data.adapt import set_epoch
from ember.errors import ConfigError, DataError


def test_dataloader_is_used_as_it_is():
    loader = DataLoader(TensorDataset(torch.zeros(4)), batch_size=2)
    assert as_batches(loader) is loader
    with pytest.raises(ConfigError, match="DataLoader brings its own batch size"):
        as_batches(loader, batch_size=8)


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
