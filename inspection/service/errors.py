"""Why a station refuses a request: domain errors, and the one place that maps them to HTTP.

The pipeline, the watch folder, admission control and the line station raise the domain
errors below; only the HTTP layer (``http_status``) turns them into status codes, and the
watch folder retries exactly the ``transient`` ones.
"""

from __future__ import annotations

from typing import ClassVar

from inspection.core.errors import InspectionError


class RequestRefused(InspectionError):
    """A request the station cannot judge; ``transient``: the same request may succeed later."""

    transient: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(RequestRefused):
    """A field of the request is missing or malformed (product, part id, request id, file)."""


class BadImage(RequestRefused):
    """The image bytes are empty, undecodable, too large or of a format not accepted here."""


class UnknownProduct(RequestRefused):
    """The product is not served by this station."""


class ReplayConflict(RequestRefused):
    """A request id already used for another payload or product."""


class NoLiveModel(RequestRefused):
    """The product has no usable model loaded right now."""

    transient = True


class StationBusy(RequestRefused):
    """Too many inspections in flight; retry after ``retry_after_s`` with the same request id."""

    transient = True

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PartNotAligned(RequestRefused):
    """The image could not be registered to the product's reference (``runtime.alignment``):
    wrong or missing part, blocked view, or a pose beyond the limits. Never a verdict."""


class RequestError(InspectionError):
    """An HTTP-level refusal (authentication, unknown artefact); ``status`` is the code to send."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


_HTTP_STATUS: dict[type[RequestRefused], int] = {
    InvalidRequest: 422,
    BadImage: 400,
    UnknownProduct: 404,
    ReplayConflict: 409,
    NoLiveModel: 503,
    StationBusy: 503,
    PartNotAligned: 422,
}


def http_status(exc: RequestRefused) -> int:
    """The HTTP status for a refusal (the most specific class wins)."""
    for cls in type(exc).__mro__:
        if cls in _HTTP_STATUS:
            return _HTTP_STATUS[cls]
    return 422


def http_error(exc: RequestRefused) -> RequestError:
    """The HTTP response for a refusal, with Retry-After when the station is busy."""
    headers = {}
    if isinstance(exc, StationBusy):
        headers["Retry-After"] = str(exc.retry_after_s)
    return RequestError(http_status(exc), exc.message, headers)
