"""Decisions that change a verdict, as the registry records them: threshold versions, live pointer."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from inspection.core.errors import ConfigError
from inspection.core.operating_point import MAX_BUDGET
from inspection.core.signing import verify_record


@dataclass(frozen=True)
class ThresholdVersion:
    """One threshold version: ``value`` normalised, in (0, 1), for ``bundle_id`` (None: any).

    ``budget``: the false-reject budget the value was chosen for (the dashboard's budget
    control), in (0, ``MAX_BUDGET``]; a station that re-calibrates the bundle re-derives the
    threshold at it (``core.golden.carry_threshold``). None: set by value (older versions too).
    Signed by the site key when the machine that sets it holds one: a station with a pinned
    key serves only signed versions (``verify``).
    """

    product: str
    number: int
    value: float
    actor: str
    reason: str
    created_at: str
    bundle_id: str | None = None
    budget: float | None = None
    key_id: str | None = None
    """The key that signed the version (``core.signing.sign_record``); None: unsigned."""
    signature: str | None = None

    def __post_init__(self) -> None:
        if self.budget is not None and not 0.0 < self.budget <= MAX_BUDGET:
            raise ConfigError(
                f"threshold v{self.number}: the false-reject budget must be in "
                f"(0, {MAX_BUDGET}], got {self.budget}"
            )

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """``SigningError`` unless this version is signed by ``public_key``, unchanged."""
        verify_record(self.row(), public_key, f"threshold v{self.number} of {self.product}")

    def row(self) -> dict[str, object]:
        """The jsonl row: ``budget`` and the signature only when set (rows of earlier
        releases read the same)."""
        row = asdict(self)
        for key in ("budget", "key_id", "signature"):
            if row[key] is None:
                del row[key]
        return row


@dataclass(frozen=True)
class LiveState:
    product: str
    bundle_id: str
    since: str
    actor: str
    reason: str
    digest: str | None = None
    """sha256 of the bundle manifest at promotion (``inspection.core.signing.bundle_digest``)."""
