"""Readers: the MVTec layout, custom folder specs, dispatch, fingerprints and folder errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from inspection.core.errors import ConfigError, DatasetError
from inspection.data.dataset import (
    Dataset,
    Sample,
    held_out_count,
    load_dataset,
    load_folder_spec,
    load_mvtec,
)

DEFECTS = ("crack", "hole", "scratch", "stain")


def test_mvtec_counts_and_defect_types(tiny_product: Path) -> None:
    dataset = load_dataset(tiny_product)
    assert dataset.name == "brick"
    assert dataset.root == tiny_product.resolve()
    assert dataset.counts() == {
        "train": {"good": 24},
        "test": {"crack": 3, "good": 6, "hole": 3, "scratch": 3, "stain": 3},
    }
    assert dataset.defect_types == DEFECTS
    assert len(dataset.train_samples) == 24 and len(dataset.test_samples) == 18
    assert dataset.unmatched_masks == ()


def test_mvtec_samples_point_at_their_masks(tiny_product: Path) -> None:
    dataset = load_mvtec(tiny_product)
    for sample in dataset.samples:
        assert sample.path.is_file()
        if sample.label == 0:
            assert sample.defect_type == "good" and sample.mask_path is None
        else:
            expected = (
                tiny_product / "ground_truth" / sample.defect_type / f"{sample.path.stem}_mask.png"
            )
            assert sample.mask_path == expected.resolve()


def test_fingerprint_covers_images_and_masks(tiny_product: Path, tmp_path: Path) -> None:
    dataset = load_mvtec(tiny_product)
    print_ = dataset.fingerprint()
    assert print_["count"] == 24 + 18 + 12
    assert "ground_truth/hole/000_mask.png" in print_["files"]
    assert print_ == load_mvtec(tiny_product).fingerprint()
    copy = shutil.copytree(tiny_product, tmp_path / "brick")
    assert load_mvtec(copy).fingerprint()["sha256"] == print_["sha256"]  # location-independent
    mask = copy / "ground_truth" / "hole" / "000_mask.png"
    mask.write_bytes(mask.read_bytes() + b"\0")
    assert load_mvtec(copy).fingerprint()["sha256"] != print_["sha256"]


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("train/good", "train/good folder not found"),
        ("train", "train/good folder not found"),
    ],
)
def test_mvtec_missing_folder_names_it(
    tiny_product: Path, tmp_path: Path, remove: str, message: str
) -> None:
    copy = shutil.copytree(tiny_product, tmp_path / "brick")
    shutil.rmtree(copy / remove)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(copy)
    assert str(copy.resolve() / remove.split("/")[0]) in str(info.value)


def test_a_product_with_only_train_good_holds_good_images_out_by_file_name(
    tiny_product: Path, tmp_path: Path
) -> None:
    """README step 1: only ``train/good`` is required (a folder without ``test/`` was refused)."""
    root = tmp_path / "brick"
    shutil.copytree(tiny_product / "train" / "good", root / "train" / "good")
    dataset = load_dataset(root)
    held = {s.path.name for s in dataset.test_samples}
    trained = {s.path.name for s in dataset.train_samples}
    # a fifth, as README step 1 and ``data check`` say: 24 -> 5 (20 -> 4)
    assert dataset.held_out_of_train and len(held) == 5 and len(held | trained) == 24
    assert held.isdisjoint(trained) and all(s.label == 0 for s in dataset.test_samples)
    for index in range(12):  # 36 images: 7 held out, picked by file name, not listing order
        shutil.copy(root / "train" / "good" / "000.png", root / "train" / "good" / f"n{index}.png")
    grown = load_dataset(root)
    assert len(grown.test_samples) == 7 and len(grown.train_samples) == 29
    assert [held_out_count(n) for n in (3, 10, 20, 24, 61)] == [2, 2, 4, 5, 12]

    few = tmp_path / "few"
    shutil.copytree(tiny_product / "train" / "good", few / "train" / "good")
    for path in sorted((few / "train" / "good").iterdir())[2:]:
        path.unlink()
    with pytest.raises(DatasetError, match="so it needs at least 3"):
        load_dataset(few)


def test_a_folder_of_loose_images_is_refused_with_the_yaml_layout_named(
    tiny_product: Path, tmp_path: Path
) -> None:
    loose = tmp_path / "loose"
    shutil.copytree(tiny_product / "train" / "good", loose)
    with pytest.raises(DatasetError, match="24 loose image") as info:
        load_dataset(loose)
    assert "normal_dir: ." in str(info.value) and "datasets/README.md" in str(info.value)


def test_a_missing_folder_names_where_its_path_stops_or_its_look_alikes(tmp_path: Path) -> None:
    (tmp_path / "mvtec" / "bottle_v2").mkdir(parents=True)
    with pytest.raises(DatasetError, match=re.escape(f"(in {tmp_path / 'mvtec'}: bottle_v2?)")):
        load_dataset(tmp_path / "mvtec" / "bottle")
    with pytest.raises(DatasetError, match=re.escape(f"(there is no {tmp_path / 'data'}: unpack")):
        load_dataset(tmp_path / "data" / "mvtec_ad" / "bottle")


def test_a_spec_folder_that_is_not_there_names_its_look_alikes(
    tiny_product: Path, tmp_path: Path
) -> None:
    tree = _custom_tree(tiny_product, tmp_path / "w", test_good=False)
    (tree / "spec.yaml").write_text("name: w\nnormal_dir: images/OK\n")
    with pytest.raises(DatasetError, match=re.escape(f"(in {tree / 'images'}: ok?)")):
        load_dataset(tree / "spec.yaml")


def test_missing_root_and_wrong_file(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=re.escape(f"dataset folder not found: {tmp_path / 'nope'}")
    ):
        load_dataset(tmp_path / "nope")
    note = tmp_path / "notes.txt"
    note.write_text("x")
    with pytest.raises(
        DatasetError, match=r"expected an MVTec-style folder or a \.yaml folder spec"
    ):
        load_dataset(note)
    with pytest.raises(DatasetError, match="dataset spec not found"):
        load_dataset(tmp_path / "missing.yaml")


def test_empty_train_folder(tmp_path: Path) -> None:
    (tmp_path / "p" / "train" / "good").mkdir(parents=True)
    (tmp_path / "p" / "test").mkdir()
    with pytest.raises(DatasetError, match=r"no images in .*train/good"):
        load_mvtec(tmp_path / "p")


def _custom_tree(src: Path, dst: Path, *, test_good: bool) -> Path:
    """Re-lay the tiny product as a custom folder layout with flat masks."""
    (dst / "images").mkdir(parents=True)
    shutil.copytree(src / "train" / "good", dst / "images" / "ok")
    if test_good:
        shutil.copytree(src / "test" / "good", dst / "images" / "ok_holdout")
    for defect in ("crack", "stain"):
        shutil.copytree(src / "test" / defect, dst / "images" / f"ng_{defect}")
        masks = dst / "labels" / defect
        masks.mkdir(parents=True)
        for mask in (src / "ground_truth" / defect).iterdir():
            shutil.copy(mask, masks / mask.name.replace("_mask", ""))  # <stem>.png also accepted
    return dst


def test_folder_spec_with_held_out_normals(tiny_product: Path, tmp_path: Path) -> None:
    tree = _custom_tree(tiny_product, tmp_path / "widget", test_good=True)
    spec = tree / "config" / "widget.yaml"
    spec.parent.mkdir()
    spec.write_text(
        "name: widget\n"
        "normal_dir: ../images/ok\n"
        "normal_test_dir: ../images/ok_holdout\n"
        "abnormal_dirs: {crack: ../images/ng_crack, stain: ../images/ng_stain}\n"
        "mask_dir: ../labels\n"
    )
    dataset = load_dataset(spec)
    assert dataset.name == "widget"
    assert dataset.root == tree.resolve()
    assert dataset.counts() == {"train": {"good": 24}, "test": {"crack": 3, "good": 6, "stain": 3}}
    assert dataset.defect_types == ("crack", "stain")
    assert all(
        s.mask_path is not None and s.mask_path.is_file() for s in dataset.samples if s.label
    )
    assert dataset.fingerprint()["count"] == 24 + 6 + 6 + 6


def test_folder_spec_splits_normals_deterministically(tiny_product: Path, tmp_path: Path) -> None:
    tree = _custom_tree(tiny_product, tmp_path / "widget", test_good=False)
    spec = tree / "widget.yaml"
    spec.write_text(
        "name: widget\nnormal_dir: images/ok\ntest_split_ratio: 0.25\n"
        "abnormal_dirs: {crack: images/ng_crack}\n"
    )
    first, second = load_folder_spec(spec), load_folder_spec(spec)
    assert first.counts() == {"train": {"good": 18}, "test": {"crack": 3, "good": 6}}
    assert first.samples == second.samples
    train = {s.path for s in first.train_samples}
    assert train.isdisjoint(s.path for s in first.test_samples)
    assert all(s.mask_path is None for s in first.samples)  # no mask_dir


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (
            "name: w\nnormal_dir: images/ok\nnormal_dirs: x\n",
            ConfigError,
            "unknown key\\(s\\) 'normal_dirs'",
        ),
        ("normal_dir: images/ok\n", ConfigError, "name"),
        (
            "name: w\nnormal_dir: images/nope\n",
            DatasetError,
            "normal_dir of the dataset spec: folder not found: .*images/nope",
        ),
        (
            "name: w\nnormal_dir: images/ok\nabnormal_dirs: {dent: images/dent}\n",
            DatasetError,
            "abnormal_dirs.dent of the dataset spec: folder not found",
        ),
        (
            "name: w\nnormal_dir: images/ok\ntest_split_ratio: 1.5\n",
            ConfigError,
            "test_split_ratio must be in \\[0, 1\\)",
        ),
        (
            "name: w\nnormal_dir: images/ok\nabnormal_dirs: {good: images/ok}\n",
            ConfigError,
            "may not use the name 'good'",
        ),
        ("- a\n- b\n", ConfigError, "expected a mapping at the top level"),
        (
            "name: w\nnormal_dir: images/ok\nabnormal_dirs:\n  crack:\n",
            ConfigError,
            "spec.yaml: abnormal_dirs.crack of the dataset spec needs a folder path, got None",
        ),
        (
            "name: w\nnormal_dir: images/ok\nabnormal_dirs: {crack: ''}\n",
            ConfigError,
            "abnormal_dirs.crack of the dataset spec needs a folder path, got ''",
        ),
        (
            "name: w\nnormal_dir: images/ok\nabnormal_dirs: {crack: 3}\n",
            ConfigError,
            "abnormal_dirs.crack of the dataset spec needs a folder path, got 3",
        ),
    ],
)
def test_folder_spec_errors(
    tiny_product: Path, tmp_path: Path, text: str, error: type, message: str
) -> None:
    tree = _custom_tree(tiny_product, tmp_path / "w", test_good=False)
    spec = tree / "spec.yaml"
    spec.write_text(text)
    with pytest.raises(error, match=message):
        load_dataset(spec)


def test_mask_names_match_in_any_case_and_hidden_files_are_skipped(
    tiny_product: Path, tmp_path: Path
) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    crack = root / "ground_truth" / "crack"
    (crack / "000_mask.png").rename(crack / "000_MASK.PNG")
    (root / "test" / "crack" / "001.png").rename(root / "test" / "crack" / "001.Png")
    for folder in ("train/good", "test/crack", "ground_truth/crack"):  # macOS AppleDouble
        (root / folder / "._000.png").write_bytes(b"\x00\x05\x16\x07 not an image")
    (root / "test" / ".ipynb_checkpoints").mkdir()
    dataset = load_dataset(root)
    assert dataset.counts() == load_dataset(tiny_product).counts()
    masks = {s.path.name: s.mask_path.name for s in dataset.samples if s.defect_type == "crack"}
    assert masks == {
        "000.png": "000_MASK.PNG",
        "001.Png": "001_mask.png",
        "002.png": "002_mask.png",
    }
    assert dataset.unmatched_masks == dataset.empty_dirs == dataset.loose_images == ()
    assert not any(p.name.startswith("._") for p in dataset.files())


def test_names_differing_only_in_case_match_one_mask(tiny_product: Path, tmp_path: Path) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    crack = root / "ground_truth" / "crack"
    shutil.copy(crack / "000_mask.png", crack / "000_MASK.png")
    dataset = load_dataset(root)
    [sample] = [s for s in dataset.samples if s.path.name == "000.png" and s.defect_type == "crack"]
    assert sample.mask_path == (crack / "000_MASK.png").resolve()  # first in sorted order
    assert dataset.unmatched_masks == ((crack / "000_mask.png").resolve(),)


def test_empty_defect_folder_and_loose_test_images_are_recorded(
    tiny_product: Path, tmp_path: Path
) -> None:
    root = shutil.copytree(tiny_product, tmp_path / "brick")
    (root / "test" / "dent").mkdir()
    (root / "test" / "dent" / "Thumbs.db").write_bytes(b"x")
    shutil.copy(root / "test" / "good" / "000.png", root / "test" / "extra.png")
    dataset = load_dataset(root)
    assert dataset.empty_dirs == ((root / "test" / "dent").resolve(),)
    assert dataset.loose_images == ((root / "test" / "extra.png").resolve(),)
    assert "dent" not in dataset.counts()["test"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"split": "val", "label": 0, "defect_type": "good"},
            "split must be one of train, test, calibration",
        ),
        ({"split": "test", "label": 2, "defect_type": "good"}, "label must be 0"),
        ({"split": "test", "label": 0, "defect_type": "crack"}, "does not match defect_type"),
    ],
)
def test_sample_rejects_inconsistent_fields(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Sample(Path("x.png"), **kwargs)


def test_dataset_is_frozen(tiny_product: Path) -> None:
    dataset = load_mvtec(tiny_product)
    assert isinstance(dataset, Dataset)
    with pytest.raises(AttributeError):
        dataset.name = "other"  # type: ignore[misc]


def test_check_readable_lists_every_unreadable_file_at_once(tiny_product: Path, tmp_path) -> None:
    product = tmp_path / "brick"
    shutil.copytree(tiny_product, product)
    (product / "train" / "good" / "zz_notes.png").write_text("not an image")
    (product / "test" / "good" / "zz_empty.png").write_bytes(b"")
    mask = next((product / "ground_truth" / "crack").glob("*_mask.png"))
    mask.write_bytes(b"\x00" * 32)
    dataset = load_dataset(product)
    with pytest.raises(DatasetError) as caught:
        dataset.check_readable()
    said = str(caught.value)
    assert "3 of" in said
    assert "zz_notes.png: not an image" in said and "zz_empty.png: empty file" in said
    assert f"{mask.name}: not an image" in said


def test_check_readable_passes_a_good_dataset_and_names_no_file(tiny_product: Path) -> None:
    load_dataset(tiny_product).check_readable()


def _with_labelled(tiny_product: Path, tmp_path: Path) -> Path:
    """A copy of ``tiny_product`` with two labelled training defects: one masked, one not."""
    copy = shutil.copytree(tiny_product, tmp_path / "brick")
    (copy / "train" / "crack").mkdir()
    (copy / "ground_truth" / "train" / "crack").mkdir(parents=True)
    shutil.copyfile(copy / "test" / "crack" / "000.png", copy / "train" / "crack" / "a.png")
    shutil.copyfile(copy / "test" / "hole" / "000.png", copy / "train" / "crack" / "b.png")
    shutil.copyfile(
        copy / "ground_truth" / "crack" / "000_mask.png",
        copy / "ground_truth" / "train" / "crack" / "a_mask.png",
    )
    return copy


def test_labelled_training_defects_are_read_apart_from_the_good_ones(
    tiny_product: Path, tmp_path: Path
) -> None:
    copy = _with_labelled(tiny_product, tmp_path)
    dataset = load_mvtec(copy)
    assert len(dataset.train_samples) == 24 and all(s.label == 0 for s in dataset.train_samples)
    labelled = {s.path.name: s for s in dataset.labelled_samples}
    assert sorted(labelled) == ["a.png", "b.png"]
    assert labelled["a.png"].mask_path == (copy / "ground_truth/train/crack/a_mask.png").resolve()
    assert labelled["b.png"].mask_path is None  # an image-level label
    assert dataset.defect_types == DEFECTS  # the test split's
    assert dataset.unmatched_masks == ()
    assert dataset.counts()["train"] == {"crack": 2, "good": 24}
    assert "ground_truth/train/crack/a_mask.png" in dataset.fingerprint()["files"]


def test_a_product_without_labelled_defects_reads_as_before(tiny_product: Path) -> None:
    dataset = load_mvtec(tiny_product)
    assert dataset.labelled_samples == ()
    assert dataset.samples == tuple(s for s in dataset.samples if s.split == "test" or s.label == 0)


def test_a_test_defect_folder_named_train_is_refused(tiny_product: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_product, tmp_path / "brick")
    shutil.copytree(copy / "test" / "crack", copy / "test" / "train")
    with pytest.raises(DatasetError, match="may not be named 'train'"):
        load_mvtec(copy)
