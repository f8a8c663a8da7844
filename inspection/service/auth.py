"""Who a request acts as: bearer tokens resolved to an ``Identity`` with one role.

Stations inspect and read their own results; reviewers label; admins also change thresholds
and live bundles; monitors read ``/healthz`` in full and ``/metrics``. Every check happens
before the request body is read.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from inspection.service.errors import RequestError
from inspection.store.tokens import Identity, identity_for_token

READERS = ("station", "reviewer", "admin")
REVIEWERS = ("reviewer", "admin")
ADMINS = ("admin",)
MONITORS = ("monitor", "admin")


def bearer_token(request: Request) -> str | None:
    """The request's bearer token; ``None`` without a usable ``Authorization`` header."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def bearer_identity(request: Request) -> Identity | None:
    """The identity of the request's bearer token; ``None`` without a usable header."""
    token = bearer_token(request)
    return None if token is None else identity_for_token(request.app.state.station.store, token)


def authenticate(request: Request) -> Identity:
    """The request's identity; 401 without a valid token."""
    if bearer_token(request) is None:
        raise RequestError(401, "missing API token: send 'Authorization: Bearer <token>'")
    identity = bearer_identity(request)
    if identity is None:
        raise RequestError(401, "invalid or revoked API token")
    return identity


def require(*roles: str, action: str) -> Callable[[Request], Identity]:
    """A dependency admitting only ``roles``; others get 403 naming the roles needed."""

    def dependency(request: Request) -> Identity:
        identity = authenticate(request)
        if not identity.has(*roles):
            raise RequestError(
                403,
                f"{action} needs a token with role {' or '.join(roles)}; yours is {identity.role}",
            )
        return identity

    return dependency
