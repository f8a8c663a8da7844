"""check_dataset on the clean demo product and on a table of broken copies of it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspection.core.errors import DatasetError
from inspection.core.images import read_mask
from inspection.data.check import check_dataset
from inspection.data.dataset import MASK_LAYOUTS, load_dataset


def test_clean_demo_product_is_ok(tiny_product: Path) -> None:
    seen: list[Path] = []
    report = check_dataset(load_dataset(tiny_product), on_file=seen.append)
    assert report.ok and report.problems == ()
    assert len(seen) == 42
    assert report.sizes == {(128, 128): 42}
    assert report.channels == {"RGB": 42}
    assert set(report.coverage) == {"crack", "hole", "scratch", "stain"}
    for coverage in report.coverage.values():
        assert coverage.masks == 3
        assert 0.001 < coverage.min <= coverage.mean <= coverage.max < 0.1
    assert report.to_dict()["sizes"] == {"128x128": 42}


def _truncate(root: Path) -> None:
    path = root / "test/good/000.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _replace(rel: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / rel).write_bytes(data)


def _write(rel: str, array: np.ndarray) -> Callable[[Path], None]:
    return lambda root: Image.fromarray(array).save(root / rel)


def _gradient_mask() -> np.ndarray:
    mask = np.zeros((128, 128), np.uint8)
    mask[40:60, 40:80] = np.linspace(1, 255, 40, dtype=np.uint8)[None, :]
    return mask


# (case, mutation, [(code, file relative to the product, exact message or regex)])
BROKEN = [
    (
        "truncated png",
        _truncate,
        [
            (
                "unreadable",
                "test/good/000.png",
                "image: truncated or corrupt image (image file is truncated)",
            )
        ],
    ),
    (
        "empty file",
        _replace("train/good/003.png", b""),
        [("unreadable", "train/good/003.png", "image: empty file (0 bytes)")],
    ),
    (
        "non-image bytes",
        _replace("train/good/004.png", b"this is not a picture"),
        [("unreadable", "train/good/004.png", "image: not an image (unrecognised format)")],
    ),
    (
        "missing mask",
        lambda root: (root / "ground_truth/crack/000_mask.png").unlink(),
        [("mask_missing", "test/crack/000.png", f"defective image has no mask ({MASK_LAYOUTS})")],
    ),
    (
        "extra mask",
        lambda root: shutil.copy(
            root / "ground_truth/crack/000_mask.png", root / "ground_truth/crack/099_mask.png"
        ),
        [("extra_mask", "ground_truth/crack/099_mask.png", "mask has no matching image")],
    ),
    (
        "wrong-size mask",
        _write("ground_truth/hole/001_mask.png", np.full((64, 96), 255, np.uint8)),
        [("mask_size", "ground_truth/hole/001_mask.png", "mask is 96x64 but its image is 128x128")],
    ),
    (
        "mask not binary",
        _write("ground_truth/stain/002_mask.png", _gradient_mask()),
        [
            (
                "mask_not_binary",
                "ground_truth/stain/002_mask.png",
                "mask is not binary: 41 distinct values (0, 1, 7, 14, 20, ...); expected 0 for "
                "background and one value (e.g. 255) for defect (training reads values above "
                "half the highest as defect, so soft edges move the drawn outline)",
            )
        ],
    ),
    (
        "empty mask",
        _write("ground_truth/scratch/000_mask.png", np.zeros((128, 128), np.uint8)),
        [("mask_empty", "ground_truth/scratch/000_mask.png", "mask is empty (no defect pixels)")],
    ),
    (
        "unreadable mask",
        _replace("ground_truth/scratch/001_mask.png", b""),
        [("unreadable", "ground_truth/scratch/001_mask.png", "mask: empty file (0 bytes)")],
    ),
    (
        "duplicate train/test",
        lambda root: shutil.copy(root / "train/good/005.png", root / "test/good/001.png"),
        [
            (
                "train_test_duplicate",
                "test/good/001.png",
                "same image content as training image train/good/005.png",
            )
        ],
    ),
    (
        "mixed sizes",
        _write("train/good/006.png", np.full((96, 96, 3), 120, np.uint8)),
        [("mixed_sizes", "train/good/006.png", "image is 96x96 but most images are 128x128")],
    ),
]


@pytest.mark.parametrize(("case", "mutate", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_dataset_reports_exact_problem(
    tiny_product: Path, tmp_path: Path, case: str, mutate: Callable[[Path], None], expected: list
) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    mutate(root)
    report = check_dataset(load_dataset(root))
    found = [
        (p.code, p.path.relative_to(root.resolve()).as_posix(), p.message) for p in report.problems
    ]
    assert found == expected, case
    assert not report.ok
    assert all(p.severity == "error" for p in report.problems)


def _palette(mask: np.ndarray) -> Image.Image:
    image = Image.fromarray((mask > 0).astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 0, 200, 0])
    return image


# how a 0/255 L mask may also be saved: each must read (and check) as the same mask
MASK_ENCODINGS = {
    "0/1": lambda m: Image.fromarray((m > 0).astype(np.uint8)),
    "rgb green": lambda m: Image.fromarray(np.dstack([np.zeros_like(m), m, np.zeros_like(m)])),
    "16-bit 0/65535": lambda m: Image.fromarray((m > 0).astype(np.uint16) * 65535),
    "16-bit 0/255": lambda m: Image.fromarray((m > 0).astype(np.uint16) * 255),
    "palette": _palette,
}


@pytest.mark.parametrize("encode", MASK_ENCODINGS.values(), ids=MASK_ENCODINGS.keys())
def test_mask_encodings_check_and_read_alike(
    tiny_product: Path, tmp_path: Path, encode: Callable[[np.ndarray], Image.Image]
) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    masks = sorted((root / "ground_truth" / "crack").iterdir())
    expected = [read_mask(path) for path in masks]
    for path in masks:
        encode(np.asarray(Image.open(path).convert("L"))).save(path)
    report = check_dataset(load_dataset(root))
    assert report.ok and report.problems == ()
    assert report.coverage == check_dataset(load_dataset(tiny_product)).coverage
    for path, before in zip(masks, expected, strict=True):
        assert np.array_equal(read_mask(path), before)


def test_empty_mask_in_any_encoding_is_reported(tiny_product: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    path = root / "ground_truth/crack/000_mask.png"
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(path)
    report = check_dataset(load_dataset(root))
    assert [(p.code, p.path.name) for p in report.problems] == [("mask_empty", path.name)]


def test_12_bit_data_in_16_bit_files_is_named(tiny_product: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    ramp = np.tile(np.arange(128, dtype=np.uint16), (128, 1))
    for index in range(7):  # 12-bit camera data: values 0..4095
        Image.fromarray(ramp * 32 + index).save(root / f"train/good/{index:03d}.png")
    Image.fromarray(ramp * 512).save(root / "train/good/010.png")  # full range: fine
    report = check_dataset(load_dataset(root))
    assert report.ok
    [warning] = report.warnings
    assert (warning.code, warning.path) == ("narrow_16_bit", root.resolve())
    assert warning.message.startswith(
        "7 16-bit image(s) use fewer than 12 bits (all values below 4096, e.g. 12-bit camera "
        "data): train/good/000.png, train/good/001.png, train/good/002.png, train/good/003.png, "
        "train/good/004.png and 2 more. They are read at 8 bits by taking the high byte"
    )
    assert "export the camera images as 8-bit or as full-range 16-bit" in warning.message
    assert report.channels == {"RGB": 34, "I;16": 8}


def test_ignored_folders_and_files_are_warned_about(tiny_product: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    (root / "test" / "dent").mkdir()
    for index in range(7):
        shutil.copy(root / "test/good/000.png", root / f"test/loose_{index}.png")
    report = check_dataset(load_dataset(root))
    assert report.ok
    found = [(p.code, p.path.relative_to(root.resolve()).as_posix()) for p in report.warnings]
    assert found == [("empty_folder", "test/dent"), ("loose_images", "test")]
    empty, loose = (p.message for p in report.warnings)
    assert empty.startswith("folder has no images (looked for .png, .jpg")
    assert empty.endswith("ignored, so this defect type will not be evaluated")
    assert loose == (
        "7 image(s) directly in test/ are ignored: loose_0.png, loose_1.png, loose_2.png, "
        "loose_3.png, loose_4.png and 2 more; move them into test/good or test/<defect>"
    )


def test_missing_train_good_is_a_dataset_error(tiny_product: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    shutil.rmtree(root / "train" / "good")
    expected = "train/good folder not found (MVTec layout: train/good, test/<defect>, ground_truth/<defect>/<stem>_mask.png): "
    with pytest.raises(
        DatasetError, match=re.escape(expected + str(root.resolve() / "train" / "good"))
    ):
        load_dataset(root)


def test_dataset_without_masks_only_warns(tiny_product: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    shutil.rmtree(root / "ground_truth")
    report = check_dataset(load_dataset(root))
    assert report.ok
    [warning] = report.warnings
    assert warning.code == "no_masks"
    assert "pixel AUROC, AUPRO and region recall unknown" in warning.message


@pytest.mark.parametrize("keep", [0, 1])
def test_fewer_than_2_good_test_images_is_an_error(
    tiny_product: Path, tmp_path: Path, keep: int
) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    for path in sorted((root / "test" / "good").iterdir())[keep:]:
        path.unlink()
    report = check_dataset(load_dataset(root))
    assert not report.ok
    assert [(p.code, p.path, p.message) for p in report.errors] == [
        (
            "too_few_test_good",
            root.resolve(),
            f"test/good has {keep} image(s): training needs at least 2 held-out good parts in "
            "test/good to set and check its threshold; move a fifth of train/good there, or "
            "remove test/ and training holds them out itself (test/<defect>/ is optional)",
        )
    ]
    # 24 training images + 30 % of test/good: below the 99 a 1 % budget needs
    assert report.budget_note is not None
    assert report.budget_note.startswith("about 24 good calibration images")
    assert "needs 99" in report.budget_note


def test_a_product_without_test_says_what_it_cannot_show(
    tiny_product: Path, tmp_path: Path
) -> None:
    root = tmp_path / "brick"
    shutil.copytree(tiny_product / "train" / "good", root / "train" / "good")
    report = check_dataset(load_dataset(root))
    assert report.ok
    [warning] = report.warnings
    assert warning.code == "held_out_of_train"
    assert (
        warning.message.startswith("no test/ folder: ")
        and "of 24 train/good images" in warning.message
    )
    assert "nothing shows what the model misses" in warning.message
    assert "export's gate compares good parts only" in warning.message


def test_good_only_dataset_says_miss_rates_are_unknown(tiny_product: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    for folder in (root / "test").iterdir():
        if folder.name != "good":
            shutil.rmtree(folder)
    shutil.rmtree(root / "ground_truth")
    report = check_dataset(load_dataset(root))
    assert report.ok
    messages = {p.code: p.message for p in report.warnings}
    assert "miss rates per defect kind unknown" in messages["no_test_defects"]
    assert report.coverage == {}


def test_many_problems_at_once_do_not_stop_the_check(tiny_product: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    for _case, mutate, _expected in reversed(
        BROKEN
    ):  # "extra mask" copies before "missing" deletes
        mutate(root)
    report = check_dataset(load_dataset(root))
    codes = {p.code for p in report.problems}
    assert {
        "unreadable",
        "mask_missing",
        "extra_mask",
        "mask_size",
        "mask_not_binary",
        "mixed_sizes",
    } <= codes


def _twelve_bit_brick(tiny_product: Path, tmp_path: Path, peak_extra: int = 0) -> Path:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    ramp = np.tile(np.arange(128, dtype=np.uint16), (128, 1)) * 32  # 0..4064: 12-bit data
    for index in range(3):
        Image.fromarray(ramp + 31).save(root / f"train/good/{index:03d}.png")  # peak 4095
    if peak_extra:
        Image.fromarray(ramp + peak_extra).save(root / "train/good/003.png")
    return root


def test_the_12_bit_warning_names_the_setting_to_add(tiny_product: Path, tmp_path: Path) -> None:
    root = _twelve_bit_brick(tiny_product, tmp_path)
    [warning] = check_dataset(load_dataset(root)).warnings
    assert warning.code == "narrow_16_bit"
    assert "set image_bits: 12 (the camera's bit depth) in products/brick.yaml" in warning.message
    assert check_dataset(load_dataset(root), image_bits=16).warnings == (warning,)


def test_the_12_bit_warning_names_the_product_file_it_is_given(
    tiny_product: Path, tmp_path: Path
) -> None:
    """``train --product line3 --data .../brick`` reads products/line3.yaml, not brick.yaml."""
    root = _twelve_bit_brick(tiny_product, tmp_path)
    target = tmp_path / "site" / "products" / "line3.yaml"
    [warning] = check_dataset(load_dataset(root), product_file=target).warnings
    assert f"set image_bits: 12 (the camera's bit depth) in {target} so" in warning.message


def test_a_product_declaring_its_bits_gets_no_warning(tiny_product: Path, tmp_path: Path) -> None:
    root = _twelve_bit_brick(tiny_product, tmp_path)
    report = check_dataset(load_dataset(root), image_bits=12)
    assert report.ok and report.warnings == ()


def test_images_using_more_bits_than_declared_are_named(tiny_product: Path, tmp_path: Path) -> None:
    root = _twelve_bit_brick(tiny_product, tmp_path, peak_extra=8000)  # peak 12064: 14 bits
    report = check_dataset(load_dataset(root), image_bits=12)
    [warning] = report.warnings
    assert (warning.code, warning.path) == ("over_image_bits", root.resolve())
    assert warning.message == (
        "1 16-bit image(s) use more than the declared image_bits: 12 (values above 4095, up "
        "to 14 bits): train/good/003.png. Their brighter pixels clip to 255; set "
        "image_bits: 14 in products/brick.yaml if the camera writes that many bits"
    )


@pytest.mark.parametrize("bits", [16, 12, 10])
@pytest.mark.parametrize("peak", [0, 100, 255, 256, 1023, 1024, 4095, 4096, 12064, 65535])
def test_bit_depth_findings_follow_the_largest_raw_value(
    tiny_product: Path, tmp_path: Path, bits: int, peak: int
) -> None:
    """The bits an image uses are read from its one decoding (exactly, as from its largest
    raw value): the finding and the image_bits it names are those of the raw peak."""
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    ramp = np.linspace(0, peak, 128 * 128).round().astype(np.uint16).reshape(128, 128)
    Image.fromarray(ramp).save(root / "train/good/000.png")
    report = check_dataset(load_dataset(root), image_bits=bits)
    found = {p.code: p.message for p in report.warnings}
    if bits == 16 and peak < 4096:
        needed = max(8, peak.bit_length())
        assert f"set image_bits: {needed} (the camera's bit depth)" in found.pop("narrow_16_bit")
    if bits < 16 and peak >= 2**bits:
        needed = peak.bit_length()
        assert f"up to {needed} bits" in found.pop("over_image_bits")
    assert found == {}


def test_each_image_is_decoded_once(
    tiny_product: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16-bit images were decoded twice (once to read them, once more for their peak): a
    12-bit camera's dataset took 1.6 times as long to check as its 8-bit copy."""
    from PIL import ImageFile

    root = shutil.copytree(tiny_product, tmp_path / "brick")
    ramp = np.tile(np.arange(128, dtype=np.uint16), (128, 1)) * 32  # 12-bit data
    for path in (root / "train" / "good").glob("*.png"):
        Image.fromarray(ramp).save(path)
    dataset = load_dataset(root)
    loaded: list[str] = []
    load = ImageFile.ImageFile.load

    def counted(image: ImageFile.ImageFile) -> object:
        if image.tile:  # pixels still to decode (a loaded image has none)
            loaded.append(image.mode)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    report = check_dataset(dataset, image_bits=12)
    assert report.ok and report.channels["I;16"] == len(dataset.train_samples)
    assert loaded.count("I;16") == len(dataset.train_samples)


def test_labelled_training_defects_are_checked(tiny_product: Path, tmp_path: Path) -> None:
    """A labelled training image needs no mask, but a mask it has is checked; one that
    duplicates a test image is an error."""
    copy = shutil.copytree(tiny_product, tmp_path / "brick")
    labelled, masks = copy / "train" / "crack", copy / "ground_truth" / "train" / "crack"
    labelled.mkdir()
    masks.mkdir(parents=True)
    Image.new("RGB", (128, 128), (90, 60, 50)).save(labelled / "plain.png")  # image-level
    Image.new("RGB", (128, 128), (80, 60, 50)).save(labelled / "small.png")
    Image.new("L", (64, 64), 255).save(masks / "small_mask.png")
    Image.new("RGB", (128, 128), (70, 60, 50)).save(labelled / "blank.png")
    Image.new("L", (128, 128), 0).save(masks / "blank_mask.png")
    shutil.copyfile(copy / "test" / "hole" / "001.png", labelled / "copy.png")
    (labelled / "broken.png").write_bytes(b"not a png")
    report = check_dataset(load_dataset(copy))
    found = {(p.path.name, p.code) for p in report.problems}
    assert found == {
        ("small_mask.png", "mask_size"),
        ("blank_mask.png", "mask_empty"),
        ("001.png", "train_test_duplicate"),
        ("broken.png", "unreadable"),
    }
    assert not report.ok


def test_calibration_images_that_repeat_a_training_or_test_image_are_refused(
    tiny_product: Path, tmp_path: Path
) -> None:
    """Calibration images are compared by decoded pixels (a re-encoded copy is the same part):
    one repeating a training or a test image is an error naming both files; a new good part
    is counted."""
    copy = shutil.copytree(tiny_product, tmp_path / "brick")
    folder = copy / "calibration" / "good"
    folder.mkdir(parents=True)
    with Image.open(copy / "train" / "good" / "003.png") as image:
        image.save(folder / "train_copy.bmp")  # other bytes, same pixels
    shutil.copyfile(copy / "test" / "good" / "001.png", folder / "test_copy.png")
    Image.new("RGB", (128, 128), (90, 70, 60)).save(folder / "new.png")
    report = check_dataset(load_dataset(copy))
    found = {(p.path.name, p.code): p.message for p in report.problems}
    assert set(found) == {
        ("train_copy.bmp", "calibration_duplicate"),
        ("test_copy.png", "calibration_duplicate"),
    }
    assert "training image train/good/003.png" in found["train_copy.bmp", "calibration_duplicate"]
    assert "test image test/good/001.png" in found["test_copy.png", "calibration_duplicate"]
    assert not report.ok
    assert report.counts["calibration"] == {"good": 3}


def test_a_held_out_image_re_saved_as_jpeg_in_train_is_found(
    tiny_product: Path, tmp_path: Path
) -> None:
    """The leak check compares decoded pixels, not bytes: a test image re-encoded as JPEG in
    train/good was accepted (``data.leaks``, which --update and retrain use too)."""
    root = tmp_path / "brick"
    shutil.copytree(tiny_product, root)
    Image.open(root / "test" / "good" / "000.png").save(root / "train" / "good" / "x.jpg")
    report = check_dataset(load_dataset(root))
    leaks = [(p.path.name, p.message) for p in report.errors if p.code == "train_test_duplicate"]
    assert leaks == [("000.png", "same image content as training image train/good/x.jpg")]
