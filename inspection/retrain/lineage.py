"""What a champion learned beyond its dataset and reviews: the good images ``train --update``
added to its bank or an ancestor's (``core.model_record.ADDED_DIR``), so a challenger trains
on them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inspection.core.model_record import ADDED_DIR, ModelRecord
from inspection.core.registry import Registry
from inspection.core.retrain_report import RetrainEvent


@dataclass(frozen=True)
class Learned:
    """``images``: files (in the registry) a champion learned from by ``train --update``;
    ``missing``: what it learned that is no longer there -> why (left out, reported)."""

    images: tuple[Path, ...] = ()
    missing: dict[str, str] = field(default_factory=dict)


def learned_images(registry: Registry, record: ModelRecord | None) -> Learned:
    """The ``Learned`` of ``record``: its incremental lineage, then the run that made its root."""
    images: list[Path] = []
    missing: dict[str, str] = {}
    while record is not None:
        lineage = record.lineage()
        if lineage is None or lineage.method != "incremental":
            images += _run_learned(registry, record, missing)
            break
        kept = record.path / ADDED_DIR
        for digest in lineage.added_digests:
            found = sorted(kept.glob(f"{digest}.*")) if kept.is_dir() else []
            if found:
                images.append(found[0])
            else:
                missing[f"{record.version}:{digest[:12]}"] = (
                    f"added by {record.version} but no copy kept (updated before copies were "
                    "kept): add the image again with train --update"
                )
        record = registry.bundles.version(record.product, lineage.parent)
    return Learned(tuple(dict.fromkeys(images)), missing)


def _run_learned(registry: Registry, record: ModelRecord, missing: dict[str, str]) -> list[Path]:
    """The ``learned_images`` of the retrain run that made ``record`` (none: [])."""
    for event in reversed(registry.journal.events(record.product)):
        if event.get("action") != "retrain" or event.get("challenger_version") != record.version:
            continue
        run = RetrainEvent.from_event(event, f"{record.product} retrain event")
        paths = [registry.root / name for name in run.learned_images]
        for path in paths:
            if not path.is_file():
                missing[str(path)] = "no longer in the registry (its version was deleted)"
        return [path for path in paths if path.is_file()]
    return []
