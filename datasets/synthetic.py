"""Synthetic machined parts with known defects, for demos and tests.

A part is a brushed metal plate with a grid of drilled holes on a dark fixture, lit from the
top left. Good parts vary a little (position, brightness, grain); defective parts carry one
defect of a known kind, and its mask. Seeded and fast: the default 110-image dataset takes
about a second.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from defectlens.errors import DataError, InputError

DEFECT_KINDS: tuple[str, ...] = ("scratch", "spot", "crack", "missing", "extra")
MIN_DEFECT_AREA = 0.002
MAX_DEFECT_AREA = 0.03
"""Defect masks cover this fraction of the image: visible, never trivially large."""

GRID = 3
"""Holes per row and per column."""

Float = npt.NDArray[np.float32]
_PLATE_TINT = np.array([0.62, 0.78, 1.00], dtype=np.float32)
"""Anodised blue, multiplied into the plate (not the fixture) of colour parts."""
_RUST = np.array([150.0, 78.0, 35.0], dtype=np.float32)
_AA = 4
"""Sub-pixel bits for OpenCV drawing: coordinates are multiplied by 2**_AA."""


@dataclass(frozen=True)
class _Geometry:
    size: int
    plate: tuple[float, float, float, float]  # x0, y0, x1, y1
    holes: list[tuple[float, float]]  # centres
    radius: float

    @property
    def scale(self) -> float:
        return self.size / 256.0


def make_part(
    rng: np.random.Generator, size: int = 256, defect: str | None = None, *, color: bool = False
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Render one part: (uint8 image, bool defect mask).

    The image is HxW gray, or HxWx3 RGB with `color`. `defect` is None for a good part or
    one of `DEFECT_KINDS`; the mask is all False for a good part.
    """
    if defect is not None and defect not in DEFECT_KINDS:
        raise InputError(f"unknown defect kind {defect!r}; choose one of {', '.join(DEFECT_KINDS)}")
    if size < 64:
        raise InputError(f"part size {size} is too small; use 64 pixels or more")
    geometry = _layout(rng, size)
    tint = _PLATE_TINT + rng.normal(0.0, 0.015, 3).astype(np.float32)

    holes = list(geometry.holes)
    radii = [geometry.radius] * len(holes)
    feature_mask = np.zeros((size, size), dtype=bool)
    if defect == "missing":
        index = int(rng.integers(len(holes)))
        feature_mask = _disk(size, holes.pop(index), radii.pop(index) * 1.3) > 0.5
    elif defect == "extra":
        holes.append(_extra_hole_centre(rng, geometry))
        radii.append(geometry.radius * rng.uniform(0.6, 0.9))
        feature_mask = _disk(size, holes[-1], radii[-1] * 1.3) > 0.5

    gray, plate, surface = _render(rng, geometry, holes, radii)
    image: Float = gray
    if color:
        plate3 = plate[:, :, np.newaxis]
        image = gray[:, :, np.newaxis] * (plate3 * tint + (1.0 - plate3))

    if defect in ("scratch", "spot", "crack"):
        image, mask = _surface_defect(rng, image, surface, geometry, defect)
    else:
        mask = feature_mask
    sensor_noise = rng.standard_normal(image.shape, dtype=np.float32) * 1.5
    out = np.clip(image + sensor_noise, 0, 255).astype(np.uint8)
    return out, mask


def generate_dataset(
    out: Path,
    *,
    train_good: int = 60,
    test_good: int = 20,
    test_defect_per_kind: int = 6,
    size: int = 256,
    seed: int = 0,
    color: bool = False,
) -> Path:
    """Write a synthetic dataset in the MVTec layout (PNG, masks 0/255) and return `out`.

    Written into a temporary folder beside `out`, then renamed, so `out` is either the whole
    dataset or absent. `out` must not exist or be an empty folder. Same seed, same bytes.
    """
    if train_good < 1 or test_good < 0 or test_defect_per_kind < 0:
        raise InputError(
            "synthetic dataset needs train_good >= 1 and non-negative test counts, got "
            f"train_good={train_good}, test_good={test_good}, "
            f"test_defect_per_kind={test_defect_per_kind}"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not empty; remove it or choose another")
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _write_group(staging / "train" / "good", None, rng, train_good, size, color)
        _write_group(staging / "test" / "good", None, rng, test_good, size, color)
        for kind in DEFECT_KINDS:
            _write_group(staging / "test" / kind, kind, rng, test_defect_per_kind, size, color)
        staging.chmod(0o755)  # mkdtemp makes it private; a dataset is for everyone on the box
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _write_group(
    folder: Path,
    defect: str | None,
    rng: np.random.Generator,
    count: int,
    size: int,
    color: bool,
) -> None:
    if count == 0:
        return
    folder.mkdir(parents=True)
    masks = folder.parent.parent / "ground_truth" / defect if defect else None
    if masks is not None:
        masks.mkdir(parents=True)
    for index in range(count):
        image, mask = make_part(rng, size, defect, color=color)
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR).astype(np.uint8, copy=False)
        _write_png(folder / f"{index:03d}.png", image)
        if masks is not None:
            _write_png(masks / f"{index:03d}_mask.png", mask.astype(np.uint8) * 255)


def _write_png(path: Path, image: npt.NDArray[np.uint8]) -> None:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise DataError(f"{path}: OpenCV could not encode the image as PNG")
    path.write_bytes(encoded.tobytes())


def _layout(rng: np.random.Generator, size: int) -> _Geometry:
    """The plate and its hole grid, shifted by a pixel or two as a fixture would."""
    margin = 0.06 * size
    shift_x, shift_y = rng.normal(0.0, 0.006 * size, 2)
    x0, y0 = margin + shift_x, margin + shift_y
    x1, y1 = size - margin + shift_x, size - margin + shift_y
    pitch = (x1 - x0) / GRID
    jitter = rng.normal(0.0, 0.002 * size, (GRID * GRID, 2))
    holes = [
        (
            x0 + pitch * (col + 0.5) + float(jitter[row * GRID + col, 0]),
            y0 + pitch * (row + 0.5) + float(jitter[row * GRID + col, 1]),
        )
        for row in range(GRID)
        for col in range(GRID)
    ]
    return _Geometry(size, (x0, y0, x1, y1), holes, radius=0.052 * size)


def _extra_hole_centre(rng: np.random.Generator, geometry: _Geometry) -> tuple[float, float]:
    """A point between four holes, where the drawing has none."""
    x0, y0, x1, _ = geometry.plate
    pitch = (x1 - x0) / GRID
    col, row = rng.integers(1, GRID, 2)
    return x0 + pitch * float(col), y0 + pitch * float(row)


def _render(
    rng: np.random.Generator,
    geometry: _Geometry,
    holes: list[tuple[float, float]],
    radii: list[float],
) -> tuple[Float, Float, Float]:
    """(gray image, plate coverage, defect-free plate surface), all float32 HxW."""
    size, s = geometry.size, geometry.scale
    plate = _rounded_rect(size, geometry.plate, 0.05 * size)
    hole = _disks(size, holes, radii)
    keep_out = _disks(size, holes, [radius * 1.5 for radius in radii])

    # height field lit from the top left: bevels and hole chamfers catch light on one side
    height = cv2.GaussianBlur(plate - 0.9 * hole, (0, 0), 1.3 * s)
    relief = cv2.filter2D(height, -1, np.array([[2, 1, 0], [1, 0, -1], [0, -1, -2]], np.float32))

    brightness = rng.uniform(128.0, 150.0)
    shading = _low_frequency(rng, size, amplitude=14.0)
    grain = cv2.blur(rng.standard_normal((size, size), dtype=np.float32), (int(31 * s), 1))
    grain = grain * np.float32(rng.uniform(22.0, 30.0))
    lathe = 3.0 * np.sin(np.arange(size, dtype=np.float32) * rng.uniform(0.8, 1.1) / s)
    metal = brightness + shading + grain + lathe[:, np.newaxis]

    fixture = 22.0 + 0.4 * _low_frequency(rng, size, amplitude=8.0)
    bore = 38.0 + 0.3 * shading
    gray = fixture * (1.0 - plate) + metal * plate
    gray = gray * (1.0 - hole) + bore * hole + 55.0 * relief
    surface = plate * (1.0 - keep_out)
    return gray.astype(np.float32), plate, surface


def _surface_defect(
    rng: np.random.Generator, image: Float, surface: Float, geometry: _Geometry, kind: str
) -> tuple[Float, npt.NDArray[np.bool_]]:
    """Draw a scratch, spot or crack on the flat metal; redraw until its area is in range."""
    area = float(geometry.size**2)
    alpha = np.zeros_like(surface)
    mask = np.zeros(surface.shape, dtype=bool)
    for _ in range(50):
        start = _point_on(rng, surface)
        if kind == "scratch":
            alpha = _scratch(rng, geometry, start)
        elif kind == "crack":
            alpha = _crack(rng, geometry, start)
        else:
            alpha = _spot(rng, geometry, start)
        alpha *= np.clip(surface * 1.5, 0.0, 1.0)
        mask = alpha > (0.5 if kind == "spot" else 0.25)
        if kind != "spot":  # thin lines: label a pixel round them, as an inspector would
            mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        if MIN_DEFECT_AREA <= mask.sum() / area <= MAX_DEFECT_AREA:
            break
    a = alpha[:, :, np.newaxis] if image.ndim == 3 else alpha
    if kind == "scratch":
        delta = rng.choice([1.0, -1.0]) * rng.uniform(60.0, 80.0)
        return image + delta * a, mask
    if kind == "crack":
        return image * (1.0 - a) + 12.0 * a, mask
    if image.ndim == 3 and rng.random() < 0.7:
        return image * (1.0 - a) + _RUST * a, mask
    target = image * 0.35 if rng.random() < 0.7 else np.minimum(image + 90.0, 250.0)
    return image * (1.0 - a) + target * a, mask


def _point_on(rng: np.random.Generator, surface: Float) -> tuple[float, float]:
    # start a little inside the flat metal so the defect is not lost off the plate's edge
    flat = (surface > 0.99).astype(np.uint8)
    margin = max(3, surface.shape[0] // 10)
    inner = cv2.erode(flat, np.ones((margin, margin), np.uint8))
    ys, xs = np.nonzero(inner if inner.any() else flat)
    index = int(rng.integers(len(xs)))
    return float(xs[index]), float(ys[index])


def _scratch(rng: np.random.Generator, geometry: _Geometry, start: tuple[float, float]) -> Float:
    s = geometry.scale
    length = rng.uniform(55.0, 100.0) * s
    angle = rng.uniform(0.0, math.pi)
    bend = rng.normal(0.0, 0.15)
    points = [
        (
            start[0] + t * length * math.cos(angle + bend * t),
            start[1] + t * length * math.sin(angle + bend * t),
        )
        for t in np.linspace(0.0, 1.0, 6)
    ]
    return _polyline(geometry.size, points, max(1, round(1.6 * s)))


def _crack(rng: np.random.Generator, geometry: _Geometry, start: tuple[float, float]) -> Float:
    s = geometry.scale
    heading = rng.uniform(0.0, 2 * math.pi)
    points = [start]
    for _ in range(int(rng.integers(8, 13))):
        heading += rng.normal(0.0, 0.6)
        step = rng.uniform(4.0, 8.0) * s
        x, y = points[-1]
        points.append((x + step * math.cos(heading), y + step * math.sin(heading)))
    alpha = _polyline(geometry.size, points, max(1, round(1.8 * s)))
    fork = int(rng.integers(2, len(points) - 2))
    x, y = points[fork]
    branch_heading = heading + rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.2)
    branch = [(x, y)]
    for _ in range(3):
        branch_heading += rng.normal(0.0, 0.5)
        x, y = x + 5.0 * s * math.cos(branch_heading), y + 5.0 * s * math.sin(branch_heading)
        branch.append((x, y))
    return np.maximum(alpha, _polyline(geometry.size, branch, 1))


def _spot(rng: np.random.Generator, geometry: _Geometry, centre: tuple[float, float]) -> Float:
    s = geometry.scale
    base = rng.uniform(5.0, 10.0) * s
    canvas = np.zeros((geometry.size, geometry.size), dtype=np.uint8)
    for _ in range(int(rng.integers(3, 6))):
        dx, dy = rng.normal(0.0, 0.45 * base, 2)
        radius = base * rng.uniform(0.5, 1.0)
        cv2.circle(
            canvas,
            _fixed((centre[0] + dx, centre[1] + dy)),
            int(radius * 2**_AA),
            255,
            -1,
            cv2.LINE_AA,
            _AA,
        )
    blurred = cv2.GaussianBlur(canvas.astype(np.float32) / 255.0, (0, 0), 1.5 * s)
    return np.clip(blurred * 1.3, 0.0, 1.0).astype(np.float32)


def _polyline(size: int, points: list[tuple[float, float]], thickness: int) -> Float:
    canvas = np.zeros((size, size), dtype=np.uint8)
    fixed = np.array([_fixed(p) for p in points], dtype=np.int32)
    cv2.polylines(canvas, [fixed], False, 255, thickness, cv2.LINE_AA, _AA)
    return canvas.astype(np.float32) / 255.0


def _disk(size: int, centre: tuple[float, float], radius: float) -> Float:
    return _disks(size, [centre], [radius])


def _disks(size: int, centres: list[tuple[float, float]], radii: list[float]) -> Float:
    canvas = np.zeros((size, size), dtype=np.uint8)
    for centre, radius in zip(centres, radii, strict=True):
        cv2.circle(canvas, _fixed(centre), int(radius * 2**_AA), 255, -1, cv2.LINE_AA, _AA)
    return canvas.astype(np.float32) / 255.0


def _rounded_rect(size: int, box: tuple[float, float, float, float], corner: float) -> Float:
    x0, y0, x1, y1 = box
    canvas = np.zeros((size, size), dtype=np.uint8)
    inner = (x0 + corner, y0 + corner, x1 - corner, y1 - corner)
    cv2.rectangle(canvas, _fixed(inner[:2]), _fixed(inner[2:]), 255, -1, cv2.LINE_AA, _AA)
    thick = int(2 * corner)
    cv2.rectangle(canvas, _fixed(inner[:2]), _fixed(inner[2:]), 255, thick, cv2.LINE_AA, _AA)
    return canvas.astype(np.float32) / 255.0


def _low_frequency(rng: np.random.Generator, size: int, amplitude: float) -> Float:
    coarse = rng.normal(0.0, amplitude, (4, 4)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return smooth.astype(np.float32, copy=False)


def _fixed(point: tuple[float, ...]) -> tuple[int, int]:
    return round(point[0] * 2**_AA), round(point[1] * 2**_AA)
