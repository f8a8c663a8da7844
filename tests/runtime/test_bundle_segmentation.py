"""The segmentation an export puts in a bundle is the one calibration selects on the bundle's
own validation outputs, faint-peak level included (the session's tiny PatchCore)."""

from __future__ import annotations

import pytest

from inspection.core.bundle import verify_bundle
from inspection.core.calibration import calibrated_segmentation
from inspection.core.segmentation import PEAK_LEVELS
from inspection.data.dataset import load_dataset
from inspection.training.bundle_runs import run_bundle
from inspection.training.registry_export import split_samples


@pytest.mark.slow
def test_the_bundle_carries_what_its_validation_outputs_select(
    fp32_bundle, trained_patchcore
) -> None:
    tp = trained_patchcore
    meta = verify_bundle(fp32_bundle)
    samples = split_samples(tp.record, load_dataset(tp.dataset_root), "validation")
    raw = run_bundle(fp32_bundle, samples)
    selected = calibrated_segmentation(
        meta.normalization,
        raw.scores,
        raw.maps,
        raw.masks,
        raw.labels,
        raw.defect_types,
        raw.mask_known,
    )
    assert selected.peak_level in PEAK_LEVELS
    assert meta.segmentation == selected == meta.output_calibration.segmentation
