"""The ``part`` evaluation product: an aligned machined gear whose defects are small and local.

A turned steel gear on a dark fixture, jittered in pose, turning marks and lighting, drawn
supersampled. Defects nothing is tuned on: ``chip``, ``burr``, ``speck`` and ``missing_hole``
(patches normal somewhere on the part but not there); masks are the pixels they changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import cv2
import numpy as np

PART_DEFECT_KINDS: tuple[str, ...] = ("burr", "chip", "missing_hole", "speck")
MAX_SHIFT = 0.01
MAX_ROTATION = 1.0  # degrees
SUPERSAMPLE = 4
TEETH = 12
OUTER = 0.36  # tooth tip radius, fraction of the side
TOOTH_DEPTH = 0.05
BORE = 0.09
BOLT_RING, BOLT_RADIUS = 0.2, 0.028
HOLES = 4
BACKGROUND_RGB = np.asarray((46.0, 49.0, 54.0), np.float32)
STEEL_RGB = np.asarray((168.0, 172.0, 180.0), np.float32)
SPECK_RGB = np.asarray((40.0, 36.0, 34.0), np.float32)
CUTOFF = 0.12


def _outline_radius(theta: np.ndarray, size: float) -> np.ndarray:
    """Outer radius (px) of the gear at angle ``theta``: trapezoid teeth."""
    f = (theta * TEETH / (2 * np.pi)) % 1.0
    tooth = np.clip(1.0 - np.abs(f - 0.5) * 4.0 + 0.5, 0.0, 1.0)  # flat top, sloped flanks
    return size * (OUTER - TOOTH_DEPTH * (1.0 - tooth))


@cache
def _centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size * SUPERSAMPLE,)*2 float32 y and x of the supersampled pixel centres (px), read-only:
    the same for every sample of a size."""
    big = size * SUPERSAMPLE
    yy, xx = (np.mgrid[0:big, 0:big].astype(np.float32) + 0.5) / SUPERSAMPLE
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


class _Part:
    """The part at ``pose`` (dx, dy, degrees) on the supersampled grid: the body (inside the
    outline, outside the bore) and the outside of each of ``HOLES`` bolt holes, computed once
    for every coverage of one sample (clean and defective)."""

    def __init__(self, size: int, pose: np.ndarray) -> None:
        yy, xx = _centres(size)
        angle = np.deg2rad(pose[2])
        x0, y0 = xx - size / 2 - pose[0], yy - size / 2 - pose[1]
        self.size = size
        self.x = np.cos(angle) * x0 + np.sin(angle) * y0
        self.y = -np.sin(angle) * x0 + np.cos(angle) * y0
        r = np.hypot(self.x, self.y)
        self.body = (r < _outline_radius(np.arctan2(self.y, self.x), size)) & (r > BORE * size)
        self.outside_hole = []
        for k in range(HOLES):
            a = 2 * np.pi * k / HOLES + np.pi / 4
            cx, cy = BOLT_RING * size * np.cos(a), BOLT_RING * size * np.sin(a)
            self.outside_hole.append(np.hypot(self.x - cx, self.y - cy) > BOLT_RADIUS * size)

    def coverage(self, holes: Sequence[bool], discs: list) -> np.ndarray:
        """(size, size) float32 share of each output pixel covered by the part with the
        ``holes`` (``HOLES`` flags) drilled and extra (x, y, radius, +1 add / -1 remove)
        ``discs``."""
        inside = self.body.copy()
        for drilled, outside in zip(holes, self.outside_hole, strict=True):
            if drilled:
                inside &= outside
        for cx, cy, radius, sign in discs:
            disc = np.hypot(self.x - cx, self.y - cy) < radius
            inside = (inside | disc) if sign > 0 else (inside & ~disc)
        size = self.size
        return cv2.resize(inside.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)


def _face(size: int, pose: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 turned-steel face: concentric marks and a lighting gradient."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x, y = xx - size / 2 - pose[0], yy - size / 2 - pose[1]
    r = np.hypot(x, y)
    period = size / 256 * rng.uniform(3.0, 4.0)
    marks = 1.0 + 0.07 * np.sin(2 * np.pi * r / period + rng.uniform(0, 2 * np.pi))
    light = rng.uniform(0, 2 * np.pi)
    shade = 1.0 + 0.12 * (np.cos(light) * x + np.sin(light) * y) / size
    grain = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.0)
    return STEEL_RGB * (marks * shade + 0.03 * grain)[:, :, None]


def _edge_point(size: int, rng: np.random.Generator) -> tuple[float, float]:
    """A random point on the outline (part coordinates, px)."""
    theta = rng.uniform(0, 2 * np.pi)
    radius = float(_outline_radius(np.asarray(theta), size))
    return radius * np.cos(theta), radius * np.sin(theta)


def render_part_sample(
    size: int, seed: Sequence[int], kind: str | None
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """One part sample before finishing: (size, size, 3) float32 image, its 0/255 mask
    (None when good) and the clean image's light level (``demo._finish`` pivots on it)."""
    base_rng, defect_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(list(seed)).spawn(2)
    )
    pose = np.asarray(
        [*(base_rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2) * size),
         base_rng.uniform(-MAX_ROTATION, MAX_ROTATION)]
    )  # fmt: skip
    face = _face(size, pose, base_rng)
    ground = BACKGROUND_RGB * (1.0 + 0.02 * base_rng.normal(0, 1, (size, size, 1)))
    ground = ground.astype(np.float32)
    part, holes = _Part(size, pose), [True] * HOLES
    clean = part.coverage(holes, [])
    image = (ground * (1 - clean[:, :, None]) + face * clean[:, :, None]).astype(np.float32)
    level = float(image.mean())
    if kind is None:
        return image, None, level
    scale = size / 256
    if kind == "speck":
        while True:  # on the face, away from the edges
            x, y = defect_rng.uniform(-0.3, 0.3, 2) * size
            radius = defect_rng.uniform(1.5, 4.0) * scale
            blob = np.zeros((size, size), np.float32)
            centre = (size / 2 + pose[0] + x, size / 2 + pose[1] + y)
            cv2.circle(blob, (round(centre[0] * 16), round(centre[1] * 16)), round(radius * 16),
                       1.0, -1, lineType=cv2.LINE_AA, shift=4)  # fmt: skip
            alpha = np.where(blob * clean >= CUTOFF, blob * clean * 0.85, 0.0)
            if (clean[blob > 0] > 0.99).all():
                break
        out = image * (1 - alpha[:, :, None]) + SPECK_RGB * alpha[:, :, None]
        out = np.where(alpha[:, :, None] > 0, out, image)
        return out.astype(np.float32), np.where(alpha > 0, 255, 0).astype(np.uint8), level
    if kind == "missing_hole":
        holes[int(defect_rng.integers(0, HOLES))] = False
        changed = part.coverage(holes, [])
    else:
        x, y = _edge_point(size, defect_rng)
        sign = -1 if kind == "chip" else 1
        radius = defect_rng.uniform(*((2.5, 5.0) if kind == "chip" else (2.0, 4.0))) * scale
        changed = part.coverage(holes, [(x, y, radius, sign)])
    altered = np.abs(changed - clean) >= CUTOFF
    out = ground * (1 - changed[:, :, None]) + face * changed[:, :, None]
    out = np.where(altered[:, :, None], out, image)  # sub-cutoff changes dropped: exact mask
    return out.astype(np.float32), np.where(altered, 255, 0).astype(np.uint8), level
