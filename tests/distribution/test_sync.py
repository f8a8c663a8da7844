"""Stations pull live bundles from a real catalog server over HTTP (and from a shared path)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bench._shared import copy_bundle
from inspection.cli import app
from inspection.core.registry import Registry
from inspection.core.signing import (
    SigningError,
    SiteKeys,
    init_keys,
    load_private_key,
    load_public_key,
    pin_file,
    sign_bundle,
    site_keys_dir,
    verify_record,
)
from inspection.distribution.catalog import archive_for
from inspection.distribution.sync import HttpSource, PathSource, sync_forever, sync_once
from inspection.station.config import pinned_key
from tests.service.helpers import PRODUCT, V1, V2, V3, serve, station_config

from .conftest import Central

pytestmark = pytest.mark.slow


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, "missing API token"), ({"Authorization": "Bearer insp_wrong"}, "invalid or revoked")],
)
def test_catalog_needs_a_valid_token(central: Central, headers: dict, expected: str) -> None:
    for path in ("/v1/catalog", f"/v1/bundles/{PRODUCT}/{V1}/archive"):
        response = httpx.get(central.url + path, headers=headers)
        assert response.status_code == 401
        assert expected in response.json()["detail"]


def test_unknown_products_and_bundles_are_404(central: Central) -> None:
    headers = {"Authorization": f"Bearer {central.token}"}
    response = httpx.get(f"{central.url}/v1/catalog/nosuch", headers=headers)
    assert response.status_code == 404 and "no live bundle" in response.json()["detail"]
    response = httpx.get(f"{central.url}/v1/bundles/{PRODUCT}/v0009-fp32/archive", headers=headers)
    assert response.status_code == 404 and "no bundle brick/v0009-fp32" in response.json()["detail"]


def test_sync_pulls_verifies_and_mirrors_the_threshold(central: Central, tmp_path: Path) -> None:
    central.registry.journal.set_threshold(
        PRODUCT, 0.6, actor="qa", reason="fewer false alarms", budget=0.05
    )
    local = Registry(tmp_path / "station" / "registry")
    source = HttpSource(central.url, central.token)
    [outcome] = sync_once(source, local.root, [PRODUCT])
    assert (outcome.status, outcome.live) == ("updated", V1), outcome.detail
    assert local.journal.live(PRODUCT).actor == "station-sync"
    mirrored = local.journal.current_threshold(PRODUCT)
    assert (mirrored.value, mirrored.budget) == (0.6, 0.05)  # a re-calibration needs the budget
    [again] = sync_once(source, local.root, [PRODUCT])
    assert again.status == "current" and len(local.journal.threshold_history(PRODUCT)) == 1
    assert list((local.root / ".incoming").iterdir()) == []
    central.registry.journal.set_threshold(
        PRODUCT, 0.6, actor="qa", reason="the same value, by hand"
    )
    sync_once(source, local.root, [PRODUCT])
    mirrored = local.journal.current_threshold(PRODUCT)
    assert (mirrored.number, mirrored.value, mirrored.budget) == (2, 0.6, None)
    headers = {"Authorization": f"Bearer {central.token}"}
    entry = httpx.get(f"{central.url}/v1/catalog/{PRODUCT}", headers=headers).json()
    assert entry["threshold"] == 0.6
    assert "threshold_budget" not in entry  # unset: an entry earlier releases still read


def test_a_signed_central_threshold_is_mirrored_with_its_own_signature(
    central: Central, tmp_path: Path
) -> None:
    """A station pinning the site key verifies the mirrored version; an unsigned one (a
    hostile or key-less catalog) is mirrored unsigned, so that station refuses it."""
    keys = init_keys(site_keys_dir(central.registry.root))
    central.registry.journal.set_threshold(PRODUCT, 0.6, actor="qa", reason="signed", budget=0.05)
    local = Registry(tmp_path / "station" / "registry")
    source = HttpSource(central.url, central.token)
    sync_once(source, local.root, [PRODUCT])
    mirrored = local.journal.current_threshold(PRODUCT)
    verify_record(mirrored.row(), load_public_key(keys.public), mirrored.what)
    assert (mirrored.value, mirrored.budget, mirrored.actor) == (0.6, 0.05, "qa")
    [again] = sync_once(source, local.root, [PRODUCT])
    assert again.status == "current" and len(local.journal.threshold_history(PRODUCT)) == 1
    keys.private.unlink()  # the catalog host lost its key: it records versions unsigned
    central.registry.journal.set_threshold(
        PRODUCT, 0.9999, actor="intruder", reason="pass everything"
    )
    sync_once(source, local.root, [PRODUCT])
    with pytest.raises(SigningError, match="not signed"):
        latest = local.journal.current_threshold(PRODUCT)
        verify_record(latest.row(), load_public_key(keys.public), latest.what)


def test_corrupt_download_is_refused_and_the_station_keeps_serving(
    central: Central, v2_bundle: Path, tmp_path: Path, sample_png: bytes
) -> None:
    """End to end: a station on the local registry, a corrupt v2 archive, then a good one."""
    config = station_config(tmp_path / "station", registry_poll_seconds=0.1)
    source = HttpSource(central.url, central.token)
    assert sync_once(source, config.core.registry_dir, [PRODUCT])[0].status == "updated"
    central.registry.bundles.add_bundle(PRODUCT, v2_bundle, V2)
    central.registry.journal.promote(PRODUCT, V2, actor="qa", reason="better challenger")
    tar_path, _ = archive_for(central.registry, PRODUCT, V2)
    _corrupt(tar_path)
    with serve(config) as station:
        [outcome] = sync_once(source, config.core.registry_dir, [PRODUCT])
        assert outcome.status == "failed" and "corrupt, refused" in outcome.detail
        assert outcome.live == V1 and "keeps serving v0001-fp32" in outcome.detail
        assert Registry(config.core.registry_dir).bundles.bundle_ids(PRODUCT) == [V1]
        time.sleep(0.3)
        response = station.inspect(sample_png)
        assert response.status_code == 201 and response.json()["bundle_id"] == V1

        tar_path.unlink()
        tar_path.with_suffix(".json").unlink()  # the registry packs it again
        assert sync_once(source, config.core.registry_dir, [PRODUCT])[0].status == "updated"
        deadline = time.monotonic() + 10
        while station.ops("/healthz").json()["products"][PRODUCT]["bundle_id"] != V2:
            assert time.monotonic() < deadline, "the station did not swap to v2 within 10 s"
            time.sleep(0.05)
        assert station.inspect(sample_png).json()["bundle_id"] == V2


def test_a_promotion_reaches_a_polling_station_within_its_interval(
    central: Central, v2_bundle: Path, tmp_path: Path
) -> None:
    local = Registry(tmp_path / "station" / "registry")
    source = HttpSource(central.url, central.token)
    stop = threading.Event()
    loop = threading.Thread(
        target=sync_forever,
        args=(source, local.root, [PRODUCT]),
        kwargs={"interval_s": 0.5, "stop": stop},
        daemon=True,
    )
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while local.journal.live(PRODUCT) is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        central.registry.bundles.add_bundle(PRODUCT, v2_bundle, V2)
        archive_for(central.registry, PRODUCT, V2)  # packed at promotion time, as the CLI does
        central.registry.journal.promote(PRODUCT, V2, actor="qa", reason="challenger")
        promoted = time.monotonic()
        while local.journal.live(PRODUCT).bundle_id != V2:
            assert time.monotonic() - promoted < 5, "no pull within 10 intervals"
            time.sleep(0.02)
        assert time.monotonic() - promoted < 0.5 + 2.0  # one interval + download and checks
    finally:
        stop.set()
        loop.join(timeout=10)


def test_an_offline_station_keeps_its_last_good_bundle(central: Central, tmp_path: Path) -> None:
    local = Registry(tmp_path / "station" / "registry")
    source = HttpSource(central.url, central.token, timeout_s=2)
    assert sync_once(source, local.root, [PRODUCT])[0].status == "updated"
    central.stop()
    [outcome] = sync_once(source, local.root, [PRODUCT])
    assert outcome.status == "offline" and outcome.live == V1
    assert local.journal.live(PRODUCT).bundle_id == V1


def test_sync_from_a_shared_path_and_a_rollback(
    central: Central, v2_bundle: Path, tmp_path: Path
) -> None:
    local = Registry(tmp_path / "station" / "registry")
    source = PathSource(central.registry.root)
    central.registry.bundles.add_bundle(PRODUCT, v2_bundle, V2)
    central.registry.journal.promote(PRODUCT, V2, actor="qa", reason="challenger")
    assert sync_once(source, local.root, [PRODUCT])[0].live == V2
    central.registry.journal.rollback(PRODUCT, actor="qa", reason="drift")
    [outcome] = sync_once(source, local.root, [PRODUCT])
    assert (outcome.status, outcome.live) == ("updated", V1)
    [offline] = sync_once(PathSource(tmp_path / "unmounted"), local.root, [PRODUCT])
    assert (offline.status, offline.live) == ("offline", V1)


def test_station_sync_cli(central: Central, tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(
        f"core:\n  registry_dir: {tmp_path / 'reg'}\n  products: [{PRODUCT}, grass]\n"
        "  allow_unsigned_bundles: true\n"
    )
    monkeypatch.setenv("INSPECTION_REGISTRY_TOKEN", central.token)
    result = CliRunner().invoke(app, ["station", "sync", "--from", central.url, "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "brick: updated live=v0001-fp32" in result.output
    assert "grass: not_live" in result.output
    monkeypatch.setenv("INSPECTION_REGISTRY_TOKEN", "insp_wrong")
    result = CliRunner().invoke(app, ["station", "sync", "--from", central.url, "-c", str(config)])
    assert result.exit_code == 2 and "401" in result.output


def test_sync_also_pulls_the_live_versions_other_gated_precisions(
    central: Central, fp16_bundle: Path, tmp_path: Path
) -> None:
    """The station gets every precision of the live version that passed its gate (to time them
    and serve the fastest), never one its export gate refused; the live bundle is unchanged."""
    import dataclasses
    import shutil

    from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata
    from inspection.core.export_gate import ExportRecord

    central.registry.bundles.add_bundle(PRODUCT, fp16_bundle, "v0001-fp16")
    refused = tmp_path / "refused"
    shutil.copytree(fp16_bundle, refused)
    meta = read_bundle_metadata(refused)
    gate = dataclasses.replace(
        meta.export_record().gate,
        passed=False,
        failures=("miss_rate 0.3 vs FP32 0.0",),
        forced=True,
    )
    metrics = {**meta.metrics, **ExportRecord(gate=gate).to_mapping()}
    write_bundle_metadata(
        refused, dataclasses.replace(meta, bundle_id="v0001-int8", metrics=metrics)
    )
    central.registry.bundles.add_bundle(PRODUCT, refused, "v0001-int8")
    local = Registry(tmp_path / "station" / "registry")
    source = HttpSource(central.url, central.token)
    [outcome] = sync_once(source, local.root, [PRODUCT])
    assert (outcome.status, outcome.live) == ("updated", V1), outcome.detail
    assert "fetched v0001-fp16" in outcome.detail
    assert sorted(local.bundles.bundle_ids(PRODUCT)) == ["v0001-fp16", V1]
    assert local.journal.live(PRODUCT).bundle_id == V1
    [again] = sync_once(source, local.root, [PRODUCT])
    assert again.status == "current" and again.detail == ""


def _signed(source: Path, target: Path, bundle_id: str, keys: SiteKeys) -> Path:
    copy_bundle(source, target, bundle_id)
    sign_bundle(target, load_private_key(keys.private))
    return target


def test_a_tampered_bundle_is_refused_by_signature_and_the_station_keeps_serving(
    central: Central, fp32_bundle: Path, tmp_path: Path, sample_png: bytes
) -> None:
    """The central side announces correct digests for a bundle changed after signing (the
    archive digests prove transport, not origin): the pinned key refuses it over real HTTP."""
    keys = init_keys(site_keys_dir(central.registry.root))
    central.registry.bundles.add_bundle(
        PRODUCT, _signed(fp32_bundle, tmp_path / "v2", V2, keys), V2
    )
    central.registry.journal.promote(PRODUCT, V2, actor="qa", reason="signed")
    config = station_config(
        tmp_path / "station", registry_poll_seconds=0.1, bundle_public_key=keys.public
    )
    source = HttpSource(central.url, central.token)
    [outcome] = sync_once(
        source, config.core.registry_dir, [PRODUCT], public_key=pinned_key(config.core)
    )
    assert (outcome.status, outcome.live) == ("updated", V2), outcome.detail
    assert "signature verified" in outcome.detail
    tampered = _signed(fp32_bundle, tmp_path / "v3", V3, keys)
    metadata = json.loads((tampered / "metadata.json").read_text())
    metadata["image_threshold"] = 0.999  # the attack run's edit
    (tampered / "metadata.json").write_text(json.dumps(metadata))
    central.registry.bundles.add_bundle(PRODUCT, tampered, V3)
    central.registry.journal.promote(PRODUCT, V3, actor="attacker", reason="tampered")
    with serve(config) as station:
        [outcome] = sync_once(
            source, config.core.registry_dir, [PRODUCT], public_key=pinned_key(config.core)
        )
        assert outcome.status == "failed" and "bad bundle signature" in outcome.detail
        assert outcome.live == V2 and "keeps serving v0002-fp32" in outcome.detail
        assert str(tmp_path) not in outcome.detail
        assert Registry(config.core.registry_dir).bundles.bundle_ids(PRODUCT) == [V2]
        time.sleep(0.3)
        response = station.inspect(sample_png)
        assert response.status_code == 201 and response.json()["bundle_id"] == V2
    # the unsigned v1 (already announced by a rollback) is refused too
    central.registry.journal.rollback(PRODUCT, actor="qa", reason="back")
    central.registry.journal.promote(PRODUCT, V1, actor="qa", reason="unsigned")
    [outcome] = sync_once(
        source, config.core.registry_dir, [PRODUCT], public_key=pinned_key(config.core)
    )
    assert outcome.status == "failed" and "the bundle is not signed" in outcome.detail
    assert Registry(config.core.registry_dir).journal.live(PRODUCT).bundle_id == V2


def test_station_sync_cli_checks_the_pinned_key(central: Central, tmp_path: Path) -> None:
    keys = init_keys(site_keys_dir(central.registry.root))
    config = tmp_path / "station.yaml"
    config.write_text(
        f"core:\n  registry_dir: {tmp_path / 'reg'}\n  products: [{PRODUCT}]\n"
        f"  signing_keys: [{{fingerprint: '{pin_file(keys.public).fingerprint}', "
        f"path: {keys.public}}}]\n"
    )
    token = tmp_path / "token"
    token.write_text(central.token)
    result = CliRunner().invoke(
        app,
        ["station", "sync", "--from", central.url, "-c", str(config), "--token-file", str(token)],
    )
    assert result.exit_code == 2, result.output
    assert "the bundle is not signed" in " ".join(result.output.split())
    assert Registry(tmp_path / "reg").bundles.bundle_ids(PRODUCT) == []
