"""The central catalog: which bundle is live per product (``CatalogEntry``), and its archive,
packed once per immutable bundle under ``.archives/<product>/<bundle_id>.tar`` (+ ``.json``)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import BundleError, InspectionError
from inspection.core.model_record import check_name
from inspection.core.registry import Registry
from inspection.distribution.archive import (
    ARCHIVE_SUFFIX,
    ArchiveManifest,
    manifest_from_mapping,
    pack_bundle,
)

log = logging.getLogger(__name__)
CATALOG_SCHEMA_VERSION = 1
ARCHIVES_DIR = ".archives"


@dataclass(frozen=True)
class CatalogEntry:
    """The live bundle of one product as the central registry announces it."""

    product: str
    bundle_id: str
    since: str
    manifest: ArchiveManifest
    threshold: float | None = None
    threshold_bundle_id: str | None = None
    threshold_budget: float | None = None
    """The false-reject budget the threshold was chosen for (``ThresholdVersion.budget``)."""
    threshold_record: dict[str, Any] | None = None
    """The threshold version's signed row, mirrored unchanged by a station (None: unsigned)."""
    live_record: dict[str, Any] | None = None
    """The signed live pointer (``live.json``), mirrored unchanged (None: unsigned)."""
    decisions: tuple[dict[str, Any], ...] = ()
    """The product's signed decisions (``core.decisions``) as rows."""
    alternatives: tuple[ArchiveManifest, ...] = ()
    """The live version's other gated bundles: the station times them and serves the fastest."""

    def to_mapping(self) -> dict[str, Any]:
        """The JSON view; optional signed entries only when set (earlier stations read it)."""
        data = to_mapping(self)
        for key in ("threshold_budget", "threshold_record", "live_record", "decisions"):
            if data[key] in (None, []):
                del data[key]
        return data


def entry_from_mapping(data: object, where: str = "catalog entry") -> CatalogEntry:
    """Validate one entry received over HTTP; problems raise ``BundleError`` naming ``where``."""
    if not isinstance(data, dict) or not isinstance(data.get("manifest"), dict):
        raise BundleError(f"{where}: expected an object with a 'manifest' object")
    manifest = manifest_from_mapping(data["manifest"], f"{where}.manifest")
    alternatives = data.get("alternatives") or []
    if not isinstance(alternatives, list):
        raise BundleError(f"{where}: 'alternatives' must be a list of manifests")
    checked = [
        to_mapping(manifest_from_mapping(item, f"{where}.alternatives[{i}]"))
        for i, item in enumerate(alternatives)
    ]
    try:
        entry = from_mapping(
            CatalogEntry,
            {**data, "manifest": to_mapping(manifest), "alternatives": checked},
            where,
        )
    except (InspectionError, ValueError) as exc:
        raise BundleError(f"{where}: {exc}") from exc
    if (entry.product, entry.bundle_id) != (manifest.product, manifest.bundle_id):
        raise BundleError(f"{where}: the manifest describes another bundle")
    if any(alt.product != entry.product for alt in entry.alternatives):
        raise BundleError(f"{where}: an alternative bundle belongs to another product")
    return entry


def archive_paths(registry: Registry, product: str, bundle_id: str) -> tuple[Path, Path]:
    """(tar, manifest json) of a bundle's cached archive."""
    folder = registry.root / ARCHIVES_DIR / check_name("product", product)
    name = check_name("bundle", bundle_id)
    return folder / f"{name}{ARCHIVE_SUFFIX}", folder / f"{name}.json"


def archive_for(registry: Registry, product: str, bundle_id: str) -> tuple[Path, ArchiveManifest]:
    """The cached archive of a bundle, packed on first request; the manifest is written after
    the tar, so a crash in between packs again."""
    tar_path, manifest_path = archive_paths(registry, product, bundle_id)
    if not manifest_path.is_file():
        bundle_dir = registry.bundles.bundle_dir(product, bundle_id)
        tar_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(manifest_path.with_suffix(".lock")), timeout=120):
            if not manifest_path.is_file():
                manifest = pack_bundle(bundle_dir, tar_path)
                tmp = manifest_path.with_name(f".{manifest_path.name}.tmp")
                tmp.write_text(manifest.to_json(), encoding="utf-8")
                tmp.replace(manifest_path)
                log.info("packed %s/%s (%d bytes)", product, bundle_id, manifest.archive_bytes)
    data = json.loads(manifest_path.read_text(encoding="utf-8"))
    return tar_path, manifest_from_mapping(data, str(manifest_path))


def live_entry(registry: Registry, product: str) -> CatalogEntry | None:
    """The catalog entry of ``product``'s live bundle, or ``None`` when nothing is live."""
    state = registry.journal.live(product)
    if state is None:
        return None
    _, manifest = archive_for(registry, product, state.bundle_id)
    history = registry.journal.threshold_history(product)
    applies = [t for t in history if t.bundle_id in (None, state.bundle_id)]
    threshold = applies[-1] if applies else None
    return CatalogEntry(
        product=product,
        bundle_id=state.bundle_id,
        since=state.since,
        manifest=manifest,
        threshold=threshold.value if threshold else None,
        threshold_bundle_id=threshold.bundle_id if threshold else None,
        threshold_budget=threshold.budget if threshold else None,
        threshold_record=threshold.row() if threshold and threshold.signature else None,
        live_record=state.row() if state.signature else None,
        decisions=tuple(d.row() for d in registry.journal.decisions(product) if d.signature),
        alternatives=_alternatives(registry, product, state.bundle_id),
    )


def _alternatives(
    registry: Registry, product: str, live_bundle_id: str
) -> tuple[ArchiveManifest, ...]:
    """Manifests of the live version's other bundles that passed their export gate."""
    # deferred: openvino, skimage
    from inspection.runtime.tuning import gated_candidates

    return tuple(
        archive_for(registry, product, bundle_id)[1]
        for bundle_id, _, _, (passed, _) in gated_candidates(registry, product, live_bundle_id)
        if passed and bundle_id != live_bundle_id
    )
