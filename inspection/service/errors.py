"""The HTTP layer's view of refusals: status codes for the station core's domain errors."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from inspection.core.errors import InspectionError
from inspection.station.errors import RequestRefused, StationBusy, answer_to


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


def http_error(exc: RequestRefused) -> RequestError:
    """The HTTP response for a refusal (status from ``station.errors.REFUSALS``), with
    Retry-After when the station is busy."""
    busy = isinstance(exc, StationBusy)
    headers = {"Retry-After": str(exc.retry_after_s)} if busy else {}
    return RequestError(answer_to(exc).http_status, exc.message, headers)
