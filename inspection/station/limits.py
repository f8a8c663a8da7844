"""Admission control, in two separate stages, and the image limits a station holds against its
live bundle's training images.

- Uploads (``UploadBudget``): connections hold at most ``limit`` received bytes together, each
  closed by its read deadlines, so a slow client can never keep another's upload out.
- Inference (``AdmissionGate``): at most ``limit`` arrived requests wait for a worker; more get
  503. Slow uploads never count here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inspection.station.errors import StationBusy

if TYPE_CHECKING:
    from inspection.core.input_domain import InputDomain

RETRY_AFTER_SECONDS = 1


class AdmissionGate:
    """Counts requests admitted to inference on one event loop (no lock needed); above ``limit``
    ``StationBusy``, so memory stays bounded by ``limit`` uploads plus a decode per worker."""

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


class UploadBudget:
    """Bytes held by uploads still arriving, on one event loop (no lock needed)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"upload memory budget must be >= 1 byte, got {limit}")
        self.limit = limit
        self.held = 0

    def take(self, count: int) -> bool:
        """Reserve ``count`` more bytes; False (nothing reserved) when that exceeds the limit."""
        if self.held + count > self.limit:
            return False
        self.held += count
        return True

    def release(self, count: int) -> None:
        self.held = max(0, self.held - count)


@dataclass(frozen=True)
class ReadDeadlines:
    """One connection's body-read deadlines (``service.upload``): the whole body within
    ``total_s``; no gap between chunks longer than ``idle_s``; after ``grace_s``, at least
    ``min_rate`` bytes per second on average (0: no rate check)."""

    total_s: float = 30.0
    idle_s: float = 5.0
    min_rate: float = 100_000.0
    grace_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("total_s", "idle_s", "grace_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.min_rate < 0:
            raise ValueError(f"min_rate must be >= 0 bytes/s, got {self.min_rate}")

    def next_chunk_by(self, started: float, now: float, received: int) -> tuple[float, str]:
        """(loop time by which the next chunk must arrive, which deadline that is)."""
        limits = [(started + self.total_s, "deadline"), (now + self.idle_s, "idle")]
        if self.min_rate > 0:
            limits.append((started + self.grace_s + received / self.min_rate, "slow"))
        return min(limits)


@dataclass(frozen=True)
class ImageLimits:
    """What a station accepts: ``core.max_pixels``, ``core.max_side`` and, at an HTTP station,
    ``max_upload_bytes`` (None: no upload limit, a line station's camera)."""

    max_pixels: int
    max_side: int
    max_upload_bytes: int | None = None

    def below(self, domain: InputDomain | None) -> list[str]:
        """One line per limit below the bundle's training images (``domain``; None or a bundle
        recorded before file sizes: what it does not record is not checked), naming the key
        that raises it: such images would be refused at this station."""
        if domain is None:
            return []
        width, height = domain.width[1], domain.height[1]
        pixels = domain.largest_pixels or width * height
        found = []
        if pixels > self.max_pixels:
            found.append(
                f"its training images reach {pixels} pixels, above core.max_pixels "
                f"{self.max_pixels}: such images are refused; raise core.max_pixels to at least "
                f"{pixels} in the station config"
            )
        if max(width, height) > self.max_side:
            found.append(
                f"its training images reach {max(width, height)} px a side, above core.max_side "
                f"{self.max_side}: such images are refused; raise core.max_side in the station "
                "config"
            )
        size = domain.largest_file_bytes
        if self.max_upload_bytes is not None and size is not None and size > self.max_upload_bytes:
            found.append(
                f"its largest training image file is {size} bytes, above max_upload_bytes "
                f"{self.max_upload_bytes}: such uploads get 413; raise max_upload_bytes to at "
                f"least {size} in the station config"
            )
        return found
