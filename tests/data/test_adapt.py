import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ember.data import DeviceLoader, as_batches
from ember.data.adapt import data_state, load_data_state, set_epoch
from ember.data.sampler import SeededBatchSampler
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


def _hf_dataset(n=10, **columns):
    datasets = pytest.importorskip("datasets", reason="the datasets package is not installed")
    data = {"ids": [[i, i + 100] for i in range(n)], "label": list(range(n)), **columns}
    return datasets.Dataset.from_dict(data)


def test_a_hugging_face_dataset_is_a_dataset_not_an_iterable_of_batches():
    batches = as_batches(_hf_dataset(10), batch_size=4)
    assert isinstance(batches.batch_sampler, SeededBatchSampler) and len(batches) == 3
    first = next(iter(batches))
    assert first["ids"].tolist() == [[0, 100], [1, 101], [2, 102], [3, 103]]
    assert first["label"].tolist() == [0, 1, 2, 3]
    assert len(as_batches(_hf_dataset(70).with_format("torch"))) == 3  # default batch size 32
    with pytest.raises(ConfigError, match="DataLoader brings its own batch size"):
        as_batches(DataLoader(_hf_dataset(4)), batch_size=2)


def test_a_hugging_face_dataset_shuffles_reproducibly_and_resumes_mid_epoch():
    def order(batches):
        return [b["label"].tolist() for b in batches]

    torch.manual_seed(1)
    a = as_batches(_hf_dataset(20), batch_size=6, shuffle=True)
    torch.manual_seed(1)
    b = as_batches(_hf_dataset(20), batch_size=6, shuffle=True)
    epoch0 = order(a)
    assert epoch0 == order(b) and sorted(x for batch in epoch0 for x in batch) == list(range(20))
    assert epoch0 != [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17], [18, 19]]
    resumed = as_batches(_hf_dataset(20), batch_size=6, shuffle=True)
    load_data_state(resumed, data_state(a, 0, 2))
    assert order(resumed) == epoch0[2:]


def test_a_dataloader_over_a_hugging_face_dataset_is_rebuilt():
    ds = _hf_dataset(12)
    rebuilt = as_batches(DataLoader(ds, batch_size=5, shuffle=True, num_workers=2))
    assert isinstance(rebuilt.batch_sampler, SeededBatchSampler) and rebuilt.num_workers == 2
    labels = [b["label"].tolist() for b in rebuilt]
    assert [len(x) for x in labels] == [5, 5, 2] and sorted(x for batch in labels for x in batch) == list(
        range(12)
    )
    formatted = as_batches(DataLoader(ds.with_format("torch"), batch_size=5))
    assert next(iter(formatted))["ids"].shape == (5, 2)


def test_text_columns_travel_as_lists_for_the_step_to_name():
    batch = next(iter(as_batches(_hf_dataset(3, text=["a", "b", "c"]))))
    assert batch["text"] == ["a", "b", "c"] and batch["label"].tolist() == [0, 1, 2]


def test_any_sized_indexable_of_tuple_samples_is_a_dataset():
    class Squares:  # not a torch Dataset: only __getitem__ and __len__
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.tensor([float(i)]), i * i

    batches = as_batches(Squares(), batch_size=2)
    assert isinstance(batches, DataLoader) and [b[1].tolist() for b in batches] == [[0, 1], [4, 9], [16]]


def test_lists_of_dicts_are_samples_when_they_hold_a_number_else_batches():
    samples = [{"x": torch.full((3,), float(i)), "label": i} for i in range(5)]
    batches = list(as_batches(samples, batch_size=2))
    assert [b["label"].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert batches[0]["x"].shape == (2, 3)
    with_tensor_targets = [{"x": torch.zeros(3), "label": torch.tensor(i)} for i in range(3)]
    assert [b["label"].tolist() for b in as_batches(with_tensor_targets)] == [[0, 1, 2]]
    dict_batches = [{"x": torch.zeros(4, 3), "label": torch.zeros(4)} for _ in range(3)]
    assert as_batches(dict_batches) is dict_batches
    pair_batches = [(torch.zeros(4, 3), torch.zeros(4))] * 2
    assert as_batches(pair_batches) is pair_batches
