"""The high-resolution ``plate`` generator: layout, exact small masks, pose jitter, busy fixture."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.errors import DatasetError
from inspection.data import hires
from inspection.data.dataset import load_mvtec

SIZE = 256


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hires")
    return hires.write_plate(root, seed=1, size=SIZE, counts=hires.PlateCounts(2, 2, 1))


def test_layout_is_mvtec_with_reference(plate: Path) -> None:
    dataset = load_mvtec(plate)
    kinds = sorted({s.defect_type for s in dataset.samples if s.split == "test"})
    assert kinds == ["good", *hires.PLATE_DEFECT_KINDS]
    reference = Image.open(plate / "reference.png")
    assert (reference.mode, reference.size) == ("RGB", (SIZE, SIZE))


@pytest.mark.parametrize("kind", hires.PLATE_DEFECT_KINDS)
def test_mask_is_small_and_exactly_the_altered_area(kind: str) -> None:
    seed = (3, 98, 1, 1, 0)
    clean, _ = hires.render_plate(SIZE, seed, None)
    defective, mask = hires.render_plate(SIZE, seed, kind)
    assert mask is not None
    changed = np.abs(clean.astype(int) - defective.astype(int)).max(axis=2) > 0
    assert changed.any()
    assert not (changed & (mask == 0)).any(), "pixels altered outside the mask"
    assert 0 < (mask > 0).mean() <= hires.MAX_DEFECT_FRACTION


def test_defects_lie_inside_the_roi() -> None:
    include = np.asarray(hires.plate_roi(SIZE)["include"][0], np.int32)

    roi = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(roi, [include], 1)
    for kind in hires.PLATE_DEFECT_KINDS:
        for index in range(3):
            _, mask = hires.render_plate(SIZE, (0, 98, 1, 2, index), kind)
            assert mask is not None and (roi[mask > 0] == 1).all()


def test_pose_and_fixture_vary_between_good_images() -> None:
    first, _ = hires.render_plate(SIZE, (0, 98, 0, 0, 0), None)
    second, _ = hires.render_plate(SIZE, (0, 98, 0, 0, 1), None)
    corner = (slice(0, SIZE // 5), slice(0, SIZE))  # fixture band above the part
    assert np.abs(first[corner].astype(int) - second[corner].astype(int)).mean() > 1.0
    nominal, _ = hires.render_plate(SIZE, (0, 98, 0, 0, 0), None, jitter=False)
    assert not np.array_equal(nominal, first)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    counts = hires.PlateCounts(1, 1, 0)
    a = hires.write_plate(tmp_path / "a", seed=2, size=SIZE, counts=counts)
    b = hires.write_plate(tmp_path / "b", seed=2, size=SIZE, counts=counts)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 3
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_too_small_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="at least 256 px"):
        hires.write_plate(tmp_path, size=128)


def test_cli_writes_the_product(tmp_path: Path) -> None:
    args = ["data", "hires", "--out", str(tmp_path), "--size", "256"]
    args += ["--train", "1", "--test-good", "1", "--per-defect", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "plate" / "test").rglob("*.png"))) == 4


def test_product_config_roi_is_the_generated_one() -> None:
    from inspection.core.product_config import load_product_config

    config = load_product_config("plate")
    assert config.data == Path("datasets/plate")
    assert config.roi is not None and config.roi.reference_size == (2048, 2048)
    expected = hires.plate_roi(2048)
    as_lists = config.roi.to_mapping()
    assert as_lists["include"] == expected["include"]
    assert as_lists["exclude"] == expected["exclude"]
    inside = config.roi.mask(2048, 2048)
    assert 0.2 < inside.mean() < 0.3  # the plate minus margins and holes; the fixture is out


def test_plate_defects_reach_the_minimum_defect_area() -> None:
    from inspection.core.product_config import load_product_config

    units = load_product_config("plate").units
    assert units is not None and units.min_area_px(2048) == pytest.approx(40.0)
    for kind in hires.PLATE_DEFECT_KINDS:  # at full size every defect is above the minimum
        _, mask = hires.render_plate(2048, (0, 98, 1, 1, 0), kind)
        assert mask is not None and (mask > 0).sum() >= 40
