"""A bad ``store_url`` or an unreachable database is one clear error, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.errors import ConfigError, InspectionError
from inspection.store import store as store_module
from inspection.store.store import Store, StoreUnavailable
from tests.conftest import verified

runner = CliRunner()
# Nothing listens on port 1: the connection is refused at once.
DOWN_URL = verified("postgresql+psycopg://inspection:S3cretPW@127.0.0.1:1/db")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlit:///x.db", "store_url: unknown database scheme 'sqlit' in 'sqlit:///x.db'; use"),
        (
            "postgresql+nodriver://u:S3cretPW@h/db",
            "store_url: unknown database scheme 'postgresql+nodriver' in "
            "'postgresql+nodriver://u:***@h/db'",
        ),
        ("not a url", "store_url: not a database URL; use sqlite:///<file> or postgresql"),
    ],
)
def test_bad_store_url_is_a_config_error(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Store(url, tmp_path / "blobs")
    assert str(info.value).startswith(message)
    assert "S3cretPW" not in str(info.value)


@pytest.mark.parametrize("action", ["migrated", "schema_revision", "check_schema", "ensure"])
def test_unreachable_postgres_is_one_line_with_the_password_masked(
    tmp_path: Path, action: str
) -> None:
    with pytest.raises(StoreUnavailable) as info:
        if action == "migrated":
            Store.migrated(DOWN_URL, tmp_path / "blobs")
        elif action == "ensure":
            Store(DOWN_URL, tmp_path / "blobs").ensure_schema()
        else:
            getattr(Store(DOWN_URL, tmp_path / "blobs"), action)()
    message = str(info.value)
    assert message.startswith("results store postgresql+psycopg://inspection:***@127.0.0.1:1/db?")
    assert " unreachable: " in message and "Connection refused" in message and "\n" not in message
    assert "S3cretPW" not in message


def test_a_failing_upgrade_is_store_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*_args: object) -> None:
        raise OperationalError("CREATE TABLE", {}, Exception("disk I/O error\ndetail"))

    monkeypatch.setattr(store_module.command, "upgrade", refused)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "blobs")
    with pytest.raises(StoreUnavailable, match=r"upgrading the schema failed: disk I/O error$"):
        store.migrate()


def test_request_time_errors_stay_sqlalchemy_errors(tmp_path: Path) -> None:
    """The service answers these with 503, so only start-up paths translate them."""
    store = Store(DOWN_URL, tmp_path / "blobs")
    with pytest.raises(OperationalError):
        store.count_inspections()


@pytest.mark.parametrize(
    ("url", "error"),
    [("sqlit:///var/x.db", ConfigError), (DOWN_URL, StoreUnavailable)],
)
@pytest.mark.parametrize("command", [["db", "status"], ["db", "upgrade"], ["tokens", "list"]])
def test_cli_commands_raise_an_inspection_error(
    tmp_path: Path, url: str, error: type[InspectionError], command: list[str]
) -> None:
    config = tmp_path / "station.yaml"
    core = {
        "store_url": url,
        "blob_dir": str(tmp_path / "blobs"),
        "registry_dir": str(tmp_path / "registry"),
        "products": ["brick"],
        "allow_unsigned_bundles": True,
    }
    config.write_text(yaml.safe_dump({"core": core}), encoding="utf-8")
    result = runner.invoke(app, [*command, "--config", str(config)])
    assert isinstance(result.exception, error), result.output  # main() prints it in one line
