"""Datasets as users bring them (issue #90): the MVTec LOCO layout, folders the product does not
read, and images ``data check`` must name for how they were read."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inspection.core.images import read_mask
from inspection.data.check import check_dataset
from inspection.data.dataset import MVTEC_AD, MVTEC_LOCO, load_dataset
from inspection.retrain.assemble import _copy_samples

SIDE = 32


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(path)


def _mask(path: Path, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[rows, cols] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
    return mask > 0


def _loco(root: Path) -> dict[str, np.ndarray]:
    """A small MVTec LOCO tree: two masks for logical_anomalies/000, one for the others."""
    seed = iter(range(100))
    for split, count in (("train/good", 4), ("validation/good", 2), ("test/good", 2)):
        for i in range(count):
            _image(root / split / f"{i:03d}.png", next(seed))
    truth = {}
    for defect in ("logical_anomalies", "structural_anomalies"):
        for i in range(2):
            _image(root / "test" / defect / f"{i:03d}.png", next(seed))
            folder = root / "ground_truth" / defect / f"{i:03d}"
            truth[f"{defect}/{i:03d}"] = _mask(folder / "000.png", slice(2, 8), slice(2, 8))
    second = _mask(root / "ground_truth/logical_anomalies/000/001.png", slice(20, 30), slice(4, 9))
    truth["logical_anomalies/000"] = truth["logical_anomalies/000"] | second
    return truth


def test_mvtec_loco_reads_mask_folders_as_their_union_and_validation_good(tmp_path: Path) -> None:
    """Issue #90 case 9: 29 errors that never named the layout, a model registered without pixel
    metrics and ``validation/good`` ignored silently."""
    root = tmp_path / "juice_bottle"
    truth = _loco(root)
    dataset = load_dataset(root)
    assert dataset.layout == MVTEC_LOCO
    assert [
        p.relative_to(root).as_posix() for p in (s.path for s in dataset.calibration_samples)
    ] == [
        "validation/good/000.png",
        "validation/good/001.png",
    ]
    defective = {f"{s.defect_type}/{s.path.stem}": s for s in dataset.test_samples if s.label}
    assert sorted(defective) == sorted(truth)
    for name, sample in defective.items():
        assert np.array_equal(read_mask(sample.mask_path), truth[name]), name
    report = check_dataset(dataset)
    assert report.ok and report.layout == MVTEC_LOCO
    assert not [p for p in report.problems if p.code in ("mask_missing", "extra_mask")]
    assert report.coverage["logical_anomalies"].masks == 2
    assert "ground_truth/logical_anomalies/000/001.png" in dataset.fingerprint()["files"]


def test_a_mask_folder_of_unequal_masks_is_named(tmp_path: Path) -> None:
    root = tmp_path / "loco"
    _loco(root)
    folder = root / "ground_truth/structural_anomalies/001"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "001.png")
    problems = [p for p in check_dataset(load_dataset(root)).problems if p.path == folder]
    assert [(p.code, p.message) for p in problems] == [
        (
            "unreadable",
            "mask: the masks of this folder differ in size (16x16, 32x32); each must be as large "
            "as its image",
        )
    ]


def test_a_loco_sample_keeps_its_mask_folder_when_retraining_copies_it(tmp_path: Path) -> None:
    source = tmp_path / "source"
    truth = _loco(source)
    sample = next(s for s in load_dataset(source).test_samples if s.mask_path and s.path.stem == "000"
                  and s.defect_type == "logical_anomalies")  # fmt: skip
    copy = tmp_path / "copy"
    shutil.copytree(source / "train", copy / "train")
    _copy_samples((sample,), copy / "test", copy / "ground_truth")
    (copied,) = [s for s in load_dataset(copy).test_samples if s.label]
    assert np.array_equal(read_mask(copied.mask_path), truth["logical_anomalies/000"])


def test_every_folder_the_layout_does_not_read_is_named(tmp_path: Path) -> None:
    root = tmp_path / "brick"
    for split in ("train/good", "test/good", "calibration/good"):
        for i in range(3):
            _image(root / split / f"{i:03d}.png", i + 10 * len(split))
    for folder in ("train/good/old", "extra", "calibration/bad", "test/good/rejects"):
        _image(root / folder / "x.png", 9)
    dataset = load_dataset(root)
    assert dataset.layout == MVTEC_AD
    unread = [p for p in check_dataset(dataset).problems if p.code == "unread_folder"]
    assert [p.path.relative_to(root.resolve()).as_posix() for p in unread] == [
        "calibration/bad",
        "extra",
        "test/good/rejects",
        "train/good/old",
    ]
    assert all(p.severity == "warning" for p in unread)
    assert unread[0].message.startswith("folder is not read (MVTec AD layout): its images are")


def test_a_folder_spec_names_the_subfolders_it_does_not_read(tmp_path: Path) -> None:
    for i in range(4):
        _image(tmp_path / "ok" / f"{i}.png", i)
    _image(tmp_path / "ok" / "2025" / "x.png", 7)
    _image(tmp_path / "nok" / "y.png", 8)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: w\nnormal_dir: ok\nabnormal_dirs: {dent: nok}\n")
    problems = check_dataset(load_dataset(spec)).problems
    assert [p.path.name for p in problems if p.code == "unread_folder"] == ["2025"]


def _rgba_zero_alpha(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, np.zeros((SIDE, SIDE), np.uint8)])).save(path)


def test_zero_alpha_frames_are_read_named_and_not_called_copies(tmp_path: Path) -> None:
    """Issue #90 case 11: 36 false "same image content" leaks, every image black."""
    root = tmp_path / "brick"
    for first_seed, split, count in ((0, "train/good", 4), (100, "test/good", 3)):
        (root / split).mkdir(parents=True)  # seeds of their own: no image is a real copy
        for i in range(count):
            _rgba_zero_alpha(root / split / f"{i:03d}.png", first_seed + i)
    report = check_dataset(load_dataset(root))
    codes = [p.code for p in report.problems]
    assert "train_test_duplicate" not in codes
    (alpha,) = [p for p in report.problems if p.code == "alpha_ignored"]
    assert alpha.message.startswith(
        "7 image(s) have an alpha channel that is 0 everywhere (fully transparent) over colour"
    )


def _depth_product(root: Path, nan_in: str | None = None) -> None:
    for split, count in (("train/good", 3), ("test/good", 2)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            depth = np.full((SIDE, SIDE), 0.3 + 0.05 * i + 0.2 * (split == "test/good"), np.float32)
            if f"{split}/{i:03d}" == nan_in:
                depth[4:6, 4:6] = np.nan
            Image.fromarray(depth, mode="F").save(root / split / f"{i:03d}.tiff")


def test_float_images_without_a_range_are_refused_naming_the_key(tmp_path: Path) -> None:
    root = tmp_path / "depth"
    _depth_product(root)
    report = check_dataset(load_dataset(root))
    assert {p.code for p in report.errors} == {"unreadable"}
    assert "set image_range: [low, high]" in report.errors[0].message


def test_data_check_names_images_with_unmeasured_pixels(tmp_path: Path) -> None:
    root = tmp_path / "depth"
    _depth_product(root, nan_in="train/good/001")
    report = check_dataset(load_dataset(root), image_range=(0.0, 1.0))
    assert report.ok
    (found,) = [p for p in report.problems if p.code == "unmeasured_pixels"]
    assert found.message.startswith(
        "1 image(s) hold pixels without a measurement: train/good/001.tiff (4 px, 0.4%). NaN"
    )


def test_a_height_map_copied_into_test_is_found_over_the_declared_range(tmp_path: Path) -> None:
    """The leak check decodes float images over ``image_range`` as training does: a copy is
    found (it used to fail to decode there and be passed as distinct)."""
    root = tmp_path / "depth"
    rng = np.random.default_rng(0)
    (root / "train/good").mkdir(parents=True)
    (root / "test/good").mkdir(parents=True)
    for i in range(3):
        relief = rng.uniform(0.2, 0.8, (SIDE // 8, SIDE // 8)).astype(np.float32)
        depth = cv2.resize(relief, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
        Image.fromarray(depth, mode="F").save(root / "train/good" / f"{i:03d}.tiff")
    shutil.copyfile(root / "train/good/001.tiff", root / "test/good/copy.tiff")
    report = check_dataset(load_dataset(root), image_range=(0.0, 1.0))
    (leak,) = [p for p in report.problems if p.code == "train_test_duplicate"]
    assert leak.path.name == "copy.tiff" and "train/good/001.tiff" in leak.message


def test_data_check_names_values_outside_the_declared_range(tmp_path: Path) -> None:
    root = tmp_path / "height"
    for split, count in (("train/good", 3), ("test/good", 2)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            heights = np.full((SIDE, SIDE), 100 * i, np.int16)
            cv2.imwrite(str(root / split / f"{i:03d}.tiff"), heights)
    report = check_dataset(load_dataset(root), image_range=(-150.0, 150.0))
    (found,) = [p for p in report.problems if p.code == "outside_image_range"]
    assert "train/good/002.tiff (1024 px)" in found.message
    assert found.message.startswith("1 image(s) have values outside image_range: [-150, 150]")


@pytest.mark.parametrize("orientation", [6, 8])
def test_turned_jpegs_check_against_upright_masks(tmp_path: Path, orientation: int) -> None:
    """Issue #90 case 8: masks drawn upright line up with images stored turned."""
    root = tmp_path / "brick"
    for split in ("train/good", "test/good"):
        for i in range(3):
            _image(root / split / f"{i:03d}.png", i + 10 * len(split))
    upright = np.zeros((SIDE, 2 * SIDE, 3), np.uint8)
    upright[4:12, 40:60] = 255
    stored = np.rot90(upright, 1 if orientation == 6 else -1)
    exif = Image.Exif()
    exif[0x0112] = orientation
    (root / "test/dent").mkdir()
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(stored)).save(buffer, "JPEG", quality=95, exif=exif)
    (root / "test/dent/000.jpg").write_bytes(buffer.getvalue())
    _mask(root / "ground_truth/dent/000_mask.png", slice(0, 0), slice(0, 0))
    mask = np.zeros((SIDE, 2 * SIDE), np.uint8)
    mask[4:12, 40:60] = 255
    Image.fromarray(mask).save(root / "ground_truth/dent/000_mask.png")
    report = check_dataset(load_dataset(root))
    assert "mask_size" not in [p.code for p in report.problems]
    assert report.sizes == {(SIDE, SIDE): 6, (2 * SIDE, SIDE): 1}
