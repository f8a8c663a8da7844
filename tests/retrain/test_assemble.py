from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from inspection.core.errors import DatasetError
from inspection.core.fingerprint import sha256_file
from inspection.data.dataset import Dataset, load_dataset
from inspection.retrain.assemble import REVIEWED_DEFECT, assemble_run_data, teaches, type_folder
from inspection.retrain.lineage import Learned
from inspection.store.store import Store

from .helpers import reviewed_inspection, split_ids


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.migrated(f"sqlite:///{tmp_path / 'inspection.db'}", tmp_path / "blobs")


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Parts the line saw after training: none of them is in ``tiny_product``."""
    from inspection.data.demo import write_demo_product

    root = write_demo_product(
        tmp_path_factory.mktemp("line"), "brick", seed=99, n_train=1, n_test_good=4,
        n_test_per_defect=3, size=128,
    )  # fmt: skip
    return load_dataset(root)


def test_reviewed_images_reach_training_or_evaluation_never_both(
    tiny_product: Path, line: Dataset, store: Store, tmp_path: Path
) -> None:
    dataset = load_dataset(tiny_product)
    test_goods = [s.path for s in line.test_samples if s.label == 0]
    defects = [s for s in line.test_samples if s.label == 1 and s.mask_path is not None]
    taught, held = split_ids("teach-", True, 3), split_ids("held-", False, 3)
    good_a = reviewed_inspection(store, test_goods[0], "good")
    good_b = reviewed_inspection(store, test_goods[1], "good")
    painted = reviewed_inspection(
        store,
        defects[0].path,
        "defect",
        "Hair crack",
        inspection_id=taught[0],
        region=defects[0].mask_path,
    )
    image_level = reviewed_inspection(store, defects[1].path, "defect", inspection_id=taught[1])
    held_painted = reviewed_inspection(
        store,
        defects[2].path,
        "defect",
        "crack",
        inspection_id=held[0],
        region=defects[2].mask_path,
    )
    held_plain = reviewed_inspection(store, defects[3].path, "defect", inspection_id=held[1])
    unsure = reviewed_inspection(store, defects[4].path, "unsure", inspection_id=taught[2])
    alarm = reviewed_inspection(store, test_goods[2], "false_alarm")
    reviewed_inspection(store, defects[5].path, None, inspection_id=held[2])  # never reviewed
    relabelled = reviewed_inspection(store, defects[6].path, "good")
    store.add_review(relabelled, label="false_alarm", reviewer="bob")  # latest label wins

    run = assemble_run_data(dataset, store, "brick", tmp_path / "run")

    train_dir = run.train_root / "train" / "good"
    names = sorted(p.name for p in train_dir.iterdir())
    assert [n for n in names if n.startswith("review-")] == sorted(
        [f"review-{good_a}.png", f"review-{good_b}.png"]
    )
    assert len(names) == len(dataset.train_samples) + 2
    assert set(run.reviewed_good) == {good_a, good_b}
    # reviewed defects that teach: train/<type>/, with the painted region as their mask
    copied = load_dataset(run.train_root)
    labelled = {s.path.name: s for s in copied.labelled_samples}
    assert set(labelled) == {f"review-{painted}.png", f"review-{image_level}.png"}
    assert labelled[f"review-{painted}.png"].defect_type == "hair_crack"
    assert sha256_file(labelled[f"review-{painted}.png"].mask_path) == sha256_file(
        defects[0].mask_path
    )
    assert labelled[f"review-{image_level}.png"].defect_type == REVIEWED_DEFECT
    assert labelled[f"review-{image_level}.png"].mask_path is None
    assert (run.teaching_defect, run.painted) == ((painted, image_level), (painted,))
    # the others evaluate; no evaluated image is anywhere in the training folder
    by_id = {item.inspection_id: item for item in run.eval_items if item.source == "review"}
    assert set(by_id) == {held_painted, held_plain, alarm, relabelled}
    assert (by_id[held_painted].label, by_id[held_painted].defect_type) == (1, "crack")
    assert by_id[held_painted].has_pixel_truth  # its painted region is the pixel truth
    assert by_id[held_plain].defect_type == REVIEWED_DEFECT
    assert by_id[held_plain].mask_path is None and not by_id[held_plain].has_pixel_truth
    assert (by_id[alarm].label, by_id[alarm].has_pixel_truth) == (0, True)
    assert unsure not in by_id and unsure not in run.teaching_defect
    training = {sha256_file(p) for p in (run.train_root / "train").rglob("*") if p.is_file()}
    assert not training & {sha256_file(item.path) for item in by_id.values()}
    # the run folder is a loadable MVTec dataset with the original test split and masks
    assert copied.counts()["test"] == dataset.counts()["test"]
    assert sum(s.mask_path is not None for s in copied.test_samples) == sum(
        s.mask_path is not None for s in dataset.test_samples
    )
    summary = run.summary()
    assert summary["train_reviewed_good"] == 2
    assert (summary["train_reviewed_defect"], summary["train_reviewed_defect_painted"]) == (2, 1)
    assert summary["eval_images"] == len(dataset.test_samples) + 4


def test_the_split_of_reviewed_defects_is_fixed_by_the_id_and_about_the_share() -> None:
    ids = [f"{n:032x}" for n in range(4000)]
    sides = [teaches(i) for i in ids]
    assert sides == [teaches(i) for i in ids]  # the same every run
    assert 0.47 < sum(sides) / len(ids) < 0.53
    assert not any(teaches(i, share=0.0) for i in ids) and all(teaches(i, share=1.0) for i in ids)


@pytest.mark.parametrize(
    ("typed", "folder"),
    [("crack", "crack"), ("Hair crack", "hair_crack"), (" ../x ", "x"), ("good", REVIEWED_DEFECT),
     ("train", REVIEWED_DEFECT), ("???", REVIEWED_DEFECT), ("thin-scratch_2", "thin-scratch_2")],
)  # fmt: skip
def test_a_reviewers_defect_type_becomes_a_safe_folder_name(typed: str, folder: str) -> None:
    assert type_folder(typed) == folder


def test_labelled_defects_of_the_original_dataset_are_copied_with_their_masks(
    tiny_product: Path, tmp_path: Path
) -> None:
    import shutil

    product = tmp_path / "brick"
    shutil.copytree(tiny_product, product)
    source = next(s for s in load_dataset(product).test_samples if s.mask_path is not None)
    (product / "train" / "dent").mkdir()
    (product / "ground_truth" / "train" / "dent").mkdir(parents=True)
    shutil.copyfile(source.path, product / "train" / "dent" / "a.png")
    shutil.copyfile(source.mask_path, product / "ground_truth" / "train" / "dent" / "a_mask.png")
    shutil.copyfile(source.path, product / "train" / "dent" / "b.png")  # image-level
    run = assemble_run_data(load_dataset(product), None, "brick", tmp_path / "run")
    labelled = {s.path.name: s.mask_path for s in load_dataset(run.train_root).labelled_samples}
    assert set(labelled) == {"a.png", "b.png"} and labelled["b.png"] is None
    assert sha256_file(labelled["a.png"]) == sha256_file(source.mask_path)
    assert run.summary()["train_labelled_defects"] == 2


def test_since_and_carry_over_select_reviewed_good_and_run_folders_are_fresh(
    tiny_product: Path, line: Dataset, store: Store, tmp_path: Path
) -> None:
    dataset = load_dataset(tiny_product)
    reviewed_inspection(store, line.test_samples[0].path, "good")
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    run = assemble_run_data(dataset, store, "brick", tmp_path / "run", since=future)
    assert run.reviewed_good == ()
    carried = reviewed_inspection(store, line.test_samples[1].path, "good")
    relabelled = reviewed_inspection(store, line.test_samples[2].path, "good")
    store.add_review(relabelled, label="unsure", reviewer="bob")
    run = assemble_run_data(
        dataset, store, "brick", tmp_path / "run2", since=future, carry_over=[carried, relabelled]
    )
    assert run.reviewed_good == (carried,)  # the champion's goods stay unless relabelled
    with pytest.raises(DatasetError, match="already exists; each run needs a fresh folder"):
        assemble_run_data(dataset, store, "brick", tmp_path / "run")


def test_missing_blob_is_left_out_with_a_reason(
    tiny_product: Path, store: Store, tmp_path: Path
) -> None:
    dataset = load_dataset(tiny_product)
    inspection_id = reviewed_inspection(store, dataset.test_samples[0].path, "good")
    store.blobs.path(store.get_inspection(inspection_id).image_sha).unlink()
    run = assemble_run_data(dataset, store, "brick", tmp_path / "run")
    assert run.reviewed_good == ()
    assert "not found" in run.skipped[inspection_id]


def test_a_held_out_image_never_trains_however_it_was_saved(
    tiny_product: Path, line: Dataset, store: Store, tmp_path: Path
) -> None:
    """A reviewed good, a teaching defect and a learned image that copy held-out test images
    (re-saved as JPEG, or as they are) are left out, each naming the image it copies."""
    from PIL import Image

    dataset = load_dataset(tiny_product)
    good, defect = dataset.test_samples[0], next(s for s in dataset.test_samples if s.label)
    jpeg = tmp_path / "resaved.jpg"
    Image.open(good.path).save(jpeg, quality=75)
    copied_good = reviewed_inspection(store, jpeg, "good")
    copied_defect = reviewed_inspection(
        store, defect.path, "defect", inspection_id=split_ids("t-", True, 1)[0]
    )
    fresh = reviewed_inspection(store, line.test_samples[0].path, "good")
    learned = Learned(
        images=(line.train_samples[0].path, defect.path), missing={"v0002:ab": "gone"}
    )

    run = assemble_run_data(dataset, store, "brick", tmp_path / "run", learned=learned)

    assert run.reviewed_good == (fresh,) and run.teaching_defect == ()
    assert run.learned == (line.train_samples[0].path.name,)
    assert run.left_out == {
        "v0002:ab": "gone",
        copied_good: f"copies held-out test image {good.path}",
        copied_defect: f"copies held-out test image {defect.path}",
        defect.path.name: f"copies held-out test image {defect.path}",
    }
    good_dir = run.train_root / "train" / "good"
    assert (good_dir / f"update-{line.train_samples[0].path.name}").is_file()
    assert run.summary()["train_images"] == len(dataset.train_samples) + 2
