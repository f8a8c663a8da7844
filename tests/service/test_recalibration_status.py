"""A drifting bundle re-calibrated on the station's validation images: the outcome, worst drift
and before/after on /healthz and /metrics, and in the registry for the dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.core.registry import Registry
from inspection.dashboard.models import golden_outcome_frame
from tests.golden_helpers import drifting_bundle, station_folder

from .helpers import PRODUCT, V1, serve, station_config

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("with_images", [True, False])
def test_recalibrated_or_refused_on_healthz_metrics_and_dashboard(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path, with_images: bool
) -> None:
    registry = Registry(tmp_path / "registry")
    registry.bundles.add_bundle(PRODUCT, drifting_bundle(fp32_bundle, tmp_path), V1)
    registry.journal.promote(PRODUCT, V1, actor="tests", reason="drifts on this CPU")
    registry.journal.set_threshold(
        PRODUCT, 0.8, actor="tests", reason="set for the old calibration"
    )
    images = {PRODUCT: station_folder(tiny_product, tmp_path)} if with_images else {}
    with serve(station_config(tmp_path, validation_images=images)) as served:
        status = served.ops("/healthz").json()["products"][PRODUCT]
        golden = status["golden"]
        assert golden["passed"] is False and golden["worst_drift"] > golden["tolerance"]
        outcome = "recalibrated" if with_images else "refused"
        assert golden["outcome"] == outcome
        assert status["loaded"] is with_images
        if with_images:  # served at its own operating point, not the old calibration's 0.8
            assert status["threshold"] == 0.5
            assert golden["threshold_not_applied"].startswith("threshold v1 (0.8000) was set")
            assert "v1 (0.8000)" in golden_outcome_frame(registry, PRODUCT)["note"].iloc[0]
            served.station.models.refresh()
            assert served.ops("/healthz").json()["products"][PRODUCT]["threshold"] == 0.5
            registry.journal.set_threshold(
                PRODUCT, 0.6, actor="tests", reason="a 10 % budget", budget=0.10
            )
            served.station.models.refresh()
            after = served.ops("/healthz").json()["products"][PRODUCT]
            carried = after["golden"]["threshold_carried"]
            assert (carried["version"], carried["from"]) == (2, 0.6)
            assert after["threshold"] == carried["to"] not in (0.5, 0.6)
            assert "threshold_not_applied" not in after["golden"]
        else:
            assert "threshold_not_applied" not in golden
        metrics = served.ops("/metrics").text
        labels = f'bundle_id="{V1}",outcome="{outcome}",precision="f32",product="{PRODUCT}"'
        assert f"inspection_golden_outcome{{{labels}}} 1.0" in metrics
    if with_images:
        recal = golden["recalibration"]
        assert recal["n_good"] == 30
        assert recal["before"]["image_threshold_raw"] != recal["after"]["image_threshold_raw"]
    frame = golden_outcome_frame(registry, PRODUCT)
    assert frame["outcome"].tolist() == [outcome]
    if with_images:  # the note went once the newer threshold was carried
        assert "not applied" not in frame["note"].iloc[0]
    assert bool(frame["threshold_raw_after"].notna().all()) is with_images
