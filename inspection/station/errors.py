"""Why a station refuses a request: the domain errors of the station core.

The pipeline, the watch folder, admission control and the line station raise them; every
front door answers one through ``answer_to`` (``REFUSALS``, one table: the HTTP status and
the PLC error code), and the watch folder retries exactly the ``transient`` ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
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


class RetryUnproven(RequestRefused):
    """A trigger the link delivers again (taken before, never acknowledged) that no part id
    proves a retry of a stored part: its part may have left the camera (``line.handshake.replay``)."""


class NoLiveModel(RequestRefused):
    """The product has no usable model loaded right now."""

    transient = True


class StationBusy(RequestRefused):
    """Too many inspections in flight; retry after ``retry_after_s`` with the same request id."""

    transient = True

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StorageUnavailable(RequestRefused):
    """The result's files cannot be written to the station's blob folder (``core.blob_dir``
    read-only, full or gone): nothing is stored; the same request may succeed once it is fixed."""

    transient = True


class PartNotAligned(RequestRefused):
    """The image could not be registered to the product's reference (``runtime.alignment``):
    wrong or missing part, blocked view, or a pose beyond the limits. Never a verdict."""


class InputOutOfDomain(RequestRefused):
    """The image is unlike the bundle's training images (``core.input_domain``): never a verdict
    (``input_check: warn`` judges such images with a warning instead)."""


class ErrorCode(IntEnum):
    """Why a trigger got no verdict (written to the PLC as an integer)."""

    NONE = 0
    NO_IMAGE = 1  # the camera delivered nothing
    BAD_IMAGE = 2  # the image could not be decoded or is too large
    NO_MODEL = 3  # the product has no live model on this station
    TIMEOUT = 4  # no verdict within the takt budget (the result still follows via the outbox)
    UNKNOWN_PRODUCT = 5  # the PLC selected a product this station does not serve
    BAD_TRIGGER = 6  # malformed trigger (request id, part id, JSON)
    NOT_ALIGNED = 7  # the part could not be registered to the product's reference image
    OUT_OF_DOMAIN = 8  # the image is unlike the bundle's training images (colour, size, aspect)
    INTERNAL = 9  # anything else; the station log has the details
    RETRY_UNPROVEN = 10  # redelivered trigger, no PartId proves it a retry: not inspected


@dataclass(frozen=True)
class RefusalAnswer:
    """How each front door answers a refusal: the HTTP status, the PLC error code."""

    http_status: int
    plc_code: ErrorCode


REFUSALS: dict[type[RequestRefused], RefusalAnswer] = {
    InvalidRequest: RefusalAnswer(422, ErrorCode.BAD_TRIGGER),
    BadImage: RefusalAnswer(400, ErrorCode.BAD_IMAGE),
    UnknownProduct: RefusalAnswer(404, ErrorCode.UNKNOWN_PRODUCT),
    ReplayConflict: RefusalAnswer(409, ErrorCode.BAD_TRIGGER),
    RetryUnproven: RefusalAnswer(409, ErrorCode.RETRY_UNPROVEN),
    NoLiveModel: RefusalAnswer(503, ErrorCode.NO_MODEL),
    StationBusy: RefusalAnswer(503, ErrorCode.TIMEOUT),
    StorageUnavailable: RefusalAnswer(503, ErrorCode.INTERNAL),
    PartNotAligned: RefusalAnswer(422, ErrorCode.NOT_ALIGNED),
    InputOutOfDomain: RefusalAnswer(422, ErrorCode.OUT_OF_DOMAIN),
}
"""The one refusal table of every front door."""


def answer_to(exc: RequestRefused) -> RefusalAnswer:
    """The answer to a refusal: its most specific ``REFUSALS`` entry, else 422 and ``INTERNAL``."""
    for cls in type(exc).__mro__:
        if cls in REFUSALS:
            return REFUSALS[cls]
    return RefusalAnswer(422, ErrorCode.INTERNAL)
