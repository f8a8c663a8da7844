"""The station's golden check on /healthz and /metrics: passed for the served bundle, refused
(with its worst drift) for a promoted bundle whose graph numerics changed."""

from __future__ import annotations

from pathlib import Path

from tests.golden_helpers import perturb_weights

from .helpers import PRODUCT, V1, V3, Bundles, serve, serving_registry, station_config


def test_golden_outcome_on_healthz_and_metrics(tmp_path: Path, bundles: Bundles) -> None:
    registry = serving_registry(tmp_path / "registry", bundles)
    with serve(station_config(tmp_path)) as served:
        golden = served.ops("/healthz").json()["products"][PRODUCT]["golden"]
        assert golden["bundle_id"] == V1 and golden["checked"] and golden["passed"]
        assert 0 <= golden["worst_drift"] < golden["tolerance"]
        assert golden["precision"] == "f32" and golden["kernels"]
        metrics = served.ops("/metrics").text
        labels = f'bundle_id="{V1}",precision="f32",product="{PRODUCT}"'
        assert f"inspection_golden_passed{{{labels}}} 1.0" in metrics

        registry.bundles.add_bundle(PRODUCT, bundles.v3, V3)
        perturb_weights(registry.bundles.bundle_dir(PRODUCT, V3), 0.02)
        registry.journal.promote(PRODUCT, V3, actor="tests", reason="a conversion gone wrong")
        served.station.models.refresh()

        status = served.ops("/healthz").json()["products"][PRODUCT]
        assert status["bundle_id"] == V1  # the old bundle keeps serving
        assert "golden check REFUSED" in status["problem"]
        golden = status["golden"]
        assert golden["bundle_id"] == V3 and golden["passed"] is False
        assert golden["worst_drift"] > golden["tolerance"]
        metrics = served.ops("/metrics").text
        assert (
            f'inspection_golden_passed{{bundle_id="{V3}",precision="f32",product="{PRODUCT}"}} 0.0'
            in metrics
        )
