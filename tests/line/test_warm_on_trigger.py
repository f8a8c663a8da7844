"""Warm-on-trigger wired into the line station: each trigger's decision is counted in
Prometheus, the answers are the same with and without it, and it can be switched off."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._shared import camera_folder, line_config
from inspection.core.errors import ConfigError
from inspection.line.config import WarmConfig, load_line_config
from inspection.line.handshake import ErrorCode, Trigger
from inspection.line.station import LineStation


def _answers(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path, warm: WarmConfig
) -> tuple[list[float], LineStation]:
    camera = camera_folder(tmp_path, tiny_product, count=3)
    station = LineStation.build(
        line_config(tmp_path, fp32_bundle, camera, loop=False, warm_on_trigger=warm)
    )
    station.core.models.refresh()
    try:
        answers = [station.handler.handle(Trigger(f"w-{n}"), source="mqtt") for n in range(3)]
    finally:
        station.stop()
    assert all(a.error_code == ErrorCode.NONE for a in answers)
    return [a.score or 0.0 for a in answers], station


def _warmups(station: LineStation, outcome: str) -> float:
    labels = {"product": "brick", "outcome": outcome}
    return station.registry.get_sample_value("inspection_trigger_warmups_total", labels) or 0.0


def test_every_trigger_starts_a_warm_run_and_the_verdicts_are_unchanged(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    warm, station = _answers(tmp_path / "on", fp32_bundle, tiny_product, WarmConfig(idle_ms=0))
    assert _warmups(station, "started") + _warmups(station, "busy") == 3
    assert _warmups(station, "started") >= 1
    stats = station.core.models.get("brick").inspector.model.warm_stats
    assert stats.finished + stats.cancelled == stats.started
    cold, off = _answers(tmp_path / "off", fp32_bundle, tiny_product, WarmConfig(enabled=False))
    assert _warmups(off, "disabled") == 3 and _warmups(off, "started") == 0
    assert off.core.models.get("brick").inspector.model.warm_stats.started == 0
    assert warm == cold


def test_a_trigger_soon_after_the_last_part_skips_the_warm_run(
    tmp_path: Path, fp32_bundle: Path, tiny_product: Path
) -> None:
    _, station = _answers(tmp_path, fp32_bundle, tiny_product, WarmConfig(idle_ms=60_000))
    assert _warmups(station, "recent") >= 2  # the first may follow the golden check's runs
    assert _warmups(station, "started") <= 1


def test_warm_on_trigger_is_on_by_default_and_validated(tmp_path: Path) -> None:
    assert WarmConfig().enabled
    with pytest.raises(ConfigError, match="idle_ms must be >= 0"):
        WarmConfig(idle_ms=-1)
    path = tmp_path / "line.yaml"
    path.write_text(
        "station_id: cam-1\ncamera: {kind: file, path: /tmp}\n"
        "core: {products: [brick], store_url: 'sqlite://', blob_dir: /tmp/b, registry_dir: /tmp/r,\n"
        "  allow_unsigned_bundles: true}\n"
        "warm_on_trigger: {enabled: false, idel_ms: 5}\n"
    )
    with pytest.raises(ConfigError, match="idel_ms"):
        load_line_config(path)
