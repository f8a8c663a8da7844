"""The HTTP layer's view of refusals: status codes for the station core's domain errors."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from inspection.core.errors import InspectionError
from inspection.station.errors import (
    BadImage,
    InputOutOfDomain,
    InvalidRequest,
    NoLiveModel,
    PartNotAligned,
    ReplayConflict,
    RequestRefused,
    StationBusy,
    UnknownProduct,
)


class RequestError(InspectionError):
    """An HTTP-level refusal (authentication, unknown artefact); ``status`` is the code to send."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """``{"detail": message}`` with the status and headers (a 401 asks for a bearer token)."""
        headers = self.headers | ({"WWW-Authenticate": "Bearer"} if self.status == 401 else {})
        return JSONResponse({"detail": self.message}, status_code=self.status, headers=headers)


_HTTP_STATUS: dict[type[RequestRefused], int] = {
    InvalidRequest: 422,
    BadImage: 400,
    UnknownProduct: 404,
    ReplayConflict: 409,
    NoLiveModel: 503,
    StationBusy: 503,
    PartNotAligned: 422,
    InputOutOfDomain: 422,
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
