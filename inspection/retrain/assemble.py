"""Build a retrain run's data from the original dataset and the reviewed inspections.

Training set, an MVTec-style folder under the run folder: the original images plus those
reviewed as ``good`` (the test split and masks too: training holds part of it out to calibrate).
Evaluation set, read in place: the original test split, plus reviewed defects (label 1, no mask:
left out of pixel metrics) and false alarms (label 0).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from inspection.core.errors import DatasetError, ImageDecodeError
from inspection.core.images import read_image
from inspection.data.dataset import GOOD, MASK_SUFFIX, Dataset, Sample
from inspection.store.store import Store

log = logging.getLogger(__name__)
REVIEWED_DEFECT = "reviewed_defect"  # defect type of a reviewed defect without one given


@dataclass(frozen=True)
class EvalItem:
    """One evaluation image: ``label`` 1 = defective; ``mask_path`` None = no pixel truth;
    ``source`` ``test`` (the labelled test split) or ``review`` (a reviewed inspection)."""

    path: Path
    label: int
    defect_type: str
    mask_path: Path | None
    source: str
    inspection_id: str | None = None

    @property
    def has_pixel_truth(self) -> bool:
        """Good images have an all-zero mask; a defect needs its mask file."""
        return self.label == 0 or self.mask_path is not None


@dataclass(frozen=True)
class RunData:
    """What a retrain run trains and evaluates on, with the reviewed inspection ids used."""

    train_root: Path
    eval_items: tuple[EvalItem, ...]
    original_train: int
    reviewed_good: tuple[str, ...]
    reviewed_defect: tuple[str, ...]
    reviewed_false_alarm: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts for the report."""
        return {
            "train_root": str(self.train_root),
            "train_images": self.original_train + len(self.reviewed_good),
            "train_original": self.original_train,
            "train_reviewed_good": len(self.reviewed_good),
            "eval_images": len(self.eval_items),
            "eval_test_split": sum(item.source == "test" for item in self.eval_items),
            "eval_reviewed_defect": len(self.reviewed_defect),
            "eval_reviewed_false_alarm": len(self.reviewed_false_alarm),
            "eval_with_pixel_truth": sum(item.has_pixel_truth for item in self.eval_items),
            "reviewed_good_ids": list(self.reviewed_good),
            "reviewed_defect_ids": list(self.reviewed_defect),
            "reviewed_false_alarm_ids": list(self.reviewed_false_alarm),
            "skipped": dict(self.skipped),
        }


def assemble_run_data(
    original: Dataset,
    store: Store | None,
    product: str,
    run_dir: str | Path,
    *,
    since: datetime | None = None,
    carry_over: Collection[str] = (),
) -> RunData:
    """Write ``<run_dir>/dataset/<product>`` and collect the evaluation items. Reviewed-good
    images: reviewed after ``since``, or in ``carry_over``, and still labelled ``good``;
    reviewed defects and false alarms all evaluate. ``store=None``: no reviews."""
    if not original.train_samples:
        raise DatasetError(f"dataset {original.name!r} has no training images")
    if not original.test_samples:
        raise DatasetError(f"dataset {original.name!r} has no labelled test images to evaluate on")
    root = Path(run_dir) / "dataset" / product
    if root.exists():
        raise DatasetError(f"run folder {root} already exists; each run needs a fresh folder")
    good_dir = root / "train" / GOOD
    _copy_samples(original.train_samples, good_dir, root)
    _copy_samples(original.test_samples, root / "test", root)
    skipped: dict[str, str] = {}
    reviewed_good: list[str] = []
    eval_items = [
        EvalItem(s.path, s.label, s.defect_type, s.mask_path, "test") for s in original.test_samples
    ]
    defects: list[str] = []
    false_alarms: list[str] = []
    if store is not None:
        for row in _reviewed_good(store, product, since, carry_over):
            path = _blob_image(store, row.image_sha, row.id, skipped)
            if path is not None:
                shutil.copyfile(path, good_dir / f"review-{row.id}{path.suffix.lower()}")
                reviewed_good.append(row.id)
        for row in store.reviewed(product, ["defect", "false_alarm"]):
            path = _blob_image(store, row.image_sha, row.id, skipped)
            if path is None:
                continue
            if row.review_label == "defect":
                defect_type = row.review_defect_type or REVIEWED_DEFECT
                eval_items.append(EvalItem(path, 1, defect_type, None, "review", row.id))
                defects.append(row.id)
            else:
                eval_items.append(EvalItem(path, 0, GOOD, None, "review", row.id))
                false_alarms.append(row.id)
    original_train = len(original.train_samples)
    log.info("run data for %s: %d original + %d reviewed-good training images, %d evaluation "
             "images", product, original_train, len(reviewed_good), len(eval_items))  # fmt: skip
    return RunData(root, tuple(eval_items), original_train, tuple(reviewed_good), tuple(defects),
                   tuple(false_alarms), skipped)  # fmt: skip


def _reviewed_good(
    store: Store, product: str, since: datetime | None, carry_over: Collection[str]
) -> list[Any]:
    """Inspections now labelled good: reviewed after ``since``, or listed in ``carry_over``."""
    recent = store.reviewed(product, ["good"], since=since)
    if since is None or not carry_over:
        return recent
    recent_ids = {row.id for row in recent}
    wanted = set(carry_over) - recent_ids
    older = [row for row in store.reviewed(product, ["good"]) if row.id in wanted]
    return older + recent


def _copy_samples(samples: tuple[Sample, ...], target: Path, root: Path) -> None:
    """Copy samples into MVTec layout: train images into ``target``, test images into
    ``target/<defect>/``, masks into ``ground_truth/<defect>/``; a clashing name gets a prefix."""
    used: set[Path] = set()
    for index, sample in enumerate(samples):
        folder = target if sample.split == "train" else target / sample.defect_type
        destination = folder / sample.path.name
        if destination in used:
            destination = folder / f"{index:05d}-{sample.path.name}"
        used.add(destination)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample.path, destination)
        if sample.mask_path is not None:
            masks = root / "ground_truth" / sample.defect_type
            masks.mkdir(parents=True, exist_ok=True)
            name = f"{destination.stem}{MASK_SUFFIX}{sample.mask_path.suffix}"
            shutil.copyfile(sample.mask_path, masks / name)


def _blob_image(store: Store, sha: str, inspection_id: str, skipped: dict[str, str]) -> Path | None:
    """The blob file of an inspection's image if it exists and decodes, else None (logged)."""
    try:
        path = store.blobs.checked_path(sha)  # a blob altered centrally is never trained on
        read_image(path)
    except (FileNotFoundError, ImageDecodeError) as exc:
        log.warning("inspection %s: image not usable, left out: %s", inspection_id, exc)
        skipped[inspection_id] = str(exc)
        return None
    return path
