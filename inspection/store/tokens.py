"""API tokens: 256-bit random, shown once, stored only as a sha256 hash, one role each:
``station`` (inspect, read its own results), ``reviewer`` (read and label every result),
``admin`` (a reviewer's rights plus thresholds, promotion, rollback, ops views) and ``monitor``
(the full ``/healthz`` and ``/metrics``, no results).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from inspection.store.models import ApiToken, as_utc, utcnow
from inspection.store.store import Store, StoreError

TOKEN_PREFIX = "insp_"
ROLES: tuple[str, ...] = ("station", "reviewer", "admin", "monitor")
_STATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class TokenInfo:
    """A token's record without its secret."""

    id: int
    station_id: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None
    role: str = "station"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Identity:
    """Who a request acts as: a station id or a person's name, and the token's role."""

    name: str
    role: str

    def has(self, *roles: str) -> bool:
        return self.role in roles


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    store: Store, station_id: str, label: str | None = None, *, role: str = "station"
) -> tuple[str, TokenInfo]:
    """Issue a token for ``station_id`` (a station, or a person for the other roles);
    returns (secret, info). The secret is not stored."""
    if not isinstance(station_id, str) or not _STATION_RE.match(station_id):
        raise StoreError(
            f"invalid station id or name {station_id!r}: use letters, digits, '_', '-' or '.' "
            "(at most 64 characters, starting with a letter or digit)"
        )
    if role not in ROLES:
        raise StoreError(f"unknown role {role!r}; use one of {list(ROLES)}")
    if label is not None and (len(label) > 128 or "\x00" in label):
        raise StoreError("a token label is at most 128 characters of text")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(station_id=station_id, token_hash=hash_token(token), label=label, role=role)
    with store.session() as session:
        session.add(row)
    return token, _info(row)


def list_tokens(store: Store, station_id: str | None = None) -> list[TokenInfo]:
    query = select(ApiToken).order_by(ApiToken.id)
    if station_id:
        query = query.where(ApiToken.station_id == station_id)
    with store.session() as session:
        return [_info(row) for row in session.scalars(query)]


def revoke_token(store: Store, token_id: int) -> TokenInfo:
    """Revoke by id (see ``list_tokens``); revoking twice keeps the first revocation time."""
    with store.session() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise StoreError(f"no API token with id {token_id}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return _info(row)


def identity_for_token(store: Store, token: str) -> Identity | None:
    """Who an active token acts as, or ``None`` for unknown/revoked tokens."""
    if not token or len(token) > 256:
        return None
    query = select(ApiToken).where(ApiToken.token_hash == hash_token(token))
    with store.session() as session:
        row = session.scalar(query)
        if row is None or row.revoked_at is not None:
            return None
        return Identity(row.station_id, row.role or "station")


def station_for_token(store: Store, token: str) -> str | None:
    """The name an active token acts as (see ``identity_for_token`` for its role)."""
    identity = identity_for_token(store, token)
    return identity.name if identity else None


def _info(row: ApiToken) -> TokenInfo:
    revoked = row.revoked_at and as_utc(row.revoked_at)
    return TokenInfo(
        row.id, row.station_id, row.label, as_utc(row.created_at), revoked, row.role or "station"
    )
