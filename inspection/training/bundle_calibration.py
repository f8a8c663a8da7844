"""Calibrate an exported bundle at its product's operating point, on the bundle's own outputs.

The bundle scores the version's validation images itself. The out-of-fold training scores
the version recorded (``core.registry.GoodScores``) are the torch model's; they are carried
into the bundle's own score space by a line fitted on images both scored (the validation
images and some training images scored by the full bank, ``core.operating_point.fit_transfer``)
and join the bundle's own validation good scores in ``core.calibration.calibrate``.
A bundle with a global context (fused scores) calibrates on its validation scores alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from inspection.core.calibration import Calibration, calibrate
from inspection.core.fingerprint import relative_name
from inspection.core.operating_point import OperatingPoint, fit_transfer
from inspection.core.outputs import RawOutputs
from inspection.core.registry import GoodScores

log = logging.getLogger(__name__)


class _Labelled(Protocol):
    path: Path
    label: int
    defect_type: str
    mask_path: Path | None


RunBundle = Callable[[Sequence[_Labelled]], RawOutputs]


def calibrate_bundle(
    run: RunBundle,
    validation: Sequence[_Labelled],
    point: OperatingPoint,
    good_scores: GoodScores,
    dataset_root: Path,
    *,
    fused: bool = False,
    make_sample: Callable[[Path], _Labelled] | None = None,
) -> Calibration:
    """The bundle's ``Calibration``: ``run`` runs it on labelled samples (``run_bundle``);
    ``make_sample`` builds a good sample of a training image path (for the score pairs)."""
    outputs = run(validation)
    extra, sources = None, {"validation": int((outputs.labels == 0).sum())}
    if good_scores.out_of_fold and not fused and make_sample is not None:
        extra = _transferred(run, validation, outputs, good_scores, dataset_root, make_sample)
        sources["out_of_fold_train"] = len(extra)
    return calibrate(
        outputs.scores, outputs.maps, outputs.labels, outputs.masks, outputs.defect_types,
        mask_known=outputs.mask_known, point=point, extra_good_scores=extra,
        good_sources=sources,
    )  # fmt: skip


def _transferred(
    run: RunBundle,
    validation: Sequence[_Labelled],
    outputs: RawOutputs,
    good: GoodScores,
    root: Path,
    make_sample: Callable[[Path], _Labelled],
) -> np.ndarray:
    """The out-of-fold torch scores in this bundle's score space."""
    source, target = [], []
    for sample, own in zip(validation, outputs.scores, strict=True):
        rel = relative_name(sample.path, root)
        if rel in good.validation:
            source.append(good.validation[rel])
            target.append(float(own))
    names = sorted(good.train_full_bank)
    if names:
        bank = run([make_sample(root / name) for name in names])
        source.extend(good.train_full_bank[n] for n in names)
        target.extend(float(v) for v in bank.scores)
    oof = np.asarray(list(good.out_of_fold.values()), dtype=np.float64)
    if not source:
        log.warning(
            "no image scored by both the torch model and the bundle: out-of-fold scores used as they are"
        )
        return oof
    transfer = fit_transfer(np.asarray(source), np.asarray(target))
    log.info(
        "out-of-fold scores carried to the bundle: x %.4f %+.4f on %d pairs (max residual %.4g)",
        transfer.slope, transfer.intercept, transfer.n_pairs, transfer.max_residual,
    )  # fmt: skip
    return transfer.apply(oof)


def record_operating_point(record: object) -> OperatingPoint:
    """The operating point a registered version was trained with (its ``config``; versions
    recorded before operating points: the default)."""
    from inspection.core.product_config import model_config_from_mapping

    config = model_config_from_mapping(record.config, where=f"{record.model_version} config")  # type: ignore[attr-defined]
    return config.operating_point
