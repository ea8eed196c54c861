"""Decoding image files, the model-input geometry and its inverse, and defect masks."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tifffile

from defectlens.datasets.images import (
    decode_image,
    header_size,
    map_to_original,
    placement,
    read_image,
    read_mask,
    to_model_input,
)
from defectlens.errors import DataError, InputError
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


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff"])
def test_header_size_reads_width_and_height(ext: str) -> None:
    assert header_size(encode(ext, np.zeros((30, 70, 3), np.uint8))) == (70, 30)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff"])
def test_max_pixels_guard(ext: str) -> None:
    data = encode(ext, np.zeros((30, 70), np.uint8))
    assert decode_image(data, "ok", max_pixels=2100).shape == (30, 70)
    with pytest.raises(
        DataError, match=r"big: image is 70×30 = 2100 pixels, over the limit of 2099"
    ):
        decode_image(data, "big", max_pixels=2099)


def test_max_pixels_is_checked_before_decoding() -> None:
    """A header that promises a 100000×100000 image is refused without decoding the rest."""
    bomb = bytearray(encode(".png", np.zeros((8, 8), np.uint8)))
    bomb[16:24] = struct.pack(">II", 100_000, 100_000)
    with pytest.raises(DataError, match="over the limit"):
        decode_image(bytes(bomb), "bomb.png", max_pixels=50_000_000)


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
