"""Model registry on disk, one folder per product: the one door to its two halves.

Versions and bundles (``<product>/versions/``, ``bundles/``) are ``core.version_store``'s; the
signed records (``live.json``, ``thresholds.jsonl``, ``decisions.jsonl``) and the audit log
(``events.jsonl``) ``core.decision_journal``'s. Every write goes through a per-product file
lock and an atomic rename or append, so a crash leaves the old state or the new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inspection.core.decision_journal import DecisionJournal
from inspection.core.decisions import Decision, DecisionKind, LiveState, ThresholdVersion
from inspection.core.version_store import VersionStore


class Registry(VersionStore):
    """Reads and writes the registry folder; cheap to construct, holds no state. Versions and
    bundles are its ``VersionStore`` methods; the signed records are ``journal``'s, the most
    used of them forwarded here."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(Path(root))
        self.journal = DecisionJournal(self)

    # ------------------------------------------------------------ signed records
    def live(self, product: str) -> LiveState | None:
        return self.journal.live(product)

    def live_bundle_dir(self, product: str) -> Path:
        return self.journal.live_bundle_dir(product)

    def promote(self, product: str, bundle_id: str, *, actor: str, reason: str) -> LiveState:
        """Make ``bundle_id`` the live bundle (after checking its files) and log who and why."""
        return self.journal.promote(product, bundle_id, actor=actor, reason=reason)

    def rollback(self, product: str, *, actor: str, reason: str) -> LiveState:
        """Go back to the bundle that was live before the current one."""
        return self.journal.rollback(product, actor=actor, reason=reason)

    def record_event(
        self, product: str, action: str, *, actor: str, reason: str, **details: Any
    ) -> None:
        """Append an audit event (e.g. a retrain decision); ``details``: its other fields."""
        self.journal.record_event(product, action, actor=actor, reason=reason, **details)

    def events(self, product: str) -> list[dict[str, Any]]:
        return self.journal.events(product)

    def set_threshold(
        self,
        product: str,
        value: float,
        *,
        actor: str,
        reason: str,
        bundle_id: str | None = None,
        budget: float | None = None,
        sign: bool = True,
    ) -> ThresholdVersion:
        """Append a new threshold version (``DecisionJournal.set_threshold``)."""
        return self.journal.set_threshold(
            product, value, actor=actor, reason=reason, bundle_id=bundle_id, budget=budget,
            sign=sign,
        )  # fmt: skip

    def threshold_history(self, product: str) -> list[ThresholdVersion]:
        return self.journal.threshold_history(product)

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
        """Append the next signed ``kind`` decision (``DecisionJournal.record_decision``)."""
        return self.journal.record_decision(
            product, kind, value, actor=actor, reason=reason, bundle_id=bundle_id
        )

    def decisions(self, product: str, kind: DecisionKind | None = None) -> list[Decision]:
        """The product's decisions of ``kind`` (None: every kind), oldest first."""
        return self.journal.decisions(product, kind)
