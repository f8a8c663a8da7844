from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from inspection.core.errors import DatasetError
from inspection.core.fingerprint import sha256_file
from inspection.data.dataset import load_dataset
from inspection.retrain.assemble import REVIEWED_DEFECT, assemble_run_data
from inspection.store.store import Store

from .helpers import reviewed_inspection


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.migrated(f"sqlite:///{tmp_path / 'inspection.db'}", tmp_path / "blobs")


def test_reviewed_good_reaches_training_and_nothing_else_does(
    tiny_product: Path, store: Store, tmp_path: Path
) -> None:
    dataset = load_dataset(tiny_product)
    test_goods = [s.path for s in dataset.test_samples if s.label == 0]
    defects = [s.path for s in dataset.test_samples if s.label == 1]
    good_a = reviewed_inspection(store, test_goods[0], "good")
    good_b = reviewed_inspection(store, test_goods[1], "good")
    defect = reviewed_inspection(store, defects[0], "defect", "crack")
    defect_untyped = reviewed_inspection(store, defects[1], "defect")
    unsure = reviewed_inspection(store, defects[2], "unsure")
    alarm = reviewed_inspection(store, test_goods[2], "false_alarm")
    reviewed_inspection(store, defects[3], None)  # never reviewed
    relabelled = reviewed_inspection(store, defects[4], "good")
    store.add_review(relabelled, label="defect", reviewer="bob")  # latest label wins

    run = assemble_run_data(dataset, store, "brick", tmp_path / "run")

    train_dir = run.train_root / "train" / "good"
    names = sorted(p.name for p in train_dir.iterdir())
    assert [n for n in names if n.startswith("review-")] == sorted(
        [f"review-{good_a}.png", f"review-{good_b}.png"]
    )
    assert len(names) == len(dataset.train_samples) + 2
    training_hashes = {sha256_file(p) for p in train_dir.iterdir()}
    for path in [*defects[:5], test_goods[2]]:
        assert sha256_file(path) not in training_hashes
    assert set(run.reviewed_good) == {good_a, good_b}

    by_id = {item.inspection_id: item for item in run.eval_items if item.source == "review"}
    assert set(by_id) == {defect, defect_untyped, alarm, relabelled}
    assert (by_id[defect].label, by_id[defect].defect_type) == (1, "crack")
    assert by_id[defect_untyped].defect_type == REVIEWED_DEFECT
    assert (by_id[alarm].label, by_id[alarm].has_pixel_truth) == (0, True)
    assert by_id[defect].mask_path is None and not by_id[defect].has_pixel_truth
    assert unsure not in by_id

    # the run folder is a loadable MVTec dataset with the original test split and masks
    copied = load_dataset(run.train_root)
    assert copied.counts()["test"] == dataset.counts()["test"]
    assert sum(s.mask_path is not None for s in copied.test_samples) == sum(
        s.mask_path is not None for s in dataset.test_samples
    )
    summary = run.summary()
    assert summary["train_reviewed_good"] == 2
    assert summary["eval_images"] == len(dataset.test_samples) + 4


def test_since_and_carry_over_select_reviewed_good_and_run_folders_are_fresh(
    tiny_product: Path, store: Store, tmp_path: Path
) -> None:
    dataset = load_dataset(tiny_product)
    reviewed_inspection(store, dataset.test_samples[0].path, "good")
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    run = assemble_run_data(dataset, store, "brick", tmp_path / "run", since=future)
    assert run.reviewed_good == ()
    carried = reviewed_inspection(store, dataset.test_samples[1].path, "good")
    relabelled = reviewed_inspection(store, dataset.test_samples[2].path, "good")
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
