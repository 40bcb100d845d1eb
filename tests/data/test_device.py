import pytest
import torch

from ember.data import DeviceLoader, random_crop, random_flip
from ember.errors import DataError


def _orders(batches):
    return torch.cat([b[0] for b in batches]).tolist()


def test_sequential_batches_and_length():
    tb = DeviceLoader(torch.arange(10), torch.arange(10) * 2, batch_size=4)
    batches = list(tb)
    assert len(tb) == 3 and [len(b[0]) for b in batches] == [4, 4, 2]
    assert batches[2][1].tolist() == [16, 18]
    assert len(DeviceLoader(torch.arange(10), batch_size=4, drop_last=True)) == 2


def test_shuffle_depends_on_seed_and_epoch_only():
    a = DeviceLoader(torch.arange(50), batch_size=8, shuffle=True, seed=3)
    b = DeviceLoader(torch.arange(50), batch_size=8, shuffle=True, seed=3)
    first = _orders(a)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    a.set_epoch(1)
    second = _orders(a)
    assert second != first
    b.set_epoch(1)
    assert _orders(b) == second  # epoch 1 without running epoch 0 first


def test_state_dict_round_trip():
    a = DeviceLoader(torch.arange(20), batch_size=5, shuffle=True, seed=7)
    a.set_epoch(4)
    b = DeviceLoader(torch.arange(20), batch_size=5, shuffle=True, seed=0)
    b.load_state_dict(a.state_dict())
    assert _orders(b) == _orders(a)


def test_bad_inputs():
    with pytest.raises(DataError, match=r"\[3, 2\]"):
        DeviceLoader(torch.zeros(3), torch.zeros(2))
    with pytest.raises(DataError, match="batch_size"):
        DeviceLoader(torch.zeros(3), batch_size=0)


def test_resume_mid_epoch_gives_the_remaining_batches_with_the_same_augmentation():
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(40)
    full = DeviceLoader(
        images, labels, batch_size=6, shuffle=True, seed=5, augment=[random_flip(), random_crop(2)]
    )
    full.set_epoch(3)
    expected = list(full)
    partial = DeviceLoader(
        images, labels, batch_size=6, shuffle=True, seed=5, augment=[random_flip(), random_crop(2)]
    )
    partial.set_epoch(3)
    iterator = iter(partial)
    for _ in range(4):
        next(iterator)
    state = partial.state_dict()
    assert state == {"seed": 5, "epoch": 3, "position": 4}
    resumed = DeviceLoader(
        images, labels, batch_size=6, shuffle=True, seed=0, augment=[random_flip(), random_crop(2)]
    )
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(expected) - 4
    for got, want in zip(rest, expected[4:], strict=True):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert resumed.state_dict() == {"seed": 5, "epoch": 4, "position": 0}


def test_uint8_images_are_scaled_after_the_gather():
    images = torch.full((4, 1, 2, 2), 255, dtype=torch.uint8)
    batch, _ = next(iter(DeviceLoader(images, torch.zeros(4), batch_size=4)))
    assert batch.dtype == torch.float32 and batch.max().item() == 1.0
    raw = next(iter(DeviceLoader(images, batch_size=4, scale_uint8=False)))[0]
    assert raw.dtype == torch.uint8


def test_flip_and_crop_do_what_they_say():
    images = torch.arange(2 * 1 * 3 * 3).view(2, 1, 3, 3)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(random_flip(p=1.0)(images, generator), images.flip(-1))
    assert torch.equal(random_flip(p=0.0)(images, generator), images)
    assert torch.equal(random_crop(0)(images, generator), images)
    cropped = random_crop(1)(images, generator)
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    for i in range(2):  # every crop is some 3x3 window of the padded image
        windows = [padded[i, :, r : r + 3, c : c + 3] for r in range(3) for c in range(3)]
        assert any(torch.equal(cropped[i], w) for w in windows)


def test_model_fit_accepts_a_device_loader():
    import ember
    from tests.conftest import mlp

    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = ember.Model(mlp()).compile(loss=torch.nn.CrossEntropyLoss(), device="cpu")
    history = model.fit(DeviceLoader(x, y, batch_size=16, shuffle=True, seed=0), epochs=2, verbose=0)
    assert len(history) == 2 and model.state.step == 8


@pytest.mark.parametrize("shuffle", [True, False])
def test_lazy_batches_materialize_to_the_same_batches(shuffle):
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)

    def loader():
        return DeviceLoader(
            images, torch.arange(10), batch_size=4, shuffle=shuffle, seed=5, augment=random_flip()
        )

    eager, lazy = loader(), loader()
    lazy.lazy = True
    for epoch in range(2):
        eager.set_epoch(epoch)
        lazy.set_epoch(epoch)
        pending = list(lazy)
        assert [p.b for p in pending] == [0, 1, 2] and [len(p.index) for p in pending] == [4, 4, 2]
        for (x, y), (lx, ly) in zip(eager, [p.materialize() for p in pending], strict=True):
            assert torch.equal(x, lx) and torch.equal(y, ly)
