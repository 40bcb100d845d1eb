"""Uint8ToFloat against torchvision's to_dtype + normalize, for one image and for a batch."""

import pytest
import torch
from torchvision.transforms.v2 import functional

from ember.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Uint8ToFloat
from ember.errors import DataError


def _reference(images, mean, std):
    return functional.normalize(functional.to_dtype(images, torch.float32, scale=True), mean, std)


def test_one_image_and_a_batch_match_torchvision_to_1e6():
    images = torch.randint(
        0, 256, (5, 3, 16, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    convert = Uint8ToFloat()
    for batch in (images[0], images, images.permute(0, 1, 3, 2)):  # a non-contiguous view too
        out = convert(batch)
        assert out.dtype == torch.float32 and out.shape == batch.shape
        torch.testing.assert_close(
            out, _reference(batch, list(IMAGENET_MEAN), list(IMAGENET_STD)), rtol=0, atol=1e-6
        )


def test_other_statistics_and_one_channel():
    images = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)
    out = Uint8ToFloat(mean=(0.5,), std=(0.25,))(images)
    expected = torch.tensor([[[-2.0, 2.0], [-1.2, -0.4]]])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "image",
    [torch.rand(3, 4, 4), torch.zeros(4, 4, dtype=torch.uint8), torch.zeros(4, 4, 3, dtype=torch.uint8)],
    ids=["float input", "no channel dimension", "channels last"],
)
def test_what_it_does_not_take_is_named(image):
    with pytest.raises(DataError, match=rf"uint8 images of 3 channels.*got {image.dtype} of shape"):
        Uint8ToFloat()(image)


def test_factors_moved_to_a_device_are_kept_but_not_pickled():
    import pickle

    convert = Uint8ToFloat()
    convert._factors[torch.device("meta")] = (torch.empty(3, 1, 1, device="meta"),) * 2  # a stand-in device
    restored = pickle.loads(pickle.dumps(convert))
    assert list(restored._factors) == [torch.device("cpu")]
    image = torch.full((3, 2, 2), 255, dtype=torch.uint8)
    torch.testing.assert_close(restored(image), convert(image), rtol=0, atol=0)
