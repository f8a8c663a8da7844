"""``export --force`` needs an admin of the site's dashboard users, logged in: a reviewer, a
wrong password, an unknown name or no password to read are refused before any export work."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from inspection.cli import app
from inspection.cli.users import ADMIN_PASSWORD_ENV, authenticated_admin
from inspection.core.config import load_site_config
from inspection.store.store import Store
from inspection.store.users import add_user

PASSWORD = "correct horse battery"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site whose user store holds the admin ``ada`` and the reviewer ``rex``."""
    db = tmp_path / "site.db"
    store = Store.migrated(f"sqlite:///{db}", tmp_path / "blobs")
    add_user(store, "ada", "admin", PASSWORD)
    add_user(store, "rex", "reviewer", PASSWORD)
    path = tmp_path / "site.yaml"
    path.write_text(
        f"registry_dir: {tmp_path / 'registry'}\nstore_url: sqlite:///{db}\n"
        f"blob_dir: {tmp_path / 'blobs'}\n",
        encoding="utf-8",
    )
    return path


def _force(site: Path, actor: str, password: str | None) -> object:
    args = ["export", "--product", "widget", "--force", "--actor", actor, "--reason", "test",
            "--site", str(site)]  # fmt: skip
    env = {"COLUMNS": "400", ADMIN_PASSWORD_ENV: password} if password is not None else None
    return CliRunner().invoke(app, args, env=env)


@pytest.mark.parametrize(
    ("actor", "password", "said"),
    [("rex", PASSWORD, "'rex' is a reviewer, not an admin"),
     ("ada", "wrong password here", "wrong name or password"),
     ("nobody", PASSWORD, "wrong name or password"),
     ("ada", None, ADMIN_PASSWORD_ENV)],
)  # fmt: skip
def test_force_without_a_logged_in_admin_is_refused(
    site: Path, actor: str, password: str | None, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADMIN_PASSWORD_ENV, raising=False)
    result = _force(site, actor, password)
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.replace("│", " ").split())


def test_an_admin_with_the_right_password_is_the_actor(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, PASSWORD)
    assert authenticated_admin(load_site_config(site), "ada", "--actor") == "ada"
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, "wrong password here")
    with pytest.raises(typer.BadParameter, match="wrong name or password"):
        authenticated_admin(load_site_config(site), "ada", "--actor")
