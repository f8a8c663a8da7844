"""Station side of bundle distribution: pull the live bundles into the station's registry.

``sync_once`` downloads a product's new live bundle from the source (catalog over HTTP or a
shared registry path) to staging, checks its digests and signature, then adds it and makes it
live. Signed live pointers, thresholds and decisions are mirrored unchanged (the station never
signs what a catalog sent); any failure leaves the local live bundle serving.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from inspection.core.bundle import verify_bundle
from inspection.core.config import from_mapping
from inspection.core.decisions import Decision, LiveState, ThresholdVersion
from inspection.core.errors import BundleError, InspectionError
from inspection.core.registry import Registry
from inspection.core.signing import verify_signed_bundle
from inspection.distribution.archive import unpack_bundle
from inspection.distribution.catalog import (
    CatalogEntry,
    archive_for,
    entry_from_mapping,
    live_entry,
)

log = logging.getLogger(__name__)
SyncStatus = Literal["current", "updated", "failed", "offline", "not_live"]
SYNC_ACTOR = "station-sync"


class SourceUnreachable(InspectionError):
    """The source cannot be reached right now; the station keeps its last good bundle."""


class BundleSource(Protocol):
    """Where bundles come from: ``HttpSource`` (central catalog) or ``PathSource``."""

    description: str

    def entries(self, products: tuple[str, ...]) -> dict[str, CatalogEntry]: ...

    def download(self, entry: CatalogEntry, target: Path) -> None: ...


@dataclass(frozen=True)
class SyncOutcome:
    """What one product's sync did. ``live`` is the bundle the station's registry now names."""

    product: str
    status: SyncStatus
    live: str | None
    remote: str | None
    detail: str = ""
    seconds: float = 0.0


class HttpSource:
    """The central catalog (``inspection registry serve``) with a station bearer token."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 30.0) -> None:
        import httpx  # deferred: only an HTTP source needs it (cli.station imports this module)

        if not token:
            raise InspectionError(
                "a registry token is needed: pass --token-file FILE (the station token the "
                "catalog admin issued) or set INSPECTION_REGISTRY_TOKEN"
            )
        self.description = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.description,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
        )

    def entries(self, products: tuple[str, ...]) -> dict[str, CatalogEntry]:
        with self._reaching():
            response = self._client.get("/v1/catalog", params={"product": list(products)})
        _raise_for_status(response, f"{self.description}/v1/catalog")
        body = response.json()
        bundles = body.get("bundles") if isinstance(body, dict) else None
        if not isinstance(bundles, dict):
            raise BundleError(f"{self.description}/v1/catalog: no 'bundles' object in the answer")
        return {
            name: entry_from_mapping(data, f"catalog entry {name!r}")
            for name, data in bundles.items()
            if name in products
        }

    def download(self, entry: CatalogEntry, target: Path) -> None:
        path = f"/v1/bundles/{entry.product}/{entry.bundle_id}/archive"
        limit = entry.manifest.archive_bytes
        with self._reaching(), self._client.stream("GET", path) as response:
            _raise_for_status(response, self.description + path)
            written = 0
            with open(target, "wb") as handle:
                for chunk in response.iter_bytes(1 << 20):
                    written += len(chunk)
                    if written > limit:
                        raise BundleError(
                            f"download of {entry.product}/{entry.bundle_id} exceeds the "
                            f"announced {limit} bytes: refused"
                        )
                    handle.write(chunk)

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """Transport errors inside as ``SourceUnreachable`` (the station keeps its bundles)."""
        import httpx  # deferred: as in __init__

        try:
            yield
        except httpx.TransportError as exc:
            raise SourceUnreachable(
                f"cannot reach {self.description}: {type(exc).__name__}: {exc}"
            ) from exc

    def close(self) -> None:
        self._client.close()


class PathSource:
    """A registry folder on a shared path (NFS/SMB mount), read with the same checks."""

    def __init__(self, root: str | Path) -> None:
        self.registry = Registry(root)
        self.description = str(root)

    def entries(self, products: tuple[str, ...]) -> dict[str, CatalogEntry]:
        if not self.registry.root.is_dir():
            raise SourceUnreachable(
                f"cannot reach {self.registry.root}: not a folder (mount missing?)"
            )
        found = {name: live_entry(self.registry, name) for name in products}
        return {name: entry for name, entry in found.items() if entry is not None}

    def download(self, entry: CatalogEntry, target: Path) -> None:
        tar_path, _ = archive_for(self.registry, entry.product, entry.bundle_id)
        try:
            shutil.copyfile(tar_path, target)
        except OSError as exc:
            raise SourceUnreachable(f"cannot reach {tar_path}: {exc}") from exc


def _raise_for_status(response, url: str) -> None:  # response: httpx.Response
    """``url``: the catalog's address and the path asked for, named in the error."""
    if response.status_code in (502, 503, 504):
        raise SourceUnreachable(f"cannot reach {url}: HTTP {response.status_code}")
    if response.status_code != 200:
        response.read()
        detail = response.text[:200]
        raise BundleError(f"{url}: HTTP {response.status_code}: {detail}")


# ---------------------------------------------------------------------------- sync
def sync_once(
    source: BundleSource,
    registry_dir: str | Path,
    products: Iterable[str],
    *,
    public_key: Ed25519PublicKey | None = None,
    offline_ok: bool = True,
) -> list[SyncOutcome]:
    """Bring each product's local live bundle in step with the source; problems become
    ``offline``/``failed`` outcomes (``offline_ok=False``: an unreachable source raises, so a
    one-shot sync does not look done). A bundle failing the pinned ``public_key`` never installs."""
    registry = Registry(registry_dir)
    products = tuple(products)
    started = time.perf_counter()
    try:
        entries = source.entries(products)
    except SourceUnreachable as exc:
        if not offline_ok:
            raise
        return [_kept(registry, p, "offline", None, str(exc), started) for p in products]
    except InspectionError as exc:
        return [_kept(registry, p, "failed", None, str(exc), started) for p in products]
    outcomes = []
    for product in products:
        entry = entries.get(product)
        if entry is None:
            detail = f"{source.description} has no live bundle for {product}"
            outcomes.append(_kept(registry, product, "not_live", None, detail, started))
            continue
        outcomes.append(_sync_product(source, registry, entry, public_key))
    return outcomes


def _sync_product(
    source: BundleSource,
    registry: Registry,
    entry: CatalogEntry,
    public_key: Ed25519PublicKey | None,
) -> SyncOutcome:
    started = time.perf_counter()
    product, bundle_id = entry.product, entry.bundle_id
    local = registry.journal.live(product)
    current = local is not None and local.bundle_id == bundle_id
    try:
        sync_decisions(registry, entry)
        if current:
            detail = ""
        elif bundle_id in registry.bundles.bundle_ids(product):
            _check(registry.bundles.bundle_dir(product, bundle_id), public_key)  # e.g. a rollback
            detail = "already held locally"
        else:
            _fetch(source, registry, entry, public_key)
            detail = f"downloaded {entry.manifest.archive_bytes} bytes, digests verified"
        if public_key is not None and not current:
            detail += ", signature verified"
        sync_live(registry, entry, source.description)
        sync_threshold(registry, entry)
        fetched = _fetch_alternatives(source, registry, entry, public_key)
        detail = "; ".join(filter(None, [detail, fetched]))
    except SourceUnreachable as exc:
        return _kept(registry, product, "offline", bundle_id, str(exc), started)
    except (InspectionError, OSError) as exc:
        log.error("%s: bundle %s refused: %s", product, bundle_id, exc)
        return _kept(registry, product, "failed", bundle_id, str(exc), started)
    if not current:
        log.info("%s: now live locally: %s (%s)", product, bundle_id, detail)
    status = "current" if current else "updated"
    return SyncOutcome(product, status, bundle_id, bundle_id, detail, _since(started))


def _check(bundle_dir: Path, public_key: Ed25519PublicKey | None) -> None:
    """Every file against its checksum and, with a pinned key, the signature (``BundleError``)."""
    if public_key is None:
        verify_bundle(bundle_dir)
        return
    try:
        verify_signed_bundle(bundle_dir, public_key)
    except BundleError as exc:
        raise BundleError(str(exc).replace(str(bundle_dir), "<download>")) from exc


def _fetch(
    source: BundleSource,
    registry: Registry,
    entry: CatalogEntry,
    public_key: Ed25519PublicKey | None,
) -> None:
    """Download, check (digests, then signature) and add the bundle to the registry (not live)."""
    staging_root = registry.root / ".incoming"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{entry.product}-{entry.bundle_id}-", dir=staging_root))
    try:
        archive = staging / "bundle.tar"
        source.download(entry, archive)
        bundle_dir = unpack_bundle(archive, entry.manifest, staging / "unpacked")
        _check(bundle_dir, public_key)
        registry.bundles.add_bundle(entry.product, bundle_dir, entry.bundle_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_alternatives(
    source: BundleSource,
    registry: Registry,
    entry: CatalogEntry,
    public_key: Ed25519PublicKey | None,
) -> str:
    """Fetch the live version's other gated precisions not held yet (the station times them
    and serves the fastest); one that fails is logged and skipped, the live one still serves."""
    held = set(registry.bundles.bundle_ids(entry.product))
    fetched, failed = [], []
    for manifest in entry.alternatives:
        if manifest.bundle_id in held:
            continue
        alternative = replace(entry, bundle_id=manifest.bundle_id, manifest=manifest)
        try:
            _fetch(source, registry, alternative, public_key)
            fetched.append(manifest.bundle_id)
        except (InspectionError, OSError) as exc:
            log.warning(
                "%s: alternative %s not fetched: %s", entry.product, manifest.bundle_id, exc
            )
            failed.append(manifest.bundle_id)
    parts = [f"fetched {', '.join(fetched)}"] if fetched else []
    parts += [f"could not fetch {', '.join(failed)}"] if failed else []
    return "; ".join(parts)


def sync_live(registry: Registry, entry: CatalogEntry, description: str) -> None:
    """Point the local registry at the entry's bundle: the central signed live pointer mirrored
    unchanged, else an unsigned local promotion (which a keyed station refuses)."""
    if entry.live_record is None:
        local = registry.journal.live(entry.product)
        if local is None or local.bundle_id != entry.bundle_id:
            registry.journal.promote(
                entry.product, entry.bundle_id, actor=SYNC_ACTOR, reason=f"live on {description}"
            )
        return
    state = from_mapping(LiveState, entry.live_record, "catalog live pointer")
    if (state.product, state.bundle_id) != (entry.product, entry.bundle_id):
        raise BundleError(f"catalog entry of {entry.product}: its live record names another bundle")
    local = registry.journal.live(entry.product)
    if local is None or local.row() != state.row():
        registry.journal.mirror(state, actor=SYNC_ACTOR)


def sync_decisions(registry: Registry, entry: CatalogEntry) -> None:
    """Mirror the product's signed decisions (ROI, force) unchanged, once each."""
    for row in entry.decisions:
        decision = from_mapping(Decision, row, "catalog decision")
        if decision.product != entry.product:
            raise BundleError(f"catalog entry of {entry.product}: a decision of another product")
        registry.journal.mirror(decision, actor=SYNC_ACTOR)


def sync_threshold(registry: Registry, entry: CatalogEntry) -> None:
    """Mirror the central threshold (value and budget) when it differs from the local one; a
    signed version unchanged, so the station verifies the central signature."""
    if entry.threshold is None:
        return
    current = registry.journal.current_threshold(entry.product)
    if entry.threshold_record is not None:
        signed = from_mapping(ThresholdVersion, entry.threshold_record, "catalog threshold")
        if signed.product != entry.product or signed.value != entry.threshold:
            raise BundleError(f"catalog entry of {entry.product}: its threshold record differs")
        if current is None or current.row() != signed.row():
            registry.journal.mirror(signed, actor=SYNC_ACTOR)
        return
    central = (entry.threshold, entry.threshold_budget)
    if current is not None and (current.value, current.budget) == central:
        return
    registry.journal.set_threshold(
        entry.product,
        entry.threshold,
        actor=SYNC_ACTOR,
        reason="threshold of the central registry",
        bundle_id=entry.threshold_bundle_id,
        budget=entry.threshold_budget,
        sign=False,  # never vouch for what the catalog sent: a keyed station refuses it
    )


def _kept(
    registry: Registry,
    product: str,
    status: SyncStatus,
    remote: str | None,
    detail: str,
    started: float,
) -> SyncOutcome:
    local = registry.journal.live(product)
    live = local.bundle_id if local else None
    if live is not None:
        detail += f"; keeps serving {live}"
    return SyncOutcome(product, status, live, remote, detail, _since(started))


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def sync_forever(
    source: BundleSource,
    registry_dir: str | Path,
    products: Iterable[str],
    *,
    interval_s: float,
    stop: threading.Event,
    on_outcomes: Callable[[list[SyncOutcome]], None] | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> None:
    """Poll the source every ``interval_s`` until ``stop``. An unreachable source is warned
    about once per outage (and noted when back); ``on_outcomes`` hears nothing meanwhile."""
    if interval_s <= 0:
        raise InspectionError(f"the sync interval must be > 0 seconds, got {interval_s}")
    products = tuple(products)
    outage = False
    while not stop.is_set():
        try:
            outcomes = sync_once(
                source, registry_dir, products, public_key=public_key, offline_ok=False
            )
        except SourceUnreachable as exc:
            if not outage:
                log.warning(
                    "%s; retrying every %g s, the station keeps its live bundles", exc, interval_s
                )
            outage = True
        else:
            if outage:
                log.info("%s is reachable again", source.description)
            outage = False
            if on_outcomes is not None:
                on_outcomes(outcomes)
        stop.wait(interval_s)
