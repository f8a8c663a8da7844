"""Model registry on disk, one folder per product: the one door to its two halves, versions and
bundles (``core.version_store``) and the signed records and audit log (``core.decision_journal``).
"""

from __future__ import annotations

from pathlib import Path

from inspection.core.decision_journal import DecisionJournal
from inspection.core.version_store import VersionStore


class Registry(VersionStore, DecisionJournal):
    """Reads and writes the registry folder; cheap to construct, holds no state. Versions and
    bundles are its ``VersionStore`` methods, the signed records its ``DecisionJournal``
    methods (the journal looks bundles up in the registry itself); callers call both on it
    (``registry.promote``, ``registry.bundle_dir``)."""

    def __init__(self, root: str | Path) -> None:
        VersionStore.__init__(self, Path(root))
        DecisionJournal.__init__(self, self)
