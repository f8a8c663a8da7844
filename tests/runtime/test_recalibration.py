"""Re-calibration on the station's own validation images: a bundle whose graph numerics drift
is re-calibrated at its operating point when the station holds enough validation images,
and refused (saying what is missing) when it holds none or too few."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspection.core.bundle import read_bundle_metadata
from inspection.core.images import read_image
from inspection.core.operating_point import n_needed
from inspection.runtime.golden import GoldenDriftError
from inspection.runtime.inspector import Inspector
from inspection.runtime.recalibration import validation_samples
from tests.golden_helpers import BUDGET, drifting_bundle, station_folder

pytestmark = pytest.mark.slow


def test_a_drifting_bundle_is_refused_without_validation_images(
    fp32_bundle: Path, tmp_path: Path
) -> None:
    bundle = drifting_bundle(fp32_bundle, tmp_path)
    with pytest.raises(GoldenDriftError, match="golden check REFUSED") as refused:
        Inspector.from_bundle(bundle)
    assert refused.value.reason == ""


def test_a_drifting_bundle_is_recalibrated_on_the_stations_images(
    fp32_bundle: Path, tiny_product: Path, tmp_path: Path
) -> None:
    bundle = drifting_bundle(fp32_bundle, tmp_path)
    folder = station_folder(tiny_product, tmp_path)
    before = read_bundle_metadata(bundle).normalization
    inspector = Inspector.from_bundle(bundle, validation=folder)
    record = inspector.recalibration
    assert record is not None and inspector.golden is not None and not inspector.golden.passed
    assert record.n_good == 30 and record.n_defective > 0
    assert record.before.image_threshold_raw == pytest.approx(before.image_threshold_raw)
    assert record.after.image_threshold_raw != pytest.approx(before.image_threshold_raw)
    assert record.operating == f"false-reject budget {BUDGET:.1%}"
    # The served calibration is the new one, fitted on this CPU's outputs (file unchanged).
    assert inspector.metadata.normalization.image_threshold_raw == record.after.image_threshold_raw
    assert read_bundle_metadata(bundle).normalization == before
    # At the new threshold the station's good parts are rejected within the budget's bound.
    samples = validation_samples(folder)
    results = [inspector.inspect(read_image(s.path)) for s in samples]
    verdicts = [r.verdict for r in results]
    # What carries a registry threshold across: the bundle's exported good validation scores
    # and the served (re-calibrated) scores of the station's good images.
    assert len(record.good_before) == 4
    served_good = [r.score for r, s in zip(results, samples, strict=True) if s.label == 0]
    assert np.allclose(sorted(record.good_after), sorted(served_good), atol=1e-5)
    good = np.array([v == "NG" for v, s in zip(verdicts, samples, strict=True) if s.label == 0])
    assert good.mean() <= record.false_reject_bound + 1 / len(good)
    bad = [v for v, s in zip(verdicts, samples, strict=True) if s.label == 1]
    assert record.miss is not None  # the served verdicts are the new calibration's
    assert bad.count("OK") / len(bad) == pytest.approx(record.miss)


def test_too_few_good_images_refuse_the_recalibration_with_the_count_needed(
    fp32_bundle: Path, tiny_product: Path, tmp_path: Path
) -> None:
    bundle = drifting_bundle(fp32_bundle, tmp_path)
    needed = n_needed(BUDGET)
    with pytest.raises(GoldenDriftError, match=f"holds 6 good images.*at least {needed}") as err:
        Inspector.from_bundle(bundle, validation=tiny_product)  # its test split: 6 good
    assert "not re-calibrated" in err.value.reason


def test_a_validation_folder_without_good_images_is_named(tmp_path: Path) -> None:
    from inspection.core.errors import ConfigError

    (tmp_path / "scratch").mkdir()
    with pytest.raises(ConfigError, match="has no 'good' folder"):
        validation_samples(tmp_path)
