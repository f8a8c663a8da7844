"""Re-calibrate a drifting bundle on the station's own validation images.

A bundle whose golden outputs drift on this CPU is refused, unless the station names a folder
of validation images (MVTec layout, or a product folder's ``test`` split): then its calibration
is fitted again here at its exported operating point, as export does; the signed bundle on disk
is not changed. ``GoldenDriftError`` says why when that cannot be sane.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspection.core.bundle import BundleMetadata
from inspection.core.calibration import calibrate, normalize_scores
from inspection.core.errors import BundleError, ConfigError
from inspection.core.golden import CalibrationPoint, GoldenCheck, GoldenDriftError, Recalibration
from inspection.core.images import list_images, read_image
from inspection.core.jsonl import write_json
from inspection.core.model_record import utc_now
from inspection.core.operating_point import OperatingPoint, n_needed
from inspection.core.outputs import LabelledImage, RawOutputs
from inspection.core.registry import Registry
from inspection.core.validation_scores import read_validation_scores
from inspection.data.dataset import GOOD, MASK_SUFFIX, Sample
from inspection.runtime.hardware import CpuInfo, cpu_info, cpu_record_path, read_cpu_records
from inspection.runtime.model import IN_FLIGHT, BundleModel
from inspection.runtime.preprocess import model_input

log = logging.getLogger(__name__)

MIN_GOOD = 10
"""Good images an F1 / max-miss operating point needs at least (the budget policy needs
``n_needed(budget)``, e.g. 99 at 1 %)."""
GROUND_TRUTH = "ground_truth"


class LabelledFile(LabelledImage, Protocol):
    """A labelled sample with its image file (``data.Sample``, ``LabelledSample``)."""

    @property
    def path(self) -> Path: ...


def validation_samples(folder: str | Path) -> tuple[Sample, ...]:
    """The labelled images of a station validation folder (see the module doc)."""
    root = Path(folder)
    masks = root / GROUND_TRUTH
    if (root / "test").is_dir():
        root = root / "test"
    if not (root / GOOD).is_dir():
        raise ConfigError(f"validation images: {root} has no '{GOOD}' folder (MVTec layout)")
    samples = [Sample(path, "test", 0, GOOD) for path in list_images(root / GOOD)]
    for defect_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if defect_dir.name in (GOOD, GROUND_TRUTH):
            continue
        for path in list_images(defect_dir):
            mask = masks / defect_dir.name / f"{path.stem}{MASK_SUFFIX}.png"
            samples.append(
                Sample(path, "test", 1, defect_dir.name, mask if mask.is_file() else None)
            )
    return tuple(samples)


def file_input(model: BundleModel, path: Path) -> np.ndarray:
    """The image file at ``path`` as ``model``'s graph takes it, made as the station makes it:
    decoded at the bundle's bits and range, in its colour, aligned (``BundleModel.align``) and
    at its input size (``preprocess.model_input``)."""
    prep = model.metadata.preprocessing
    image = read_image(path, bits=prep.source_bits, value_range=prep.source_range)
    return model_input(model.align(image)[0], prep)


def run_samples(
    model: BundleModel, samples: Sequence[LabelledFile], *, batch_size: int = IN_FLIGHT
) -> RawOutputs:
    """Raw outputs of ``model`` on labelled ``samples`` through the station's inference path,
    each image run alone as on the line, ``batch_size`` of them in flight at a time
    (``BundleModel.run_each``)."""
    scores, maps = [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = np.stack([file_input(model, Path(s.path)) for s in chunk])
        raw = model.fuse(batch, model.run_each(batch))
        scores.append(raw.scores)
        maps.append(raw.maps)
    return RawOutputs.of_samples(samples, np.concatenate(scores), np.concatenate(maps))


def recalibrate(model: BundleModel, check: GoldenCheck, folder: str | Path) -> Recalibration:
    """Fit ``model``'s calibration again on the images in ``folder`` and serve it (its
    metadata is replaced, the bundle files are not)."""
    meta = model.metadata
    point = _operating_point(meta, check)
    samples = _enough_images(validation_samples(folder), point, check, folder)
    outputs = run_samples(model, samples)
    if not (np.isfinite(outputs.scores).all() and np.isfinite(outputs.maps).all()):
        raise GoldenDriftError(check, "not re-calibrated: the bundle gives NaN/inf outputs here")
    n_good = int((outputs.labels == 0).sum())
    calibration = calibrate(
        outputs.scores, outputs.maps, outputs.labels, outputs.masks, outputs.defect_types,
        mask_known=outputs.mask_known, point=point,
        good_sources={"station_validation": n_good},
    )  # fmt: skip
    choice = calibration.operating
    model.metadata = meta.calibrated(calibration)
    good_after = normalize_scores(outputs.scores[outputs.labels == 0], calibration.normalization)
    record = Recalibration(
        bundle=check.bundle,
        folder=str(folder),
        operating=point.describe(),
        n_good=n_good,
        n_defective=int((outputs.labels == 1).sum()),
        before=CalibrationPoint.of(meta.normalization),
        after=CalibrationPoint.of(calibration.normalization),
        false_reject_bound=choice.false_reject_bound if choice else None,
        miss=choice.calibration_miss if choice else None,
        good_before=_exported_good_scores(model.bundle_dir),
        good_after=tuple(float(s) for s in good_after),
    )
    log.warning(
        "%s; re-calibrated on %d good + %d defective images of %s at %s: raw image threshold "
        "%.4g -> %.4g", check.message(), record.n_good, record.n_defective, folder,
        record.operating, record.before.image_threshold_raw, record.after.image_threshold_raw,
    )  # fmt: skip
    return record


def _exported_good_scores(bundle_dir: Path) -> tuple[float, ...]:
    """The bundle's exported scores of its good validation parts (empty: none, seeded or
    unreadable; a registry threshold is then not carried across)."""
    try:
        scores = read_validation_scores(bundle_dir)
    except BundleError as exc:
        log.warning(
            "%s: validation scores unreadable, thresholds are not carried: %s", bundle_dir, exc
        )
        return ()
    if scores is None or scores.seeded:
        return ()
    return tuple(s for s, label in zip(scores.scores, scores.labels, strict=True) if label == 0)


def _operating_point(meta: BundleMetadata, check: GoldenCheck) -> OperatingPoint:
    if meta.tiling is not None:
        raise GoldenDriftError(check, "not re-calibrated: tiled bundles are re-exported instead")
    own = meta.output_calibration
    if own is None or own.operating is None:
        raise GoldenDriftError(
            check, "not re-calibrated: the bundle records no operating point (export it again)"
        )
    chosen = own.operating
    return OperatingPoint(chosen.policy, chosen.budget, chosen.max_miss, chosen.miss_bound)


def _enough_images(
    samples: tuple[Sample, ...], point: OperatingPoint, check: GoldenCheck, folder: str | Path
) -> tuple[Sample, ...]:
    """``samples`` when they can carry ``point``; else the refusal saying what is missing."""
    good = sum(s.label == 0 for s in samples)
    defective = len(samples) - good
    if point.policy == "false_reject_budget":
        needed = n_needed(point.budget)
        if good < needed:
            raise GoldenDriftError(
                check,
                f"not re-calibrated: {folder} holds {good} good images, the bundle's "
                f"{point.describe()} needs at least {needed}",
            )
    elif good < MIN_GOOD or defective == 0:
        raise GoldenDriftError(
            check,
            f"not re-calibrated: {folder} holds {good} good and {defective} defective images; "
            f"the bundle's {point.describe()} operating point needs at least {MIN_GOOD} good "
            "and one defective",
        )
    return samples


# ------------------------------------------------------------------------ records
def golden_outcome_path(registry: Registry, product: str, cpu: CpuInfo | None = None) -> Path:
    return cpu_record_path(registry.root, product, "golden", cpu)


def record_golden_outcome(registry: Registry, product: str, status: Mapping[str, object]) -> None:
    """Write this CPU's last checked golden outcome of ``product`` for the Models page."""
    if not status.get("checked"):
        return
    path = golden_outcome_path(registry, product)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"cpu": cpu_info().summary(), "checked_at": utc_now(), **status})
    except OSError as exc:  # a read-only registry must not stop the station serving
        log.warning("cannot record the golden outcome of %s: %s", product, exc)


def read_golden_outcomes(registry: Registry, product: str) -> list[dict[str, Any]]:
    """Every station CPU's last golden outcome of ``product`` (unreadable files skipped)."""
    records = [r for _, r in read_cpu_records(registry.root, product, "golden")]
    records = [r for r in records if isinstance(r, dict)]
    return sorted(records, key=lambda r: str(r.get("checked_at", "")), reverse=True)
