"""A bundle's part setup at the station: ROI-masked outputs, alignment errors, sizes in mm."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection.core.alignment import AlignmentSpec
from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata
from inspection.core.errors import AlignmentError, BundleError
from inspection.core.roi import RoiSpec
from inspection.core.units import PhysicalUnits
from inspection.data import hires
from inspection.runtime.inspector import Inspector

SIZE = 256
LEFT_HALF = RoiSpec((SIZE, SIZE), include=(((0, 0), (SIZE / 2, 0), (SIZE / 2, SIZE), (0, SIZE)),))


def _variant(source: Path, target: Path, files: dict[str, np.ndarray] | None = None, **fields):
    shutil.copytree(source, target)
    for name, image in (files or {}).items():
        Image.fromarray(image).save(target / name)
    meta = dataclasses.replace(read_bundle_metadata(target), **fields)
    write_bundle_metadata(target, meta)
    return target


@pytest.fixture(scope="module")
def plate_bundle(fp32_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny brick bundle without its intensity reference: these plates are another product's
    pictures, and this file tests the part setup, not the input domain."""
    meta = read_bundle_metadata(fp32_bundle)
    domain = dataclasses.replace(meta.input_domain, intensity=None)
    return _variant(fp32_bundle, tmp_path_factory.mktemp("plate") / "bundle", input_domain=domain)


@pytest.fixture(scope="module")
def plate_images() -> dict[str, np.ndarray]:
    reference, _ = hires.render_plate(SIZE, (0, 99, 0, 0, 0), None, jitter=False)
    good, _ = hires.render_plate(SIZE, (0, 98, 0, 0, 1), None)
    pit, _ = hires.render_plate(SIZE, (0, 98, 1, 1, 0), "pit")
    return {"reference": reference, "good": good, "pit": pit}


def test_roi_masks_map_score_and_regions(plate_bundle: Path, tmp_path: Path, plate_images) -> None:
    plain = Inspector.from_bundle(plate_bundle)
    masked = Inspector.from_bundle(_variant(plate_bundle, tmp_path / "roi", roi=LEFT_HALF))
    image = plate_images["good"]
    full, part = plain.inspect(image, threshold=0.01), masked.inspect(image, threshold=0.01)
    assert part.score <= full.score + 1e-6
    outside = ~LEFT_HALF.mask(SIZE, SIZE)
    assert float(part.anomaly_map[outside].max()) <= float(part.anomaly_map.min()) + 1e-6
    assert part.verdict == "NG"  # a threshold this low flags any part: inside the ROI only
    assert all(r.box[2] <= SIZE // 2 + 2 for r in part.regions)


def _aligned_inspector(bundle: Path, tmp_path: Path, reference: np.ndarray) -> Inspector:
    """The bundle with alignment to ``reference`` switched on."""
    aligned = _variant(
        bundle, tmp_path / "aligned", {"reference.png": reference},
        alignment=AlignmentSpec(working_size=256),
    )  # fmt: skip
    return Inspector.from_bundle(aligned)


def test_alignment_failure_is_an_error_not_a_verdict(
    plate_bundle: Path, tmp_path: Path, plate_images
) -> None:
    inspector = _aligned_inspector(plate_bundle, tmp_path, plate_images["reference"])
    assert inspector.inspect(plate_images["good"]).verdict in ("OK", "NG")
    unrelated = np.full((SIZE, SIZE, 3), (128, 100, 60), np.uint8)  # colour, as trained on:
    unrelated[::7] = (30, 60, 90)  # this is the alignment's refusal, not the input domain's
    with pytest.raises(AlignmentError):
        inspector.inspect(unrelated)
    with pytest.raises(AlignmentError):
        inspector.inspect_batch([plate_images["good"], unrelated])


def test_alignment_reference_must_be_checksummed(plate_bundle: Path, tmp_path: Path) -> None:
    bundle = _variant(plate_bundle, tmp_path / "noref", alignment=AlignmentSpec())
    with pytest.raises(BundleError, match=r"no checksum for reference\.png"):
        Inspector.from_bundle(bundle)


def test_regions_carry_millimetres_and_the_minimum_area(
    plate_bundle: Path, tmp_path: Path, plate_images
) -> None:
    units = PhysicalUnits(mm_per_pixel=0.2, reference_width=SIZE)
    sized = Inspector.from_bundle(_variant(plate_bundle, tmp_path / "mm", units=units))
    result = sized.inspect(plate_images["pit"], threshold=0.01)
    assert result.verdict == "NG"
    region = result.regions[0]
    assert region.area_mm2 == pytest.approx(region.area * 0.04)
    strict = dataclasses.replace(units, min_defect_area_mm2=SIZE * SIZE * 0.04 + 1)
    huge = Inspector.from_bundle(_variant(plate_bundle, tmp_path / "min", units=strict))
    judged = huge.inspect(plate_images["pit"], threshold=0.01)
    assert judged.verdict == "OK" and judged.candidates and not judged.mask.any()


def test_an_aligned_result_says_its_frame_and_its_overlay_is_drawn_there(
    plate_bundle: Path, tmp_path: Path, plate_images
) -> None:
    from inspection.runtime.overlays import render_overlay

    inspector = _aligned_inspector(plate_bundle, tmp_path, plate_images["reference"])
    image = plate_images["pit"]  # jittered: its camera frame differs from the reference's
    result = inspector.inspect(image, threshold=0.01)
    assert result.frame == "reference" and result.alignment is not None
    assert inspector.inspect_batch(
        [image],
    )[0].alignment == pytest.approx(result.alignment)
    aligned, _ = inspector.model.align(image)
    in_reference = render_overlay(aligned, dataclasses.replace(result, alignment=None))
    np.testing.assert_array_equal(render_overlay(image, result), in_reference)
    assert not np.array_equal(
        render_overlay(image, dataclasses.replace(result, alignment=None)), in_reference
    )
    plain = Inspector.from_bundle(plate_bundle).inspect(image)
    assert plain.frame == "camera" and plain.alignment is None
    with pytest.raises(ValueError, match="alignment must be 6 finite numbers"):
        dataclasses.replace(plain, alignment=(1.0, 0.0))
