"""Signed decisions beyond the threshold: the live pointer, the tuning pick, a gate-refused
bundle's force record, the ROI, the validation scores the dashboard shows. Each attack row of
``bench/tamper.py --attacks`` is run here and must read "refused, last good kept"; a genuine,
signed decision lets the same bundle serve."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import generate_latest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.signing import bundle_digest
from inspection.station.metrics import ServiceMetrics
from tests.bench import bench_module


@pytest.fixture(scope="module")
def tamper() -> ModuleType:
    return bench_module("tamper")


ROWS = (
    "tuning_elsewhere",
    "gate_refused_forced",
    "altered_live_pointer",
    "altered_roi",
    "altered_refiner",
)


@pytest.mark.parametrize("attack", ROWS)
def test_an_altered_decision_is_refused_and_the_last_good_keeps_serving(
    tamper: ModuleType, attack: str, tmp_path: Path
) -> None:
    row = tamper.served_row(attack, getattr(tamper, attack), tmp_path)
    assert row["outcome"] == "refused, last good kept", row["what"]


def test_the_refusal_is_shown_on_prometheus_and_the_dashboard(
    tamper: ModuleType, tmp_path: Path
) -> None:
    from inspection.dashboard.health import model_health

    site = tamper.attack_site(tmp_path)
    tamper.altered_live_pointer(site)
    site.models.refresh()
    metrics = ServiceMetrics()
    metrics.watch_golden(site.models)
    scraped = generate_latest(metrics.registry).decode()
    assert 'inspection_decision_refused{kind="live",product="widget"} 1.0' in scraped
    health = model_health(site.models.registry, "widget")
    assert not health.line_ready and "live: live pointer of widget" in health.problem


def test_altered_validation_scores_are_refused_by_the_dashboard(
    tamper: ModuleType, tmp_path: Path
) -> None:
    row = tamper.altered_validation_scores(tmp_path)
    assert row["outcome"] == "refused, last good kept", row["what"]


def test_a_signed_force_record_for_exactly_that_bundle_lets_it_serve(
    tamper: ModuleType, tmp_path: Path
) -> None:
    site = tamper.attack_site(tmp_path)
    tamper.gate_refused_forced(site)
    registry = site.models.registry
    digest = bundle_digest(registry.bundles.bundle_dir("widget", "v0002-int8"))
    registry.journal.record_decision(
        "widget", "force", {"digest": "0" * 64}, actor="admin", reason="other bytes",
        bundle_id="v0002-int8",
    )  # fmt: skip
    site.models.refresh()
    assert site.models.status()["widget"]["served_bundle_id"] == "v0001-fp32"
    registry.journal.record_decision(
        "widget", "force", {"digest": digest}, actor="admin", reason="line stop, accepted risk",
        bundle_id="v0002-int8",
    )  # fmt: skip
    site.models.refresh()
    status = site.models.status()["widget"]
    assert status["served_bundle_id"] == "v0002-int8" and "gate" not in status["refused"]


def test_a_signed_roi_decision_lets_the_bundle_carrying_it_serve(
    tamper: ModuleType, tmp_path: Path
) -> None:
    from inspection.core.roi import RoiSpec

    site = tamper.attack_site(tmp_path)
    tamper.altered_roi(site)
    site.models.refresh()
    assert site.models.status()["widget"]["served_bundle_id"] == "v0001-fp32"
    blind = RoiSpec((32, 32), include=(((0.0, 0.0), (8.0, 0.0), (8.0, 8.0), (0.0, 8.0)),))
    site.models.registry.journal.record_decision(
        "widget", "roi", blind.to_mapping(), actor="admin", reason="fixture moved"
    )
    site.models.refresh()
    assert site.models.status()["widget"]["served_bundle_id"] == "v0002-fp32"


def test_export_force_needs_an_admin_and_a_reason(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "--product", "widget", "--force"])
    assert result.exit_code == 2 and "--actor" in result.output


def test_station_sync_mirrors_the_signed_pointer_and_decisions_and_the_station_serves_them(
    tamper: ModuleType, tmp_path: Path
) -> None:
    """A station (no private key) syncing a forced bundle from a shared registry: the central
    live pointer and force record arrive unchanged, verify with the pinned key and serve."""
    from inspection.distribution.sync import PathSource, sync_once
    from inspection.refine.config import RefineConfig
    from inspection.station.live import LiveModels, station_loader

    site = tamper.attack_site(tmp_path / "central")
    tamper.gate_refused_forced(site)
    central = site.models.registry
    digest = bundle_digest(central.bundles.bundle_dir("widget", "v0002-int8"))
    central.journal.record_decision(
        "widget", "force", {"digest": digest}, actor="admin", reason="accepted risk",
        bundle_id="v0002-int8",
    )  # fmt: skip
    station_dir = tmp_path / "station" / "registry"
    (outcome,) = sync_once(PathSource(central.root), station_dir, ["widget"], public_key=site.key)
    assert outcome.status == "updated", outcome.detail
    local = LiveModels(
        type(central)(station_dir), ("widget",), public_key=site.key,
        loader=station_loader(RefineConfig(method="none"), public_key=site.key),
    )  # fmt: skip
    local.refresh()
    status = local.status()["widget"]
    assert status["served_bundle_id"] == "v0002-int8" and not status["refused"]
    assert local.registry.journal.live("widget") == central.journal.live("widget")


def test_the_dashboard_trusts_its_own_decision_key_as_the_stations_do(
    tamper: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inspection.core.signing import (
        SIGNING_KEY_ENV,
        dashboard_key_path,
        init_dashboard_key,
        init_keys,
        site_keys_dir,
    )
    from inspection.dashboard.health import model_health

    site = tamper.attack_site(tmp_path)
    registry = site.models.registry
    init_dashboard_key(site_keys_dir(registry.root))  # `inspection keys init` pins it (decisions)
    monkeypatch.setenv(SIGNING_KEY_ENV, str(dashboard_key_path(registry.root)))
    registry.journal.set_threshold("widget", 0.6, actor="admin", reason="the dashboard's budget")
    assert "refused" not in model_health(registry, "widget").problem
    stranger = init_keys(tmp_path / "elsewhere")  # a key the site never made
    monkeypatch.setenv(SIGNING_KEY_ENV, str(stranger.private))
    registry.journal.set_threshold("widget", 0.7, actor="mallory", reason="not this site's key")
    assert "threshold: threshold v" in model_health(registry, "widget").problem
