import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ember.data import cache_images, image_folder, transforms
from ember.errors import DataError
from tests.conftest import shared_data


def _tree(root, sizes=None):
    for label, color in (("cats", 40), ("dogs", 200)):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 6), (color, i, 0)).save(folder / f"{i}.png")
    return root


def test_cifar2_class_to_idx():
    ds = image_folder(shared_data("cifar2", "train"))
    assert ds.class_to_idx == {"0_airplane": 0, "1_automobile": 1}
    assert len(ds) == 10000 and ds.skipped == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty file"), (b"not an image at all", "cannot identify"), ("header cut", "truncated JPEG")],
)
def test_bad_files_raise_naming_the_path(tmp_path, content, reason):
    root = _tree(tmp_path / "imgs")
    bad = root / "dogs" / "bad.jpg"
    if content == "header cut":  # the file ends before the JPEG's frame header
        Image.new("RGB", (64, 64), (1, 2, 3)).save(bad, quality=95)
        bad.write_bytes(bad.read_bytes()[:100])
    else:
        bad.write_bytes(content)
    with pytest.raises(DataError, match=rf"{re.escape(str(bad))}: .*{reason}"):
        image_folder(root)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = image_folder(root, on_bad_file="skip")
    assert len(ds) == 6 and ds.skipped[0][0] == str(bad)


def test_layout_problems_are_explained(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        image_folder(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="no class subfolders"):
        image_folder(tmp_path / "flat")
    root = _tree(tmp_path / "imgs")
    (root / "birds").mkdir()
    with pytest.raises(DataError, match=r"\['birds'\].*contain no readable image files"):
        image_folder(root)


def test_transform_presets_follow_the_tutorial(tmp_path):
    names = [type(t).__name__ for t in transforms.train_augmentation().transforms]
    assert names == ["RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation", "ToTensor"]
    ds = image_folder(_tree(tmp_path / "imgs"), transform=transforms.evaluation())
    image, label = ds[4]
    assert image.shape == (3, 6, 8) and label == 1
    assert image[0, 0, 0].item() == pytest.approx(200 / 255)


def test_cache_images_decodes_once_and_rebuilds_on_change(tmp_path):
    root = _tree(tmp_path / "imgs")
    ds = image_folder(root, transform=transforms.evaluation())
    cache = cache_images(ds, tmp_path / "cache" / "train")
    assert cache.array.shape == (6, 3, 6, 8) and cache.array.dtype == np.uint8
    assert isinstance(cache.array, np.memmap)
    for i in range(6):
        image, label = cache[i]
        assert torch.equal(image, ds[i][0]) and int(label) == ds[i][1]
    assert cache.classes == ["cats", "dogs"] and cache.images.dtype == torch.uint8
    stamp = (tmp_path / "cache" / "train.npy").stat().st_mtime_ns
    assert cache_images(ds, tmp_path / "cache" / "train").array.shape[0] == 6
    assert (tmp_path / "cache" / "train.npy").stat().st_mtime_ns == stamp  # reused, not rebuilt
    Image.new("RGB", (8, 6), (9, 9, 9)).save(root / "cats" / "3.png")
    grown = cache_images(image_folder(root), tmp_path / "cache" / "train")
    assert grown.array.shape[0] == 7


def test_cache_images_needs_one_size(tmp_path):
    root = _tree(tmp_path / "imgs")
    Image.new("RGB", (5, 5)).save(root / "cats" / "odd.png")
    with pytest.raises(DataError, match=r"odd.png is 5x5, the first image 8x6"):
        cache_images(image_folder(root), tmp_path / "c")


def test_header_check_catches_a_format_the_extension_contradicts(tmp_path):
    root = _tree(tmp_path / "imgs")
    Image.new("RGB", (8, 6)).save(root / "cats" / "really_a.png", format="PNG")
    (root / "cats" / "really_a.png").rename(root / "cats" / "photo.jpg")
    with pytest.raises(DataError, match=r"photo\.jpg: PNG data in a \.jpg file"):
        image_folder(root, cache_dir=tmp_path / "cache")
    assert len(image_folder(root, verify="none", cache_dir=tmp_path / "cache")) == 7  # listed only


def _truncated_jpeg(path):
    """A JPEG whose header is whole but whose pixel data stops at 60% of the file."""
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)  # pixel data, not tables, make up most of it
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])


def test_a_truncated_image_is_named_when_read_or_by_a_full_check(tmp_path):
    root = _tree(tmp_path / "imgs")
    bad = root / "dogs" / "late.jpg"
    _truncated_jpeg(bad)
    dataset = image_folder(root, cache_dir=tmp_path / "cache")  # the header is fine
    index = [path for path, _ in dataset.samples].index(str(bad))
    dataset.set_epoch(2)
    named = rf"cannot read image {re.escape(str(bad))} \(epoch 3, main process\)"
    with pytest.raises(DataError, match=named):
        dataset[index]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, [index]), num_workers=1)
    with pytest.raises(DataError, match=r"\(epoch 3, worker 0\).*[Tt]runcated"):
        next(iter(loader))
    with pytest.raises(DataError, match=rf"{re.escape(str(bad))}: .*[Tt]runcated"):
        image_folder(root, verify="full", cache_dir=tmp_path / "cache")


def test_persistent_workers_name_the_epoch_the_loader_is_in(tmp_path):
    root = _tree(tmp_path / "imgs")
    bad = root / "dogs" / "late.jpg"
    _truncated_jpeg(bad)
    dataset = image_folder(root, cache_dir=tmp_path / "cache")
    index = [path for path, _ in dataset.samples].index(str(bad))
    only_bad = torch.utils.data.Subset(dataset, [index])
    loader = torch.utils.data.DataLoader(only_bad, num_workers=1, persistent_workers=True)
    for epoch in range(3):  # the worker started in epoch 1 is kept
        dataset.set_epoch(epoch)
        with pytest.raises(DataError, match=rf"\(epoch {epoch + 1}, worker 0\)"):
            list(loader)


def test_the_scan_cache_rechecks_changed_added_and_removed_files_only(tmp_path, monkeypatch):
    from ember.data import scan

    opened = []
    real = scan.header_problem
    monkeypatch.setattr(scan, "header_problem", lambda path: opened.append(path) or real(path))
    root = _tree(tmp_path / "imgs")
    cache = tmp_path / "cache"
    assert len(image_folder(root, cache_dir=cache)) == 6 and len(opened) == 6
    opened.clear()
    assert len(image_folder(root, cache_dir=cache)) == 6 and opened == []  # unchanged: a listing
    changed, removed, added = root / "cats" / "0.png", root / "dogs" / "1.png", root / "dogs" / "new.png"
    Image.new("RGB", (9, 9)).save(changed)  # another size and modification time
    removed.unlink()
    Image.new("RGB", (8, 6)).save(added)
    dataset = image_folder(root, cache_dir=cache)
    assert sorted(opened) == sorted([str(changed), str(added)])
    assert str(removed) not in [path for path, _ in dataset.samples] and len(dataset) == 6
    opened.clear()
    changed.write_bytes(b"")  # the cached verdict of an edited file is not trusted
    with pytest.raises(DataError, match="empty file"):
        image_folder(root, cache_dir=cache)
    assert opened == [str(changed)]


def test_a_file_that_cannot_be_opened_is_checked_again_at_the_next_build(tmp_path):
    root = _tree(tmp_path / "imgs")
    link = root / "cats" / "elsewhere.png"
    target = tmp_path / "not_yet.png"
    link.symlink_to(target)  # dangling: neither a stat nor an open works
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=rf"{re.escape(str(link))}: cannot open"):
        image_folder(root, cache_dir=cache)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        skipping = image_folder(root, on_bad_file="skip", cache_dir=cache)
    assert len(skipping) == 6 and [path for path, _ in skipping.skipped] == [str(link)]
    Image.new("RGB", (8, 6)).save(target)  # the link now resolves: the verdict is not kept
    assert len(image_folder(root, cache_dir=cache)) == 7


def _loader_batches(dataset, workers):
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=workers, shuffle=False)
    return [(x.clone(), y.clone()) for x, y in loader]


def test_skip_replaces_an_unreadable_image_the_same_way_everywhere(tmp_path):
    root = _tree(tmp_path / "imgs")
    bad = root / "dogs" / "late.jpg"
    _truncated_jpeg(bad)
    cache = tmp_path / "cache"
    to_tensor = transforms.evaluation(size=8)
    dataset = image_folder(root, transform=to_tensor, on_bad_file="skip", cache_dir=cache)
    index = [path for path, _ in dataset.samples].index(str(bad))
    dataset.set_epoch(0)
    with pytest.warns(
        UserWarning, match=rf"cannot read image {re.escape(str(bad))} \(epoch 1, main process\).*replaced"
    ):
        image, label = dataset[index]
    replacement = dataset._replacement(index, 1)
    assert dataset.targets[replacement] == label == dataset.class_to_idx["dogs"] and replacement != index
    assert torch.equal(image, dataset[replacement][0])
    assert [path for path, _ in dataset.skipped] == [str(bad)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per epoch: the same epoch does not warn again
        dataset[index]
    serial, two_workers = _loader_batches(dataset, 0), _loader_batches(dataset, 2)
    for (x0, y0), (x2, y2) in zip(serial, two_workers, strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    rebuilt = image_folder(root, on_bad_file="skip", cache_dir=cache)  # known bad from the start
    assert str(bad) not in [path for path, _ in rebuilt.samples]
    assert rebuilt.skipped_at_build[0][0] == str(bad) and "failed when read" in rebuilt.skipped_at_build[0][1]


def test_failures_read_in_workers_reach_the_main_process(tmp_path):
    root = _tree(tmp_path / "imgs")
    bad = root / "cats" / "late.jpg"
    _truncated_jpeg(bad)
    dataset = image_folder(
        root, transform=transforms.evaluation(size=8), on_bad_file="skip", cache_dir=tmp_path / "c"
    )
    assert dataset.skipped == []
    _loader_batches(dataset, 2)
    assert [path for path, _ in dataset.skipped] == [str(bad)]


def test_a_class_whose_images_all_fail_when_read_is_named(tmp_path):
    root = _tree(tmp_path / "imgs")
    for name in ("late0.jpg", "late1.jpg"):
        _truncated_jpeg(root / "dogs" / name)
    for path in (root / "dogs").glob("*.png"):
        path.unlink()
    dataset = image_folder(root, on_bad_file="skip", cache_dir=tmp_path / "cache")
    index = dataset.targets.index(dataset.class_to_idx["dogs"])
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no image of class 'dogs' could be read"):
        dataset[index]
