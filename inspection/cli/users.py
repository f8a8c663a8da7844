"""``inspection users add|list|remove``: the dashboard's reviewer and admin logins, in the
site's results database (Argon2id hashes); ``authenticated_admin`` for commands needing one."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from inspection.cli._site import group, site_option
from inspection.cli.console import screen
from inspection.core.config import SiteConfig, load_site_config
from inspection.core.errors import InspectionError

if TYPE_CHECKING:
    from inspection.store.store import Store

ADMIN_PASSWORD_ENV = "INSPECTION_ADMIN_PASSWORD"
"""The admin's password for a command run without a terminal (CI); a terminal asks for it."""
console = screen()
users_app = group("users", "Dashboard logins (reviewers and admins).")
SITE_OPTION = site_option("Site config YAML whose store holds the users")
NameArg = Annotated[str, typer.Argument(help="Login name, e.g. j.smith.")]


@users_app.command("add")
def add(
    name: NameArg,
    role: Annotated[
        str, typer.Option("--role", help="reviewer (labels) or admin (also thresholds, models).")
    ] = "reviewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    site: Path = SITE_OPTION,
) -> None:
    """Create a dashboard user; the password is stored only as an Argon2id hash. A user that
    exists with this role is left as it is (no password asked): the command can run again."""
    # deferred: alembic, sqlalchemy
    from inspection.store.users import add_user, user_identity

    store = _store(load_site_config(site))
    existing = user_identity(store, name)
    if existing is not None and existing.role == role:
        console.print(
            f"{role} {name!r} exists: unchanged (to change its password: inspection users remove "
            f"{name}, then add it again)"
        )
        return
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin is not None and sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = _piped_password()
    user = add_user(store, name, role, password)
    console.print(f"added {user.role} {user.name!r}")


def _piped_password() -> str:
    """The password and its repetition, two lines of a stdin that is no terminal."""
    lines = [sys.stdin.readline() for _ in range(2)] if sys.stdin is not None else ["", ""]
    first, again = (line.rstrip("\r\n") for line in lines)
    if not first or not lines[1]:
        raise InspectionError(
            "stdin is not a terminal and does not hold the password twice: run the command "
            "in a terminal, or pipe the password once with --password-stdin"
        )
    if first != again:
        raise InspectionError("the two passwords on stdin differ")
    return first


@users_app.command("list")
def list_(site: Path = SITE_OPTION) -> None:
    """Show every dashboard user, its role, last login and lockout state."""
    # deferred: alembic, sqlalchemy
    from inspection.store.users import list_users

    table = Table("name", "role", "created", "last login", "failed", "locked until")
    for user in list_users(_store(load_site_config(site))):
        table.add_row(
            user.name,
            user.role,
            f"{user.created_at:%Y-%m-%d %H:%M}",
            f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never",
            str(user.failed_attempts),
            f"{user.locked_until:%Y-%m-%d %H:%M:%S}" if user.locked_until else "",
        )
    console.print(table)


@users_app.command("remove")
def remove(name: NameArg, site: Path = SITE_OPTION) -> None:
    """Delete a dashboard user; an open session of that user ends on its next click."""
    # deferred: alembic, sqlalchemy
    from inspection.store.users import remove_user

    remove_user(_store(load_site_config(site)), name)
    console.print(f"removed {name!r}")


def authenticated_admin(config: SiteConfig, name: str, param_hint: str) -> str:
    """``name`` once logged in as an admin of the site's users (password from
    ``ADMIN_PASSWORD_ENV``, else asked on a terminal); anything else is a ``BadParameter``."""
    # deferred: alembic, sqlalchemy
    from inspection.store.users import LoginError, authenticate

    password = os.environ.get(ADMIN_PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            raise typer.BadParameter(
                f"{name!r} must log in as an admin: no terminal to ask the password on; set "
                f"{ADMIN_PASSWORD_ENV} (CI) or run the command in a terminal",
                param_hint=param_hint,
            )
        password = getpass.getpass(f"password of admin {name!r}: ")
    try:
        identity = authenticate(_store(config), name, password)
    except LoginError as exc:
        raise typer.BadParameter(f"{name!r}: {exc}", param_hint=param_hint) from exc
    if identity.role != "admin":
        raise typer.BadParameter(
            f"{name!r} is a {identity.role}, not an admin ('inspection users add NAME --role "
            "admin')",
            param_hint=param_hint,
        )
    return identity.name


def _store(config: SiteConfig) -> Store:
    # deferred: alembic, sqlalchemy
    from inspection.store.store import Store

    store = Store(config.store_url, config.blob_dir)
    store.ensure_schema()  # first use creates the schema; an older one needs 'db upgrade'
    return store
