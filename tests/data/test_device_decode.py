"""ember.data.device_decode on the CPU (the same code as on a GPU, with the CPU decoders): workers
read bytes only, batches are decoded and augmented where the model runs, training resumes exactly."""

import torch

from ember.data.device_decode import DecodedBatches, decoded_batches
from tests.data.test_decode import _mixed_folder, assert_resumes_exactly


def test_batches_are_normalized_squares_with_labels(tmp_path):
    root = _mixed_folder(tmp_path / "imgs")
    batches = decoded_batches(
        root, 16, batch_size=5, device="cpu", seed=0, num_workers=0, cache_dir=tmp_path / "c"
    )
    assert isinstance(batches, DecodedBatches) and len(batches) == 3  # 14 images
    seen = []
    for images, labels in batches:
        assert images.dtype == torch.float32 and images.shape[1:] == (3, 16, 16)
        seen += labels.tolist()
    assert sorted(seen) == [0] * 7 + [1] * 7
    evaluation = decoded_batches(
        root, 16, batch_size=14, device="cpu", train=False, num_workers=0, cache_dir=tmp_path / "c"
    )
    first = next(iter(evaluation))[0]
    assert torch.equal(first, next(iter(evaluation))[0])  # centre squares: no randomness


def test_crops_follow_the_seed_epoch_and_batch_not_the_workers(tmp_path):
    root = _mixed_folder(tmp_path / "imgs")
    runs = []
    for workers in (0, 2):
        batches = decoded_batches(
            root, 16, batch_size=4, device="cpu", seed=3, num_workers=workers, cache_dir=tmp_path / "c"
        )
        runs.append([images for images, _ in batches])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
    batches = decoded_batches(
        root, 16, batch_size=4, device="cpu", seed=3, num_workers=0, cache_dir=tmp_path / "c"
    )
    batches.set_epoch(1)
    assert not torch.equal(next(iter(batches))[0], runs[0][0])  # another epoch, other crops


def test_fit_resumes_mid_epoch_exactly(tmp_path):
    root = _mixed_folder(tmp_path / "imgs")

    def data():
        return decoded_batches(
            root, 16, batch_size=4, device="cpu", seed=1, num_workers=2, cache_dir=tmp_path / "c"
        )

    assert_resumes_exactly(data, tmp_path / "k")
