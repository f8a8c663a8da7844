"""Decisions that change a verdict as signed, versioned records (threshold versions, the live
pointer, ROI, a forced bundle): flat JSON rows signed with the site key when the machine holds
it; a station pinning the key serves only rows that verify (``refusal``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from inspection.core.certificate import Certificate
from inspection.core.errors import ConfigError
from inspection.core.operating_point import MAX_BUDGET
from inspection.core.signing import PublicKeys, SigningError, verify_record

DecisionKind = Literal["roi", "force"]
"""``roi``: a product's region of interest (value: ``RoiSpec.to_mapping()``); ``force``: a
bundle the export gate refused, registered anyway by an admin (value: ``{"digest": ...,
"refusal": ...}``, ``core.signing.bundle_digest`` of exactly that bundle)."""


class SignedRow(Protocol):
    def row(self) -> dict[str, Any]: ...

    @property
    def what(self) -> str: ...


R = TypeVar("R", bound=SignedRow)


def refusal(record: SignedRow | Mapping[str, Any], public_key: PublicKeys | None,
            what: str | None = None) -> str | None:  # fmt: skip
    """None when ``record`` may serve (verified by ``public_key``, or none pinned), else why not."""
    if public_key is None:
        return None
    row = record if isinstance(record, Mapping) else record.row()
    try:
        verify_record(row, public_key, what or getattr(record, "what", "record"))
    except SigningError as exc:
        return str(exc)
    return None


def newest_trusted(
    records: Iterable[R], public_key: Ed25519PublicKey | None
) -> tuple[R | None, list[str]]:
    """The newest of ``records`` (oldest first) that verifies, and why newer ones were refused."""
    refused = []
    for record in reversed(list(records)):
        why = refusal(record, public_key)
        if why is None:
            return record, refused
        refused.append(why)
    return None, refused


def _row(record: object, optional: tuple[str, ...]) -> dict[str, Any]:
    """A record's JSON row, ``optional`` fields only when set (so earlier rows verify the same)."""
    row = asdict(record)  # type: ignore[call-overload]
    for key in optional:
        if row[key] is None:
            del row[key]
    return row


@dataclass(frozen=True)
class ThresholdVersion:
    """One threshold version: normalised ``value`` for ``bundle_id`` (None: any); ``budget``:
    the false-reject budget it was chosen for (``core.golden.carry_threshold``; None: by
    value); ``certificate`` when derived from audited parts (``core.certificate``)."""

    product: str
    number: int
    value: float
    actor: str
    reason: str
    created_at: str
    bundle_id: str | None = None
    budget: float | None = None
    certificate: Certificate | None = None
    key_id: str | None = None
    signature: str | None = None

    def __post_init__(self) -> None:
        if self.budget is not None and not 0.0 < self.budget <= MAX_BUDGET:
            raise ConfigError(
                f"threshold v{self.number}: the false-reject budget must be in "
                f"(0, {MAX_BUDGET}], got {self.budget}"
            )

    @property
    def what(self) -> str:
        return f"threshold v{self.number} of {self.product}"

    def row(self) -> dict[str, object]:
        row = _row(self, ("budget", "certificate", "key_id", "signature"))
        certificate = row.get("certificate")
        for key in Certificate.OPTIONAL if isinstance(certificate, dict) else ():
            if certificate[key] is None:  # rows signed before these fields verify the same
                del certificate[key]
        return row


@dataclass(frozen=True)
class LiveState:
    """The live pointer (``live.json``), signed; ``digest`` binds it to the bundle's bytes."""

    product: str
    bundle_id: str
    since: str
    actor: str
    reason: str
    digest: str | None = None
    """sha256 of the bundle manifest at promotion (``inspection.core.signing.bundle_digest``)."""
    key_id: str | None = None
    signature: str | None = None

    @property
    def what(self) -> str:
        return f"live pointer of {self.product} ({self.bundle_id})"

    def row(self) -> dict[str, object]:
        return _row(self, ("key_id", "signature"))


@dataclass(frozen=True)
class Decision:
    """One version of a ``kind`` of decision for ``product`` (``DecisionKind``): ``value`` (a
    JSON object), for ``bundle_id`` (None: any bundle of the product), who, when, why."""

    kind: DecisionKind
    product: str
    number: int
    value: dict[str, Any]
    actor: str
    reason: str
    created_at: str
    bundle_id: str | None = None
    key_id: str | None = None
    signature: str | None = None

    def __post_init__(self) -> None:
        if not self.actor.strip() or not self.reason.strip():
            raise ConfigError(f"a {self.kind} decision needs who (actor) and why (reason)")

    @property
    def what(self) -> str:
        target = f" for {self.bundle_id}" if self.bundle_id else ""
        return f"{self.kind} decision v{self.number} of {self.product}{target}"

    def row(self) -> dict[str, object]:
        return _row(self, ("bundle_id", "key_id", "signature"))
