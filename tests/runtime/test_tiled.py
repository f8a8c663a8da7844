"""Tiled station runtime on a tiny hand-built OpenVINO model (torch-free, fast).

The model's anomaly map is the mean of the input channels and its score the map's maximum, so
a bright square in the image is a known defect: its region must come back in original pixels.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench._shared import write_mean_bundle
from inspection.core.bundle import verify_bundle
from inspection.core.errors import BundleError
from inspection.core.input_domain import InputDomain
from inspection.core.roi import RoiSpec, RoiTraining
from inspection.core.tiling import TilingSpec
from inspection.runtime.tiled import TiledInspector

TILE = (32, 32)
SPEC = TilingSpec(TILE, (16, 16), scale=0.5, blend="mean")


def _write_bundle(
    target: Path,
    tiling: TilingSpec | None = SPEC,
    roi: RoiSpec | None = None,
    training_roi: RoiTraining | None = None,
    input_domain: InputDomain | None = None,
) -> Path:
    return write_mean_bundle(
        target, input_size=TILE, product="hires", tiling=tiling, roi=roi,
        training_roi=training_roi, input_domain=input_domain,
    )  # fmt: skip


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_bundle(tmp_path_factory.mktemp("tiled") / "bundle")


def _part(box: tuple[int, int, int, int], size: tuple[int, int] = (200, 160)) -> np.ndarray:
    image = np.full((*size, 3), 40, np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 255
    return image


def test_bundle_carries_its_tiling_spec(bundle: Path) -> None:
    metadata = verify_bundle(bundle)
    assert metadata.tiling == SPEC
    assert isinstance(metadata.tiling.tile_size, tuple)
    written = json.loads((bundle / "metadata.json").read_text())
    assert written["tiling"] == {
        "tile_size": [32, 32],
        "stride": [16, 16],
        "scale": 0.5,
        "blend": "mean",
    }


def test_tiling_that_does_not_match_the_model_input_is_refused(tmp_path: Path) -> None:
    target = _write_bundle(tmp_path / "bundle")
    path = target / "metadata.json"
    data = json.loads(path.read_text())
    data["tiling"]["tile_size"] = [64, 64]
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"tiling.tile_size \(64, 64\) must equal"):
        verify_bundle(target)


def test_regions_are_in_original_image_pixels(bundle: Path) -> None:
    tiled = TiledInspector.from_bundle(bundle)
    defect = (120, 60, 136, 76)  # x0, y0, x1, y1 in the 160 x 200 original
    result = tiled.inspect(_part(defect))
    assert result.verdict == "NG"
    assert result.anomaly_map.shape == result.mask.shape == (200, 160)
    (region,) = result.regions
    np.testing.assert_allclose(region.box, defect, atol=2)
    assert abs(region.area - 16 * 16) <= 2 * 16 * 2
    x, y = region.peak
    assert 120 <= x < 136 and 60 <= y < 76
    assert {"preprocess", "infer", "stitch", "regions"} <= set(result.timings_ms)


def test_a_good_part_is_ok_and_every_tile_runs(bundle: Path) -> None:
    batch = TiledInspector.from_bundle(bundle)
    assert batch.inspect(_part((0, 0, 1, 1))).verdict == "OK"
    assert batch.raw_outputs(_part((30, 150, 50, 170))).tiles == len(SPEC.grid(200, 160))


def test_untiled_bundle_is_refused(tmp_path: Path) -> None:
    plain = _write_bundle(tmp_path / "plain", tiling=None)
    with pytest.raises(BundleError, match="has no tiling"):
        TiledInspector.from_bundle(plain)


def test_image_smaller_than_a_tile_is_refused(bundle: Path) -> None:
    tiled = TiledInspector.from_bundle(bundle)
    with pytest.raises(ValueError, match="smaller than one tile"):
        tiled.inspect(np.zeros((40, 200, 3), np.uint8))


def test_metadata_without_tiling_reads_as_none(tmp_path: Path) -> None:
    metadata = verify_bundle(_write_bundle(tmp_path / "plain", tiling=None))
    assert metadata.tiling is None
    assert replace(metadata, tiling=SPEC).tiling == SPEC


def test_roi_applies_to_the_stitched_map_in_original_pixels(tmp_path: Path) -> None:
    left_half = RoiSpec((200, 160), include=(((0, 0), (80, 0), (80, 200), (0, 200)),))
    tiled = TiledInspector.from_bundle(_write_bundle(tmp_path / "roi", roi=left_half))
    outside = tiled.inspect(_part((120, 60, 136, 76)))
    assert outside.verdict == "OK" and not outside.anomaly_map[:, 84:].any()
    inside = tiled.inspect(_part((30, 60, 46, 76)))  # in a tile that also spans the right half
    assert inside.verdict == "NG"
    np.testing.assert_allclose(inside.regions[0].box, (30, 60, 46, 76), atol=2)


def test_a_bundle_trained_with_its_roi_runs_only_the_tiles_holding_an_roi_pixel(
    tmp_path: Path,
) -> None:
    left_quarter = RoiSpec((200, 160), include=(((0, 0), (30, 0), (30, 200), (0, 200)),))
    trained = RoiTraining(left_quarter, 0.19)
    skipping = TiledInspector.from_bundle(
        _write_bundle(tmp_path / "trained", roi=left_quarter, training_roi=trained)
    )
    every = TiledInspector.from_bundle(_write_bundle(tmp_path / "outputs", roi=left_quarter))
    image = _part((4, 60, 20, 76))
    grid, tiles = skipping.tile_inputs(image)
    full, all_tiles = every.tile_inputs(image)
    # working size 100 x 80: tile columns at x = 0, 16, 32, 48 (6 rows); the ROI ends at x = 15
    assert len(all_tiles) == len(full) == 24 and len(tiles) == len(grid) == 6
    assert {x for _, x in grid.origins} == {0}
    kept, ran = skipping.inspect(image), every.inspect(image)
    assert kept.verdict == ran.verdict == "NG" and kept.score == pytest.approx(ran.score)
    np.testing.assert_allclose(kept.anomaly_map[:, :24], ran.anomaly_map[:, :24], atol=1e-6)
    assert skipping.raw_outputs(image).tiles == 6


def test_stations_and_the_cli_load_a_tiled_bundle_as_tiled(bundle: Path, tmp_path: Path) -> None:
    """Stations, ``inspection inspect`` and the live self-check loaded every bundle with the
    plain ``Inspector``, which squeezes the whole image into one tile: a small defect that the
    tiles see at half resolution averaged away."""
    from inspection.runtime.inspector import Inspector
    from inspection.runtime.paths import inspect_paths
    from inspection.runtime.predictor import load_inspector
    from inspection.station.live import default_loader

    part = _part((100, 80, 103, 83), size=(400, 320))  # 3x3 px bright spot
    tiled = TiledInspector.from_bundle(bundle)
    expected = tiled.inspect(part)
    assert expected.verdict == "NG"
    assert Inspector.from_bundle(bundle).inspect(part).score < expected.score  # the old path
    for loaded in (load_inspector(bundle), default_loader(bundle)):
        assert isinstance(loaded, TiledInspector)
        assert loaded.inspect(part).score == expected.score
    plain = _write_bundle(tmp_path / "plain", tiling=None)
    assert type(load_inspector(plain)) is Inspector

    import cv2

    cv2.imwrite(str(tmp_path / "part.png"), part[..., ::-1])
    (outcome,) = inspect_paths(load_inspector(bundle), [tmp_path / "part.png"])
    assert outcome.result is not None and outcome.result.score == expected.score
    assert outcome.image is not None and outcome.image.shape == part.shape  # full resolution


def test_a_tiled_inspector_takes_the_station_settings(bundle: Path) -> None:
    from inspection.runtime.bounds import CameraOptions

    tiled = TiledInspector.from_bundle(bundle)
    tiled.input_check = "warn"
    tiled.camera = CameraOptions(work_max_side=300)
    assert tiled.inspector.input_check == "warn"
    assert tiled.inspector.camera.work_max_side == 300
    assert tiled.golden is None and tiled.recalibration is None
    with pytest.raises(ValueError, match="input_check must be one of"):
        tiled.input_check = "maybe"  # type: ignore[assignment]
