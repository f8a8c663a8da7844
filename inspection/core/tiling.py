"""Tiled inspection at native resolution (torch-free): the tile grid, cutting and stitching.

Resized whole, a 2448×2048 image makes a 15-pixel scratch two pixels wide, so it is cut into
tiles at ``scale`` (the last of each axis flush with the edge) and the tile maps stitched back:
``mean`` averages overlaps (halving seam artefacts), ``max`` never dilutes one tile's defect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from inspection.core.errors import InputDomainError

if TYPE_CHECKING:
    from inspection.core.roi import RoiSpec


class SmallerThanTile(InputDomainError, ValueError):
    """An image smaller than one tile at the product's scale: it cannot be tiled, so it can
    neither train nor be judged (the station refuses it as outside the bundle's domain)."""


BlendMode = Literal["mean", "max"]
BLEND_MODES: tuple[str, ...] = ("mean", "max")


@dataclass(frozen=True)
class TilingSpec:
    """How a product's images are tiled (registry record and bundle): ``tile_size`` (h, w), the
    model input size; ``stride`` (dy, dx) at most ``tile_size`` (no gaps); ``scale`` applied
    before tiling (1.0: native); ``blend`` of overlapping tile maps."""

    tile_size: tuple[int, int]
    stride: tuple[int, int]
    scale: float = 1.0
    blend: BlendMode = "mean"

    def __post_init__(self) -> None:
        if len(self.tile_size) != 2 or min(self.tile_size) < 1:
            raise ValueError(f"tile_size must be (height, width) >= 1, got {self.tile_size}")
        if len(self.stride) != 2 or min(self.stride) < 1:
            raise ValueError(f"stride must be (dy, dx) >= 1, got {self.stride}")
        if self.stride[0] > self.tile_size[0] or self.stride[1] > self.tile_size[1]:
            raise ValueError(
                f"stride {self.stride} must not exceed tile_size {self.tile_size}: "
                "pixels between tiles would never be inspected"
            )
        if not 0.0 < self.scale <= 4.0:
            raise ValueError(f"scale must be in (0, 4], got {self.scale}")
        if self.blend not in BLEND_MODES:
            raise ValueError(f"blend must be one of {BLEND_MODES}, got {self.blend!r}")

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of an image of ``height`` × ``width`` after ``scale``;
        ``SmallerThanTile`` when that is smaller than one tile."""
        size = (max(1, round(height * self.scale)), max(1, round(width * self.scale)))
        if size[0] < self.tile_size[0] or size[1] < self.tile_size[1]:
            th, tw = self.tile_size
            raise SmallerThanTile(
                f"image is {width}x{height} px, {size[1]}x{size[0]} at the tiling scale "
                f"{self.scale:g}: smaller than one tile {tw}x{th} (tiling.tile_size); lower "
                "tiling.tile_size or raise tiling.scale in the product's config, or take the "
                "image out of the product"
            )
        return size

    def grid(self, height: int, width: int) -> TileGrid:
        """The tile grid of an original image of ``height`` × ``width`` pixels."""
        work_h, work_w = self.working_size(height, width)
        ys = axis_starts(work_h, self.tile_size[0], self.stride[0])
        xs = axis_starts(work_w, self.tile_size[1], self.stride[1])
        return TileGrid((work_h, work_w), self.tile_size, tuple((y, x) for y in ys for x in xs))


@dataclass(frozen=True)
class TileGrid:
    """Tile origins (y, x) over an image of ``size`` (height, width), row-major."""

    size: tuple[int, int]
    tile_size: tuple[int, int]
    origins: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.origins)

    def inside(self, roi: RoiSpec) -> TileGrid:
        """The tiles holding a pixel of ``roi``; the others are neither trained nor run."""
        mask = roi.mask(*self.size)
        th, tw = self.tile_size
        kept = tuple((y, x) for y, x in self.origins if mask[y : y + th, x : x + tw].any())
        return TileGrid(self.size, self.tile_size, kept)

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """Each tile as (x0, y0, x1, y1), exclusive upper bounds, in working pixels."""
        th, tw = self.tile_size
        return [(x, y, x + tw, y + th) for y, x in self.origins]


def axis_starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one axis: every ``stride``, the last one flush with the edge."""
    if length < tile:
        raise ValueError(f"axis of {length} pixels is shorter than one tile ({tile})")
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def cut(array: np.ndarray, grid: TileGrid, *, channels_first: bool = False) -> np.ndarray:
    """Tiles of an array at the grid's working size, a copy in grid order: (H, W, ...) ->
    (N, th, tw, ...), or with ``channels_first`` (C, H, W) -> (N, C, th, tw)."""
    spatial = array.shape[1:3] if channels_first else array.shape[:2]
    if tuple(spatial) != grid.size:
        raise ValueError(f"array is {tuple(spatial)}, the grid expects {grid.size}")
    th, tw = grid.tile_size
    if channels_first:
        return np.stack([array[:, y : y + th, x : x + tw] for y, x in grid.origins])
    return np.stack([array[y : y + th, x : x + tw] for y, x in grid.origins])


def stitch(tile_maps: np.ndarray, grid: TileGrid, blend: BlendMode = "mean") -> np.ndarray:
    """(N, th, tw) tile maps -> (H, W) float32 map at the grid's working size; ``mean`` sums in
    float64, so a map ``cut`` and stitched comes back exactly. Pixels no tile covers are 0."""
    tile_maps = np.asarray(tile_maps)
    if tile_maps.shape != (len(grid), *grid.tile_size):
        raise ValueError(f"tile maps must be {(len(grid), *grid.tile_size)}, got {tile_maps.shape}")
    th, tw = grid.tile_size
    if blend == "max":
        out = np.full(grid.size, -np.inf, dtype=np.float32)
        for (y, x), tile in zip(grid.origins, tile_maps, strict=True):
            np.maximum(out[y : y + th, x : x + tw], tile, out=out[y : y + th, x : x + tw])
        out[np.isneginf(out)] = 0.0
        return out
    if blend != "mean":
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    total = np.zeros(grid.size, dtype=np.float64)
    count = np.zeros(grid.size, dtype=np.float64)
    for (y, x), tile in zip(grid.origins, tile_maps, strict=True):
        total[y : y + th, x : x + tw] += tile
        count[y : y + th, x : x + tw] += 1.0
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0).astype(np.float32)
