"""A product's certificate and its renewal from confirmed-good audit parts (``core.certificate``):
``certify_product`` (``inspection operating certify``, the dashboard's *Certify*) sets a new
threshold version for the live bundle, signed where the site key is held;
``product_certificate`` is what the dashboard and ``station status`` show.
"""

from __future__ import annotations

from dataclasses import dataclass

from inspection.core.bundle import read_bundle_metadata, verify_bundle
from inspection.core.certificate import (
    AuditedPart,
    Certificate,
    CertificationError,
    bundle_certificate,
    certify,
)
from inspection.core.decisions import ThresholdVersion
from inspection.core.registry import Registry
from inspection.core.validation_scores import read_validation_scores
from inspection.store import queries
from inspection.store.store import Store


@dataclass(frozen=True)
class ProductCertificate:
    """The live bundle's certificate as served: of its newest threshold version for it, else
    of its export (``version`` None); ``waiting``: its confirmed-good audit parts not in it
    yet; ``other_bundles``: confirmed-good audit parts other bundles scored (never joined)."""

    product: str
    bundle_id: str
    certificate: Certificate | None
    version: int | None
    waiting: int
    other_bundles: int

    def describe(self) -> str:
        """One line: the certificate, where it comes from, and what is waiting."""
        source = "as exported" if self.version is None else f"threshold v{self.version}"
        if self.certificate is None:
            text = (
                f"{self.bundle_id}: no certificate ({source} is not set at a false-reject budget)"
            )
        else:
            text = f"{self.bundle_id}: {self.certificate.describe()} ({source})"
        if self.waiting:
            text += f"; {self.waiting} confirmed audit parts not yet included: certify"
        return text


def audited_parts(store: Store, product: str) -> list[AuditedPart]:
    """Every confirmed-good part of ``product``'s random audit sample, oldest first."""
    return [AuditedPart(*row) for row in queries.audited_good(store, product)]


def product_certificate(
    registry: Registry, store: Store | None, product: str
) -> ProductCertificate:
    """``product``'s live bundle certificate (``CertificationError`` without a live bundle;
    ``store`` None: no results database, no audit parts)."""
    bundle_id = _live(registry, product)
    served = _served_version(registry, product, bundle_id)
    if served is not None:
        certificate, number = served.certificate, served.number
    else:
        metadata = read_bundle_metadata(registry.bundles.bundle_dir(product, bundle_id))
        certificate, number = bundle_certificate(metadata), None
    parts = [] if store is None else audited_parts(store, product)
    own = sum(part.bundle_id == bundle_id for part in parts)
    included = certificate.n_audited if certificate is not None else 0
    return ProductCertificate(
        product, bundle_id, certificate, number, max(0, own - included), len(parts) - own
    )


def certify_product(
    registry: Registry, store: Store, product: str, *, actor: str
) -> ThresholdVersion:
    """Derive the live bundle's threshold again from its calibration scores and its confirmed-good
    audit parts, as the product's next threshold version (``CertificationError``: gate refused)."""
    bundle_id = _live(registry, product)
    bundle_dir = registry.bundles.bundle_dir(product, bundle_id)
    metadata = verify_bundle(bundle_dir)
    parts = [part for part in audited_parts(store, product) if part.bundle_id == bundle_id]
    certified = certify(metadata, parts, read_validation_scores(bundle_dir))
    certificate = certified.certificate
    return registry.journal.set_threshold(
        product, certified.threshold, actor=actor,
        reason=f"certified on {len(parts)} confirmed audit parts: {certificate.describe()}",
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
