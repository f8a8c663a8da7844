"""A product's certificate and its renewal from confirmed-good audit parts (``core.certificate``):
``certify_product`` (``inspection operating certify``, the dashboard's *Certify*) sets a new
threshold version for the live bundle, signed where the site key is held;
``product_certificate`` is what the dashboard and ``station status`` show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from inspection.core.bundle import read_bundle_metadata, verify_bundle
from inspection.core.certificate import (
    AuditSelection,
    Certificate,
    CertificationError,
    bundle_certificate,
    certify,
    select_audited,
)
from inspection.core.decisions import ThresholdVersion
from inspection.core.registry import Registry
from inspection.core.validation_scores import read_validation_scores
from inspection.store import queries
from inspection.store.store import Store


@dataclass(frozen=True)
class ProductCertificate:
    """The live bundle's certificate as served: of its newest threshold version for it, else
    of its export (``version`` None); ``waiting``: confirmed-good audit parts of complete
    review windows not in it yet; ``audit``: what the audit sample holds and leaves out."""

    product: str
    bundle_id: str
    certificate: Certificate | None
    version: int | None
    waiting: int
    audit: AuditSelection | None = None

    def describe(self) -> str:
        """The certificate, where it comes from, what is waiting and the audit sample's state."""
        source = "as exported" if self.version is None else f"threshold v{self.version}"
        if self.certificate is None:
            text = (
                f"{self.bundle_id}: no certificate ({source} is not set at a false-reject budget)"
            )
        else:
            text = f"{self.bundle_id}: {self.certificate.describe()} ({source})"
        if self.waiting:
            text += f"; {self.waiting} confirmed audit parts not yet included: certify"
        if self.audit is not None and (self.audit.good or self.audit.held_open):
            text += f"; {self.audit.describe()}"
            refusal = self.audit.refusal()
            text += f"; certification refused: {refusal}" if refusal else ""
        return text


def product_certificate(
    registry: Registry, store: Store | None, product: str, *, since: datetime | None = None
) -> ProductCertificate:
    """``product``'s live bundle certificate (``CertificationError`` without a live bundle;
    ``store`` None: no results database, no audit parts; ``since``: audit parts from then on)."""
    bundle_id = _live(registry, product)
    served = _served_version(registry, product, bundle_id)
    metadata = read_bundle_metadata(registry.bundles.bundle_dir(product, bundle_id))
    if served is not None:
        certificate, number = served.certificate, served.number
    else:
        certificate, number = bundle_certificate(metadata), None
    if store is None:
        return ProductCertificate(product, bundle_id, certificate, number, 0)
    parts = queries.audit_parts(store, product, since=since)
    audit = select_audited(parts, bundle_id, metadata.normalization.fingerprint)
    included = certificate.n_audited if certificate is not None else 0
    return ProductCertificate(
        product, bundle_id, certificate, number, max(0, len(audit.good) - included), audit
    )


def certify_product(
    registry: Registry,
    store: Store,
    product: str,
    *,
    actor: str,
    since: datetime | None = None,
) -> ThresholdVersion:
    """Derive the live bundle's threshold again from its calibration scores and its audit
    sample (since ``since``: a recent window), as the product's next threshold version
    (``CertificationError``: the audit sample or the gate refused)."""
    bundle_id = _live(registry, product)
    bundle_dir = registry.bundles.bundle_dir(product, bundle_id)
    metadata = verify_bundle(bundle_dir)
    parts = queries.audit_parts(store, product, since=since)
    certified = certify(metadata, parts, read_validation_scores(bundle_dir))
    certificate = certified.certificate
    audit = "" if certified.selection is None else f"; {certified.selection.describe()}"
    return registry.journal.set_threshold(
        product, certified.threshold, actor=actor,
        reason=f"certified on {certificate.n_audited} confirmed audit parts: "
        f"{certificate.describe()}{audit}",
        bundle_id=bundle_id, budget=certificate.budget, certificate=certificate,
    )  # fmt: skip


def _live(registry: Registry, product: str) -> str:
    live = registry.journal.live(product)
    if live is None:
        raise CertificationError(f"product {product!r} has no live bundle to certify")
    return live.bundle_id


def _served_version(registry: Registry, product: str, bundle_id: str) -> ThresholdVersion | None:
    """The newest threshold version a station serves on ``bundle_id`` (of it or any bundle)."""
    versions = [
        v for v in registry.journal.threshold_history(product) if v.bundle_id in (None, bundle_id)
    ]
    return versions[-1] if versions else None
