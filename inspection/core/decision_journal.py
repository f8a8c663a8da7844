"""The registry's signed half, per product: ``live.json``, append-only ``thresholds.jsonl`` and
``decisions.jsonl`` (``core.decisions``), the audit log ``events.jsonl``; per station, the
control calls its line clients made (``control-<station>.jsonl``, chained and signed: records
cannot be forged, changed or removed unseen, ``control_checks``). Every write holds the
product's file lock and is an atomic rename or a whole-line append.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from inspection.core.bundle import verify_bundle
from inspection.core.certificate import Certificate
from inspection.core.config import from_mapping
from inspection.core.decisions import Decision, DecisionKind, LiveState, ThresholdVersion
from inspection.core.errors import ConfigError, RegistryError
from inspection.core.jsonl import append_jsonl, read_jsonl, write_json
from inspection.core.model_record import utc_now
from inspection.core.signing import (
    PublicKeys,
    SigningError,
    bundle_digest,
    load_public_key,
    sign_record,
    site_signing_key,
    verify_record,
)
from inspection.core.threshold import check_threshold
from inspection.core.version_store import VersionStore, product_dir, product_lock

DECISIONS_FILE = "decisions.jsonl"


class DecisionJournal:
    """The signed records of the products under ``store.root``; bundles are ``store``'s."""

    def __init__(self, store: VersionStore) -> None:
        self.store = store
        self.root = store.root
        self._control_lock = threading.Lock()
        self._control_tails: dict[Path, dict[str, Any]] = {}  # the last record of each file

    # --------------------------------------------------------- live + audit log
    def live(self, product: str) -> LiveState | None:
        path = product_dir(self.root, product) / "live.json"
        if not path.is_file():
            return None
        return from_mapping(LiveState, json.loads(path.read_text(encoding="utf-8")), str(path))

    def live_bundle_dir(self, product: str) -> Path:
        state = self.live(product)
        if state is None:
            raise RegistryError(f"product {product!r} has no live bundle; promote one first")
        return self.store.bundle_dir(product, state.bundle_id)

    def promote(self, product: str, bundle_id: str, *, actor: str, reason: str) -> LiveState:
        """Make ``bundle_id`` the live bundle (after checking its files) and log who and why."""
        bundle_dir = self.store.bundle_dir(product, bundle_id)
        verify_bundle(bundle_dir)
        digest = bundle_digest(bundle_dir)
        with product_lock(self.root, product):
            previous = self.live(product)
            state = self._write_live(
                LiveState(product, bundle_id, utc_now(), actor, reason, digest)
            )
            self._append_event(
                product, "promote", actor=actor, reason=reason, bundle_id=bundle_id,
                bundle_digest=digest, previous=previous.bundle_id if previous else None,
            )  # fmt: skip
        return state

    def rollback(self, product: str, *, actor: str, reason: str) -> LiveState:
        """Go back to the bundle that was live before the current one."""
        with product_lock(self.root, product):
            current = self.live(product)
            if current is None:
                raise RegistryError(f"product {product!r} has no live bundle to roll back")
            history = [e for e in self.events(product) if e["action"] in ("promote", "rollback")]
            # From the event that made the *live* bundle live, not the newest event: a crash
            # between an event and live.json leaves an event for a bundle that never went live.
            previous = _bundle_before(history, current.bundle_id)
            if not previous:
                raise RegistryError(
                    f"product {product!r} has no earlier live bundle to roll back to"
                )
            previous_dir = self.store.bundle_dir(product, previous)
            verify_bundle(previous_dir)
            digest = bundle_digest(previous_dir)
            state = self._write_live(LiveState(product, previous, utc_now(), actor, reason, digest))
            earlier = _bundle_before(history, previous)
            self._append_event(
                product, "rollback", actor=actor, reason=reason, bundle_id=previous,
                previous=earlier, rolled_back=current.bundle_id, bundle_digest=digest,
            )  # fmt: skip
        return state

    def _write_live(self, state: LiveState) -> LiveState:
        """Write ``live.json`` (signed when this machine holds the site key); under the lock."""
        row = self._signed(state.row())
        write_json(product_dir(self.root, state.product) / "live.json", row)
        return from_mapping(LiveState, row, "live pointer")

    def mirror(self, record: LiveState | ThresholdVersion | Decision, *, actor: str) -> None:
        """Store a record signed elsewhere (the central registry) unchanged, so a station verifies
        the original signature; a decision already held is not stored twice."""
        product, reason = record.product, f"mirrored: {record.reason}"
        held = self.decisions(product, record.kind) if isinstance(record, Decision) else []
        if record.row() in [d.row() for d in held]:
            return
        if isinstance(record, LiveState):
            self.store.bundle_dir(product, record.bundle_id)  # held before it goes live
        with product_lock(self.root, product):
            folder = product_dir(self.root, product)
            match record:
                case LiveState():
                    write_json(folder / "live.json", record.row())
                    self._append_event(
                        product, "promote", actor=actor, reason=reason,
                        bundle_id=record.bundle_id, bundle_digest=record.digest,
                    )  # fmt: skip
                case ThresholdVersion():
                    append_jsonl(folder / "thresholds.jsonl", record.row())
                    self._append_event(
                        product, "threshold", actor=actor, reason=reason, value=record.value,
                        budget=record.budget, mirrored_number=record.number,
                    )  # fmt: skip
                case Decision():
                    append_jsonl(folder / DECISIONS_FILE, record.row())
                    self._append_event(
                        product, record.kind, actor=actor, reason=reason,
                        bundle_id=record.bundle_id, number=record.number,
                    )  # fmt: skip

    def _signed(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` signed with the site key when this machine holds it."""
        signing_key = site_signing_key(self.root)
        return row if signing_key is None else sign_record(row, signing_key)

    def record_event(
        self, product: str, action: str, *, actor: str, reason: str, **details: Any
    ) -> None:
        """Append an audit event (e.g. a retrain decision) under the product lock."""
        with product_lock(self.root, product):
            self._append_event(product, action, actor=actor, reason=reason, **details)

    def events(self, product: str) -> list[dict[str, Any]]:
        return read_jsonl(product_dir(self.root, product) / "events.jsonl")

    def _append_event(self, product: str, action: str, **details: Any) -> None:
        event = {"at": utc_now(), "product": product, "action": action, **details}
        append_jsonl(product_dir(self.root, product) / "events.jsonl", event)

    # --------------------------------------------------------------- thresholds
    def set_threshold(
        self,
        product: str,
        value: float,
        *,
        actor: str,
        reason: str,
        bundle_id: str | None = None,
        budget: float | None = None,
        certificate: Certificate | None = None,
        sign: bool = True,
    ) -> ThresholdVersion:
        """Append a new normalised threshold version for ``bundle_id`` (None: any), chosen at
        ``budget`` with its ``certificate``; signed when the machine holds the site key and
        ``sign`` (False: a copy of an unsigned version)."""
        try:
            value = check_threshold(value)
        except ValueError as exc:
            raise RegistryError(str(exc)) from exc
        if not actor.strip() or not reason.strip():
            raise RegistryError("a threshold change needs who (actor) and why (reason)")
        with product_lock(self.root, product):
            number = len(self.threshold_history(product)) + 1
            try:
                version = ThresholdVersion(
                    product, number, float(value), actor, reason, utc_now(), bundle_id,
                    None if budget is None else float(budget), certificate,
                )  # fmt: skip
            except ConfigError as exc:
                raise RegistryError(str(exc)) from exc
            row = self._signed(version.row()) if sign else version.row()
            version = from_mapping(ThresholdVersion, row, "signed threshold")
            append_jsonl(product_dir(self.root, product) / "thresholds.jsonl", row)
            self._append_event(
                product, "threshold", actor=actor, reason=reason, value=float(value),
                budget=version.budget,
            )  # fmt: skip
        return version

    def threshold_history(self, product: str) -> list[ThresholdVersion]:
        rows = read_jsonl(product_dir(self.root, product) / "thresholds.jsonl")
        where = f"{product}/thresholds.jsonl"
        return [from_mapping(ThresholdVersion, row, where) for row in rows]

    def current_threshold(self, product: str) -> ThresholdVersion | None:
        history = self.threshold_history(product)
        return history[-1] if history else None

    # ---------------------------------------------------------------- decisions
    def record_decision(
        self,
        product: str,
        kind: DecisionKind,
        value: Mapping[str, Any],
        *,
        actor: str,
        reason: str,
        bundle_id: str | None = None,
    ) -> Decision:
        """Append the next ``kind`` decision (``DecisionKind``) for ``bundle_id`` (None: any),
        signed when the machine holds the site key, and an audit event."""
        with product_lock(self.root, product):
            number = len(self.decisions(product, kind)) + 1
            try:
                decision = Decision(kind, product, number, dict(value), actor.strip(),
                                    reason.strip(), utc_now(), bundle_id)  # fmt: skip
            except ConfigError as exc:
                raise RegistryError(str(exc)) from exc
            row = self._signed(decision.row())
            append_jsonl(product_dir(self.root, product) / DECISIONS_FILE, row)
            self._append_event(
                product, kind, actor=decision.actor, reason=decision.reason, bundle_id=bundle_id,
                number=number, signed=bool(row.get("signature")),
            )  # fmt: skip
        return from_mapping(Decision, row, decision.what)

    def decisions(self, product: str, kind: DecisionKind | None = None) -> list[Decision]:
        """The product's decisions of ``kind`` (None: every kind), oldest first."""
        where = f"{product}/decisions.jsonl"
        rows = read_jsonl(product_dir(self.root, product) / DECISIONS_FILE)
        found = [from_mapping(Decision, row, where) for row in rows]
        return [d for d in found if kind is None or d.kind == kind]

    # ----------------------------------------------------------- control calls
    def record_control(
        self, station_id: str, call: Mapping[str, Any], key: Ed25519PrivateKey | None
    ) -> dict[str, Any]:
        """Append one control call a line client made at ``station_id``, chained (``seq``, and
        ``prev``: ``control_digest`` of the record before) and signed with the station's ``key``
        (None: link security off); the first signed record pins the key's public half beside
        the journal (``control_key_file``). Raises ``OSError`` when the record cannot be
        written: the caller refuses the call."""
        path = self.root / f"control-{station_id}.jsonl"
        with self._control_lock:
            last = self._control_tails.get(path)
            if last is None and path.exists():
                last = (read_jsonl(path) or [None])[-1]
            row = {"at": utc_now(), "station": station_id, "seq": int((last or {}).get("seq", 0)) + 1,
                   "prev": control_digest(last) if last else "", **call}  # fmt: skip
            row = row if key is None else sign_record(row, key)
            append_jsonl(path, row)
            self._control_tails[path] = row
            pinned = self.control_key_file(station_id)
            if key is not None and not pinned.exists():
                pinned.write_bytes(key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
        return row

    def control_key_file(self, station_id: str) -> Path:
        """The station's control-signing public key, pinned by its first signed record."""
        return self.root / f"control-{station_id}.pub"

    def control_checks(self, station_id: str) -> list[tuple[dict[str, Any], str]]:
        """Each of the station's control records, oldest first, with what checking it found:
        ``verified``, ``unsigned``, ``forged`` (a signature the pinned key did not make),
        ``N missing before`` (a gap in ``seq``: records deleted) or ``chain broken`` (``prev``
        is not the record before's digest: one changed or removed)."""
        rows = read_jsonl(self.root / f"control-{station_id}.jsonl")
        pinned = self.control_key_file(station_id)
        public = load_public_key(pinned) if pinned.exists() else None
        checked, before = [], None
        for row in rows:
            seq, expected = row.get("seq"), int((before or {}).get("seq", 0)) + 1
            if not row.get("signature"):
                status = "unsigned"
            elif public is None or not _signed_by(row, public):
                status = "forged"
            elif isinstance(seq, int) and seq > expected:
                status = f"{seq - expected} missing before"
            elif row.get("prev", "") != (control_digest(before) if before else ""):
                status = "chain broken"
            else:
                status = "verified"
            checked.append((row, status))
            before = row
        return checked

    def controls(self) -> list[dict[str, Any]]:
        """Every station's control calls held here, oldest first."""
        rows = [row for path in self.root.glob("control-*.jsonl") for row in read_jsonl(path)]
        return sorted(rows, key=lambda row: str(row.get("at", "")))


def control_digest(row: Mapping[str, Any]) -> str:
    """sha256 (hex) of a control record as written, signature included: the next one's ``prev``."""
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _signed_by(row: Mapping[str, Any], public: PublicKeys) -> bool:
    try:
        verify_record(row, public, "control call")
    except SigningError:
        return False
    return True


def _bundle_before(history: list[dict[str, Any]], bundle_id: str) -> str | None:
    """The bundle that was live just before ``bundle_id`` last became live."""
    for event in reversed(history):
        if event.get("bundle_id") == bundle_id:
            return event.get("previous")
    return None
