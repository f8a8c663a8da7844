"""Secure by default: on a site set up as ``make demo`` leaves it (the shipped configs, ``keys
init``, a signed live bundle), a live bundle whose weights were flipped and whose checksums were
recomputed is refused by ``inspection inspect``, ``inspection serve`` and ``inspection station
run``, with no extra configuration."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from shutil import ignore_patterns

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata
from inspection.core.registry import Registry
from inspection.core.signing import (
    fingerprint,
    key_id,
    load_private_key,
    load_public_key,
    sign_bundle,
)
from inspection.line.config import load_line_config
from inspection.line.handshake import ErrorCode, Trigger
from inspection.line.station import LineStation
from inspection.service.config import load_station_config
from inspection.station.config import read_trust

from ..service.helpers import serve

REPO = Path(__file__).resolve().parents[2]
PRODUCT, LIVE = "brick", "v0001-fp32"
runner = CliRunner()


def _said(result: object) -> str:
    """What a CLI run printed or raised, on one line (rich wraps long lines)."""
    return " ".join((result.output + str(result.exception or "")).split())


@pytest.fixture
def site(tmp_path: Path, fp32_bundle: Path, tiny_product: Path, monkeypatch) -> Path:
    """A fresh site in ``tmp_path`` (the working directory): the repository's configs,
    ``inspection keys init`` (defaults), the session's bundle signed and promoted."""
    # as committed: not the trust file a site (or `make demo`) writes beside them
    shutil.copytree(REPO / "configs", tmp_path / "configs", ignore=ignore_patterns("site-trust.*"))
    monkeypatch.chdir(tmp_path)
    init = runner.invoke(app, ["keys", "init"])
    assert init.exit_code == 0, _said(init)
    site_key = fingerprint(load_public_key("var/keys/site-signing.pub"))
    # the three configs name one trust file: written once
    assert f"configs/site-trust.yaml: pinned bundles {site_key[:23]}…, decisions" in _said(init)
    for config in ("station.yaml", "line.yaml", "station-watch.yaml"):
        pins = read_trust(tmp_path / "configs" / config).signing_keys
        assert [p.fingerprint for p in pins][:1] == [site_key], config
    signed = shutil.copytree(fp32_bundle, tmp_path / "export" / LIVE)
    sign_bundle(signed, load_private_key("var/keys/site-signing.key"))
    registry = Registry("var/registry")
    registry.bundles.add_bundle(PRODUCT, signed, LIVE)
    registry.journal.promote(PRODUCT, LIVE, actor="tests", reason="fresh site")
    camera = tmp_path / "datasets" / PRODUCT / "test"  # the shipped line.yaml's file camera
    shutil.copytree(tiny_product / "test", camera)
    return tmp_path


def _flip_weights(site: Path) -> Path:
    """The attack: one weight byte flipped in the live bundle, every checksum recomputed."""
    bundle = Registry(site / "var" / "registry").bundles.bundle_dir(PRODUCT, LIVE)
    weights = bundle / "model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    write_bundle_metadata(bundle, read_bundle_metadata(bundle))
    return bundle


def _part(site: Path) -> Path:
    return sorted((site / "datasets" / PRODUCT / "test" / "good").glob("*.png"))[0]


def test_inspect_refuses_a_tampered_live_bundle(site: Path) -> None:
    bundle = Registry("var/registry").bundles.bundle_dir(PRODUCT, LIVE)
    genuine = runner.invoke(app, ["inspect", str(bundle), str(_part(site))])
    assert genuine.exit_code == 0, _said(genuine)
    _flip_weights(site)
    refused = runner.invoke(app, ["inspect", str(bundle), str(_part(site))])
    assert refused.exit_code != 0 and "bad bundle signature" in _said(refused)


def test_serve_refuses_a_tampered_live_bundle(site: Path) -> None:
    config = load_station_config("configs/station.yaml")
    assert config.core.signing_keys[0].path == Path("var/keys/site-signing.pub")
    _flip_weights(site)
    with serve(config) as served:
        response = served.inspect(_part(site).read_bytes())
        assert response.status_code == 503, response.text
        assert "bad bundle signature" in response.json()["detail"]
        health = served.ops("/healthz")
        assert (
            health.status_code == 503
            and "bad bundle signature" in (health.json()["products"][PRODUCT]["problem"])
        )
        expected = key_id(load_public_key("var/keys/site-signing.pub"))
        assert health.json()["signatures"]["pinned_key_id"] == expected


def _line_station() -> LineStation:
    """What ``inspection station run`` builds from the shipped line.yaml (here without its PLC
    and broker connections), with the live models loaded."""
    config = load_line_config("configs/line.yaml")
    config = dataclasses.replace(config, links={}, sinks=(), metrics_port=None)
    station = LineStation.build(config)
    station.core.models.refresh()
    return station


def test_station_run_refuses_a_tampered_live_bundle(site: Path) -> None:
    station = _line_station()
    try:
        assert station.startup_warnings() == []
        assert station.handler.handle(Trigger("r-1"), source="opcua").error_code == ErrorCode.NONE
    finally:
        station.stop()
    _flip_weights(site)
    station = _line_station()  # the next start (or a hot swap) loads the bundle again
    try:
        [warning] = station.startup_warnings()
        assert "product 'brick': no live model" in warning and "bad bundle signature" in warning
        answer = station.handler.handle(Trigger("r-2"), source="mqtt")
        assert answer.error_code == ErrorCode.NO_MODEL and "bad bundle signature" in answer.message
        expected = key_id(load_public_key("var/keys/site-signing.pub"))
        assert station.status()["signatures"]["pinned_key_id"] == expected
    finally:
        station.stop()
    status = runner.invoke(app, ["station", "status", "-c", "configs/line.yaml"])
    assert status.exit_code == 0, _said(status)
    assert f"bundle signatures: required, pinned key {expected}" in _said(status)
    assert f"live bundle {LIVE} REFUSED: bad bundle signature" in _said(status)
