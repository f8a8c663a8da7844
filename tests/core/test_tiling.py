"""Tile grid, cutting and stitching (torch-free)."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.core.tiling import TilingSpec, axis_starts, cut, stitch


@pytest.mark.parametrize(
    ("length", "tile", "stride", "expected"),
    [
        (256, 256, 128, [0]),
        (512, 256, 256, [0, 256]),
        (512, 256, 128, [0, 128, 256]),
        (600, 256, 256, [0, 256, 344]),
        (300, 100, 90, [0, 90, 180, 200]),
    ],
)
def test_axis_starts_cover_the_axis_flush_with_the_edge(length, tile, stride, expected) -> None:
    assert axis_starts(length, tile, stride) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile_size": (0, 64), "stride": (32, 32)}, "tile_size"),
        ({"tile_size": (64, 64), "stride": (0, 32)}, "stride"),
        ({"tile_size": (64, 64), "stride": (65, 32)}, "must not exceed tile_size"),
        ({"tile_size": (64, 64), "stride": (32, 32), "scale": 0.0}, "scale"),
        ({"tile_size": (64, 64), "stride": (32, 32), "blend": "sum"}, "blend"),
    ],
)
def test_bad_specs_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        TilingSpec(**kwargs)


def test_image_smaller_than_a_tile_is_refused_with_sizes() -> None:
    spec = TilingSpec((256, 256), (128, 128), scale=0.5)
    with pytest.raises(ValueError, match="smaller than one tile 256x256"):
        spec.grid(400, 1000)


@pytest.mark.parametrize("blend", ["mean", "max"])
@pytest.mark.parametrize(("stride", "size"), [((48, 48), (200, 168)), ((64, 40), (128, 130))])
def test_a_known_map_split_and_stitched_comes_back_exactly(blend, stride, size) -> None:
    spec = TilingSpec((64, 64), stride, blend=blend)
    grid = spec.grid(*size)
    known = np.random.default_rng(0).random(size, dtype=np.float32)
    tiles = cut(known, grid)
    assert tiles.shape == (len(grid), 64, 64)
    np.testing.assert_array_equal(stitch(tiles, grid, blend), known)


def test_every_pixel_is_covered_and_overlaps_are_counted() -> None:
    grid = TilingSpec((64, 64), (48, 48)).grid(200, 168)
    coverage = stitch(np.ones((len(grid), 64, 64), np.float32), grid, "mean")
    np.testing.assert_array_equal(coverage, np.ones((200, 168), np.float32))
    counts = np.zeros((200, 168), int)
    for x0, y0, x1, y1 in grid.boxes():
        counts[y0:y1, x0:x1] += 1
    assert counts.min() >= 1 and counts.max() == 6  # 2 rows x 3 columns (edge tile)


def test_mean_averages_and_max_keeps_the_peak_of_overlapping_tiles() -> None:
    grid = TilingSpec((4, 4), (2, 4)).grid(6, 4)  # two tiles overlapping in rows 2-3
    tiles = np.stack([np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)])
    mean = stitch(tiles, grid, "mean")
    assert mean[0, 0] == 0.0 and mean[2, 0] == 0.5 and mean[5, 0] == 1.0
    assert stitch(tiles, grid, "max")[2, 0] == 1.0


def test_channels_first_cut_matches_channels_last() -> None:
    grid = TilingSpec((32, 32), (16, 16)).grid(64, 80)
    image = np.random.default_rng(1).random((64, 80, 3), dtype=np.float32)
    chw = cut(np.ascontiguousarray(image.transpose(2, 0, 1)), grid, channels_first=True)
    np.testing.assert_array_equal(chw, cut(image, grid).transpose(0, 3, 1, 2))


def test_scale_sets_the_working_size() -> None:
    grid = TilingSpec((64, 64), (64, 64), scale=0.5).grid(256, 384)
    assert grid.size == (128, 192) and len(grid) == 2 * 3


def test_stitch_refuses_the_wrong_number_of_tiles() -> None:
    grid = TilingSpec((32, 32), (32, 32)).grid(64, 64)
    with pytest.raises(ValueError, match=r"tile maps must be \(4, 32, 32\)"):
        stitch(np.zeros((3, 32, 32), np.float32), grid)


def test_the_grid_inside_an_roi_keeps_tiles_with_an_roi_pixel_and_stitches_zeros_elsewhere() -> (
    None
):
    from inspection.core.roi import RoiSpec

    grid = TilingSpec((32, 32), (32, 32)).grid(64, 96)  # 2 rows x 3 columns
    roi = RoiSpec((64, 96), include=(((0, 0), (40, 0), (40, 30), (0, 30)),))  # top-left corner
    inside = grid.inside(roi)
    assert inside.origins == ((0, 0), (0, 32)) and inside.size == grid.size
    for blend in ("mean", "max"):
        stitched = stitch(np.ones((2, 32, 32), np.float32), inside, blend)
        assert stitched[:32, :64].min() == 1.0 and stitched[32:].max() == 0.0
        assert stitched[:, 64:].max() == 0.0
