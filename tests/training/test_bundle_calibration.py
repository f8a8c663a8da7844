"""A real bundle's calibration with out-of-fold scores carried into its score space: the
carrying line's residual recorded; above the gate the threshold is set on the carried scores
convolved with the line's signed residuals; an ROI bundle carries scores masked by the same
ROI, never whole-image ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from inspection.core.model_record import GoodScores
from inspection.core.operating_point import MAX_TRANSFER_RESIDUAL, choose_threshold, convolved
from inspection.data.dataset import load_dataset
from inspection.training.bundle_calibration import (
    _transferred,
    calibrate_bundle,
    record_operating_point,
)
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


def test_a_line_that_does_not_fit_raises_the_threshold_for_its_residuals(
    trained_patchcore: TrainedProduct, fp32_bundle: Path
) -> None:
    """The torch scores of the paired training images shuffled and scaled: the line links
    nothing, its residual share is far above the gate, and the threshold, set on the carried
    scores convolved with the residuals, rises above the one they set as they are."""
    good = trained_patchcore.record.good_scores()
    names = sorted(good.train_full_bank)
    shuffled = np.random.default_rng(0).permutation([good.train_full_bank[n] for n in names])
    scrambled = {
        name: float(value) * (3.0 if index % 2 else 0.3)
        for index, (name, value) in enumerate(zip(names, shuffled, strict=True))
    }
    bad = dataclasses.replace(good, train_full_bank=scrambled)
    operating = _calibrate(trained_patchcore, fp32_bundle, bad).operating
    assert operating.transfer_residual > MAX_TRANSFER_RESIDUAL
    assert operating.transfer_raise is not None and operating.transfer_raise > 0
    assert operating.bound_guaranteed and "raised by" in operating.describe()
    fitting = _calibrate(trained_patchcore, fp32_bundle, good).operating
    assert fitting.bound_guaranteed and fitting.transfer_raise is None


def test_an_roi_masked_bundle_takes_no_whole_image_scores(
    trained_patchcore: TrainedProduct, fp32_bundle: Path
) -> None:
    good = trained_patchcore.record.good_scores()
    operating = _calibrate(trained_patchcore, fp32_bundle, good, roi=True).operating
    assert set(operating.good_sources) == {"validation"}
    assert operating.transfer_residual is None


def test_an_roi_bundle_carries_scores_masked_by_the_same_roi(
    tiny_product: Path, tmp_path: Path
) -> None:
    """Trained with an ROI, the version's torch scores are masked as its bundle masks its own:
    the FP32 ROI bundle takes the out-of-fold scores, through a line within the gate."""
    from inspection.core.product_config import model_config_from_mapping
    from inspection.core.registry import Registry
    from inspection.core.roi import RoiSpec
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle
    from inspection.training.train import train_model
    from tests.conftest import TINY_PATCHCORE

    roi = RoiSpec((128, 128), include=(((0, 0), (80, 0), (80, 128), (0, 128)),))
    registry = Registry(tmp_path / "registry")
    config = model_config_from_mapping(TINY_PATCHCORE, where="tests TINY_PATCHCORE")
    record = train_model(
        config, load_dataset(tiny_product), product="brick", registry=registry, progress=False,
        roi=roi,
    ).record  # fmt: skip
    good = record.good_scores()
    assert good.roi_masked and good.out_of_fold
    configs = tmp_path / "configs" / "products"
    configs.mkdir(parents=True)
    (configs / "brick.yaml").write_text(
        "roi:\n  reference_size: [128, 128]\n  include:\n    - [[0, 0], [80, 0], [80, 128], [0, 128]]\n"
    )
    source = RegistryExport(version=record.version, configs_dir=configs.parent)
    result = export_bundle(registry, "brick", ExportOptions(precision="fp32"), source)
    assert result.metadata.roi == roi
    operating = result.metadata.output_calibration.operating
    assert operating.good_sources["out_of_fold_train"] == len(good.out_of_fold)
    assert operating.transfer_residual <= MAX_TRANSFER_RESIDUAL
    assert operating.transfer_raise is None


def test_one_pair_far_below_the_line_does_not_raise_the_threshold_by_its_distance(
    trained_patchcore: TrainedProduct, fp32_bundle: Path
) -> None:
    """One paired training image's torch score raised by 0.3 of their spread: the bundle
    scores it far below the line, the largest |residual|, which the rule before raised every carried
    score by. The threshold is the one the carried scores convolved with the signed residuals
    set (with the validation good scores), and rises by less than that |residual|."""
    good = trained_patchcore.record.good_scores()
    middle = sorted(good.train_full_bank)[len(good.train_full_bank) // 2]
    spread = max(good.train_full_bank.values()) - min(good.train_full_bank.values())
    moved = {**good.train_full_bank, middle: good.train_full_bank[middle] + 0.3 * spread}
    bad = dataclasses.replace(good, train_full_bank=moved)
    calibration = _calibrate(trained_patchcore, fp32_bundle, bad)
    operating = calibration.operating
    splits = export_splits(trained_patchcore.record, load_dataset(trained_patchcore.dataset_root))
    run = lambda samples: run_bundle(fp32_bundle, samples)  # noqa: E731
    outputs = run(splits.validation)
    carried, transfer = _transferred(
        run, splits.validation, outputs, bad, splits.dataset_root,
        lambda path: LabelledSample(path, 0, "good"),
    )  # fmt: skip
    residuals = np.asarray(transfer.residuals)
    assert operating.transfer_residual > MAX_TRANSFER_RESIDUAL
    assert -residuals.min() == transfer.max_residual > 2 * residuals.max()
    sums, weights = convolved(carried, residuals)
    own = outputs.scores[outputs.labels == 0] if good.validation_calibrates else np.empty(0)
    expected = choose_threshold(
        np.r_[sums, own], record_operating_point(trained_patchcore.record),
        good_weights=np.r_[weights, np.ones(own.size)],
    )  # fmt: skip
    assert operating.threshold == pytest.approx(expected.threshold)
    assert operating.n_good == len(carried) + own.size
    assert 0 < operating.transfer_raise < transfer.max_residual
