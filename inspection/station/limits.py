"""Admission control: a station admits a bounded number of inspect requests at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from inspection.station.errors import StationBusy

RETRY_AFTER_SECONDS = 1


class AdmissionGate:
    """Counts requests in flight on one event loop; above ``limit`` raises ``StationBusy``.

    Used only from the event loop thread (no lock needed): the count covers reading the body,
    waiting for a worker and inference, so memory stays bounded by ``limit`` uploads.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"admission limit must be >= 1, got {limit}")
        self.limit = limit
        self.in_flight = 0

    @contextmanager
    def admit(self) -> Iterator[None]:
        if self.in_flight >= self.limit:
            raise StationBusy(
                f"the station is busy ({self.limit} inspections in flight); retry shortly "
                "with the same request_id",
                retry_after_s=RETRY_AFTER_SECONDS,
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
