"""Model registry on disk: immutable versions, exported bundles, live pointer, thresholds.

Layout under the registry root, one folder per product::

    <product>/versions/<version>/record.json   immutable model version (+ checkpoint files)
    <product>/bundles/<bundle_id>/              immutable exported bundle (see core.bundle)
    <product>/live.json                         which bundle the stations serve
    <product>/thresholds.jsonl                  append-only threshold versions
    <product>/decisions.jsonl                   append-only ROI and force decisions
    <product>/events.jsonl                      append-only audit log (promote, rollback, ...)

``Registry`` is the one door to it: versions and bundles are ``core.version_store``'s, the
signed records (live pointer, thresholds, decisions) and the audit log
``core.decision_journal``'s. Every write goes through a per-product file lock and an atomic
rename, so a crash leaves either the old state or the new one, never half of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from inspection.core.decision_journal import DecisionJournal
from inspection.core.decisions import Decision, DecisionKind, LiveState, ThresholdVersion
from inspection.core.model_record import ModelRecord
from inspection.core.version_store import VersionStore


class Registry:
    """Reads and writes the registry folder. Cheap to construct; holds no state."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.store = VersionStore(self.root)
        self.journal = DecisionJournal(self.store)

    # ------------------------------------------------------- versions + bundles
    def products(self) -> list[str]:
        return self.store.products()

    def create_version(
        self,
        product: str,
        *,
        model_kind: str,
        config: Mapping[str, Any],
        dataset: Mapping[str, Any],
        metrics: Mapping[str, Any],
        packages: Mapping[str, str],
        write_files: Callable[[Path], None] | None = None,
        weights: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        """``VersionStore.create_version``: the next immutable version of ``product``."""
        return self.store.create_version(
            product, model_kind=model_kind, config=config, dataset=dataset, metrics=metrics,
            packages=packages, write_files=write_files, weights=weights, extra=extra,
        )  # fmt: skip

    def versions(self, product: str) -> list[ModelRecord]:
        return self.store.versions(product)

    def version(self, product: str, version: str) -> ModelRecord:
        return self.store.version(product, version)

    def latest_version(self, product: str) -> ModelRecord:
        return self.store.latest_version(product)

    def add_bundle(self, product: str, source_dir: str | Path, bundle_id: str) -> Path:
        """Copy a verified bundle folder into the registry; an existing id is never overwritten."""
        return self.store.add_bundle(product, source_dir, bundle_id)

    def bundle_ids(self, product: str) -> list[str]:
        return self.store.bundle_ids(product)

    def bundle_dir(self, product: str, bundle_id: str) -> Path:
        return self.store.bundle_dir(product, bundle_id)

    def bundle_record(self, product: str, bundle_id: str) -> ModelRecord:
        """The model version a bundle was exported from (named in its metadata)."""
        return self.store.bundle_record(product, bundle_id)

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
