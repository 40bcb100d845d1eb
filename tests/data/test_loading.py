import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from ember.data import from_arrays, loader, split
from ember.errors import DataError


@pytest.mark.filterwarnings("ignore:Length of split")
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.lists(st.integers(1, 20), min_size=1, max_size=5), st.integers(0, 99))
def test_split_fractions_add_up_exactly_and_repeat(n, weights, seed):
    fractions = [w / sum(weights) for w in weights]
    fractions[-1] = 1.0 - sum(fractions[:-1])
    data = TensorDataset(torch.arange(n))
    parts = split(data, fractions, seed=seed)
    assert sum(len(p) for p in parts) == n
    assert all(abs(len(p) - f * n) <= len(parts) for p, f in zip(parts, fractions, strict=True))
    again = split(data, fractions, seed=seed)
    assert [list(p.indices) for p in parts] == [list(p.indices) for p in again]
    seen = sorted(i for p in parts for i in p.indices)
    assert seen == list(range(n))


def test_split_counts_and_bad_sizes():
    data = TensorDataset(torch.arange(10))
    assert [len(p) for p in split(data, [7, 3])] == [7, 3]
    with pytest.raises(DataError, match=r"counts \[7, 2\] add up to 9, the dataset has 10"):
        split(data, [7, 2])
    with pytest.raises(DataError, match="add up to 0.9"):
        split(data, [0.5, 0.4])


def test_concatenation_keeps_working():
    a, b = from_arrays(torch.zeros(3, 2), torch.zeros(3)), from_arrays(torch.ones(2, 2), torch.ones(2))
    both = a + b
    assert isinstance(both, ConcatDataset) and len(both) == 5 and both[4][1].item() == 1.0
    parts = split(both, [0.6, 0.4])
    assert len(parts[0] + parts[1]) == 5


class CountingTensors(TensorDataset):
    calls = 0

    def __getitem__(self, i):
        CountingTensors.calls += 1
        return super().__getitem__(i)


def test_tensor_datasets_are_fetched_one_gather_per_batch():
    x, y = torch.arange(100.0).view(50, 2), torch.arange(50)
    data = CountingTensors(x, y)
    batches = list(loader(data, batch_size=16, shuffle=True, seed=1))
    assert CountingTensors.calls == 0
    assert [len(b[1]) for b in batches] == [16, 16, 16, 2]
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(50))
    first = batches[0]
    assert torch.equal(first[0], x[first[1]])  # rows stay paired
    again = list(loader(data, batch_size=16, shuffle=True, seed=1))
    assert torch.equal(again[0][1], first[1])


def test_subsets_of_tensor_datasets_gather_through_their_indices():
    data = TensorDataset(torch.arange(10) * 10)
    part = split(data, [0.5, 0.5], seed=3)[1]
    values = torch.cat([b[0] for b in loader(part, batch_size=4)]).tolist()
    assert values == [int(data[i][0]) for i in part.indices]


def test_loader_defaults():
    dl = loader(TensorDataset(torch.zeros(4)), batch_size=2, num_workers=1)
    assert isinstance(dl, DataLoader)
    assert dl.persistent_workers and dl.pin_memory == torch.cuda.is_available()
    with pytest.raises(DataError, match="empty dataset"):
        loader(TensorDataset(torch.zeros(0)))


def test_gathered_loader_order_follows_seed_and_epoch():
    from ember.data.adapt import set_epoch

    data = TensorDataset(torch.arange(30))
    a = loader(data, batch_size=7, shuffle=True, seed=4)
    b = loader(data, batch_size=7, shuffle=True, seed=4)
    first = torch.cat([batch[0] for batch in a])
    set_epoch(b, 0)
    assert torch.equal(torch.cat([batch[0] for batch in b]), first)
    second = torch.cat([batch[0] for batch in a])  # the next epoch reshuffles
    assert not torch.equal(second, first) and sorted(second.tolist()) == list(range(30))
    set_epoch(b, 1)
    assert torch.equal(torch.cat([batch[0] for batch in b]), second)
    assert len(loader(data, batch_size=7, drop_last=True)) == 4


def test_gathered_loader_with_worker_processes():
    data = TensorDataset(torch.arange(40) * 2, torch.arange(40))
    batches = list(loader(data, batch_size=8, shuffle=True, seed=2, num_workers=2))
    values = torch.cat([b[0] for b in batches])
    assert sorted(values.tolist()) == list(range(0, 80, 2))
    single = torch.cat([b[0] for b in loader(data, batch_size=8, shuffle=True, seed=2)])
    assert torch.equal(values, single)  # the same order with or without workers
