"""Build a retrain run's data from the original dataset and the reviewed inspections.

Training set (an MVTec folder in the run folder): the original images, the good images the
champion learned by ``train --update`` (``retrain.lineage``), the reviewed-good ones, and the
reviewed defects that teach, with their painted regions. Evaluation set, read in place: the
original test split, false alarms and the reviewed defects that do not teach. Which defects
teach is a seeded hash of the inspection id (``TEACHING_SHARE``), so no run evaluates on an
image that taught its challenger or an earlier champion. Leaks of test images are left out.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from inspection.core.errors import DatasetError, ImageDecodeError
from inspection.core.images import DEFAULT_SOURCE_BITS, read_image
from inspection.data.dataset import GOOD, LABELLED_MASKS, MASK_SUFFIX, Dataset, Sample
from inspection.data.leaks import held_out_copies, prints_of
from inspection.retrain.lineage import Learned
from inspection.store.store import Store

log = logging.getLogger(__name__)
REVIEWED_DEFECT = "reviewed_defect"  # defect type of a reviewed defect without one given
TEACHING_SHARE = 0.5
"""Share of reviewed defects that join training; the others are held out to evaluate."""
SPLIT_SEED = "inspection.retrain/reviewed-defects/1"
"""Salt of the hash that splits reviewed defects (changing it moves defects across sides)."""


def teaches(inspection_id: str, share: float = TEACHING_SHARE) -> bool:
    """Whether the reviewed defect ``inspection_id`` joins training (else it evaluates):
    sha256 of ``SPLIT_SEED`` and the id, read as a number in [0, 1), below ``share``."""
    digest = hashlib.sha256(f"{SPLIT_SEED}:{inspection_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def type_folder(defect_type: str) -> str:
    """A reviewer's defect type as a folder name: lower case, runs of anything but letters,
    digits, ``-`` and ``_`` as ``_``; ``good`` or nothing left as ``REVIEWED_DEFECT``."""
    name = re.sub(r"[^a-z0-9_-]+", "_", defect_type.strip().lower()).strip("_")
    return REVIEWED_DEFECT if name in ("", GOOD, LABELLED_MASKS) else name


@dataclass(frozen=True)
class EvalItem:
    """One evaluation image (``label`` 1: defective; ``mask_path`` None: no pixel truth)."""

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
    """Reviewed defects held out to evaluate."""
    reviewed_false_alarm: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    teaching_defect: tuple[str, ...] = ()
    """Reviewed defects in the training set (``teaches``)."""
    painted: tuple[str, ...] = ()
    """Of ``teaching_defect``, those whose reviewer painted a region (trained with its mask)."""
    original_labelled: int = 0
    """Labelled defective training images of the original dataset."""
    learned: tuple[str, ...] = ()
    """Names of the images the champion learned by ``train --update`` (``retrain.lineage``)."""
    left_out: dict[str, str] = field(default_factory=dict)
    """What the champion learned or a reviewer labelled that this run does not train on ->
    why (a held-out copy, a file gone)."""

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts for the report."""
        return {
            "train_root": str(self.train_root),
            "train_images": self.original_train + len(self.learned) + len(self.reviewed_good),
            "train_original": self.original_train,
            "train_learned_by_update": len(self.learned),
            "train_reviewed_good": len(self.reviewed_good),
            "train_labelled_defects": self.original_labelled + len(self.teaching_defect),
            "train_reviewed_defect": len(self.teaching_defect),
            "train_reviewed_defect_painted": len(self.painted),
            "eval_images": len(self.eval_items),
            "eval_test_split": sum(item.source == "test" for item in self.eval_items),
            "eval_reviewed_defect": len(self.reviewed_defect),
            "eval_reviewed_false_alarm": len(self.reviewed_false_alarm),
            "eval_with_pixel_truth": sum(item.has_pixel_truth for item in self.eval_items),
            "reviewed_good_ids": list(self.reviewed_good),
            "reviewed_defect_ids": list(self.reviewed_defect),
            "train_reviewed_defect_ids": list(self.teaching_defect),
            "reviewed_false_alarm_ids": list(self.reviewed_false_alarm),
            "skipped": dict(self.skipped),
            "left_out": dict(self.left_out),
        }


def assemble_run_data(
    original: Dataset,
    store: Store | None,
    product: str,
    run_dir: str | Path,
    *,
    since: datetime | None = None,
    carry_over: Collection[str] = (),
    learned: Learned | None = None,
    reading: tuple[int, tuple[float, float] | None] = (DEFAULT_SOURCE_BITS, None),
) -> RunData:
    """Write ``<run_dir>/dataset/<product>`` and collect the evaluation items: reviewed-good images
    after ``since`` or in ``carry_over`` and still ``good``, reviewed defects by ``teaches``, every
    false alarm, and ``learned`` (``train --update`` images). ``store=None``: no reviews.
    ``reading``: the product's ``image_bits`` and ``image_range``, how the leak check decodes."""
    if not original.train_samples:
        raise DatasetError(f"dataset {original.name!r} has no training images")
    if not original.test_samples:
        raise DatasetError(f"dataset {original.name!r} has no labelled test images to evaluate on")
    root = Path(run_dir) / "dataset" / product
    if root.exists():
        raise DatasetError(f"run folder {root} already exists; each run needs a fresh folder")
    good_dir = root / "train" / GOOD
    _copy_samples(original.train_samples, good_dir)
    _copy_samples(original.labelled_samples, root / "train", root / "ground_truth" / LABELLED_MASKS)
    _copy_samples(original.test_samples, root / "test", root / "ground_truth")
    reviews = _Reviews(eval_items=[
        EvalItem(s.path, s.label, s.defect_type, s.mask_path, "test") for s in original.test_samples
    ], reading=reading, held_out=prints_of([s.path for s in original.test_samples], *reading))  # fmt: skip
    learned = learned or Learned()
    reviews.left_out |= learned.missing
    if store is not None:
        for row in _reviewed_good(store, product, since, carry_over):
            path = _blob_image(store, row.image_sha, row.id, reviews.skipped)
            if path is not None and reviews.trainable(row.id, path):
                shutil.copyfile(path, good_dir / f"review-{row.id}{path.suffix.lower()}")
                reviews.good.append(row.id)
                reviews.digests.add(row.image_sha)
        for row in store.reviewed(product, ["defect", "false_alarm"]):
            reviews.add(store, row, root)
    for path in learned.images:
        if path.stem not in reviews.digests and reviews.trainable(path.name, path):
            shutil.copyfile(path, good_dir / f"update-{path.name}")
            reviews.learned.append(path.name)
    original_train = len(original.train_samples)
    log.info("run data for %s: %d original + %d learned by update + %d reviewed-good training "
             "images, %d reviewed defects teaching (%d painted), %d evaluation images", product,
             original_train, len(reviews.learned), len(reviews.good), len(reviews.teaching),
             len(reviews.painted), len(reviews.eval_items))  # fmt: skip
    for what, why in reviews.left_out.items():
        log.warning("left out of %s's training set: %s: %s", product, what, why)
    return RunData(root, tuple(reviews.eval_items), original_train, tuple(reviews.good),
                   tuple(reviews.defects), tuple(reviews.false_alarms), reviews.skipped,
                   tuple(reviews.teaching), tuple(reviews.painted),
                   len(original.labelled_samples), tuple(reviews.learned),
                   reviews.left_out)  # fmt: skip


@dataclass
class _Reviews:
    """The reviewed inspections a run collects, by where they went."""

    eval_items: list[EvalItem]
    reading: tuple[int, tuple[float, float] | None]
    """How images are decoded for the leak check: ``image_bits``, ``image_range``."""
    held_out: dict[Path, Any] = field(default_factory=dict)
    """``data.leaks.pixel_print`` of each held-out test image."""
    good: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    teaching: list[str] = field(default_factory=list)
    painted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    learned: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    digests: set[str] = field(default_factory=set)
    """sha256 of the reviewed-good images trained on (a learned copy of one is not added)."""

    def trainable(self, name: str, path: Path) -> bool:
        """False (``name`` left out, saying why) when ``path`` copies a held-out test image."""
        bits, value_range = self.reading
        copies = held_out_copies(
            prints_of([path], bits, value_range), self.held_out, bits=bits, value_range=value_range
        )
        if copies:
            self.left_out[name] = f"copies held-out test image {copies[path]}"
        return not copies

    def add(self, store: Store, row: Any, root: Path) -> None:
        """A reviewed defect or false alarm, into training (``teaches``) or the evaluation items."""
        path = _blob_image(store, row.image_sha, row.id, self.skipped)
        if path is None:
            return
        if row.review_label != "defect":
            self.eval_items.append(EvalItem(path, 0, GOOD, None, "review", row.id))
            self.false_alarms.append(row.id)
            return
        region = _region(store, row)
        defect_type = row.review_defect_type or REVIEWED_DEFECT
        if not teaches(row.id):
            self.eval_items.append(EvalItem(path, 1, defect_type, region, "review", row.id))
            self.defects.append(row.id)
            return
        if not self.trainable(row.id, path):
            return
        folder = type_folder(defect_type)
        name = f"review-{row.id}"
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, root / "train" / folder / f"{name}{path.suffix.lower()}")
        if region is not None:
            masks = root / "ground_truth" / LABELLED_MASKS / folder
            masks.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(region, masks / f"{name}{MASK_SUFFIX}.png")
            self.painted.append(row.id)
        self.teaching.append(row.id)


def _region(store: Store, row: Any) -> Path | None:
    """The file of the latest reviewer's painted region; None without one (or its blob gone)."""
    if not row.review_region_sha:
        return None
    try:
        return store.blobs.checked_path(row.review_region_sha)  # an altered mask is refused
    except FileNotFoundError as exc:
        log.warning("inspection %s: painted region missing, used image-level: %s", row.id, exc)
        return None


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


def _copy_samples(samples: tuple[Sample, ...], target: Path, masks: Path | None = None) -> None:
    """Copy samples into MVTec layout: good training images into ``target``, the others into
    ``target/<defect>/`` with their masks in ``masks/<defect>/``; a clashing name gets a prefix."""
    used: set[Path] = set()
    for index, sample in enumerate(samples):
        by_type = sample.split == "test" or sample.label == 1
        folder = target / sample.defect_type if by_type else target
        destination = folder / sample.path.name
        if destination in used:
            destination = folder / f"{index:05d}-{sample.path.name}"
        used.add(destination)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample.path, destination)
        if sample.mask_path is not None and masks is not None:
            (masks / sample.defect_type).mkdir(parents=True, exist_ok=True)
            if sample.mask_path.is_dir():  # MVTec LOCO: the folder of masks, as it is
                shutil.copytree(sample.mask_path, masks / sample.defect_type / destination.stem)
                continue
            name = f"{destination.stem}{MASK_SUFFIX}{sample.mask_path.suffix}"
            shutil.copyfile(sample.mask_path, masks / sample.defect_type / name)


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
