"""read_header against files PIL writes (and an OS/2 bitmap written by hand): the format PIL names
and the size PIL reads, for every layout whose header holds the size."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

from ember.data.image_header import Header, read_header

SIZE = (37, 23)  # width, height: unequal and odd, so a swapped or rounded field shows


def _written(format_name, mode="RGB", **options):
    pixels = np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=format_name, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("format_name", "mode", "options"),
    [
        ("JPEG", "RGB", {}),
        ("JPEG", "RGB", {"progressive": True}),
        ("JPEG", "L", {}),
        ("PNG", "RGB", {}),
        ("PNG", "P", {}),
        ("GIF", "P", {}),
        ("BMP", "RGB", {}),
        ("BMP", "P", {}),
    ],
)
def test_the_size_of_every_layout_is_the_one_pil_reads(format_name, mode, options):
    data = _written(format_name, mode, **options)
    assert Image.open(io.BytesIO(data)).size == SIZE
    assert read_header(io.BytesIO(data)) == Header(format_name, *SIZE)


def test_a_jpeg_frame_after_a_long_segment_is_found_by_reading_further():
    comment = b"x" * 5000  # longer than the first read: the walk must read on
    data = _written("JPEG", comment=comment)
    assert read_header(io.BytesIO(data)) == Header("JPEG", *SIZE)


def test_a_jpeg_that_ends_before_its_frame_is_truncated():
    data = _written("JPEG", comment=b"x" * 5000)
    assert read_header(io.BytesIO(data[:3000])) == Header("JPEG", truncated=True)


def test_a_top_down_bmp_has_a_positive_height():
    data = bytearray(_written("BMP"))
    data[22:26] = struct.pack("<i", -SIZE[1])  # rows stored top-down
    assert Image.open(io.BytesIO(bytes(data))).size == SIZE
    assert read_header(io.BytesIO(bytes(data))) == Header("BMP", *SIZE)


def _os2_bmp(width, height):
    """A 24-bit OS/2 bitmap: 14-byte file header, 12-byte core header (16-bit sizes), rows padded
    to 4 bytes, bottom-up."""
    row = (width * 3 + 3) // 4 * 4
    pixels = bytes(range(256)) * (row * height // 256 + 1)
    core = struct.pack("<IHHHH", 12, width, height, 1, 24)
    head = b"BM" + struct.pack("<IHHI", 14 + 12 + row * height, 0, 0, 14 + 12)
    return head + core + pixels[: row * height]


def test_an_os2_bitmap_reads_its_16_bit_size_fields():
    data = _os2_bmp(*SIZE)
    assert Image.open(io.BytesIO(data)).size == SIZE
    assert read_header(io.BytesIO(data)) == Header("BMP", *SIZE)


@pytest.mark.parametrize(("format_name", "expected"), [("WEBP", "WEBP"), ("TIFF", "TIFF"), ("PPM", "PPM")])
def test_formats_without_a_cheap_size_are_named(format_name, expected):
    assert read_header(io.BytesIO(_written(format_name))) == Header(expected)


def test_an_unknown_signature_is_none():
    assert read_header(io.BytesIO(b"not an image at all")) is None
    assert read_header(io.BytesIO(b"")) is None
