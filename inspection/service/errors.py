"""Errors the service turns into HTTP responses with the operator-readable message."""

from __future__ import annotations

from inspection.core.errors import InspectionError


class RequestError(InspectionError):
    """A client request that cannot be served; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
