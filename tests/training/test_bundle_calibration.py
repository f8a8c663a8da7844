"""A real bundle's calibration with out-of-fold scores carried into its score space: the
carrying line's residual recorded, the bound not guaranteed when it is too large; none carried
into an ROI-masked bundle."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from inspection.core.operating_point import MAX_TRANSFER_RESIDUAL
from inspection.core.registry import GoodScores
from inspection.data.dataset import load_dataset
from inspection.training.bundle_calibration import calibrate_bundle, record_operating_point
from inspection.training.export import LabelledSample, run_bundle
from inspection.training.registry_export import export_splits
from tests.conftest import TrainedProduct

pytestmark = pytest.mark.slow


def _calibrate(trained: TrainedProduct, bundle: Path, good: GoodScores, *, roi: bool = False):
    splits = export_splits(trained.record, load_dataset(trained.dataset_root))
    return calibrate_bundle(
        lambda samples: run_bundle(bundle, samples), splits.validation,
        record_operating_point(trained.record), good, splits.dataset_root, roi=roi,
        make_sample=lambda path: LabelledSample(path, 0, "good"),
    )  # fmt: skip


def test_carried_scores_calibrate_when_the_line_fits(
    trained_patchcore: TrainedProduct, fp32_bundle: Path
) -> None:
    good = trained_patchcore.record.good_scores()
    operating = _calibrate(trained_patchcore, fp32_bundle, good).operating
    assert operating.good_sources["out_of_fold_train"] == len(good.out_of_fold)
    assert operating.transfer_residual is not None
    assert operating.transfer_residual <= MAX_TRANSFER_RESIDUAL


def test_a_line_that_does_not_fit_is_recorded_and_the_bound_not_guaranteed(
    trained_patchcore: TrainedProduct, fp32_bundle: Path
) -> None:
    """The torch scores of the paired images shuffled and scaled: the line links nothing, its
    residual share is recorded, far above the gate, and the bound is not guaranteed."""
    good = trained_patchcore.record.good_scores()
    names = sorted(good.validation)
    shuffled = np.random.default_rng(0).permutation([good.validation[n] for n in names])
    scrambled = {
        name: float(value) * (3.0 if index % 2 else 0.3)
        for index, (name, value) in enumerate(zip(names, shuffled, strict=True))
    }
    bad = dataclasses.replace(good, validation=scrambled, train_full_bank={})
    operating = _calibrate(trained_patchcore, fp32_bundle, bad).operating
    assert operating.transfer_residual > MAX_TRANSFER_RESIDUAL
    assert not operating.bound_guaranteed
    assert _calibrate(trained_patchcore, fp32_bundle, good).operating.bound_guaranteed


def test_an_roi_masked_bundle_takes_no_whole_image_scores(
    trained_patchcore: TrainedProduct, fp32_bundle: Path
) -> None:
    good = trained_patchcore.record.good_scores()
    operating = _calibrate(trained_patchcore, fp32_bundle, good, roi=True).operating
    assert set(operating.good_sources) == {"validation"}
    assert operating.transfer_residual is None
