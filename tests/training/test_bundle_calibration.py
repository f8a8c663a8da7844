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
from inspection.core.operating_point import (
    MAX_TRANSFER_RESIDUAL,
    OperatingPoint,
    choose_threshold,
    convolved,
    fewest_below_largest,
)
from inspection.data.dataset import load_dataset
from inspection.training.bundle_calibration import (
    _transferred,
    calibrate_bundle,
    record_operating_point,
)
from inspection.training.bundle_runs import run_bundle
from inspection.training.export import LabelledSample
from inspection.training.registry_export import export_splits
from tests.conftest import TrainedProduct
from tests.training.test_operating import assert_carries_its_certificate

pytestmark = pytest.mark.slow


def _calibrate(trained: TrainedProduct, bundle: Path, good: GoodScores, *, roi: bool = False):
    splits = export_splits(trained.record, load_dataset(trained.dataset_root))
    return calibrate_bundle(
        lambda samples: run_bundle(bundle, samples), splits.validation,
        record_operating_point(trained.record), good, splits.dataset_root, roi=roi,
        make_sample=lambda path: LabelledSample(path, 0, "good"),
    )  # fmt: skip


def _carry(trained: TrainedProduct, bundle: Path, good: GoodScores):
    """The bundle's validation outputs, and ``good``'s scores carried onto it with their transfer."""
    splits = export_splits(trained.record, load_dataset(trained.dataset_root))
    run = lambda samples: run_bundle(bundle, samples)  # noqa: E731
    outputs = run(splits.validation)
    carried, transfer = _transferred(
        run, splits.validation, outputs, good, splits.dataset_root,
        lambda path: LabelledSample(path, 0, "good"),
    )  # fmt: skip
    return outputs, carried, transfer


def test_carried_scores_calibrate_when_the_line_fits(
    trained_patchcore: TrainedProduct, fp32_bundle: Path
) -> None:
    good = trained_patchcore.record.good_scores()
    calibration = _calibrate(trained_patchcore, fp32_bundle, good)
    operating = calibration.operating
    assert operating.good_sources["out_of_fold_train"] == len(good.out_of_fold)
    assert not operating.exchangeable
    outputs, carried, _ = _carry(trained_patchcore, fp32_bundle, good)
    own = outputs.scores[outputs.labels == 0] if good.validation_calibrates else np.empty(0)
    assert_carries_its_certificate(calibration, np.r_[carried, own])
    assert operating.transfer_residual is not None
    assert operating.transfer_residual <= MAX_TRANSFER_RESIDUAL


def test_enough_never_trained_scores_certify_a_bundle_without_carried_ones(
    trained_patchcore: TrainedProduct, fp32_bundle: Path
) -> None:
    """At a budget its never-trained good images (validation, and held-out ones passed as
    calibration images) suffice for on their own (``fewest_below_largest``), the bundle
    carries no out-of-fold score and its record says which images certified it."""
    splits = export_splits(trained_patchcore.record, load_dataset(trained_patchcore.dataset_root))
    n_good = sum(sample.label == 0 for sample in splits.validation)
    held_aside = [sample for sample in splits.test if sample.label == 0]
    point = OperatingPoint(budget=0.5)
    assert n_good + len(held_aside) >= fewest_below_largest(point.budget)
    calibration = calibrate_bundle(
        lambda samples: run_bundle(fp32_bundle, samples), splits.validation, point,
        trained_patchcore.record.good_scores(), splits.dataset_root,
        make_sample=lambda path: LabelledSample(path, 0, "good"), held_aside=held_aside,
    )  # fmt: skip
    operating = calibration.operating
    assert operating.good_sources == {"validation": n_good, "calibration": len(held_aside)}
    assert operating.exchangeable and operating.transfer_residual is None
    validation = run_bundle(fp32_bundle, splits.validation)
    validation_good = validation.scores[validation.labels == 0]
    own = run_bundle(fp32_bundle, held_aside).scores
    assert_carries_its_certificate(calibration, np.r_[own, validation_good])


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
    outputs, carried, transfer = _carry(trained_patchcore, fp32_bundle, bad)
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


def test_a_fused_bundle_convolves_its_carried_scores_as_the_plain_path_does() -> None:
    """A fused bundle's out-of-fold scores: each carried local score, plus each signed pair
    residual (1 / R each), fused with the image's own component distance. One paired image far
    below the line, whose |residual| the rule before raised every carried score by, lifts the
    threshold at the budget by far less than that."""
    from inspection.core.global_context import component_vectors
    from inspection.core.operating_point import OperatingPoint, fit_transfer
    from inspection.training.bundle_calibration import fused_out_of_fold
    from inspection.training.global_context import (
        ModelOutputs,
        TrainOutOfFold,
        fit_global_context,
        out_of_fold_fused,
    )

    rng = np.random.default_rng(0)
    n = 24
    images = [rng.random((32, 32, 3), dtype=np.float32) for _ in range(n)]
    names = [f"train/good/{i:03d}.png" for i in range(n)]
    torch_full = rng.normal(10.0, 1.0, n)
    bundle_local = torch_full + rng.normal(0.0, 0.05, n)
    bundle_local[3] -= 3.0  # the bundle scores one paired image far below the line
    torch_val = rng.normal(10.0, 1.0, 6)
    val_names = [f"test/good/{i:03d}.png" for i in range(6)]
    validation_local = dict(zip(val_names, torch_val + rng.normal(0.0, 0.05, 6), strict=True))
    good = GoodScores(
        out_of_fold=dict(zip(names, rng.normal(14.0, 1.0, n), strict=True)),
        validation=dict(zip(val_names, torch_val, strict=True)),
        train_full_bank={name: float(torch_full[i]) for i, name in enumerate(names[:8])},
    )
    local_val = np.asarray(list(validation_local.values()))
    context = fit_global_context(["colour"], images, validation_local_raw=local_val)
    outputs = ModelOutputs(bundle_local, np.empty((n, 0)), images)

    scores, weights = fused_out_of_fold(context, outputs, names, validation_local, good)

    transfer = fit_transfer(np.r_[torch_val, torch_full[:8]], np.r_[local_val, bundle_local[:8]])
    assert transfer.n_pairs == 14 and -min(transfer.residuals) == transfer.max_residual > 2.0
    assert scores.shape == weights.shape == (n * 14,) and weights.sum() == pytest.approx(n)
    vectors = component_vectors(context.components, images)
    carried = transfer.apply(np.asarray(list(good.out_of_fold.values())))

    def fused(local: np.ndarray) -> np.ndarray:
        return out_of_fold_fused(context, vectors, TrainOutOfFold(np.arange(n), local))

    for column, residual in enumerate(transfer.residuals):
        np.testing.assert_allclose(scores.reshape(n, 14)[:, column], fused(carried + residual))
    point = OperatingPoint()
    threshold = choose_threshold(scores, point, good_weights=weights).threshold
    as_they_are = choose_threshold(fused(carried), point).threshold
    largest = choose_threshold(fused(carried + transfer.max_residual), point).threshold
    assert as_they_are < threshold < as_they_are + 0.5 * (largest - as_they_are)


@pytest.mark.parametrize(
    ("n_good", "budget", "told"),
    [
        (48, 0.01, "needs >= 199 good calibration images at a 1 % budget to rank it below the largest; has 48"),
        (120, 0.01, "needs >= 199 good calibration images at a 1 % budget to rank it below the largest; has 120"),
        (38, 0.05, "needs >= 39 good calibration images at a 5 % budget to rank it below the largest; has 38"),
        (48, 0.05, None),
        (199, 0.01, None),
    ],
)  # fmt: skip
def test_a_refusal_says_how_many_good_images_rank_the_threshold_below_the_largest(
    n_good: int, budget: float, told: str | None
) -> None:
    """Gravel's INT8 refusal at 1 %: 48 good calibration scores (out of fold; its validation
    ones fitted the head's standardisers) leave the threshold above the largest, which INT8's
    score noise on good parts moves; the refusal names the count that ranks it below."""
    from inspection.core.calibration import calibrate
    from inspection.core.operating_point import OperatingPoint
    from inspection.training.bundle_calibration import REFUSAL_OPTIONS, refusal_advice

    rng = np.random.default_rng(1)
    defects = rng.normal(5.0, 1.0, 4)
    masks = np.zeros((4, 8, 8), bool)
    masks[:, 2, 3] = True
    calibration = calibrate(
        defects, masks.astype(np.float32), np.ones(4), masks, ["crack"] * 4,
        point=OperatingPoint(budget=budget), extra_good_scores=rng.normal(0.0, 1.0, n_good),
        good_sources={"out_of_fold_train": n_good}, validation_good=False,
    )  # fmt: skip
    said = refusal_advice(calibration)
    if told is None:
        assert said == f"Try {REFUSAL_OPTIONS}."
        return
    assert said.startswith(
        f"Its threshold sits above the largest of its {n_good} good calibration scores "
        f"({n_good} out-of-fold training)"
    )
    assert told in said and "train/good" in said and said.endswith(f"or try {REFUSAL_OPTIONS}.")


def test_held_aside_good_images_calibrate_the_model_and_every_bundle_on_its_own_scores(
    tmp_path: Path,
) -> None:
    """Good images in calibration/good are scored by the trained model (recorded per file)
    and again by each bundle, and join its calibration set; a changed one stops the export."""
    from inspection.core.errors import BundleError
    from inspection.core.product_config import model_config_from_mapping
    from inspection.core.registry import Registry
    from inspection.data.demo import write_demo_product
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import RegistryExport, export_bundle
    from inspection.training.train import train_model
    from tests.conftest import TINY_PATCHCORE

    root = write_demo_product(
        tmp_path, "brick", seed=7, n_train=12, n_test_good=6, n_test_per_defect=2, size=64,
        n_calibration=10,
    )  # fmt: skip
    registry = Registry(tmp_path / "registry")
    config = model_config_from_mapping(TINY_PATCHCORE, where="tests TINY_PATCHCORE")
    outcome = train_model(
        config, load_dataset(root), product="brick", registry=registry, progress=False
    )
    recorded = outcome.record.good_scores().calibration
    assert sorted(recorded) == [f"calibration/good/{i:03d}.png" for i in range(10)]
    trained = outcome.metrics.calibration.operating
    assert trained.good_sources["calibration"] == 10
    assert trained.n_good == sum(trained.good_sources.values())

    source = RegistryExport(version=outcome.record.version)
    result = export_bundle(registry, "brick", ExportOptions(precision="fp32"), source)
    operating = result.metadata.output_calibration.operating
    assert operating.good_sources == trained.good_sources
    own = run_bundle(result.bundle_dir, [LabelledSample(root / n, 0, "good") for n in recorded])
    below = int((own.scores < operating.threshold).sum())
    assert below >= 10 - round(operating.calibration_false_reject * operating.n_good)

    (root / "calibration/good/003.png").write_bytes((root / "train/good/000.png").read_bytes())
    with pytest.raises(BundleError, match=r"calibration file\(s\).*calibration/good/003.png"):
        export_splits(outcome.record, load_dataset(root))
