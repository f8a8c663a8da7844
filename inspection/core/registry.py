"""Model registry on disk, one folder per product: the one door to its two halves.

Versions and bundles (``<product>/versions/``, ``bundles/``) are ``core.version_store``'s; the
signed records (``live.json``, ``thresholds.jsonl``, ``decisions.jsonl``) and the audit log
(``events.jsonl``) ``core.decision_journal``'s. Every write goes through a per-product file
lock and an atomic rename or append, so a crash leaves the old state or the new one.
"""

from __future__ import annotations

from pathlib import Path

from inspection.core.decision_journal import DecisionJournal
from inspection.core.version_store import VersionStore


class Registry(VersionStore, DecisionJournal):
    """Reads and writes the registry folder; cheap to construct, holds no state. Versions and
    bundles are its ``VersionStore`` methods, the signed records its ``DecisionJournal``
    methods (the journal looks bundles up in the registry itself)."""

    def __init__(self, root: str | Path) -> None:
        VersionStore.__init__(self, Path(root))
        DecisionJournal.__init__(self, self)
        self.journal: DecisionJournal = self
