"""Decoding image files, the model-input geometry and its inverse, and defect masks."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tifffile

from defectlens.datasets import images
from defectlens.datasets.images import (
    DECODE_PIXEL_CAP,
    decode_image,
    header_size,
    image_format,
    map_to_original,
    placement,
    read_header,
    read_image,
    read_mask,
    to_model_input,
)
from defectlens.errors import DataError, InputError, TooLarge, UnsupportedFormat
from defectlens.modelcard import InputSpec

RGB = (200, 100, 50)


def encode(ext: str, image: np.ndarray) -> bytes:
    """OpenCV-encoded bytes; `image` is given in OpenCV's BGR(A) order."""
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def colour_image(dtype: type[np.integer], scale: int = 1) -> np.ndarray:
    bgr = np.zeros((6, 9, 3), dtype=dtype)
    bgr[:, :] = (RGB[2] * scale, RGB[1] * scale, RGB[0] * scale)
    return bgr


def png_gray_alpha(gray: int, alpha: int, height: int = 3, width: int = 4) -> bytes:
    """A gray+alpha PNG (colour type 4), which OpenCV cannot write."""
    row = b"\x00" + bytes([gray, alpha]) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 4, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def tiff_bytes(array: np.ndarray, **options: Any) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("ext", [".png", ".tiff", ".bmp"])
def test_8bit_colour_comes_back_rgb(ext: str) -> None:
    image = decode_image(encode(ext, colour_image(np.uint8)), f"part{ext}")
    assert image.dtype == np.uint8
    assert image.shape == (6, 9, 3)
    assert tuple(image[0, 0]) == RGB


@pytest.mark.parametrize("ext", [".png", ".tiff", ".bmp"])
def test_8bit_gray_stays_two_dimensional(ext: str) -> None:
    gray = np.full((5, 7), 77, dtype=np.uint8)
    image = decode_image(encode(ext, gray), f"part{ext}")
    assert image.shape == (5, 7)
    assert image.dtype == np.uint8
    assert (image == 77).all()


@pytest.mark.parametrize("ext", [".png", ".tiff"])
def test_16bit_is_scaled_to_8bit(ext: str) -> None:
    gray = np.array([[0, 257, 32896, 65535, 384]], dtype=np.uint16)
    image = decode_image(encode(ext, gray), f"part{ext}")
    assert image.dtype == np.uint8
    # 384 / 257 = 1.49 rounds to 1; the others are exact multiples of 257
    assert image.tolist() == [[0, 1, 128, 255, 1]]
    colour = decode_image(encode(ext, colour_image(np.uint16, scale=257)), f"part{ext}")
    assert colour.dtype == np.uint8
    assert tuple(colour[0, 0]) == RGB


def test_jpeg_gray_and_colour() -> None:
    colour = decode_image(encode(".jpg", colour_image(np.uint8)), "part.jpg")
    assert colour.shape == (6, 9, 3)
    assert np.abs(colour[3, 4].astype(int) - RGB).max() <= 4  # lossy
    gray = decode_image(encode(".jpg", np.full((8, 8), 90, np.uint8)), "part.jpg")
    assert gray.shape == (8, 8)


def test_alpha_is_dropped() -> None:
    bgra = np.zeros((4, 4, 4), dtype=np.uint8)
    bgra[:, :] = (RGB[2], RGB[1], RGB[0], 10)
    image = decode_image(encode(".png", bgra), "part.png")
    assert image.shape == (4, 4, 3)
    assert tuple(image[0, 0]) == RGB
    gray = decode_image(png_gray_alpha(gray=60, alpha=200), "gray_alpha.png")
    assert gray.shape == (3, 4)
    assert (gray == 60).all()


def test_float_tiff_is_refused_with_a_reason() -> None:
    data = encode(".tiff", np.full((4, 4), 0.5, dtype=np.float32))
    with pytest.raises(DataError, match=r"scan\.tif: floating-point image"):
        decode_image(data, "scan.tif")


def test_signed_tiff_is_refused() -> None:
    with pytest.raises(DataError, match=r"int16 pixels are not supported"):
        decode_image(tiff_bytes(np.zeros((4, 4), np.int16)), "signed.tif")


def test_five_channel_tiff_is_refused_naming_the_channels() -> None:
    data = tiff_bytes(
        np.zeros((4, 6, 5), np.uint8), photometric="minisblack", planarconfig="contig"
    )
    with pytest.raises(DataError, match=r"multi\.tif: TIFF with 5 channels is not supported"):
        decode_image(data, "multi.tif")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"serial,verdict\n123,OK\n", "not a readable image"),
        (encode(".png", np.zeros((50, 50), np.uint8))[:60], "not a readable image"),
    ],
    ids=["zero bytes", "text file", "truncated png"],
)
def test_unreadable_files_name_the_file(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "part_017.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match=reason) as caught:
        read_image(path)
    assert str(path) in str(caught.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.png"
    with pytest.raises(DataError, match="cannot read") as caught:
        read_image(path)
    assert str(path) in str(caught.value)
    with pytest.raises(DataError, match="cannot read"):
        read_image(tmp_path)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder fails the test if reached. Mocked because what is tested is that it is
    never called: a real decode of these headers would allocate gigabytes (or fail in a way
    that hides whether the header check ran first)."""

    def imdecode(*args: object) -> None:
        raise AssertionError("cv2.imdecode was called; the header check must refuse first")

    monkeypatch.setattr(images.cv2, "imdecode", imdecode)


# Minimal headers, built field by field as each format's specification lays them out.


def png_header(width: int, height: int) -> bytes:
    body = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + body + struct.pack(">I", crc)


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", 2 + len(payload)) + payload


def sof(width: int, height: int, marker: int = 0xC0) -> bytes:
    """A one-component frame header: precision 8, height, width, component 1 (1×1, table 0)."""
    return segment(marker, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")


JFIF = segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
SOS = segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")


def jpeg_header(width: int, height: int, marker: int = 0xC0, before: bytes = JFIF) -> bytes:
    return b"\xff\xd8" + before + sof(width, height, marker) + SOS + b"\x00" * 8 + b"\xff\xd9"


def bmp_header(width: int, height: int, dib_size: int = 40) -> bytes:
    if dib_size == 12:  # BITMAPCOREHEADER: size, width, height, planes, bits (16-bit each)
        dib = struct.pack("<IHHHH", 12, width, height, 1, 24)
    else:
        dib = struct.pack("<IiiHH", dib_size, width, height, 1, 24).ljust(dib_size, b"\x00")
    pixels = b"\x00" * 12
    file_header = struct.pack("<2sIHHI", b"BM", 14 + len(dib) + len(pixels), 0, 0, 14 + len(dib))
    return file_header + dib + pixels


def tiff_header(
    entries: list[tuple[int, int, int]], order: str = "<", big: bool = False, pad: int = 0
) -> bytes:
    """A TIFF whose first directory holds `entries` (tag, type, value), `pad` bytes after
    the file header so the directory is not where a reader might assume it."""
    magic = (b"II" if order == "<" else b"MM") + struct.pack(order + "H", 43 if big else 42)
    if big:
        header = magic + struct.pack(order + "HHQ", 8, 0, 16 + pad)
        directory = struct.pack(order + "Q", len(entries))
        for tag, kind, value in entries:
            code = {3: "H", 4: "I", 16: "Q"}[kind]
            inline = struct.pack(order + code, value).ljust(8, b"\x00")
            directory += struct.pack(order + "HHQ", tag, kind, 1) + inline
        return header + b"\x00" * pad + directory + struct.pack(order + "Q", 0)
    header = magic + struct.pack(order + "I", 8 + pad)
    directory = struct.pack(order + "H", len(entries))
    for tag, kind, value in entries:
        inline = struct.pack(order + {3: "H", 4: "I"}[kind], value).ljust(4, b"\x00")
        directory += struct.pack(order + "HHI", tag, kind, 1) + inline
    return header + b"\x00" * pad + directory + struct.pack(order + "I", 0)


SHORT, LONG, LONG8 = 3, 4, 16
NEW_SUBFILE, COMPRESSION, BITS = (254, LONG, 0), (259, SHORT, 1), (258, SHORT, 8)


def size_tags(width: int, height: int, width_type: int = LONG, height_type: int = LONG) -> list:
    return [(256, width_type, width), (257, height_type, height)]


# A JPEG's EXIF segment can carry a thumbnail with its own frame header: skipped by length.
EXIF_WITH_THUMBNAIL = segment(0xE1, b"Exif\x00\x00" + b"\xff\xd8" + sof(160, 120))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (png_header(70, 30), ("PNG", 70, 30)),
        (png_header(1, 2**31 - 1), ("PNG", 1, 2**31 - 1)),
        (jpeg_header(70, 30), ("JPEG", 70, 30)),
        (jpeg_header(640, 480, marker=0xC1), ("JPEG", 640, 480)),
        (jpeg_header(640, 480, marker=0xC2), ("JPEG", 640, 480)),
        (jpeg_header(640, 480, marker=0xC3), ("JPEG", 640, 480)),
        (jpeg_header(640, 480, marker=0xC9), ("JPEG", 640, 480)),
        (jpeg_header(640, 480, marker=0xCF), ("JPEG", 640, 480)),
        (jpeg_header(4000, 3000, before=JFIF + EXIF_WITH_THUMBNAIL), ("JPEG", 4000, 3000)),
        (jpeg_header(4000, 3000, before=EXIF_WITH_THUMBNAIL + segment(0xC4, bytes(30))),
         ("JPEG", 4000, 3000)),
        (jpeg_header(70, 30, before=JFIF + b"\xff\xff\xff"), ("JPEG", 70, 30)),  # fill bytes
        (jpeg_header(70, 30, before=JFIF + b"\x00\x17"), ("JPEG", 70, 30)),  # stray bytes
        (jpeg_header(70, 30, before=b"\xff\xd0" + JFIF), ("JPEG", 70, 30)),  # RST0, no length
        (jpeg_header(70, 30, before=segment(0xFE, b"")), ("JPEG", 70, 30)),  # empty comment
        (bmp_header(70, 30, dib_size=12), ("BMP", 70, 30)),
        (bmp_header(65535, 65535, dib_size=12), ("BMP", 65535, 65535)),
        (bmp_header(70, 30, dib_size=16), ("BMP", 70, 30)),
        (bmp_header(70, 30, dib_size=40), ("BMP", 70, 30)),
        (bmp_header(70, -30, dib_size=40), ("BMP", 70, 30)),  # top-down rows
        (bmp_header(70, 30, dib_size=52), ("BMP", 70, 30)),
        (bmp_header(70, 30, dib_size=56), ("BMP", 70, 30)),
        (bmp_header(70, 30, dib_size=64), ("BMP", 70, 30)),
        (bmp_header(70, -30, dib_size=108), ("BMP", 70, 30)),
        (bmp_header(70, 30, dib_size=124), ("BMP", 70, 30)),
        (tiff_header(size_tags(70, 30, SHORT, SHORT)), ("TIFF", 70, 30)),
        (tiff_header(size_tags(70, 30, SHORT, LONG), order=">"), ("TIFF", 70, 30)),
        (tiff_header(size_tags(100_000, 30, LONG, SHORT), order=">"), ("TIFF", 100_000, 30)),
        (tiff_header([NEW_SUBFILE, *size_tags(70, 30), BITS, COMPRESSION], pad=100),
         ("TIFF", 70, 30)),
        (tiff_header(size_tags(70, 30, SHORT, SHORT), big=True), ("TIFF", 70, 30)),
        (tiff_header(size_tags(70, 30, LONG, LONG), order=">", big=True), ("TIFF", 70, 30)),
        (tiff_header(size_tags(70, 30, LONG8, LONG8), big=True, pad=3), ("TIFF", 70, 30)),
        (tiff_header(size_tags(2**33, 1, LONG8, SHORT), order=">", big=True),
         ("TIFF", 2**33, 1)),
    ],
    ids=[
        "png", "png widest", "jpeg baseline", "jpeg SOF1", "jpeg progressive SOF2",
        "jpeg lossless SOF3", "jpeg arithmetic SOF9", "jpeg SOF15", "jpeg exif thumbnail",
        "jpeg exif then DHT", "jpeg fill bytes", "jpeg stray bytes", "jpeg RST", "jpeg empty COM",
        "bmp os2 core", "bmp os2 core largest", "bmp os2 v2 short", "bmp info", "bmp top-down",
        "bmp v2", "bmp v3", "bmp os2 v2", "bmp v4 top-down", "bmp v5",
        "tiff II short", "tiff MM short+long", "tiff MM long+short", "tiff tags later, ifd later",
        "bigtiff II short", "bigtiff MM long", "bigtiff II long8", "bigtiff MM long8 wide",
    ],
)  # fmt: skip
def test_header_sizes_of_each_format_and_variant(
    data: bytes, expected: tuple[str, int, int]
) -> None:
    header = read_header(data, "part")
    assert (header.format, header.width, header.height) == expected
    assert header_size(data) == expected[1:]


@pytest.mark.parametrize(
    ("data", "shape"),
    [
        (encode(".png", np.zeros((30, 70), np.uint8)), (30, 70)),
        (encode(".png", np.zeros((30, 70, 3), np.uint16)), (30, 70, 3)),
        (encode(".png", np.zeros((30, 70, 4), np.uint8)), (30, 70, 3)),
        (encode(".jpg", np.zeros((30, 70), np.uint8)), (30, 70)),
        (encode(".jpg", np.zeros((30, 70, 3), np.uint8)), (30, 70, 3)),
        (cv2.imencode(".jpg", np.zeros((30, 70, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[
            1
        ].tobytes(), (30, 70, 3)),
        (encode(".bmp", np.zeros((30, 70), np.uint8)), (30, 70)),
        (encode(".bmp", np.zeros((30, 70, 3), np.uint8)), (30, 70, 3)),
        (encode(".tiff", np.zeros((30, 70, 3), np.uint8)), (30, 70, 3)),
        (tiff_bytes(np.zeros((30, 70), np.uint16), byteorder=">"), (30, 70)),
        (tiff_bytes(np.zeros((30, 70), np.uint8), bigtiff=True), (30, 70)),
        (tiff_bytes(np.zeros((30, 70, 3), np.uint16), bigtiff=True, byteorder=">"), (30, 70, 3)),
    ],
    ids=[
        "png gray", "png rgb 16-bit", "png rgba", "jpeg gray", "jpeg rgb", "jpeg progressive",
        "bmp gray", "bmp rgb", "tiff II rgb", "tiff MM 16-bit", "bigtiff II", "bigtiff MM rgb",
    ],
)  # fmt: skip
def test_real_files_header_size_matches_the_decoded_image(
    data: bytes, shape: tuple[int, ...]
) -> None:
    assert header_size(data) == (70, 30)
    assert decode_image(data, "part").shape == shape


def webp_patched(width: int, height: int) -> bytes:
    """A real (lossless) WebP from OpenCV with the canvas of its VP8L header patched: 14 bits
    of width - 1 and 14 of height - 1 after the 0x2F signature byte."""
    data = bytearray(encode(".webp", np.zeros((4, 4, 3), np.uint8)))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    (bits,) = struct.unpack("<I", data[21:25])
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    data[21:25] = struct.pack("<I", bits)
    return bytes(data)


def webp_vp8x(width: int, height: int) -> bytes:
    """The extended WebP header alone: VP8X chunk, flags, canvas width - 1 and height - 1 as
    24-bit little-endian numbers."""
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + canvas
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (webp_patched(12000, 12000), "WebP"),
        (webp_vp8x(12000, 12000), "WebP"),
        (b"GIF89a" + struct.pack("<HH", 12000, 12000) + b"\x00" * 20, "GIF"),
        (b"GIF87a" + struct.pack("<HH", 1, 1) + b"\x00" * 20, "GIF"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 40, "JPEG 2000"),
        (b"\xff\x4f\xff\x51" + b"\x00" * 40, "JPEG 2000"),
        (b"\xff\x0a" + b"\x00" * 40, "JPEG XL"),
        (b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\x00" * 40, "JPEG XL"),
        (b"P5\n12000 12000\n255\n" + b"\x00" * 10, "PNM (PBM/PGM/PPM)"),
        (b"P6 12000 12000 255\n" + b"\x00" * 10, "PNM (PBM/PGM/PPM)"),
        (b"P1\n2 2\n0 1 1 0\n", "PNM (PBM/PGM/PPM)"),
        (b"P7\nWIDTH 12000\nHEIGHT 12000\nDEPTH 1\nMAXVAL 255\nENDHDR\n", "PAM"),
        (b"Pf\n12000 12000\n-1.0\n" + b"\x00" * 10, "PFM"),
        (b"\x59\xa6\x6a\x95" + struct.pack(">II", 12000, 12000) + b"\x00" * 24, "Sun raster"),
        (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 12000 +X 12000\n", "Radiance HDR"),
        (b"\x76\x2f\x31\x01" + b"\x00" * 40, "OpenEXR"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
    ],
    ids=[
        "webp 12000x12000 real", "webp vp8x canvas", "gif89a", "gif87a", "jp2", "j2k", "jxl",
        "jxl box", "pgm", "ppm", "pbm ascii", "pam", "pfm", "sun raster", "hdr", "exr", "avif",
        "heif",
    ],
)  # fmt: skip
@pytest.mark.usefixtures("no_decoding")
def test_other_formats_are_refused_without_decoding(data: bytes, name: str) -> None:
    source = "image of station press-3 (300 bytes)"
    expected = f"{source}: {name} images are not accepted; send JPEG, PNG, BMP or TIFF"
    with pytest.raises(UnsupportedFormat) as caught:
        decode_image(data, source, max_pixels=40_000_000)
    assert str(caught.value) == expected
    assert image_format(data) == name
    with pytest.raises(UnsupportedFormat):
        header_size(data)


BIG = 20_000


@pytest.mark.parametrize(
    "data",
    [
        png_header(BIG, BIG),
        jpeg_header(BIG, BIG),
        jpeg_header(BIG, BIG, marker=0xC2),
        bmp_header(BIG, BIG, dib_size=12),
        bmp_header(BIG, -BIG, dib_size=124),
        tiff_header(size_tags(BIG, BIG, SHORT, SHORT)),
        tiff_header(size_tags(BIG, BIG), order=">"),
        tiff_header(size_tags(BIG, BIG, LONG8, LONG8), big=True),
        tiff_header(size_tags(BIG, BIG, SHORT, LONG), order=">", big=True),
    ],
    ids=[
        "png", "jpeg", "jpeg progressive", "bmp core", "bmp v5 top-down", "tiff II", "tiff MM",
        "bigtiff II", "bigtiff MM",
    ],
)  # fmt: skip
@pytest.mark.usefixtures("no_decoding")
def test_header_over_the_pixel_limit_is_too_large_without_decoding(data: bytes) -> None:
    with pytest.raises(TooLarge) as caught:
        decode_image(data, "image of station press-3", max_pixels=40_000_000)
    assert str(caught.value) == (
        "image of station press-3: image is 20000×20000 = 400000000 pixels, over the limit of "
        "40000000 (DEFECTLENS_MAX_PIXELS); send a smaller image"
    )
    # No limit given, or one above the cap: the cap still holds (400 million > 2**28).
    for max_pixels in (None, 10**12):
        with pytest.raises(TooLarge, match=r"over the limit of 268435456 \(the most defectlens"):
            decode_image(data, "part", max_pixels=max_pixels)


@pytest.mark.usefixtures("no_decoding")
def test_read_image_refuses_a_file_over_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(BIG, BIG))
    with pytest.raises(TooLarge, match="400000000 pixels") as caught:
        read_image(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff"])
def test_max_pixels_guard(ext: str) -> None:
    data = encode(ext, np.zeros((30, 70), np.uint8))
    assert decode_image(data, "ok", max_pixels=2100).shape == (30, 70)
    with pytest.raises(
        TooLarge, match=r"big: image is 70×30 = 2100 pixels, over the limit of 2099"
    ):
        decode_image(data, "big", max_pixels=2099)


def test_max_pixels_is_checked_before_decoding() -> None:
    """A header that promises a 100000×100000 image is refused without decoding the rest."""
    bomb = bytearray(encode(".png", np.zeros((8, 8), np.uint8)))
    bomb[16:24] = struct.pack(">II", 100_000, 100_000)
    with pytest.raises(TooLarge, match="over the limit"):
        decode_image(bytes(bomb), "bomb.png", max_pixels=50_000_000)


TIFF_II = b"II*\x00"
JPEG_SOI = b"\xff\xd8"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (png_header(70, 30)[:20], "IHDR chunk at byte 8 lies beyond the end of the data"),
        (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 4) + b"gAMA" + bytes(30),
         "the first chunk is b'gAMA' of 4 bytes, not IHDR of 13"),
        (png_header(0, 30), "it gives the size 0×30"),
        (JPEG_SOI + b"\xff", "the data ends before the frame header"),
        (JPEG_SOI + b"\xff\xff\xff\xff", "the data ends before the frame header"),
        (JPEG_SOI + JFIF[:9], "the data ends before the frame header"),
        (JPEG_SOI + b"\xff\xe0", "the length of segment FFE0 at byte 4 lies beyond"),
        (JPEG_SOI + b"\xff\xe0\x00\x01" + bytes(10), "segment FFE0 at byte 2 has length 1"),
        (JPEG_SOI + JFIF + sof(70, 30)[:6], "the frame header at byte 24 lies beyond"),
        (JPEG_SOI + JFIF + SOS + sof(70, 30), "SOS before any frame header"),
        (JPEG_SOI + JFIF + b"\xff\xd9", "EOI before any frame header"),
        (JPEG_SOI + b"\xff\xd8" + sof(70, 30), "a second SOI before any frame header"),
        (JPEG_SOI + segment(0xFE, b"") * 2000 + sof(70, 30),
         "no frame header (SOFn) in the first 1024 segments"),
        (jpeg_header(70, 0), "it gives the size 70×0"),  # height from a DNL: libjpeg has none
        (bmp_header(70, 30)[:20], "the DIB header at byte 18 lies beyond the end of the data"),
        (bmp_header(70, 30, dib_size=124)[:80], "DIB header of 124 bytes runs past the end"),
        (b"BM" + bytes(12) + struct.pack("<I", 2**32 - 1) + bytes(60),
         "DIB header of 4294967295 bytes runs past the end"),
        (b"BM" + bytes(12) + struct.pack("<IHH", 8, 70, 30) + bytes(30),
         "a DIB header of 8 bytes is of no BMP version"),
        (bmp_header(-70, 30), "it gives the width -70"),
        (TIFF_II, "the first directory offset at byte 4 lies beyond"),
        (TIFF_II + struct.pack("<I", 2**32 - 1) + bytes(100),
         "the first directory at byte 4294967295 lies beyond"),
        (TIFF_II + struct.pack("<IH", 8, 5000) + bytes(12 * 5000),
         "the first directory claims 5000 entries"),
        (TIFF_II + struct.pack("<IH", 8, 0), "the first directory claims 0 entries"),
        (tiff_header(size_tags(70, 30))[:30], "the first directory's 2 entries run past the end"),
        (tiff_header([(256, LONG, 70)]), "no ImageWidth (256) and ImageLength (257)"),
        (TIFF_II + struct.pack("<IH", 8, 2) + struct.pack("<HHI4s", 256, LONG, 2, bytes(4))
         + struct.pack("<HHII", 257, LONG, 1, 30), "no ImageWidth (256) and ImageLength (257)"),
        (tiff_header(size_tags(70, 0)), "it gives the size 70×0"),
        (b"II+\x00" + struct.pack("<HHQ", 4, 0, 16), "BigTIFF offsets of 4 bytes, not 8"),
        (b"II+\x00" + struct.pack("<HHQ", 8, 0, 2**63) + bytes(40),
         "the first directory at byte 9223372036854775808 lies beyond"),
        (b"II+\x00" + struct.pack("<HHQQ", 8, 0, 16, 2**40) + bytes(40),
         "the first directory claims 1099511627776 entries"),
    ],
    ids=[
        "png cut in IHDR", "png without IHDR", "png zero width", "jpeg only SOI", "jpeg only fill",
        "jpeg cut in APP0", "jpeg cut at length", "jpeg length 1", "jpeg cut in SOF",
        "jpeg scan first", "jpeg EOI first", "jpeg two SOI", "jpeg 2000 comments",
        "jpeg zero height", "bmp cut in DIB", "bmp v5 cut", "bmp DIB size 4 GiB", "bmp DIB size 8",
        "bmp negative width", "tiff cut after magic", "tiff IFD offset outside",
        "tiff 5000 entries", "tiff no entries", "tiff IFD cut", "tiff no height",
        "tiff width of two values", "tiff zero height", "bigtiff offsets of 4",
        "bigtiff IFD offset outside", "bigtiff 2**40 entries",
    ],
)  # fmt: skip
@pytest.mark.usefixtures("no_decoding")
def test_unreadable_headers_are_refused_without_decoding(data: bytes, reason: str) -> None:
    with pytest.raises(DataError) as caught:
        decode_image(data, "image of station press-3", max_pixels=40_000_000)
    message = str(caught.value)
    assert message.startswith("image of station press-3: the ")
    assert "header is unreadable (" in message
    assert reason in message
    assert message.endswith("the file is truncated or corrupted: send it again, complete")


@pytest.mark.parametrize(
    "data",
    [b"serial,verdict\n123,OK\n", b"\xff\xd8\x00\x00", b"B", b"\x89PNG", b"II*", b"RIFF"],
    ids=["text", "jpeg SOI then zeros", "one byte", "png magic cut", "tiff magic cut", "riff"],
)
@pytest.mark.usefixtures("no_decoding")
def test_bytes_of_no_known_format_are_unreadable_without_decoding(data: bytes) -> None:
    with pytest.raises(DataError, match=r"^part\.png: not a readable image \(\d+ bytes\)"):
        decode_image(data, "part.png")
    assert image_format(data) is None


OPENCV_CAP_CHECK = """
import os
import sys
from defectlens.datasets import images  # first, as every defectlens process does
import cv2
import numpy as np

print(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS"))
try:
    decoded = cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_UNCHANGED)
except cv2.error as exc:
    print("refused:", str(exc).strip().splitlines()[-1])
else:
    print("decoded:", None if decoded is None else decoded.shape)
"""


def one_bit_png(width: int, height: int) -> bytes:
    """A complete, valid 1-bit gray PNG of zeros: tens of KB on disk for any size."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then 8 pixels a byte
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_opencv_itself_refuses_an_image_over_the_cap(tmp_path: Path) -> None:
    """The second guard: in a fresh process (OpenCV reads its cap once, when it loads), a valid
    PNG one column over `DECODE_PIXEL_CAP` is refused by cv2.imdecode called directly, past
    every check of this module. Without the cap OpenCV's default (2**30) would decode it."""
    height = 16384
    width = DECODE_PIXEL_CAP // height + 1
    path = tmp_path / "over_the_cap.png"
    path.write_bytes(one_bit_png(width, height))
    environment = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    done = subprocess.run(
        [sys.executable, "-c", OPENCV_CAP_CHECK, str(path)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=True,
    )
    cap, outcome = done.stdout.splitlines()
    assert cap == str(DECODE_PIXEL_CAP)
    assert outcome.startswith("refused:")
    assert "CV_IO_MAX_IMAGE_PIXELS" in outcome


def test_a_cap_the_plant_sets_is_kept() -> None:
    environment = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": "1000"}
    code = "import os\nimport defectlens\nprint(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment,
        timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "1000"


def spec(height: int, width: int, channels: int, resize: str = "stretch") -> InputSpec:
    color = "gray" if channels == 1 else "rgb"
    return InputSpec.model_validate(
        {"height": height, "width": width, "channels": channels, "color": color, "resize": resize}
    )


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("source_shape", [(100, 200), (100, 200, 3), (20, 10), (20, 10, 3)])
def test_model_input_shape(resize: str, channels: int, source_shape: tuple[int, ...]) -> None:
    image = np.full(source_shape, 120, dtype=np.uint8)
    out = to_model_input(image, spec(64, 48, channels, resize))
    assert out.shape == (64, 48, channels)
    assert out.dtype == np.uint8


def test_gray_to_rgb_replicates_and_rgb_to_gray_uses_luma() -> None:
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    rgb = to_model_input(gray, spec(4, 4, 3))
    assert (rgb == gray[:, :, np.newaxis]).all()

    colour = np.zeros((4, 4, 3), dtype=np.uint8)
    colour[:, :] = RGB
    expected = cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY)
    assert (to_model_input(colour, spec(4, 4, 1))[:, :, 0] == expected).all()


def test_gray_model_on_three_channels_gets_gray_replicated() -> None:
    colour = np.zeros((4, 4, 3), dtype=np.uint8)
    colour[:, :] = RGB
    gray_spec = InputSpec(height=4, width=4, channels=3, color="gray")
    out = to_model_input(colour, gray_spec)
    assert (out == cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY)[:, :, np.newaxis]).all()


def test_one_channel_rgb_spec_is_refused() -> None:
    with pytest.raises(InputError, match="1 channel"):
        to_model_input(
            np.zeros((4, 4), np.uint8), InputSpec(height=4, width=4, channels=1, color="rgb")
        )


def test_non_uint8_image_is_refused() -> None:
    with pytest.raises(InputError, match="uint8"):
        to_model_input(np.zeros((4, 4), np.float32), spec(4, 4, 1))


def test_shrinking_averages_pixels() -> None:
    """INTER_AREA when shrinking: a fine checkerboard becomes flat mid-gray, not aliased."""
    board = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = to_model_input(board, spec(16, 16, 1))
    assert np.abs(out.astype(int) - 128).max() <= 1


def test_letterbox_keeps_aspect_and_pads_centred() -> None:
    wide = np.full((100, 200), 255, dtype=np.uint8)
    out = to_model_input(wide, spec(64, 64, 1, "letterbox"))[:, :, 0]
    # scale 0.32: content 32×64, 16 rows of padding above and below
    assert (out[:16] == 0).all()
    assert (out[16:48] == 255).all()
    assert (out[48:] == 0).all()
    tall = np.full((90, 30, 3), 255, dtype=np.uint8)
    out = to_model_input(tall, spec(60, 60, 3, "letterbox"))
    assert (out[:, :20] == 0).all()
    assert (out[:, 20:40] == 255).all()
    assert (out[:, 40:] == 0).all()


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize(
    ("original_hw", "spot_yx"),
    [((120, 300), (90, 40)), ((300, 120), (40, 100)), ((64, 64), (10, 50))],
)
def test_map_round_trip_lands_on_the_spot(
    resize: str, original_hw: tuple[int, int], spot_yx: tuple[int, int]
) -> None:
    """A spot in the original image, pushed through the model geometry and back, stays put."""
    image = np.zeros(original_hw, dtype=np.uint8)
    cv2.circle(image, (spot_yx[1], spot_yx[0]), 6, 255, -1)
    model_spec = spec(64, 96, 1, resize)
    model_map = to_model_input(image, model_spec)[:, :, 0].astype(np.float32)

    back = map_to_original(model_map, original_hw, model_spec)

    assert back.shape == original_hw
    assert back.dtype == np.float32
    ys, xs = np.nonzero(back > back.max() / 2)
    assert abs(ys.mean() - spot_yx[0]) < 2.0
    assert abs(xs.mean() - spot_yx[1]) < 2.0


def test_letterbox_padding_is_cropped_from_the_map() -> None:
    model_spec = spec(64, 64, 1, "letterbox")
    where = placement((100, 200), model_spec)
    assert (where.top, where.left, where.height, where.width) == (16, 0, 32, 64)
    model_map = np.full((64, 64), 9.0, dtype=np.float32)
    model_map[16:48] = 1.0  # only the padding is hot
    assert (map_to_original(model_map, (100, 200), model_spec) == 1.0).all()


def test_map_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(InputError, match="model input size"):
        map_to_original(np.zeros((10, 10), np.float32), (50, 50), spec(64, 64, 1))


def test_mask_threshold_is_above_127(tmp_path: Path) -> None:
    path = tmp_path / "000_mask.png"
    cv2.imwrite(str(path), np.array([[0, 100, 127, 128, 255]], dtype=np.uint8))
    mask = read_mask(path, (1, 5))
    assert mask.dtype == np.bool_
    assert mask.tolist() == [[False, False, False, True, True]]


def test_mask_of_another_size_names_both_sizes_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "003_mask.png"
    cv2.imwrite(str(path), np.zeros((40, 30), np.uint8))
    with pytest.raises(DataError, match=r"mask is 30×40 but its image is 64×48") as caught:
        read_mask(path, (48, 64))
    assert str(path) in str(caught.value)
