"""Dashboard users: Argon2id hashes, lockout with backoff across sessions, the users CLI."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from inspection.cli import app
from inspection.store.models import DashboardUser, utcnow
from inspection.store.store import Store, StoreError
from inspection.store.tokens import Identity
from inspection.store.users import (
    FREE_ATTEMPTS,
    LoginError,
    add_user,
    authenticate,
    list_users,
    lock_seconds,
    remove_user,
    user_identity,
)

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.migrated(f"sqlite:///{tmp_path / 'site.db'}", tmp_path / "blobs")


def test_only_an_argon2id_hash_is_stored(store: Store) -> None:
    add_user(store, "j.smith", "reviewer", PASSWORD)
    with store.session() as session:
        stored = session.scalar(select(DashboardUser.password_hash))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert authenticate(store, "j.smith", PASSWORD) == Identity("j.smith", "reviewer")
    assert list_users(store)[0].last_login_at is not None


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("j smith", "reviewer", PASSWORD, "invalid user name"),
        ("j.smith", "station", PASSWORD, "unknown role 'station'"),
        ("j.smith", "admin", "short", "at least 12 characters"),
    ],
)
def test_bad_users_are_refused(store: Store, name, role, password, message) -> None:
    with pytest.raises(StoreError, match=message):
        add_user(store, name, role, password)


def test_wrong_password_and_unknown_name_say_the_same(store: Store) -> None:
    add_user(store, "ada", "admin", PASSWORD)
    for name, password in (("ada", "wrong password!"), ("nobody", PASSWORD), ("x" * 500, "")):
        with pytest.raises(LoginError, match=r"^wrong name or password$"):
            authenticate(store, name, password)


def test_repeated_failures_lock_the_name_with_backoff(store: Store) -> None:
    add_user(store, "ada", "admin", PASSWORD)
    now = utcnow()
    for _ in range(FREE_ATTEMPTS - 1):
        with pytest.raises(LoginError, match=r"^wrong name or password$"):
            authenticate(store, "ada", "wrong password!", now=now)
    with pytest.raises(LoginError, match="locked for 30 s after 5 failures"):
        authenticate(store, "ada", "wrong password!", now=now)
    # even the right password is refused while locked, and the count survives new sessions
    with pytest.raises(LoginError, match="too many failed logins for 'ada': try again in"):
        authenticate(store, "ada", PASSWORD, now=now + timedelta(seconds=10))
    later = now + timedelta(seconds=31)
    with pytest.raises(LoginError, match="locked for 60 s after 6 failures"):
        authenticate(store, "ada", "wrong password!", now=later)
    assert authenticate(store, "ada", PASSWORD, now=later + timedelta(seconds=61)).role == "admin"
    assert list_users(store)[0].failed_attempts == 0
    assert lock_seconds(FREE_ATTEMPTS + 20) == 3600.0


def test_removed_users_lose_their_identity(store: Store) -> None:
    add_user(store, "ada", "admin", PASSWORD)
    assert user_identity(store, "ada") == Identity("ada", "admin")
    remove_user(store, "ada")
    assert user_identity(store, "ada") is None
    with pytest.raises(StoreError, match="no dashboard user 'ada'"):
        remove_user(store, "ada")


def test_users_cli_add_list_remove(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"store_url: sqlite:///{tmp_path / 'site.db'}\nblob_dir: {tmp_path / 'b'}\n")
    Store.migrated(f"sqlite:///{tmp_path / 'site.db'}", tmp_path / "b").engine.dispose()
    runner = CliRunner()
    added = runner.invoke(
        app,
        ["users", "add", "ada", "--role", "admin", "--password-stdin", "--site", str(site)],
        input=PASSWORD + "\n",
    )
    assert added.exit_code == 0, added.output
    assert "added admin 'ada'" in added.output
    listed = runner.invoke(app, ["users", "list", "--site", str(site)])
    assert "ada" in listed.output and "admin" in listed.output and "never" in listed.output
    assert PASSWORD not in listed.output
    again = runner.invoke(
        app, ["users", "add", "ada", "--password-stdin", "--site", str(site)], input=PASSWORD
    )
    assert again.exit_code != 0 and "user 'ada' exists" in str(again.exception)
    # the same user again (a README block run twice): a no-op that asks no password
    same = runner.invoke(app, ["users", "add", "ada", "--role", "admin", "--site", str(site)])
    assert same.exit_code == 0, same.output
    assert "admin 'ada' exists: unchanged" in same.output
    removed = runner.invoke(app, ["users", "remove", "ada", "--site", str(site)])
    assert removed.exit_code == 0 and "removed 'ada'" in removed.output


def test_users_add_without_a_terminal_reads_two_piped_lines_or_says_what_to_do(
    tmp_path: Path,
) -> None:
    """No terminal: the password and its repetition come from stdin; nothing there (a newcomer's
    `< /dev/null`, a CI step) or two that differ is one clear line, never getpass's warning."""
    site = tmp_path / "site.yaml"
    site.write_text(f"store_url: sqlite:///{tmp_path / 'site.db'}\nblob_dir: {tmp_path / 'b'}\n")
    Store.migrated(f"sqlite:///{tmp_path / 'site.db'}", tmp_path / "b").engine.dispose()

    def add(name: str, stdin: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "inspection", "users", "add", name, "--site", str(site)]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120)

    empty = add("ada", "")
    assert empty.returncode == 2 and "Warning" not in empty.stderr, empty.stderr
    assert "does not hold the password twice" in empty.stderr, empty.stderr
    assert "--password-stdin" in empty.stderr
    once = add("ada", f"{PASSWORD}\n")  # once, without --password-stdin
    assert once.returncode == 2 and "does not hold the password twice" in once.stderr
    differ = add("ada", f"{PASSWORD}\n{PASSWORD}x\n")
    assert differ.returncode == 2 and "the two passwords on stdin differ" in differ.stderr
    piped = add("bob", f"{PASSWORD}\n{PASSWORD}\n")
    assert piped.returncode == 0 and "added reviewer 'bob'" in piped.stdout, piped.stderr
    assert "Warning" not in piped.stderr, piped.stderr
