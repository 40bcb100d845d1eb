import pytest
import torch

from ember.data import DeviceLoader, random_crop, random_flip
from ember.data.device import scaled_tensors
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


def test_uint8_class_labels_keep_their_values():
    x = torch.randn(10, 4)
    labels = torch.arange(10, dtype=torch.uint8)
    features, target = next(iter(DeviceLoader(x, labels, batch_size=10)))
    assert target.dtype == torch.uint8 and target.tolist() == list(range(10))
    assert torch.equal(features, x)


def test_uint8_images_are_scaled_but_their_uint8_masks_are_not():
    images = torch.full((4, 3, 2, 2), 51, dtype=torch.uint8)
    masks = torch.tensor([0, 1, 2, 255], dtype=torch.uint8).view(4, 1, 1).expand(4, 2, 2).contiguous()
    x, y = next(iter(DeviceLoader(images, masks, batch_size=4, shuffle=True, seed=0)))
    assert x.dtype == torch.float32 and torch.all(x == 0.2)
    assert y.dtype == torch.uint8 and sorted(y[:, 0, 0].tolist()) == [0, 1, 2, 255]


def test_the_rule_scales_only_uint8_inputs_with_at_least_three_dims():
    u8 = torch.zeros
    ids = u8(4, dtype=torch.uint8)  # token ids / categorical codes: not images
    features = u8(4, 5, dtype=torch.uint8)  # 2-d: a table, not an image
    gray = u8(4, 6, 6, dtype=torch.uint8)  # (N, H, W)
    rgb = u8(4, 3, 6, 6, dtype=torch.uint8)  # (N, C, H, W)
    floats = torch.zeros(4, 3, 6, 6)
    assert scaled_tensors([rgb]) == [True]  # a lone tensor is an input (predict)
    assert scaled_tensors([gray]) == [True]
    assert scaled_tensors([ids]) == [False]
    assert scaled_tensors([rgb, gray]) == [True, False]  # the last is the target (a mask)
    assert scaled_tensors([ids, features, gray, rgb, ids]) == [False, False, True, True, False]
    assert scaled_tensors([floats, rgb]) == [False, False]
    assert scaled_tensors([rgb, ids], scale_uint8=False) == [False, False]
    assert scaled_tensors([features, ids], scale_uint8=[True, False]) == [True, False]


def test_explicit_scale_choices_are_checked():
    images, labels = torch.zeros(4, 784, dtype=torch.uint8), torch.zeros(4)
    flat, _ = next(iter(DeviceLoader(images + 255, labels, batch_size=4, scale_uint8=[True, False])))
    assert flat.dtype == torch.float32 and flat.max().item() == 1.0
    with pytest.raises(DataError, match="scale_uint8 has 1 entries for 2 tensors"):
        DeviceLoader(images, labels, scale_uint8=[True])
    with pytest.raises(DataError, match=r"tensor 1 is torch.float32"):
        DeviceLoader(images, labels, scale_uint8=[True, True])


def test_fit_with_uint8_class_labels_trains_on_the_labels_themselves():
    import ember
    from tests.conftest import mlp

    x, y = torch.randn(60, 4), torch.arange(60) % 3
    seen = []

    class Spy(ember.Model):
        def compute_loss(self, preds, target):
            seen.append(target.clone())
            return super().compute_loss(preds, target)

    def fit(labels):
        ember.seed_everything(0)
        model = Spy(mlp()).compile(loss=torch.nn.CrossEntropyLoss(), metrics=["accuracy"], device="cpu")
        return model.fit((x, labels), epochs=2, batch_size=20, shuffle=False, verbose=0)

    history = fit(y.to(torch.uint8))
    assert [t.tolist() for t in seen[:3]] == [y[i : i + 20].tolist() for i in (0, 20, 40)]
    assert seen[0].dtype == torch.uint8
    as_int64 = fit(y)  # the same training as with int64 labels
    columns = ["loss", "accuracy"]
    assert history[columns].values.tolist() == as_int64[columns].values.tolist()
