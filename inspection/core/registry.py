"""Model registry on disk, one folder per product: the one door to its two halves, versions and
bundles (``core.version_store``) and the signed records and audit log (``core.decision_journal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inspection.core.decision_journal import DecisionJournal
from inspection.core.version_store import VersionStore


@dataclass(frozen=True, init=False)
class Registry:
    """The registry folder at ``root``; cheap to construct, holds no state but its two halves:
    ``bundles`` (versions and bundles: ``registry.bundles.bundle_dir``) and ``journal`` (the
    live pointer, thresholds, decisions and events: ``registry.journal.promote``)."""

    root: Path
    bundles: VersionStore
    journal: DecisionJournal

    def __init__(self, root: str | Path) -> None:
        bundles = VersionStore(Path(root))
        object.__setattr__(self, "root", bundles.root)
        object.__setattr__(self, "bundles", bundles)
        object.__setattr__(self, "journal", DecisionJournal(bundles))
