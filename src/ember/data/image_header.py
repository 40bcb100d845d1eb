"""read_header: an image file's format (and size where its first bytes hold it) from a few hundred
bytes, without an image library: what a scan of a million-file folder can afford per file.

Knows the signatures of the formats torchvision's ImageFolder lists (JPEG, PNG, PPM/PGM, BMP,
TIFF, WEBP) and GIF; the size comes from the PNG and GIF headers, the BMP info header and a JPEG's
start-of-frame marker (reading further into the file when its segments before the frame are long).
Formats are named as PIL names them. Knows the standard library only.
"""

from __future__ import annotations

from typing import BinaryIO, NamedTuple

__all__ = ["Header", "read_header"]

_FIRST_READ = 2048
_MAX_JPEG_SCAN = 1 << 20  # give up looking for the frame size after 1 MiB (the format is still known)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class Header(NamedTuple):
    """An image's format (PIL's name) and size (None when the header does not tell it cheaply);
    ``truncated``: the file ends inside its header (a JPEG without its start of frame)."""

    format: str
    width: int | None = None
    height: int | None = None
    truncated: bool = False


def read_header(file: BinaryIO) -> Header | None:
    """The header of the image in ``file`` (read from its start), or None: not a known signature."""
    head = file.read(_FIRST_READ)
    if head[:3] == b"\xff\xd8\xff":
        return _jpeg(file, head)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return Header("PNG", _big(head[16:20]), _big(head[20:24]))
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Header("GIF", _little(head[6:8]), _little(head[8:10]))
    if head[:2] == b"BM" and len(head) >= 26:
        return _bmp(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Header("WEBP")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Header("TIFF")
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return Header("PPM")
    return None


def _jpeg(file: BinaryIO, data: bytes) -> Header:
    """Walk the JPEG's marker segments to the start of frame (height, width follow its length)."""
    position = 2
    while position < _MAX_JPEG_SCAN:
        if position + 9 > len(data):
            more = file.read(max(_FIRST_READ, position + 9 - len(data)))
            if not more:
                return Header("JPEG", truncated=True)
            data += more
            continue
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker in _SOF:
            frame = data[position + 5 : position + 9]  # height, then width
            return Header("JPEG", _big(frame[2:4]), _big(frame[0:2]))
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        position += 2 + _big(data[position + 2 : position + 4])
    return Header("JPEG")


def _bmp(head: bytes) -> Header:
    """The size in a BMP's info header: 16-bit fields in the 12-byte OS/2 core header, 32-bit ones
    (a negative height: rows stored top-down) in the Windows headers of 40 bytes and more."""
    if _little(head[14:18]) == 12:
        return Header("BMP", _little(head[18:20]), _little(head[20:22]))
    return Header("BMP", _little(head[18:22]), abs(int.from_bytes(head[22:26], "little", signed=True)))


def _big(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _little(raw: bytes) -> int:
    return int.from_bytes(raw, "little")
