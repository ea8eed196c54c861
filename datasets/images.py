"""Image files in, model-sized arrays out, and model maps back to the original geometry.

Training and the inference engine both call these functions, so a part is decoded, coloured
and resized the same way on both sides of the model version hand-off.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from defectlens.errors import DataError, InputError
from defectlens.modelcard import InputSpec

UInt8Image = npt.NDArray[np.uint8]
FloatMap = npt.NDArray[np.float32]
BoolMask = npt.NDArray[np.bool_]

MASK_THRESHOLD = 127
"""Mask pixels above this are defect: masks have soft, anti-aliased edges."""


def decode_image(data: bytes, source: str, max_pixels: int | None = None) -> UInt8Image:
    """Decode JPG/PNG/BMP/TIFF bytes to uint8 HxW (gray) or HxWx3 in RGB order.

    16-bit images are scaled to 8 bit (value / 257, rounded); alpha is dropped. `source`
    names the file or request in every error. `max_pixels` refuses images larger than that,
    from the header where the format allows it (a decompression-bomb guard).
    """
    if len(data) == 0:
        raise DataError(f"{source}: the file is empty (0 bytes); expected a JPG, PNG, BMP or TIFF")
    if max_pixels is not None:
        size = header_size(data)
        if size is not None:
            _check_pixels(size, max_pixels, source)
    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise DataError(f"{source}: not a readable image ({_opencv_reason(exc)})") from exc
    if decoded is None:
        samples = _tiff_tags(data).get(_TIFF_SAMPLES_PER_PIXEL)
        if samples is not None and not 1 <= samples <= 4:
            raise DataError(
                f"{source}: TIFF with {samples} channels is not supported; expected gray, "
                "gray+alpha, RGB or RGBA"
            )
        raise DataError(
            f"{source}: not a readable image ({len(data)} bytes); expected a JPG, PNG, BMP or "
            "TIFF file, complete and not corrupted"
        )
    if max_pixels is not None:
        _check_pixels((decoded.shape[1], decoded.shape[0]), max_pixels, source)
    return _to_uint8_rgb(decoded, source, gray_alpha=_is_png_gray_alpha(data))


def read_image(path: Path, max_pixels: int | None = None) -> UInt8Image:
    """Read and decode one image file; see `decode_image`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the image file ({exc.strerror or exc})") from exc
    return decode_image(data, str(path), max_pixels=max_pixels)


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP or TIFF header without decoding; None if unknown."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(int(width)), abs(int(height))
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    tags = _tiff_tags(data)
    if _TIFF_WIDTH in tags and _TIFF_HEIGHT in tags:
        return tags[_TIFF_WIDTH], tags[_TIFF_HEIGHT]
    return None


_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_SAMPLES_PER_PIXEL = 256, 257, 277
_TIFF_INLINE_TYPES = {3: "H", 4: "I"}  # SHORT and LONG values stored in the entry itself


def _tiff_tags(data: bytes) -> dict[int, int]:
    """Single-valued SHORT/LONG tags of a classic TIFF's first directory; {} if not a TIFF."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8 or struct.unpack(order + "H", data[2:4])[0] != 42:
        return {}
    (offset,) = struct.unpack(order + "I", data[4:8])
    if offset + 2 > len(data):
        return {}
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    tags: dict[int, int] = {}
    for entry in range(offset + 2, min(offset + 2 + 12 * count, len(data) - 11), 12):
        tag, kind, values = struct.unpack(order + "HHI", data[entry : entry + 8])
        code = _TIFF_INLINE_TYPES.get(kind)
        if code is not None and values == 1:
            (tags[tag],) = struct.unpack(
                order + code, data[entry + 8 : entry + 8 + struct.calcsize(code)]
            )
    return tags


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan: no frame header seen
            return None
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(width), int(height)
        pos += 2 + length
    return None


def _is_png_gray_alpha(data: bytes) -> bool:
    """OpenCV expands a gray+alpha PNG to BGRA; the header's colour type 4 says it was gray."""
    return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 25 and data[25] == 4


def _check_pixels(width_height: tuple[int, int], max_pixels: int, source: str) -> None:
    width, height = width_height
    pixels = width * height
    if pixels > max_pixels:
        raise DataError(
            f"{source}: image is {width}×{height} = {pixels} pixels, over the limit of "
            f"{max_pixels}; send a smaller image or raise the limit"
        )


def _to_uint8_rgb(decoded: np.ndarray, source: str, gray_alpha: bool = False) -> UInt8Image:
    if decoded.dtype == np.uint16:
        # round(value / 257): 65535 -> 255, exact for images that were 8-bit scaled up
        decoded = ((decoded.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif decoded.dtype.kind == "f":
        raise DataError(
            f"{source}: floating-point image ({decoded.dtype}); export it as 8 or 16-bit "
            "integer JPG, PNG or TIFF"
        )
    elif decoded.dtype != np.uint8:
        raise DataError(
            f"{source}: {decoded.dtype} pixels are not supported; use 8 or 16-bit unsigned"
        )
    if decoded.ndim == 3 and (decoded.shape[2] == 1 or (gray_alpha and decoded.shape[2] == 4)):
        decoded = decoded[:, :, 0]
    if decoded.ndim == 2:
        return np.ascontiguousarray(decoded)
    channels = decoded.shape[2] if decoded.ndim == 3 else 0
    if channels == 3:
        return _uint8(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB))
    if channels == 4:
        return _uint8(cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB))
    raise DataError(
        f"{source}: {channels} channels are not supported; expected gray, gray+alpha, RGB or RGBA"
    )


def _opencv_reason(exc: Exception) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


@dataclass(frozen=True)
class Placement:
    """Where an original image sits inside the model input: scaled, then offset.

    For `stretch` the offsets are 0 and the content fills the input; for `letterbox` the
    content keeps its aspect ratio and is centred on zero padding.
    """

    top: int
    left: int
    height: int
    width: int
    scale_y: float
    scale_x: float


def placement(original_hw: tuple[int, int], spec: InputSpec) -> Placement:
    """The geometry `to_model_input` uses for an image of `original_hw` (height, width)."""
    height, width = original_hw
    if height <= 0 or width <= 0:
        raise InputError(f"image size {width}×{height} is empty")
    if spec.resize == "stretch":
        return Placement(0, 0, spec.height, spec.width, spec.height / height, spec.width / width)
    scale = min(spec.height / height, spec.width / width)
    inner_h = min(spec.height, max(1, round(height * scale)))
    inner_w = min(spec.width, max(1, round(width * scale)))
    top = (spec.height - inner_h) // 2
    left = (spec.width - inner_w) // 2
    return Placement(top, left, inner_h, inner_w, inner_h / height, inner_w / width)


def to_model_input(image: np.ndarray, spec: InputSpec) -> UInt8Image:
    """Colour-convert and resize a decoded image to the model's uint8 HxWxC input.

    `spec.channels` 1 is gray; 3 with `color` "rgb" is RGB; 3 with `color` "gray" is the gray
    image replicated (a gray model on a 3-channel backbone).
    """
    coloured = _convert_colour(_check_image(image), spec)
    where = placement((coloured.shape[0], coloured.shape[1]), spec)
    resized = _resize(coloured, where.height, where.width)
    if resized.ndim == 2:
        resized = resized[:, :, np.newaxis]
    if spec.resize == "stretch":
        return np.ascontiguousarray(resized)
    canvas = np.zeros((spec.height, spec.width, resized.shape[2]), dtype=np.uint8)
    canvas[where.top : where.top + where.height, where.left : where.left + where.width] = resized
    return canvas


def map_to_original(
    model_map: np.ndarray, original_hw: tuple[int, int], spec: InputSpec
) -> FloatMap:
    """Bring a float map of the model input size back to the original image's pixels."""
    if model_map.shape != (spec.height, spec.width):
        raise InputError(
            f"map is {model_map.shape}, expected the model input size ({spec.height}, {spec.width})"
        )
    where = placement(original_hw, spec)
    inner = model_map[where.top : where.top + where.height, where.left : where.left + where.width]
    height, width = original_hw
    resized = cv2.resize(
        np.ascontiguousarray(inner, dtype=np.float32),
        (width, height),
        interpolation=cv2.INTER_LINEAR,
    )
    return resized.astype(np.float32, copy=False)


def read_mask(path: Path, expected_hw: tuple[int, int]) -> BoolMask:
    """Read a defect mask: True where the (8-bit, any channel) value is above 127."""
    mask = read_image(path)
    if mask.ndim == 3:
        mask = mask.max(axis=2)  # a coloured annotation counts wherever any channel is lit
    if mask.shape != expected_hw:
        height, width = expected_hw
        raise DataError(
            f"{path}: mask is {mask.shape[1]}×{mask.shape[0]} but its image is "
            f"{width}×{height}; masks must be the same size as their image"
        )
    mask_bool: BoolMask = mask > MASK_THRESHOLD
    return mask_bool


def _check_image(image: np.ndarray) -> UInt8Image:
    if image.dtype != np.uint8:
        raise InputError(f"image must be uint8, got {image.dtype}; decode it with read_image")
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        return image
    raise InputError(f"image must be HxW gray or HxWx3 RGB, got shape {image.shape}")


def _convert_colour(image: UInt8Image, spec: InputSpec) -> UInt8Image:
    if spec.channels == 1 and spec.color == "rgb":
        raise InputError("input spec asks for 1 channel in colour 'rgb'; use 3 channels or 'gray'")
    gray_wanted = spec.color == "gray"
    if gray_wanted and image.ndim == 3:
        image = _uint8(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    if spec.channels == 3 and image.ndim == 2:
        image = np.repeat(image[:, :, np.newaxis], 3, axis=2)
    return image


def _resize(image: UInt8Image, height: int, width: int) -> UInt8Image:
    if image.shape[:2] == (height, width):
        return image
    shrinking = height <= image.shape[0] and width <= image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return _uint8(cv2.resize(image, (width, height), interpolation=interpolation))


def _uint8(array: np.ndarray) -> UInt8Image:
    """OpenCV's stubs type every result loosely; this states (and checks) what it is."""
    assert array.dtype == np.uint8
    return array
