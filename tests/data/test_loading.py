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


def test_collate_stacks_lists_in_dict_samples_instead_of_transposing():
    from ember.data.loading import collate_samples

    batch = collate_samples(
        [
            {"ids": [1, 2, 3], "score": 0.5, "label": 1, "text": "good"},
            {"ids": [4, 5, 6], "score": 1.5, "label": 0, "text": "bad"},
        ]
    )
    assert batch["ids"].tolist() == [[1, 2, 3], [4, 5, 6]] and batch["ids"].dtype == torch.int64
    assert batch["score"].dtype == torch.float32 and batch["score"].tolist() == [0.5, 1.5]
    assert batch["label"].tolist() == [1, 0]
    assert batch["text"] == ["good", "bad"]  # left for the step to name, as default_collate keeps it
    tensors = collate_samples([{"x": torch.ones(2), "y": torch.tensor(1)}] * 3)
    assert tensors["x"].shape == (3, 2) and tensors["y"].tolist() == [1, 1, 1]
    pairs = collate_samples([(torch.zeros(2), 1), (torch.ones(2), 0)])
    assert pairs[0].shape == (2, 2) and pairs[1].tolist() == [1, 0]  # tuples: default_collate as it is


def test_collate_names_a_key_whose_lists_need_padding():
    from ember.data.loading import collate_samples

    with pytest.raises(
        DataError, match=r"'ids' values cannot be stacked.*lengths 2 to 3.*padding='max_length'"
    ):
        collate_samples([{"ids": [1, 2, 3]}, {"ids": [4, 5]}])


def _hf_dataset(n=20, fmt=None):
    datasets = pytest.importorskip("datasets", reason="the datasets package is not installed")
    ds = datasets.Dataset.from_dict({"x": [[float(i), -float(i)] for i in range(n)], "label": list(range(n))})
    return ds if fmt is None else ds.with_format(fmt)


def test_loader_over_a_hugging_face_dataset_gives_dicts_of_tensors():
    for fmt in (None, "torch"):
        batches = list(loader(_hf_dataset(10, fmt), batch_size=4))
        assert [b["label"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        assert batches[0]["x"].tolist() == [[0.0, -0.0], [1.0, -1.0], [2.0, -2.0], [3.0, -3.0]]
        assert batches[0]["x"].dtype == torch.float32 and batches[0]["label"].dtype == torch.int64


def test_random_transforms_of_a_hugging_face_dataset_follow_the_batch_not_the_workers():
    ds = _hf_dataset(24)

    def jitter(batch):  # HF calls it on its own __getitems__ fetch, inside ember's seeded context
        return {
            "x": [[v + float(torch.rand(())) for v in row] for row in batch["x"]],
            "label": batch["label"],
        }

    ds.set_transform(jitter)

    def run(workers):
        return [b["x"] for b in loader(ds, batch_size=8, shuffle=True, seed=5, num_workers=workers)]

    single, again, spread = run(0), run(0), run(2)
    assert all(torch.equal(a, b) for a, b in zip(single, again, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(single, spread, strict=True))
    assert not torch.equal(single[0], single[1])


def test_default_workers_decode_image_folders_in_workers_only(tmp_path, monkeypatch):
    from PIL import Image
    from torch.utils.data import Subset, TensorDataset

    from ember.data import image_folder, loader
    from ember.data.loading import default_workers

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / label / "0.png")
    folder = image_folder(tmp_path, cache_dir=tmp_path / "cache")
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_workers(folder) == default_workers(Subset(folder, [0])) == 8
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_workers(folder) == 1
    assert loader(folder, batch_size=2).num_workers == 1
    assert loader(folder, batch_size=2, num_workers=0).num_workers == 0  # an explicit count wins
    tensors = TensorDataset(torch.arange(4.0))
    assert default_workers(tensors) == 0 and loader(tensors, batch_size=2).num_workers == 0
