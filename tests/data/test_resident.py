"""resident_loader / fit(on_device=True): whole datasets as DeviceLoaders, with clear refusals."""

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, TensorDataset
from torchvision import transforms as tv

import ember
from ember.data import CachedImages, DeviceLoader, image_folder, random_flip, resident_loader, split
from ember.errors import ConfigError, DataError

CPU = torch.device("cpu")
X, Y = torch.arange(20.0).view(10, 2), torch.arange(10)


def test_tensors_subsets_and_concatenations_become_one_device_loader():
    loader = resident_loader((X, Y), CPU, batch_size=4, shuffle=False)
    assert isinstance(loader, DeviceLoader) and loader.batch_size == 4 and len(loader) == 3
    head, tail = split(TensorDataset(X, Y), [6, 4], seed=0)
    both = resident_loader(ConcatDataset([tail, head]), CPU, shuffle=False)
    expected = torch.cat([Y[tail.indices], Y[head.indices]])
    assert torch.equal(both.tensors[1], expected) and torch.equal(both.tensors[0][:, 0], expected * 2.0)


def test_a_dataloader_keeps_its_batch_size_shuffle_and_drop_last():
    dl = DataLoader(TensorDataset(X, Y), batch_size=3, shuffle=True, drop_last=True)
    loader = resident_loader(dl, CPU)
    assert (loader.batch_size, loader.shuffle, loader.drop_last, len(loader)) == (3, True, True, 3)
    with pytest.raises(ConfigError, match="a loader brings its own"):
        resident_loader(dl, CPU, batch_size=4)


def _folder(root):
    for label, color in (("a", 30), ("b", 220)):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (4, 4), (color, i, 0)).save(root / label / f"{i}.png")
    return root


def test_image_folders_are_cached_as_uint8_with_their_target_transform(tmp_path):
    folder = image_folder(
        _folder(tmp_path / "imgs"),
        transform=tv.Compose([tv.ToTensor()]),
        target_transform=lambda t: torch.tensor([t]).float(),
    )
    loader = resident_loader(folder, CPU, batch_size=6, shuffle=False, cache_dir=tmp_path / "cache")
    images, labels = loader.tensors
    assert images.dtype == torch.uint8 and images.shape == (6, 3, 4, 4)
    assert labels.tolist() == [[0.0]] * 3 + [[1.0]] * 3
    batch = next(iter(loader))
    assert batch[0].dtype == torch.float32 and batch[0][0, 0, 0, 0] == pytest.approx(30 / 255)
    assert list((tmp_path / "cache").glob("*.npy"))  # the cache lives in cache_dir, not in the data


def test_per_sample_transforms_are_refused_naming_them(tmp_path):
    folder = image_folder(
        _folder(tmp_path / "imgs"), transform=tv.Compose([tv.RandomHorizontalFlip(), tv.ToTensor()])
    )
    with pytest.raises(
        DataError, match=r"training data: .*RandomHorizontalFlip.*augment=\[ember.data.random_flip"
    ):
        resident_loader(folder, CPU, what="training data", cache_dir=tmp_path)
    cached = CachedImages(
        torch.zeros(2, 3, 4, 4, dtype=torch.uint8).numpy(), [0, 1], ["a", "b"], transform=abs
    )
    with pytest.raises(DataError, match="cannot run the dataset's transform"):
        resident_loader(cached, CPU)


def test_other_datasets_are_refused_naming_the_type():
    class Lines(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return "text", i

    with pytest.raises(DataError, match="validation data: .*not a Lines"):
        resident_loader(Lines(), CPU, what="validation data")


def test_data_that_does_not_fit_in_free_device_memory_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (100, 1000))
    with pytest.raises(DataError, match=r"training data needs 0.00 GiB on cuda, but only 0.00 GiB are free"):
        resident_loader((X, Y), torch.device("cuda"), what="training data")


def test_fit_on_device_trains_with_on_device_augmentation():
    images = torch.randint(0, 256, (40, 3, 6, 6), dtype=torch.uint8)
    labels = (torch.arange(40) % 2).float().unsqueeze(1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(108, 1))
    model = ember.Model(net).compile(loss=nn.BCEWithLogitsLoss(), metrics=["accuracy"], device="cpu")
    history = model.fit(
        (images, labels),
        epochs=2,
        batch_size=8,
        on_device=True,
        augment=random_flip(),
        validation_data=(images, labels),
        verbose=0,
    )
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    assert len(history) == 2
    with pytest.raises(ConfigError, match="augment= runs on device-resident batches"):
        model.fit((images, labels), augment=random_flip(), verbose=0)


def test_resident_images_are_scaled_and_uint8_labels_and_masks_keep_their_values():
    images = torch.full((6, 3, 2, 2), 255, dtype=torch.uint8)
    labels = torch.arange(6, dtype=torch.uint8)
    x, y = next(iter(resident_loader((images, labels), CPU, batch_size=6, shuffle=False)))
    assert x.dtype == torch.float32 and x.max().item() == 1.0
    assert y.dtype == torch.uint8 and y.tolist() == [0, 1, 2, 3, 4, 5]
    masks = labels.view(6, 1, 1).expand(6, 2, 2).contiguous()
    dl = DataLoader(TensorDataset(images, masks), batch_size=3)
    x, y = next(iter(resident_loader(dl, CPU)))
    assert x.max().item() == 1.0 and torch.equal(y, masks[:3])
