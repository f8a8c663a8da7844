"""The ``weave`` demo product: a woven fabric whose defects are global, not local patches
(``density``, ``tint``, ``rotation``, ``missing_thread``; a global defect's mask is the whole
image). Good samples vary in phase, pitch, angle, shade and fibre noise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

WEAVE_DEFECT_KINDS: tuple[str, ...] = ("density", "missing_thread", "rotation", "tint")


@dataclass(frozen=True)
class WeaveParams:
    """Geometry and colour of one weave sample (pitch in output pixels, angle in degrees)."""

    pitch: float
    angle: float
    phase: tuple[float, float]
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    missing_warp: int | None = None  # index of a warp thread that is absent, relative to centre


WARP_RGB = np.asarray((176.0, 150.0, 112.0), np.float32)
WEFT_RGB = np.asarray((150.0, 128.0, 98.0), np.float32)
GAP_RGB = np.asarray((40.0, 34.0, 28.0), np.float32)
BASE_PITCH = 11.0


def normal_params(rng: np.random.Generator) -> WeaveParams:
    """The natural variation of good fabric."""
    return WeaveParams(
        pitch=BASE_PITCH * rng.uniform(0.98, 1.02),
        angle=rng.uniform(-1.5, 1.5),
        phase=(rng.uniform(0, 2), rng.uniform(0, 2)),
    )


def defect_params(params: WeaveParams, kind: str, rng: np.random.Generator) -> WeaveParams:
    """``params`` with one global defect of ``kind`` applied."""
    sign = rng.choice((-1.0, 1.0))
    if kind == "density":
        return replace(params, pitch=params.pitch * (1.0 + sign * rng.uniform(0.09, 0.14)))
    if kind == "rotation":
        return replace(params, angle=params.angle + sign * rng.uniform(5.0, 9.0))
    if kind == "tint":
        cast = rng.uniform(0.06, 0.09)
        up, down = rng.choice(3, size=2, replace=False)
        tint = np.ones(3)
        tint[up], tint[down] = 1.0 + cast / 2, 1.0 - cast / 2
        return replace(params, tint=tuple(float(t) for t in tint))
    if kind == "missing_thread":
        return replace(params, missing_warp=int(rng.integers(-5, 6)))
    raise ValueError(f"unknown weave defect {kind!r}; valid: {', '.join(WEAVE_DEFECT_KINDS)}")


def render_weave(
    size: int, params: WeaveParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) float32 RGB in [0, 255] and the (size, size) bool missing-thread mask."""
    scale = 2
    side = size * scale
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / scale - size / 2
    theta = np.deg2rad(params.angle)
    u = (np.cos(theta) * xx + np.sin(theta) * yy) / params.pitch + params.phase[0]
    v = (-np.sin(theta) * xx + np.cos(theta) * yy) / params.pitch + params.phase[1]
    i, j = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = u - i, v - j
    warp_top = (i + j) % 2 == 0
    warp = _profile(fu) * (0.6 + 0.4 * np.sin(np.pi * fv))
    weft = _profile(fv) * (0.6 + 0.4 * np.sin(np.pi * fu))
    shades = rng.uniform(0.9, 1.1, size=(2, 512))
    warp = warp * shades[0][i % 512]
    weft = weft * shades[1][j % 512]
    missing = np.zeros_like(warp_top)
    if params.missing_warp is not None:
        centre = int(np.floor(params.phase[0]))
        missing = i == centre + params.missing_warp
        warp_top = warp_top & ~missing
        weft = np.where(missing, weft * 0.85, weft)  # the weft sags into the gap
    on_top = np.where(warp_top, warp, weft)[:, :, None]
    colour = np.where(warp_top[:, :, None], WARP_RGB, WEFT_RGB)
    image = GAP_RGB + (colour - GAP_RGB) * on_top
    fibres = cv2.GaussianBlur(rng.normal(0, 1, (side, side)).astype(np.float32), (0, 0), 1.2)
    image = image * (1.0 + 0.06 * fibres[:, :, None])
    image = image * np.asarray(params.tint, np.float32)
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(missing.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0
    return image.astype(np.float32), mask


def _profile(f: np.ndarray) -> np.ndarray:
    """A yarn's cross-section brightness across its width, 0 at the edges, 1 in the middle."""
    return np.sin(np.pi * np.clip(f, 0.0, 1.0)) ** 0.7


def render_weave_sample(
    size: int, seed: Sequence[int], kind: str | None
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """One weave sample before finishing: image, its 0/255 mask (None when good), light level
    (the clean fabric's mean, so the finishing jitter adds no global change)."""
    base_rng, defect_rng, render_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(list(seed)).spawn(3)
    )
    params = normal_params(base_rng)
    clean_level = float(render_weave(size, params, np.random.default_rng(list(seed)))[0].mean())
    if kind is None:
        image, _ = render_weave(size, params, render_rng)
        return image, None, clean_level
    image, gap = render_weave(size, defect_params(params, kind, defect_rng), render_rng)
    altered = gap if kind == "missing_thread" else np.ones((size, size), bool)
    return image, np.where(altered, 255, 0).astype(np.uint8), clean_level
