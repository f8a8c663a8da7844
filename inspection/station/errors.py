"""Why a station refuses a request: the domain errors of the station core.

The pipeline, the watch folder, admission control and the line station raise them; only
the HTTP layer (``inspection.service.errors.http_status``) turns them into status codes, the
PLC handshake into error codes, and the watch folder retries exactly the ``transient`` ones.
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


class InputOutOfDomain(RequestRefused):
    """The image is unlike the bundle's training images (``core.input_domain``): grey under a
    colour-trained bundle, far smaller, or of another aspect ratio. Never a verdict; the
    station's ``input_check: warn`` judges such images with a warning instead."""
