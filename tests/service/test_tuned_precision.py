"""The station serves the measured-fastest gated bundle and shows it in /healthz and /metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from inspection.core.registry import Registry
from inspection.runtime.hardware import cpu_info
from inspection.runtime.tuning import (
    TUNING_SCHEMA,
    PrecisionMeasurement,
    TuningRecord,
    read_tuning_row,
    write_tuning,
)

from .helpers import PRODUCT, V1, serve, station_config

FP16 = "v0001-fp16"


def _two_precisions(root: Path, fp32_bundle: Path, fp16_bundle: Path) -> Registry:
    registry = Registry(root / "registry")
    registry.bundles.add_bundle(PRODUCT, fp32_bundle, V1)
    registry.bundles.add_bundle(PRODUCT, fp16_bundle, FP16)
    registry.journal.promote(PRODUCT, V1, actor="tests", reason="initial")
    return registry


def _record(chosen: str) -> TuningRecord:
    measurements = (
        PrecisionMeasurement(V1, "fp32", 10.0, 12.0, 100.0, True, "fp32 reference"),
        PrecisionMeasurement(FP16, "fp16", 7.0, 8.0, 140.0, True, "drop 0.0"),
    )
    return TuningRecord(
        schema_version=TUNING_SCHEMA,
        product=PRODUCT,
        live_bundle_id=V1,
        model_version=f"{PRODUCT}/v0001",
        chosen_bundle_id=chosen,
        chosen_precision="fp16" if chosen == FP16 else "fp32",
        measurements=measurements,
        cpu=cpu_info(),
        load_1m=0.5,
        measured_at="2026-01-01T00:00:00+00:00",
    )


def test_healthz_and_metrics_show_the_recorded_choice(
    tmp_path: Path, fp32_bundle: Path, fp16_bundle: Path
) -> None:
    registry = _two_precisions(tmp_path, fp32_bundle, fp16_bundle)
    write_tuning(registry, _record(FP16))
    with serve(station_config(tmp_path)) as served:
        product = served.ops("/healthz").json()["products"][PRODUCT]
        metrics = served.ops("/metrics").text
    assert product["bundle_id"] == V1  # the registry's live pointer is unchanged
    assert product["served_bundle_id"] == FP16
    assert product["precision"] == "fp16"
    assert product["tuning"]["chosen_bundle_id"] == FP16
    assert [m["p50_ms"] for m in product["tuning"]["measurements"]] == [10.0, 7.0]
    assert (
        f'inspection_served_bundle_info{{bundle_id="{FP16}",precision="fp16",product="brick"}} 1.0'
        in metrics
    )
    assert "inspection_tuned_latency_p50_ms" in metrics


def test_a_stale_record_serves_the_live_bundle(
    tmp_path: Path, fp32_bundle: Path, fp16_bundle: Path
) -> None:
    registry = _two_precisions(tmp_path, fp32_bundle, fp16_bundle)
    write_tuning(registry, dataclasses.replace(_record(FP16), live_bundle_id="v0000-fp32"))
    with serve(station_config(tmp_path, tune_on_load=False)) as served:
        product = served.ops("/healthz").json()["products"][PRODUCT]
    assert product["served_bundle_id"] == V1 and product["precision"] == "fp32"
    assert product["tuning"] is None


def test_station_tunes_on_load_and_serves_its_measured_choice(
    tmp_path: Path, fp32_bundle: Path, fp16_bundle: Path
) -> None:
    registry = _two_precisions(tmp_path, fp32_bundle, fp16_bundle)
    with serve(station_config(tmp_path)) as served:
        product = served.ops("/healthz").json()["products"][PRODUCT]
    record = read_tuning_row(registry, PRODUCT)[0]
    assert record is not None and record.live_bundle_id == V1
    assert {m.bundle_id for m in record.measurements} == {V1, FP16}
    assert product["served_bundle_id"] == record.chosen_bundle_id
    assert product["precision"] == record.chosen_precision
