"""The high-resolution demo product ``plate``: a textured steel plate held in a busy fixture.

A 2048 px plate of blasted steel with four holes in a dark fixture with pins and per-image
clutter, shifted and rotated (so alignment matters); a defective plate carries one small
``scratch``, ``pit`` or ``stain``, masked where it altered pixels. ``write_plate`` also writes
``reference.png`` (the nominal pose), whose ROI polygons ``plate_roi`` returns.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from inspection.core.errors import DatasetError
from inspection.data.demo import ALPHA_CUTOFF, prepare_folder, write_samples

log = logging.getLogger(__name__)

PRODUCT = "plate"
PLATE_DEFECT_KINDS: tuple[str, ...] = ("pit", "scratch", "stain")
MAX_SHIFT = 0.012  # of the image side
MAX_ROTATION = 1.2  # degrees
MAX_DEFECT_FRACTION = 0.001  # of the image area
# Part geometry in fractions of the image side (reference pose): centre, half extents, corner.
PART_CENTRE = (0.5, 0.5)
PART_HALF = (0.31, 0.27)  # x, y
PART_CORNER = 0.04
HOLE_OFFSETS = ((-0.25, -0.21), (0.25, -0.21), (-0.25, 0.21), (0.25, 0.21))
HOLE_RADIUS = 0.022
ROI_MARGIN = 0.03  # ROI inset from the part edge and outset around holes (> jitter residual)
PINS = ((0.09, 0.09), (0.91, 0.09), (0.09, 0.91), (0.91, 0.91))
STEEL_TINT = (0.92, 0.96, 1.04)
WRITE_COMPRESSION = 1  # PNG zlib level: 2048 px images at the default 6 are slow to write


@dataclass(frozen=True)
class PlateCounts:
    """How many images ``write_plate`` writes per split."""

    n_train: int = 30
    n_test_good: int = 15
    n_test_per_defect: int = 5

    @property
    def total(self) -> int:
        return self.n_train + self.n_test_good + self.n_test_per_defect * len(PLATE_DEFECT_KINDS)


# --- geometry ----------------------------------------------------------------------------------


def _rounded_rect(size: int, inset: float) -> np.ndarray:
    """The part outline inset by ``inset`` (fraction of side): (N, 2) float32 pixel x, y."""
    cx, cy = PART_CENTRE[0] * size, PART_CENTRE[1] * size
    hx, hy = (PART_HALF[0] - inset) * size, (PART_HALF[1] - inset) * size
    r = max(PART_CORNER - inset, 0.005) * size
    points = []
    quadrants = ((1, 1), (-1, 1), (-1, -1), (1, -1))
    for (sx, sy), start in zip(quadrants, (0, 90, 180, 270), strict=True):
        ox, oy = cx + sx * (hx - r), cy + sy * (hy - r)
        for angle in np.deg2rad(np.arange(start, start + 91, 15)):
            points.append((ox + r * np.cos(angle), oy + r * np.sin(angle)))
    return np.asarray(points, np.float32)


def _circle(centre: tuple[float, float], radius: float, n: int = 16) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], 1)


def hole_centres(size: int) -> list[tuple[float, float]]:
    """Pixel centres of the part's holes in the reference pose."""
    return [((PART_CENTRE[0] + dx) * size, (PART_CENTRE[1] + dy) * size) for dx, dy in HOLE_OFFSETS]


def plate_roi(size: int) -> dict[str, list[list[list[int]]]]:
    """ROI polygons in reference-image pixels: ``{"include": [...], "exclude": [...]}``, the
    part inset and each hole grown by ``ROI_MARGIN``."""
    include = np.rint(_rounded_rect(size, ROI_MARGIN)).astype(int).tolist()
    radius = (HOLE_RADIUS + ROI_MARGIN) * size
    exclude = [np.rint(_circle(c, radius)).astype(int).tolist() for c in hole_centres(size)]
    return {"include": [include], "exclude": exclude}


def pose_matrix(size: int, dx: float, dy: float, degrees: float) -> np.ndarray:
    """(2, 3) affine: rotate by ``degrees`` about the image centre, then shift (pixels)."""
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), degrees, 1.0)
    matrix[:, 2] += (dx, dy)
    return matrix


# --- part --------------------------------------------------------------------------------------


def _material(photo: np.ndarray) -> np.ndarray:
    """The 512 px grayscale photo mirror-tiled into a seamless (1024, 1024) float32 tile."""
    top = np.concatenate([photo, photo[:, ::-1]], axis=1)
    return np.concatenate([top, top[::-1]], axis=0).astype(np.float32)


def _part_texture(size: int, tile: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 steel: fine grain at native scale, coarse grain upscaled."""
    reps = -(-size // tile.shape[0]) + 1
    oy, ox = rng.integers(0, tile.shape[0], 2)
    fine = np.tile(tile, (reps, reps))[oy : oy + size, ox : ox + size]
    side = int(tile.shape[0] * rng.uniform(0.35, 0.5))
    y, x = rng.integers(0, tile.shape[0] - side, 2)
    patch = tile[y : y + side, x : x + side]
    coarse = cv2.resize(patch, (size, size), interpolation=cv2.INTER_CUBIC)
    mean = float(tile.mean())
    grey = 150.0 + 0.22 * (fine - mean) + 0.18 * (coarse - mean)
    return grey[:, :, None] * np.asarray(STEEL_TINT, np.float32)


def _part_alpha(size: int) -> np.ndarray:
    """(size, size) float32 coverage of the part in the reference pose (holes are empty)."""
    scale = 2
    canvas = np.zeros((size * scale, size * scale), np.uint8)
    cv2.fillPoly(canvas, [np.rint(_rounded_rect(size, 0) * scale).astype(np.int32)], 255)
    for centre in hole_centres(size):
        c = (round(centre[0] * scale), round(centre[1] * scale))
        cv2.circle(canvas, c, round(HOLE_RADIUS * size * scale), 0, -1, cv2.LINE_AA)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _bevel(alpha: np.ndarray, size: int) -> np.ndarray:
    """Edge shading of the part: a lit upper-left and a shadowed lower-right chamfer."""
    soft = cv2.GaussianBlur(alpha, (0, 0), max(1.0, size / 500))
    gy, gx = np.gradient(soft)
    return 1.0 + 40.0 * (gx + gy) * size / 2048


# --- fixture -----------------------------------------------------------------------------------


def _fixture(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 fixture with fixed pins and per-image clutter."""
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size // 4, size // 4)).astype(np.float32), (0, 0), 2)
    base = 58.0 + 6.0 * cv2.resize(noise, (size, size), interpolation=cv2.INTER_LINEAR)
    image = np.repeat(base[:, :, None], 3, axis=2) * np.asarray((0.95, 0.98, 1.05), np.float32)
    image = np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))  # putText needs uint8
    for px, py in PINS:
        _bolt(image, (px * size, py * size), 0.028 * size, plain=True)
    for _ in range(int(rng.integers(2, 6))):
        _bolt(image, _outside_part(size, rng), rng.uniform(0.012, 0.022) * size)
    for _ in range(int(rng.integers(0, 3))):
        centre = _int_point(_outside_part(size, rng))
        radius = int(rng.uniform(0.008, 0.018) * size)
        cv2.circle(image, centre, radius, (12, 12, 14), -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 4))):
        _label(image, _outside_part(size, rng), size, rng)
    for _ in range(int(rng.integers(0, 3))):
        _scribble(image, _outside_part(size, rng), size, rng)
    text = f"LOT {rng.integers(1000, 9999)}-{rng.choice(list(string.ascii_uppercase))}"
    cv2.putText(image, text, _int_point(_outside_part(size, rng)), cv2.FONT_HERSHEY_SIMPLEX,
                size / 1400, (150, 150, 140), max(1, size // 700), cv2.LINE_AA)  # fmt: skip
    return image.astype(np.float32)


def _outside_part(size: int, rng: np.random.Generator) -> tuple[float, float]:
    """A random point in the fixture band around the part (pixels)."""
    while True:
        x, y = rng.uniform(0.03, 0.97, 2)
        dx, dy = abs(x - PART_CENTRE[0]), abs(y - PART_CENTRE[1])
        if dx > PART_HALF[0] + 0.05 or dy > PART_HALF[1] + 0.05:
            return x * size, y * size


def _int_point(point: tuple[float, float]) -> tuple[int, int]:
    return round(point[0]), round(point[1])


def _bolt(
    image: np.ndarray, centre: tuple[float, float], radius: float, plain: bool = False
) -> None:
    c, r = _int_point(centre), max(2, round(radius))
    cv2.circle(image, c, r + max(1, r // 6), (25, 25, 28), -1, cv2.LINE_AA)  # shadow ring
    cv2.circle(image, c, r, (170, 170, 165), -1, cv2.LINE_AA)
    if plain:
        cv2.circle(image, c, r // 2, (120, 120, 118), -1, cv2.LINE_AA)
        return
    hexagon = _circle(centre, r * 0.55, n=6) + 0.0
    cv2.fillPoly(image, [np.rint(hexagon).astype(np.int32)], (60, 60, 62), cv2.LINE_AA)


LABEL_COLOURS = ((235, 235, 228), (240, 205, 40), (215, 60, 45), (70, 140, 215))


def _label(
    image: np.ndarray, corner: tuple[float, float], size: int, rng: np.random.Generator
) -> None:
    w, h = int(rng.uniform(0.08, 0.14) * size), int(rng.uniform(0.035, 0.06) * size)
    x, y = _int_point(corner)
    colour = LABEL_COLOURS[int(rng.integers(len(LABEL_COLOURS)))]
    cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1, cv2.LINE_AA)
    chars = string.ascii_uppercase + string.digits
    text = "".join(rng.choice(list(chars), int(rng.integers(4, 9))))
    cv2.putText(image, text, (x + h // 6, y + h // 2), cv2.FONT_HERSHEY_SIMPLEX, h / 90,
                (20, 20, 20), max(1, h // 30), cv2.LINE_AA)  # fmt: skip
    bar_x = x + h // 6
    for width in rng.integers(1, 4, int(rng.integers(12, 25))) * max(1, size // 1024):
        if bar_x + width >= x + w:
            break
        cv2.rectangle(image, (bar_x, y + int(h * 0.62)), (bar_x + int(width) - 1, y + h - h // 8),
                      (15, 15, 15), -1)  # fmt: skip
        bar_x += int(width) * 2


def _scribble(
    image: np.ndarray, start: tuple[float, float], size: int, rng: np.random.Generator
) -> None:
    steps = rng.normal(0, 0.012 * size, (int(rng.integers(4, 9)), 2)).cumsum(axis=0)
    points = np.rint(np.asarray(start) + steps).astype(np.int32)
    colour = ((200, 40, 40), (40, 60, 190), (20, 20, 20))[int(rng.integers(3))]
    cv2.polylines(image, [points], False, colour, max(1, size // 400), cv2.LINE_AA)


# --- defects (on a local patch of the part, before the pose warp) ------------------------------
# Each returns (alpha, target) for a square patch: alpha (P, P) float32 in [0, 1], target (P, P, 3).


def _blob(rng: np.random.Generator, patch: int, radius: float) -> np.ndarray:
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.normal(0, 0.15 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = radius * np.clip(r, 0.75, 1.25) * 4
    c = patch * 2
    points = np.stack([c + r * np.cos(theta), c + r * np.sin(theta)], 1)
    canvas = np.zeros((patch * 4, patch * 4), np.uint8)
    cv2.fillPoly(canvas, [np.rint(points).astype(np.int32)], 255, cv2.LINE_AA)
    return cv2.resize(canvas, (patch, patch), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _pit(patch: np.ndarray, rng: np.random.Generator, scale: float):
    side = patch.shape[0]
    blob = _blob(rng, side, rng.uniform(7, 13) * scale)
    ring = np.clip(cv2.GaussianBlur(blob, (0, 0), max(0.7, 2 * scale)) * 2 - blob * 2, 0, 1)
    alpha = np.maximum(blob * 0.95, ring * 0.5)
    target = np.where((blob >= ring)[:, :, None], patch * 0.25 + 8, patch * 0.8 + 55)
    return alpha, target


def _scratch(patch: np.ndarray, rng: np.random.Generator, scale: float):
    side = patch.shape[0]
    length = rng.uniform(90, 170) * scale
    angle = rng.uniform(0, np.pi)
    t = np.linspace(-0.5, 0.5, 48)[:, None]
    direction = np.array([np.cos(angle), np.sin(angle)])
    bend = np.array([-direction[1], direction[0]]) * rng.uniform(-0.12, 0.12) * length
    points = side / 2 + t * length * direction + (1 - 4 * t**2) * bend
    canvas = np.zeros((side * 4, side * 4), np.uint8)
    width = max(1, round(rng.uniform(1.6, 2.6) * scale * 4))
    cv2.polylines(canvas, [np.rint(points * 4).astype(np.int32)], False, 255, width, cv2.LINE_AA)
    line = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    alpha = line * rng.uniform(0.75, 0.9)
    bright = rng.random() < 0.6
    target = patch * 0.4 + 150 if bright else patch * 0.35
    return alpha, target


def _stain(patch: np.ndarray, rng: np.random.Generator, scale: float):
    side = patch.shape[0]
    blob = _blob(rng, side, rng.uniform(17, 26) * scale)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (side, side)).astype(np.float32), (0, 0), side / 12)
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    soft = cv2.GaussianBlur(blob, (0, 0), max(0.8, 3 * scale)) * blob.clip(0, 1) ** 0.2
    tints = (np.array([0.80, 0.58, 0.36], np.float32), np.array([0.45, 0.48, 0.56], np.float32))
    alpha = soft * (0.6 + 0.4 * noise) * rng.uniform(0.6, 0.8)
    return alpha, patch * tints[int(rng.integers(2))]


DEFECTS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "pit": _pit, "scratch": _scratch, "stain": _stain,
}  # fmt: skip


def _add_defect(part: np.ndarray, kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Blend one defect into ``part`` in place; returns the (size, size) float32 alpha."""
    scale = size / 2048
    side = max(16, int(np.ceil(220 * scale)))
    alpha_full = np.zeros((size, size), np.float32)
    # centre on the plate surface, away from its edge and holes (reference pose)
    while True:
        fx = rng.uniform(-PART_HALF[0] + 0.08, PART_HALF[0] - 0.08)
        fy = rng.uniform(-PART_HALF[1] + 0.08, PART_HALF[1] - 0.08)
        if all(np.hypot(fx - hx, fy - hy) > HOLE_RADIUS + 0.09 for hx, hy in HOLE_OFFSETS):
            break
    x0 = int((PART_CENTRE[0] + fx) * size) - side // 2
    y0 = int((PART_CENTRE[1] + fy) * size) - side // 2
    region = part[y0 : y0 + side, x0 : x0 + side]
    alpha, target = DEFECTS[kind](region, rng, scale)
    alpha = np.where(alpha >= ALPHA_CUTOFF, alpha, 0.0).astype(np.float32)
    weight = alpha[:, :, None]
    part[y0 : y0 + side, x0 : x0 + side] = region * (1 - weight) + target * weight
    alpha_full[y0 : y0 + side, x0 : x0 + side] = alpha
    return alpha_full


def _finish(image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Light/contrast jitter, an illumination ramp and sensor noise (as ``demo._finish``), in
    float32 with OpenCV's noise generator (seeded from ``rng``) so 2048 px stays fast; to uint8."""
    size = image.shape[0]
    gain, contrast = rng.uniform(0.9, 1.1, 2)
    offset = rng.uniform(-8, 8)
    angle = rng.uniform(0, 2 * np.pi)
    axis = np.arange(size, dtype=np.float32) / size - 0.5
    slope = rng.uniform(0, 0.08)
    ramp = 1.0 + slope * (np.cos(angle) * axis[None, :] + np.sin(angle) * axis[:, None])
    out = (image - np.float32(level)) * np.float32(contrast) + np.float32(level * gain + offset)
    out *= ramp[:, :, None].astype(np.float32)
    noise = np.empty_like(out)
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    cv2.randn(noise, 0.0, 2.0)
    out += noise
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _pose(size: int, rng: np.random.Generator) -> np.ndarray:
    dx, dy = rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2) * size
    return pose_matrix(size, dx, dy, rng.uniform(-MAX_ROTATION, MAX_ROTATION))


def plate_pose(size: int, seed: tuple[int, ...]) -> np.ndarray:
    """The (2, 3) pose (reference pixels -> image pixels) of the jittered sample ``seed``."""
    return _pose(size, np.random.default_rng(np.random.SeedSequence(list(seed)).spawn(5)[3]))


# --- samples -----------------------------------------------------------------------------------


def render_plate(
    size: int, seed: tuple[int, ...], kind: str | None, *, jitter: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """One sample: (size, size, 3) uint8 RGB and, for a defect, its (size, size) uint8 0/255 mask."""
    # deferred: skimage
    from skimage import data  # local: keeps `import inspection.data` light

    if kind is not None and kind not in DEFECTS:
        raise DatasetError(f"unknown plate defect {kind!r}; valid: {', '.join(PLATE_DEFECT_KINDS)}")
    part_rng, fixture_rng, defect_rng, pose_rng, finish_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(list(seed)).spawn(5)
    )
    part = _part_texture(size, _material(data.gravel()), part_rng)
    alpha = _part_alpha(size)
    part = part * _bevel(alpha, size)[:, :, None]
    level = float(part[alpha > 0.5].mean())
    defect = _add_defect(part, kind, size, defect_rng) if kind is not None else None
    matrix = _pose(size, pose_rng) if jitter else pose_matrix(size, 0.0, 0.0, 0.0)
    warp = lambda a: cv2.warpAffine(a, matrix, (size, size), flags=cv2.INTER_LINEAR)  # noqa: E731
    part, alpha = warp(part), warp(alpha)
    image = _fixture(size, fixture_rng) * (1 - alpha[:, :, None]) + part * alpha[:, :, None]
    mask = None
    if defect is not None:
        mask = np.where(warp(defect) > 1e-6, 255, 0).astype(np.uint8)
    return _finish(image.astype(np.float32), level, finish_rng), mask


def write_plate(
    root: str | Path,
    *,
    seed: int = 0,
    size: int = 2048,
    counts: PlateCounts | None = None,
    on_image: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``root/plate`` (MVTec AD layout + ``reference.png``) and return it; a folder a
    demo generator did not write raises ``DatasetError`` (``demo.prepare_folder``)."""
    counts = counts or PlateCounts()
    if size < 256:
        raise DatasetError(f"plate image size must be at least 256 px, got {size}")
    if seed < 0:
        raise DatasetError(f"demo seed must be zero or positive, got {seed}")
    out = Path(root) / PRODUCT
    params = {"product": PRODUCT, "seed": seed, "size": size, "n_train": counts.n_train}
    params |= {"n_test_good": counts.n_test_good, "n_test_per_defect": counts.n_test_per_defect}
    prepare_folder(out, params, PLATE_DEFECT_KINDS)
    reference, _ = render_plate(size, (seed, 99, 0, 0, 0), None, jitter=False)
    Image.fromarray(reference).save(
        out / "reference.png", format="PNG", compress_level=WRITE_COMPRESSION
    )
    render = lambda sample_seed, kind: render_plate(size, tuple(sample_seed), kind)  # noqa: E731
    count = write_samples(out, params, PLATE_DEFECT_KINDS, render, stream=98,
                          compression=WRITE_COMPRESSION, on_image=on_image)  # fmt: skip
    log.info("wrote %s (%d images, %d px) to %s", PRODUCT, count, size, out)
    return out
