"""Calibrate an exported bundle at its product's operating point, on the bundle's own outputs.

The bundle scores the validation images itself; the version's out-of-fold torch scores join its
good ones once carried into the bundle's score space by a line fitted on good images both scored
(``core.operating_point.fit_transfer``). When the line's largest residual exceeds
``MAX_TRANSFER_RESIDUAL`` of the threshold's margin, each carried score stands for its sums with
every good-pair residual (``convolved``): one good pair cannot decide the threshold, and no
carried score is dropped. Good calibration images (never trained on) are scored by the bundle
itself; once they and the validation images suffice (``pools_out_of_fold``) nothing is carried.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from inspection.core.calibration import Calibration, calibrate
from inspection.core.fingerprint import path_of, relative_name
from inspection.core.global_context import GlobalContext, component_vectors
from inspection.core.model_record import GoodScores
from inspection.core.operating_point import (
    MAX_TRANSFER_RESIDUAL,
    OUT_OF_FOLD,
    OperatingPoint,
    ScoreTransfer,
    convolved,
    extra_good_scores,
    fewest_below_largest,
    fit_transfer,
    pools_out_of_fold,
)
from inspection.core.outputs import RawOutputs
from inspection.core.product_config import model_config_from_mapping
from inspection.training.global_context import ModelOutputs, TrainOutOfFold, out_of_fold_fused

log = logging.getLogger(__name__)


class _Labelled(Protocol):
    path: Path
    label: int
    defect_type: str
    mask_path: Path | None


RunBundle = Callable[[Sequence[_Labelled]], RawOutputs]
Carried = tuple[np.ndarray, np.ndarray | None]
"""(G,) good scores carried into a bundle's space and how many images each counts for (None:
one each; ``convolved``)."""


def calibrate_bundle(
    run: RunBundle,
    validation: Sequence[_Labelled],
    point: OperatingPoint,
    good_scores: GoodScores,
    dataset_root: Path,
    *,
    fused: bool = False,
    fused_train_good: Carried | None = None,
    roi: bool = False,
    make_sample: Callable[[Path], _Labelled] | None = None,
    held_aside: Sequence[_Labelled] = (),
) -> Calibration:
    """The bundle's ``Calibration``: ``run`` scores labelled samples, ``make_sample`` makes a
    good sample of a training image path; ``fused``: a global context's scores (with
    ``fused_train_good`` among them); ``held_aside``: the good calibration images, scored here."""
    outputs = run(validation)
    own = run(held_aside).scores.astype(np.float64) if held_aside else np.empty(0)
    with_validation = fused or good_scores.validation_calibrates

    n_validation = int((outputs.labels == 0).sum()) if with_validation else None

    def calibrated(oof: np.ndarray | None, weights: np.ndarray | None = None) -> Calibration:
        extra, weights, sources = extra_good_scores(point.budget, n_validation, own, oof, weights)
        return calibrate(
            outputs.scores, outputs.maps, outputs.labels, outputs.masks, outputs.defect_types,
            mask_known=outputs.mask_known, point=point, extra_good_scores=extra,
            good_sources=sources, validation_good=with_validation, extra_weights=weights,
        )  # fmt: skip

    if not pools_out_of_fold(point.budget, own.size + (n_validation or 0)):
        return calibrated(None)
    if fused:
        return calibrated(*(fused_train_good or (None, None)))
    if not good_scores.out_of_fold or make_sample is None:
        return calibrated(None)
    if roi and not good_scores.roi_masked:
        log.warning("the out-of-fold scores are of whole images, the bundle's of its ROI: left out")
        return calibrated(None)
    pairs = list(zip(held_aside, own, strict=True))
    oof, transfer = _transferred(
        run, validation, outputs, good_scores, dataset_root, make_sample, pairs
    )
    calibration = calibrated(oof)
    if transfer is None or calibration.operating is None:
        return calibration
    good = np.r_[oof, own, outputs.scores[outputs.labels == 0] if with_validation else []]
    share = transfer.residual_share(calibration.operating.threshold, good)
    if share <= MAX_TRANSFER_RESIDUAL:
        return _with_transfer(calibration, share, None)
    raised = calibrated(*convolved(oof, np.asarray(transfer.residuals)))
    rise = (raised.operating.threshold if raised.operating else math.nan) - (
        calibration.operating.threshold
    )
    log.info(  # handled: nothing for the user to do
        "the bundle scores good parts a little unlike the trained model, so its threshold was "
        "raised by %+.4g raw to keep the false-reject budget (the out-of-fold scores' residual "
        "is %.1f%% of the threshold's margin, above %.0f%%; %d pairs)",
        rise, 100 * share, 100 * MAX_TRANSFER_RESIDUAL, transfer.n_pairs,
    )  # fmt: skip
    return _with_transfer(raised, share, rise)


def _with_transfer(calibration: Calibration, share: float, raise_by: float | None) -> Calibration:
    """``calibration`` recording the transfer residual share and the threshold's rise."""
    if calibration.operating is None:
        return calibration
    operating = dataclasses.replace(
        calibration.operating,
        transfer_residual=round(min(share, 1e6), 6),
        transfer_raise=None if raise_by is None else round(raise_by, 6),
    )
    return dataclasses.replace(calibration, operating=operating)


def _transferred(
    run: RunBundle,
    validation: Sequence[_Labelled],
    outputs: RawOutputs,
    good: GoodScores,
    root: Path,
    make_sample: Callable[[Path], _Labelled],
    held_aside: Sequence[tuple[_Labelled, float]] = (),
) -> tuple[np.ndarray, ScoreTransfer | None]:
    """The out-of-fold torch scores in this bundle's score space and the line that carried them,
    fitted on good images only (a defect's large score would tilt it where the threshold lies);
    None: no good image scored by both. ``held_aside``: calibration images, bundle-scored."""
    source, target = [], []
    scored = [*zip(validation, outputs.scores, strict=True), *held_aside]
    for sample, own in scored:
        rel = relative_name(sample.path, root)
        for recorded in (good.validation, good.calibration):
            if rel in recorded and sample.label == 0:
                source.append(recorded[rel])
                target.append(float(own))
    names = sorted(good.train_full_bank)
    if names:
        bank = run([make_sample(path_of(root, name)) for name in names])
        source.extend(good.train_full_bank[n] for n in names)
        target.extend(float(v) for v in bank.scores)
    oof = np.asarray(list(good.out_of_fold.values()), dtype=np.float64)
    if not source:
        log.warning(
            "no good image scored by both the torch model and the bundle: out-of-fold scores "
            "used as they are"
        )
        return oof, None
    transfer = fit_transfer(np.asarray(source), np.asarray(target))
    log.info(
        "out-of-fold scores carried to the bundle: x %.4f %+.4f on %d pairs (max residual %.4g)",
        transfer.slope, transfer.intercept, transfer.n_pairs, transfer.max_residual,
    )  # fmt: skip
    return transfer.apply(oof), transfer


def fused_out_of_fold(
    context: GlobalContext,
    train: ModelOutputs,
    train_names: Sequence[str],
    validation_local: Mapping[str, float],
    good: GoodScores,
) -> Carried:
    """The training images' out-of-fold fused scores in a fused bundle's space: the version's
    out-of-fold local scores carried and convolved as ``calibrate_bundle`` does (always: the fused
    threshold has no margin to gate the line on), fused with the bundle's own component distances.
    ``train``: the bundle's outputs of the training images; ``validation_local``: its local raw
    scores of the good validation images, by relative name."""
    row = {name: index for index, name in enumerate(train_names)}
    pairs = [(good.validation[n], v) for n, v in validation_local.items() if n in good.validation]
    pairs += [(v, train.local_raw[row[n]]) for n, v in good.train_full_bank.items() if n in row]
    names = [name for name in good.out_of_fold if name in row]
    local = np.asarray([good.out_of_fold[name] for name in names], dtype=np.float64)
    rows, weights = np.asarray([row[name] for name in names], dtype=int), None
    if pairs:
        transfer = fit_transfer(*(np.asarray(side) for side in zip(*pairs, strict=True)))
        local, weights = convolved(transfer.apply(local), np.asarray(transfer.residuals))
        rows = np.repeat(rows, transfer.n_pairs)  # convolved's sums run image by image
    vectors = component_vectors(context.components, train.images, train.pooled)
    return out_of_fold_fused(context, vectors, TrainOutOfFold(rows, local)), weights


REFUSAL_OPTIONS = "more INT8 calibration images (--calibration-size), FP16, or --force"
"""What a refused export may try (its quantisation's options) when its threshold is ranked."""
_SOURCE_NAMES = {OUT_OF_FOLD: "out-of-fold training"}


def refusal_advice(calibration: Calibration) -> str:
    """What to do about a bundle its export gate refused, first what ``calibration`` lacks: a
    threshold above every good calibration score moves with any one good part's noise."""
    choice = calibration.operating
    if choice is None or choice.policy != "false_reject_budget" or choice.rank != choice.n_good:
        return f"Try {REFUSAL_OPTIONS}."
    sources = (choice.good_sources or {}).items()
    named = ", ".join(f"{n} {_SOURCE_NAMES.get(name, name)}" for name, n in sources)
    return (
        f"Its threshold sits above the largest of its {choice.n_good} good calibration scores "
        f"({named}), where this precision's score noise on any one good part moves it: needs "
        f">= {fewest_below_largest(choice.budget)} good calibration images at a "
        f"{100 * choice.budget:g} % budget to rank it below the largest; has {choice.n_good}. "
        f"Add good images to the dataset's train/good and retrain, or try {REFUSAL_OPTIONS}."
    )


def record_operating_point(record: object) -> OperatingPoint:
    """The operating point a version was trained with (older versions: the default)."""
    config = model_config_from_mapping(record.config, where=f"{record.model_version} config")  # type: ignore[attr-defined]
    return config.operating_point
