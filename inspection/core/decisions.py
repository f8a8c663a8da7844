"""Decisions that change a verdict, as the registry records them: threshold versions, live pointer."""

from __future__ import annotations

from dataclasses import dataclass

from inspection.core.errors import ConfigError
from inspection.core.operating_point import MAX_BUDGET


@dataclass(frozen=True)
class ThresholdVersion:
    """One threshold version: ``value`` normalised, in (0, 1), for ``bundle_id`` (None: any).

    ``budget``: the false-reject budget the value was chosen for (the dashboard's budget
    control), in (0, ``MAX_BUDGET``]; a station that re-calibrates the bundle re-derives the
    threshold at it (``core.golden.carry_threshold``). None: set by value (older versions too).
    """

    product: str
    number: int
    value: float
    actor: str
    reason: str
    created_at: str
    bundle_id: str | None = None
    budget: float | None = None

    def __post_init__(self) -> None:
        if self.budget is not None and not 0.0 < self.budget <= MAX_BUDGET:
            raise ConfigError(
                f"threshold v{self.number}: the false-reject budget must be in "
                f"(0, {MAX_BUDGET}], got {self.budget}"
            )


@dataclass(frozen=True)
class LiveState:
    product: str
    bundle_id: str
    since: str
    actor: str
    reason: str
    digest: str | None = None
    """sha256 of the bundle manifest at promotion (``inspection.core.signing.bundle_digest``)."""
