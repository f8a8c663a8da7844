"""Station config validation, API tokens and the serve/tokens/watch commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.config import deep_merge
from inspection.core.errors import ConfigError
from inspection.service.config import StationConfig, load_station_config
from inspection.store.models import ApiToken
from inspection.store.store import Store, StoreError
from inspection.store.tokens import (
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
    station_for_token,
)

REPO = Path(__file__).resolve().parents[2]


def test_shipped_station_config_loads(tmp_path: Path) -> None:
    """The file as shipped, without the pins a site (or ``make demo``) writes beside it."""
    shipped = tmp_path / "station.yaml"
    shipped.write_text((REPO / "configs" / "station.yaml").read_text(), encoding="utf-8")
    config = load_station_config(shipped)
    assert isinstance(config, StationConfig)
    assert config.core.products == ("brick",) and config.host == "127.0.0.1"
    assert config.core.signing_keys == () and not config.core.allow_unsigned_bundles
    assert config.core.trust_file == tmp_path / "site-trust.yaml"
    assert config.watch.default_product == "brick" and config.watch.enabled is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"prodcts": ["brick"]}, "unknown key(s) 'prodcts'"),
        ({"core": {"products": []}}, "'products' must list at least one product"),
        ({"core": {"products": ["../etc"]}}, "invalid product name '../etc'"),
        ({"workers": 0}, "workers must be >= 1, got 0"),
        ({"max_upload_bytes": "big"}, "max_upload_bytes: expected an integer, got 'big'"),
        ({"core": {"registry_poll_seconds": 0}}, "registry_poll_seconds must be > 0 seconds"),
        ({"core": {"bundle_public_key": "k"}}, "pins k by path only, and a path is not trust"),
        (
            {"core": {"signing_keys": [{"fingerprint": "sha256:" + "a" * 64, "path": "k"}]}},
            "set either signing_keys or allow_unsigned_bundles: true, not both",
        ),
        (
            {"core": {"signing_keys": [{"fingerprint": "sha256:abc", "path": "k"}]}},
            "fingerprint must be sha256:<64 hex digits>",
        ),
        ({"products": ["brick"]}, "'products' now belong(s) under 'core:'"),
        ({"watch": {"settle": 1}}, "unknown key(s) 'settle'"),
        ({"watch": {"default_product": "bolt"}}, "watch.default_product 'bolt' is not in products"),
    ],
)
def test_bad_station_config_names_the_problem(tmp_path: Path, override: dict, message: str):
    core = {"products": ["brick"], "allow_unsigned_bundles": True}
    data = deep_merge({"core": core}, override)
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as excinfo:
        load_station_config(path)
    assert message in str(excinfo.value)


def test_tokens_are_stored_hashed_and_can_be_revoked(tmp_path: Path) -> None:
    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    token, info = create_token(store, "line-3", "camera PC")
    assert token.startswith("insp_") and len(token) > 40
    with store.session() as session:
        (row,) = session.query(ApiToken).all()
        assert row.token_hash == hash_token(token) and token not in (row.label or "")
    assert station_for_token(store, token) == "line-3"
    assert station_for_token(store, token + "x") is None
    assert station_for_token(store, "") is None
    assert [t.station_id for t in list_tokens(store)] == ["line-3"]
    revoked = revoke_token(store, info.id)
    assert not revoked.active and station_for_token(store, token) is None
    assert revoke_token(store, info.id).revoked_at == revoked.revoked_at
    with pytest.raises(StoreError, match="no API token with id 99"):
        revoke_token(store, 99)
    with pytest.raises(StoreError, match="invalid station id or name 'a b'"):
        create_token(store, "a b")
    store.engine.dispose()


def test_tokens_commands(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "core": {
                    "products": ["brick"],
                    "store_url": f"sqlite:///{tmp_path / 'db.sqlite'}",
                    "blob_dir": str(tmp_path / "blobs"),
                    "allow_unsigned_bundles": True,
                }
            }
        )
    )
    runner = CliRunner()
    before = runner.invoke(app, ["tokens", "list", "-c", str(config)])  # read-only: no database
    assert before.exit_code != 0 and not (tmp_path / "db.sqlite").exists()
    created = runner.invoke(app, ["tokens", "create", "--station", "ST-7", "-c", str(config)])
    assert created.exit_code == 0, created.output
    (token,) = [line for line in created.output.splitlines() if line.startswith("insp_")]
    listed = runner.invoke(app, ["tokens", "list", "-c", str(config)])
    assert "ST-7" in listed.output and "active" in listed.output and token not in listed.output
    revoked = runner.invoke(app, ["tokens", "revoke", "1", "-c", str(config)])
    assert revoked.exit_code == 0 and "token 1 of station ST-7 revoked" in revoked.output
    assert "revoked" in runner.invoke(app, ["tokens", "list", "-c", str(config)]).output
    store = Store.migrated(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    assert station_for_token(store, token) is None
    store.engine.dispose()


def test_station_modules_never_import_torch() -> None:
    code = (
        "import sys\n"
        "import inspection.service.app, inspection.service.station, inspection.cli.serve\n"
        "import inspection.runtime.inspector\n"
        "bad = sorted(m for m in ('torch', 'anomalib', 'lightning') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(
    ("host", "users", "open_on_localhost", "outcome"),
    [
        ("127.0.0.1", 2, False, ""),
        ("127.0.0.1", 0, False, "no dashboard users yet"),
        ("::1", 0, True, "no login on localhost"),
        ("0.0.0.0", 2, False, ""),
        ("0.0.0.0", 2, True, ""),  # open mode never reaches beyond loopback
        ("0.0.0.0", 0, True, "ConfigError"),
        ("10.0.0.5", 0, False, "ConfigError"),
    ],
)
def test_dashboard_bind_needs_users_beyond_loopback(
    host, users, open_on_localhost, outcome
) -> None:
    from inspection.cli.dashboard import check_bind
    from inspection.core.errors import ConfigError

    if outcome == "ConfigError":
        with pytest.raises(ConfigError, match="needs a login, and this site has no dashboard"):
            check_bind(host, users, open_on_localhost=open_on_localhost)
    else:
        warning = check_bind(host, users, open_on_localhost=open_on_localhost)
        assert (outcome in warning) if outcome else warning == ""
