"""Dashboard users: reviewers and admins who log in with a name and a password.

Only an Argon2id hash is stored; repeated failures lock the name with exponential backoff,
counted in the store (a new session or a restart resets nothing); an unknown name costs the
same verification as a known one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from inspection.core.errors import InspectionError
from inspection.store.models import DashboardUser, as_utc, utcnow
from inspection.store.store import Store, StoreError
from inspection.store.tokens import Identity

USER_ROLES: tuple[str, ...] = ("reviewer", "admin")
"""Reviewers label results; admins also change thresholds and promote or roll back bundles."""
MIN_PASSWORD_LENGTH = 12
FREE_ATTEMPTS = 5
"""Failures allowed before a name is locked."""
BASE_LOCK_S = 30.0
MAX_LOCK_S = 3600.0
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a password: equalises the time of unknown names")


class LoginError(InspectionError):
    """Wrong name or password, or a locked name; the message is safe to show."""


@dataclass(frozen=True)
class UserInfo:
    """A dashboard user without the password hash."""

    name: str
    role: str
    created_at: datetime
    last_login_at: datetime | None
    failed_attempts: int
    locked_until: datetime | None


def lock_seconds(failures: int) -> float:
    """Lock time after ``failures`` consecutive failures: 0 for the first few, then doubling."""
    if failures < FREE_ATTEMPTS:
        return 0.0
    return min(MAX_LOCK_S, BASE_LOCK_S * 2.0 ** (failures - FREE_ATTEMPTS))


def add_user(store: Store, name: str, role: str, password: str) -> UserInfo:
    """Create a user (a name is never reused while it exists)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise StoreError(
            f"invalid user name {name!r}: letters, digits, '_', '.', '@' or '-', at most 64 "
            "characters, starting with a letter or digit"
        )
    if role not in USER_ROLES:
        raise StoreError(f"unknown role {role!r}; use one of {list(USER_ROLES)}")
    if len(password) < MIN_PASSWORD_LENGTH or "\x00" in password:
        raise StoreError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    with store.session() as session:
        if session.scalar(select(DashboardUser).where(DashboardUser.name == name)) is not None:
            raise StoreError(f"user {name!r} exists; remove it first to change its role")
        row = DashboardUser(name=name, role=role, password_hash=_HASHER.hash(password))
        session.add(row)
        session.flush()
        return _info(row)


def list_users(store: Store) -> list[UserInfo]:
    with store.session() as session:
        rows = session.scalars(select(DashboardUser).order_by(DashboardUser.name))
        return [_info(row) for row in rows]


def remove_user(store: Store, name: str) -> None:
    """Delete a user; a logged-in session of that user ends on its next page run."""
    with store.session() as session:
        row = session.scalar(select(DashboardUser).where(DashboardUser.name == name))
        if row is None:
            raise StoreError(f"no dashboard user {name!r}")
        session.delete(row)


def user_identity(store: Store, name: str) -> Identity | None:
    """The current identity of an existing user (role changes apply at once), else ``None``."""
    with store.session() as session:
        row = session.scalar(select(DashboardUser).where(DashboardUser.name == name))
        return None if row is None else Identity(row.name, row.role)


def authenticate(
    store: Store, name: str, password: str, *, now: datetime | None = None
) -> Identity:
    """The user's identity when the password matches; ``LoginError`` otherwise."""
    now = now or utcnow()
    with store.session() as session:
        row = None
        if _NAME_RE.match(name or "") and len(password) <= 1024:
            row = session.scalar(select(DashboardUser).where(DashboardUser.name == name))
        if row is None:
            _verify(_DUMMY_HASH, password)
            raise LoginError("wrong name or password")
        locked = row.locked_until and as_utc(row.locked_until)
        if locked is not None and locked > now:
            wait = int((locked - now).total_seconds()) + 1
            raise LoginError(
                f"too many failed logins for {name!r}: try again in {wait} s "
                "(or ask an admin to check the account)"
            )
        if not _verify(row.password_hash, password):
            row.failed_attempts += 1
            pause = lock_seconds(row.failed_attempts)
            row.locked_until = now + timedelta(seconds=pause) if pause else None
            session.flush()
            message = "wrong name or password"
            if pause:
                message += f"; locked for {int(pause)} s after {row.failed_attempts} failures"
            failure = LoginError(message)
        else:
            if _HASHER.check_needs_rehash(row.password_hash):
                row.password_hash = _HASHER.hash(password)
            row.failed_attempts, row.locked_until, row.last_login_at = 0, None, now
            return Identity(row.name, row.role)
    raise failure  # raised after the commit, so the failure count is kept


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _info(row: DashboardUser) -> UserInfo:
    last_login, locked = (at and as_utc(at) for at in (row.last_login_at, row.locked_until))
    return UserInfo(
        row.name, row.role, as_utc(row.created_at), last_login, row.failed_attempts, locked
    )
