"""ember.data.decode: crops drawn before decoding, reduced-scale JPEG decodes, uint8 outputs, and
training and exact resume on a folder of mixed-size images."""

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ember
from ember.callbacks import ModelCheckpoint
from ember.data import image_folder, loader
from ember.data.decode import RandomResizedCropDecode, ResizeDecode, _decode, _scaled_crop, crop_box
from ember.data.transforms import Uint8ToFloat
from tests.step_callbacks import Crash, CrashAt


def _photo(path, width, height, seed=0):
    """A smooth JPEG (upsampled noise): what a scaled decode approximates well."""
    small = np.random.default_rng(seed).integers(
        0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8
    )
    Image.fromarray(small).resize((width, height), Image.BICUBIC).save(path, quality=95)
    return path


def _mixed_folder(root):
    sizes = [(96, 120), (320, 200), (150, 150), (64, 300), (500, 380), (200, 97)]
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            _photo(root / label / f"{i}.jpg", w, h, seed=i + (label == "dogs") * 10)
        Image.new("RGB", (70, 90), (9, 9, 9)).save(root / label / "flat.png")
    return root


def test_crop_box_stays_inside_and_repeats_under_the_same_seed():
    random.seed(3)
    boxes = [crop_box(320, 200, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(200)]
    for left, top, w, h in boxes:
        assert left >= 0 and left + w <= 320 and top >= 0 and top + h <= 200 and w > 0 and h > 0
    random.seed(3)
    assert [crop_box(320, 200, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(200)] == boxes
    assert crop_box(10, 1000, (0.9, 1.0), (1.0, 1.0))[2:] == (10, 10)  # no try fits: the centre


def test_loaders_give_uint8_squares_for_every_size_and_format(tmp_path):
    root = _mixed_folder(tmp_path / "imgs")
    for path in sorted(root.rglob("*.*")):
        for decode in (RandomResizedCropDecode(32), ResizeDecode(32)):
            image = decode(str(path))
            assert image.shape == (3, 32, 32) and image.dtype == torch.uint8


def test_a_scaled_decode_matches_the_full_decode_of_the_same_crop(tmp_path):
    path = _photo(tmp_path / "big.jpg", 1200, 900)
    data = path.read_bytes()
    box = (100, 50, 640, 480)
    scaled = _scaled_crop(data, box, 8, 64).float()  # decoded at 150 x 113
    full = _decode(data)[:, 50:530, 100:740]
    reference = torch.nn.functional.interpolate(
        full[None].float(), size=(64, 64), mode="bilinear", antialias=True
    )[0]
    assert (scaled - reference).abs().mean().item() < 4.0  # out of 255: the same picture


def test_the_crop_and_flip_repeat_under_the_same_seeds(tmp_path):
    path = str(_photo(tmp_path / "a.jpg", 320, 240))
    decode = RandomResizedCropDecode(48)
    random.seed(0)
    first = [decode(path) for _ in range(5)]
    random.seed(0)
    assert all(torch.equal(a, decode(path)) for a in first)
    assert not all(torch.equal(first[0], other) for other in first[1:])


def make_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    return ember.Model(net).compile(
        nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.01), device="cpu"
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_a_mixed_size_folder_trains_and_resumes_exactly(tmp_path, workers):
    root = _mixed_folder(tmp_path / "imgs")
    dataset = image_folder(
        root, loader=RandomResizedCropDecode(16), transform=Uint8ToFloat(), cache_dir=tmp_path / "c"
    )
    batches = loader(dataset, batch_size=4, shuffle=True, seed=1, num_workers=workers)
    assert_resumes_exactly(lambda: batches, tmp_path / "ckpt")


def assert_resumes_exactly(data, folder):
    """Two epochs of 4 steps in one go equal a crash after step 7 and a resume from the checkpoint
    of step 6 (mid-epoch 2): the same weights, bitwise, and the same epoch losses."""
    whole = make_model()
    whole.fit(data(), epochs=2, verbose=0)
    with pytest.raises(Crash):
        make_model().fit(
            data(), epochs=2, callbacks=[ModelCheckpoint(folder, every_n_steps=2), CrashAt(7)], verbose=0
        )
    resumed = make_model()
    keeper = ModelCheckpoint(folder, every_n_steps=2)
    resumed.fit(data(), epochs=2, callbacks=[keeper], resume="latest", verbose=0)
    for a, b in zip(whole.net.parameters(), resumed.net.parameters(), strict=True):
        assert torch.equal(a, b)
    assert whole.history["loss"].tolist() == resumed.history["loss"].tolist()
