"""Keys a station trusts by fingerprint: a replaced key file, a rotation (two keys verify until
the old one is retired), revoked keys and bundles, and the dashboard's decision key (trusted for
thresholds, never for bundles). Refused means refused with the last good model serving."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench._shared import copy_bundle, write_mean_bundle
from inspection.cli import app
from inspection.cli.dashboard import dashboard_env
from inspection.core.errors import ConfigError
from inspection.core.registry import Registry
from inspection.core.signing import (
    DASHBOARD_KEY_FILE,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    SIGNING_KEY_ENV,
    fingerprint,
    init_keys,
    key_id,
    load_private_key,
    load_public_key,
    sign_bundle,
    signer_label,
)
from inspection.refine.config import RefineConfig
from inspection.service.config import load_station_config
from inspection.station.config import pinned_key
from inspection.station.live import LiveModels, station_loader

PRODUCT = "widget"
KEYS = Path("var/keys")
runner = CliRunner()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site in ``tmp_path`` (the working directory): ``keys init`` pinned both keys in
    ``configs/station.yaml``; bundle v1, signed, is live."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "site.yaml").write_text("registry_dir: var/registry\n")
    (tmp_path / "configs" / "station.yaml").write_text(
        f"core:\n  products: [{PRODUCT}]\n  registry_dir: var/registry\n  signing_keys: []\n"
    )
    _cli("keys", "init")
    _add(1, KEYS / PRIVATE_KEY_FILE, live=True)
    return tmp_path


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + str(result.exception)
    return " ".join(result.output.split())


def _add(number: int, private: Path, *, live: bool) -> str:
    """Bundle ``v000<number>-fp32`` signed with ``private``, registered (and promoted)."""
    bundle_id = f"v{number:04d}-fp32"
    mean = write_mean_bundle(Path(f"mean/{number}"), input_size=(32, 32), product=PRODUCT)
    bundle = copy_bundle(mean, Path(f"export/{bundle_id}"), bundle_id)  # metadata: bundle_id
    sign_bundle(bundle, load_private_key(private))
    registry = Registry("var/registry")
    registry.bundles.add_bundle(PRODUCT, bundle, bundle_id)
    if live:
        registry.journal.promote(PRODUCT, bundle_id, actor="qa", reason=f"release {number}")
    return bundle_id


def _station() -> LiveModels:
    """What a station builds at start from ``configs/station.yaml``, loaded."""
    keys = pinned_key(load_station_config("configs/station.yaml").core)
    loader = station_loader(RefineConfig(method="none"), public_key=keys)
    models = LiveModels(Registry("var/registry"), (PRODUCT,), loader=loader, public_key=keys)
    models.refresh()
    return models


def _serving(models: LiveModels) -> str:
    models.refresh()
    return models.get(PRODUCT).bundle_id


def _problem(models: LiveModels) -> str:
    return str(models.status()[PRODUCT])


def test_a_replaced_key_file_is_refused_and_the_last_good_bundle_kept(site: Path) -> None:
    """Whoever writes var/ puts their own key pair in place of the site's, signs and
    promotes a bundle with it: the running station refuses it; a restart refuses the file."""
    models = _station()
    rogue = init_keys(site / "rogue")
    shutil.copy(rogue.public, KEYS / PUBLIC_KEY_FILE)
    shutil.copy(rogue.private, KEYS / PRIVATE_KEY_FILE)
    _add(2, KEYS / PRIVATE_KEY_FILE, live=True)
    assert _serving(models) == "v0001-fp32"
    assert "not by this site's key" in _problem(models)
    with pytest.raises(ConfigError, match="the key file was replaced; it is not trusted"):
        _station()


def test_rotation_two_keys_verify_until_the_old_one_is_retired(site: Path) -> None:
    old = fingerprint(load_public_key(KEYS / PUBLIC_KEY_FILE))
    said = _cli("keys", "rotate")
    assert f"old key {old} verifies until" in said
    assert not (KEYS / f"site-signing-{old[7:23]}.key").exists()  # only the .pub is kept
    new_id = key_id(load_public_key(KEYS / PUBLIC_KEY_FILE))
    _add(2, KEYS / PRIVATE_KEY_FILE, live=True)  # the new key signs from now
    models = _station()
    assert _serving(models) == "v0002-fp32"
    Registry("var/registry").journal.promote(PRODUCT, "v0001-fp32", actor="qa", reason="rollback")
    assert _serving(models) == "v0001-fp32"  # the old key's bundle still verifies
    _cli("keys", "retire", old)
    models = _station()  # restarted with the old key retired: v1 no longer verifies
    assert models.status()[PRODUCT]["bundle_id"] is None
    assert f"not the pinned '{new_id}'" in _problem(models)


def test_the_dashboard_reads_the_stations_pins_through_a_rotation(site: Path) -> None:
    """Mid-rotation the old key's records (here the live pointer) still verify on the
    stations, so the dashboard shows no refusal; once the key is retired they are refused
    there, and the dashboard says so, naming the config."""
    from inspection.dashboard.health import model_health

    def problem() -> str:
        return model_health(Registry("var/registry"), PRODUCT, configs_dir=Path("configs")).problem

    old = fingerprint(load_public_key(KEYS / PUBLIC_KEY_FILE))
    assert "refused" not in problem()
    _cli("keys", "rotate")
    assert "refused" not in problem()
    _cli("keys", "retire", old)
    assert "signed records refused" in problem() and "(station.yaml)" in problem()


def test_retiring_the_last_bundle_key_is_refused(site: Path) -> None:
    only = fingerprint(load_public_key(KEYS / PUBLIC_KEY_FILE))
    result = runner.invoke(app, ["keys", "retire", only])
    assert result.exit_code != 0 and "last bundle key pinned" in str(result.exception)


def test_a_revoked_bundle_is_refused_and_the_last_good_kept(site: Path) -> None:
    models = _station()
    _cli("keys", "revoke", f"{PRODUCT}/v0002-fp32")
    models = _station()  # the station reads its config at start
    _add(2, KEYS / PRIVATE_KEY_FILE, live=True)
    assert _serving(models) == "v0001-fp32"
    assert f"bundle {PRODUCT}/v0002-fp32 is revoked" in _problem(models)


def test_a_revoked_key_is_refused_even_while_pinned(site: Path) -> None:
    _cli("keys", "revoke", fingerprint(load_public_key(KEYS / PUBLIC_KEY_FILE)))
    models = _station()
    assert "which is revoked (core.revoked)" in _problem(models)


def test_the_dashboard_signs_decisions_with_its_own_key_never_bundles(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = dashboard_env(None)
    assert env[SIGNING_KEY_ENV] == str((KEYS / DASHBOARD_KEY_FILE).resolve())
    monkeypatch.setenv(SIGNING_KEY_ENV, env[SIGNING_KEY_ENV])
    models = _station()
    version = models.registry.journal.set_threshold(PRODUCT, 0.61, actor="ada", reason="dashboard")
    dashboard_id = key_id(load_public_key(KEYS / "dashboard" / "decision-signing.pub"))
    assert version.key_id == dashboard_id
    assert signer_label("var/registry", version.key_id).startswith("dashboard/decision-signing")
    models.refresh()
    assert models.get(PRODUCT).threshold == pytest.approx(0.61)
    _add(2, KEYS / DASHBOARD_KEY_FILE, live=False)  # the dashboard's key signs a bundle
    Registry("var/registry").journal.promote(PRODUCT, "v0002-fp32", actor="ada", reason="try")
    assert _serving(models) == "v0001-fp32"
    assert "pinned for decision records only, not bundles" in _problem(models)


def test_a_station_not_pinning_the_dashboard_key_refuses_its_threshold(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cli("keys", "retire", fingerprint(load_public_key(KEYS / "dashboard/decision-signing.pub")))
    models = _station()
    Registry("var/registry").journal.set_threshold(PRODUCT, 0.55, actor="qa", reason="site key")
    monkeypatch.setenv(SIGNING_KEY_ENV, str(KEYS / DASHBOARD_KEY_FILE))
    Registry("var/registry").journal.set_threshold(PRODUCT, 0.99, actor="ada", reason="dashboard")
    models.refresh()
    assert models.get(PRODUCT).threshold == pytest.approx(0.55)  # the last good one serves


def test_keys_pin_migrates_a_path_only_config_after_checking_the_fingerprint(
    site: Path,
) -> None:
    legacy = "core:\n  products: [widget]\n  bundle_public_key: var/keys/site-signing.pub\n"
    config = site / "configs" / "line.yaml"
    config.write_text(legacy)
    with pytest.raises(ConfigError, match="by path only, and a path is not trust"):
        load_station_config(config)
    wrong = runner.invoke(app, ["keys", "pin", "-c", str(config), "--expect", "sha256:" + "0" * 64])
    assert wrong.exit_code != 0 and config.read_text() == legacy
    expected = fingerprint(load_public_key(KEYS / PUBLIC_KEY_FILE))
    _cli("keys", "pin", "-c", str(config), "--expect", expected)
    [pin] = load_station_config(config).core.signing_keys
    assert pin.fingerprint == expected and pin.signs == "bundles"
