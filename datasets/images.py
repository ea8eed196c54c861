"""Image files in, model-sized arrays out, and model maps back to the original geometry.

Training and the inference engine both call these functions, so a part is decoded, coloured
and resized the same way on both sides of the model version hand-off. Only the formats the
product documents (JPEG, PNG, BMP, TIFF) reach a decoder, and only once their header has
shown the image is within the pixel limit: a small file can declare a huge image.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import cv2
import numpy as np
import numpy.typing as npt

from defectlens import DECODE_PIXEL_CAP
from defectlens.errors import DataError, InputError, TooLarge, UnsupportedFormat
from defectlens.modelcard import InputSpec

UInt8Image = npt.NDArray[np.uint8]
FloatMap = npt.NDArray[np.float32]
BoolMask = npt.NDArray[np.bool_]

MASK_THRESHOLD = 127
"""Mask pixels above this are defect: masks have soft, anti-aliased edges."""

ImageFormat = Literal["JPEG", "PNG", "BMP", "TIFF"]
ACCEPTED_FORMATS: Final[tuple[ImageFormat, ...]] = ("JPEG", "PNG", "BMP", "TIFF")
"""The formats the product documents; every other one is refused before decoding."""

_ACCEPTED_WORDS = ", ".join(ACCEPTED_FORMATS[:-1]) + " or " + ACCEPTED_FORMATS[-1]


@dataclass(frozen=True)
class ImageHeader:
    """What an accepted image's header says about it, read without decoding anything."""

    format: ImageFormat
    width: int
    height: int


def decode_image(data: bytes, source: str, max_pixels: int | None = None) -> UInt8Image:
    """Decode JPEG/PNG/BMP/TIFF bytes to uint8 HxW (gray) or HxWx3 in RGB order.

    16-bit images are scaled to 8 bit (value / 257, rounded); alpha is dropped. `source`
    names the file or request in every error. The header is read first (`read_header`) and
    nothing is decoded unless the image is within `max_pixels` (None: `DECODE_PIXEL_CAP`,
    which also bounds any larger value).

    Raises `UnsupportedFormat` (another image format), `TooLarge` (over the pixel limit) and
    `DataError` (empty, not an image, unreadable header, undecodable or unsupported pixels).
    """
    header = read_header(data, source)
    _check_pixels(header.width, header.height, max_pixels, source)
    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise DataError(f"{source}: not a readable image ({_opencv_reason(exc)})") from exc
    if decoded is None:
        samples = (
            _tiff_directory(data).get(_TIFF_SAMPLES_PER_PIXEL) if header.format == "TIFF" else None
        )
        if samples is not None and not 1 <= samples <= 4:
            raise DataError(
                f"{source}: TIFF with {samples} channels is not supported; expected gray, "
                "gray+alpha, RGB or RGBA"
            )
        raise DataError(
            f"{source}: not a readable image ({len(data)} bytes); expected a {_ACCEPTED_WORDS} "
            "file, complete and not corrupted"
        )
    # The decoder's own size, should it ever disagree with the header it was let in on.
    _check_pixels(decoded.shape[1], decoded.shape[0], max_pixels, source)
    return _to_uint8_rgb(decoded, source, gray_alpha=_is_png_gray_alpha(data))


def read_image(path: Path, max_pixels: int | None = None) -> UInt8Image:
    """Read and decode one image file, with the checks and errors of `decode_image`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the image file ({exc.strerror or exc})") from exc
    return decode_image(data, str(path), max_pixels=max_pixels)


def read_header(data: bytes, source: str) -> ImageHeader:
    """The format and size of an accepted image from its header alone; nothing is decoded.

    Raises `UnsupportedFormat` for a known format that is not accepted (WebP, GIF, JPEG 2000,
    PNM, ...) and `DataError` for empty bytes, bytes of no known image format, and a header
    that cannot be read (truncated, malformed, offsets outside the data, a zero size).
    """
    if len(data) == 0:
        raise DataError(f"{source}: the file is empty (0 bytes); expected a {_ACCEPTED_WORDS}")
    accepted = _accepted_format(data)
    if accepted is None:
        refused = _refused_format(data)
        if refused is not None:
            raise UnsupportedFormat(
                f"{source}: {refused} images are not accepted; send {_ACCEPTED_WORDS}"
            )
        raise DataError(
            f"{source}: not a readable image ({len(data)} bytes): its first bytes are not "
            f"those of a {_ACCEPTED_WORDS} file; send a complete file in one of these formats"
        )
    try:
        width, height = _SIZE_READERS[accepted](data)
        if width <= 0 or height <= 0:
            raise _HeaderError(f"it gives the size {width}×{height}")
    except _HeaderError as exc:
        raise DataError(
            f"{source}: the {accepted} header is unreadable ({exc}); the file is truncated "
            "or corrupted: send it again, complete"
        ) from None
    return ImageHeader(accepted, width, height)


def header_size(data: bytes, source: str = "image") -> tuple[int, int]:
    """(width, height) from the header without decoding; see `read_header`.

    Raises rather than guessing: `UnsupportedFormat` for formats that are not accepted (WebP,
    GIF, ...) and `DataError` for bytes that are no image or whose header is unreadable.
    """
    header = read_header(data, source)
    return header.width, header.height


def image_format(data: bytes) -> str | None:
    """The image format the first bytes announce ("JPEG", "WebP", ...), accepted or not;
    None if they announce none that OpenCV could decode."""
    return _accepted_format(data) or _refused_format(data)


_ACCEPTED_MAGIC: tuple[tuple[bytes, ImageFormat], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
)

# Every other format OpenCV's decoders recognise (and a few neighbours), to name it in the
# refusal. Bytes that match none of these and no accepted magic never reach a decoder either.
_REFUSED_MAGIC: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb"RIFF....WEBP", re.DOTALL), "WebP"),
    (re.compile(rb"GIF8[79]a"), "GIF"),
    (re.compile(rb"\x00\x00\x00\x0cjP  \r\n\x87\n"), "JPEG 2000"),
    (re.compile(rb"\xff\x4f\xff\x51"), "JPEG 2000"),  # a bare codestream (.j2k)
    (re.compile(rb"\x00\x00\x00\x0cJXL \r\n\x87\n"), "JPEG XL"),
    (re.compile(rb"\xff\x0a"), "JPEG XL"),  # a bare codestream
    (re.compile(rb"....ftyp(avif|avis)", re.DOTALL), "AVIF"),
    (re.compile(rb"....ftyp(heic|heix|hevc|hevx|heim|heis|mif1|msf1)", re.DOTALL), "HEIF"),
    (re.compile(rb"P[1-6]\s"), "PNM (PBM/PGM/PPM)"),
    (re.compile(rb"P7\s"), "PAM"),
    (re.compile(rb"P[Ff]\s"), "PFM"),
    (re.compile(rb"\x59\xa6\x6a\x95"), "Sun raster"),
    (re.compile(rb"#\?(RADIANCE|RGBE)"), "Radiance HDR"),
    (re.compile(rb"\x76\x2f\x31\x01"), "OpenEXR"),
)


def _accepted_format(data: bytes) -> ImageFormat | None:
    for magic, name in _ACCEPTED_MAGIC:
        if data.startswith(magic):
            return name
    return None


def _refused_format(data: bytes) -> str | None:
    for pattern, name in _REFUSED_MAGIC:
        if pattern.match(data):
            return name
    return None


class _HeaderError(ValueError):
    """Why a header cannot be read; `read_header` turns it into a `DataError` naming the
    source, so it never leaves this module."""


def _unpack(layout: str, data: bytes, offset: int, what: str) -> tuple[Any, ...]:
    """`struct.unpack_from`, with a reason instead of an exception when the data ends early."""
    if offset + struct.calcsize(layout) > len(data):
        raise _HeaderError(f"{what} at byte {offset} lies beyond the end of the data")
    return struct.unpack_from(layout, data, offset)


def _png_size(data: bytes) -> tuple[int, int]:
    # The standard puts IHDR first: length 13, "IHDR", then width and height, big-endian.
    length, kind, width, height = _unpack(">I4sII", data, 8, "the IHDR chunk")
    if kind != b"IHDR" or length != 13:
        raise _HeaderError(f"the first chunk is {kind!r} of {length} bytes, not IHDR of 13")
    return width, height


_BMP_CORE_HEADER = 12


def _bmp_size(data: bytes) -> tuple[int, int]:
    (dib_size,) = _unpack("<I", data, 14, "the DIB header size")
    if dib_size == _BMP_CORE_HEADER:  # OS/2 1.x / Windows 2.x: unsigned 16-bit sizes
        width, height = _unpack("<HH", data, 18, "the core header")
    elif dib_size >= 16:  # OS/2 2.x and Windows 3 to 5 (40, 52, 56, 64, 108, 124): int32
        width, height = _unpack("<ii", data, 18, "the DIB header")
    else:
        raise _HeaderError(f"a DIB header of {dib_size} bytes is of no BMP version")
    if 14 + dib_size > len(data):
        raise _HeaderError(f"the DIB header of {dib_size} bytes runs past the end of the data")
    if width <= 0:
        raise _HeaderError(f"it gives the width {width}")
    # A negative height is legal: the rows are stored top-down.
    return width, abs(height)


_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_SAMPLES_PER_PIXEL = 256, 257, 277
_TIFF_INTEGER_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8 (BigTIFF)
_TIFF_MAX_ENTRIES = 4096
"""libtiff refuses a directory with more entries as no directory; real ones hold dozens."""


def _tiff_size(data: bytes) -> tuple[int, int]:
    tags = _tiff_directory(data)
    if _TIFF_WIDTH not in tags or _TIFF_HEIGHT not in tags:
        raise _HeaderError(
            "the first directory has no ImageWidth (256) and ImageLength (257) as one "
            "SHORT, LONG or LONG8 value each"
        )
    return tags[_TIFF_WIDTH], tags[_TIFF_HEIGHT]


def _tiff_directory(data: bytes) -> dict[int, int]:
    """Single-valued integer tags of the first directory (IFD0) of a classic or BigTIFF: the
    image `cv2.imdecode` decodes. Its caller has seen one of the TIFF magics."""
    order = "<" if data.startswith(b"II") else ">"
    (version,) = _unpack(order + "H", data, 2, "the TIFF version")
    if version == 42:  # classic: 4-byte offsets, 12-byte entries
        (offset,) = _unpack(order + "I", data, 4, "the first directory offset")
        count_layout, entry_layout = "H", "HHI4s"
    else:  # 43, BigTIFF: 8-byte offsets and counts, 20-byte entries
        offset_size, zero, offset = _unpack(order + "HHQ", data, 4, "the BigTIFF header")
        if (offset_size, zero) != (8, 0):
            raise _HeaderError(f"BigTIFF offsets of {offset_size} bytes, not 8")
        count_layout, entry_layout = "Q", "HHQ8s"
    (count,) = _unpack(order + count_layout, data, offset, "the first directory")
    if not 1 <= count <= _TIFF_MAX_ENTRIES:
        raise _HeaderError(f"the first directory claims {count} entries")
    entries_at = offset + struct.calcsize(count_layout)
    entry_size = struct.calcsize(order + entry_layout)
    if entries_at + count * entry_size > len(data):
        raise _HeaderError(f"the first directory's {count} entries run past the end of the data")
    tags: dict[int, int] = {}
    for entry in range(entries_at, entries_at + count * entry_size, entry_size):
        tag, kind, values, inline = struct.unpack_from(order + entry_layout, data, entry)
        code = _TIFF_INTEGER_TYPES.get(kind)
        # One value, stored in the entry itself (a LONG8 fits only in BigTIFF's 8 bytes);
        # libtiff refuses an ImageWidth of any other count too.
        if code is not None and values == 1 and struct.calcsize(code) <= len(inline):
            (tags[tag],) = struct.unpack_from(order + code, inline)
    return tags


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length
_JPEG_NO_FRAME_YET = {0xD8: "a second SOI", 0xD9: "EOI", 0xDA: "SOS"}
_JPEG_MAX_SEGMENTS = 1024
"""Segments walked before giving up on a frame header; real files have a few dozen."""
_NOT_FF = re.compile(rb"[^\xff]")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """The size in the first SOFn frame header, found as libjpeg finds it: segments skipped by
    their length, stray bytes and FF fill bytes before a marker skipped too."""
    pos = 2  # after SOI
    for _ in range(_JPEG_MAX_SEGMENTS):
        pos = data.find(b"\xff", pos)
        code_at = _NOT_FF.search(data, pos) if pos >= 0 else None
        if code_at is None:
            raise _HeaderError("the data ends before the frame header (SOFn)")
        marker = data[code_at.start()]
        pos = code_at.start() + 1
        if marker == 0x00 or marker in _JPEG_STANDALONE:  # FF00 is a stuffed byte
            continue
        if marker in _JPEG_NO_FRAME_YET:
            raise _HeaderError(f"{_JPEG_NO_FRAME_YET[marker]} before any frame header (SOFn)")
        (length,) = _unpack(">H", data, pos, f"the length of segment FF{marker:02X}")
        if length < 2:
            raise _HeaderError(f"segment FF{marker:02X} at byte {pos - 2} has length {length}")
        if marker in _JPEG_SOF:
            _precision, height, width = _unpack(">BHH", data, pos + 2, "the frame header")
            return width, height
        pos += length
    raise _HeaderError(f"no frame header (SOFn) in the first {_JPEG_MAX_SEGMENTS} segments")


_SIZE_READERS: dict[ImageFormat, Callable[[bytes], tuple[int, int]]] = {
    "JPEG": _jpeg_size,
    "PNG": _png_size,
    "BMP": _bmp_size,
    "TIFF": _tiff_size,
}


def _is_png_gray_alpha(data: bytes) -> bool:
    """OpenCV expands a gray+alpha PNG to BGRA; the header's colour type 4 says it was gray."""
    return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 25 and data[25] == 4


def _check_pixels(width: int, height: int, max_pixels: int | None, source: str) -> None:
    if max_pixels is not None and max_pixels <= DECODE_PIXEL_CAP:
        limit, which = max_pixels, "DEFECTLENS_MAX_PIXELS"
    else:
        limit, which = DECODE_PIXEL_CAP, "the most defectlens decodes in one image"
    pixels = width * height
    if pixels > limit:
        raise TooLarge(
            f"{source}: image is {width}×{height} = {pixels} pixels, over the limit of "
            f"{limit} ({which}); send a smaller image"
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
