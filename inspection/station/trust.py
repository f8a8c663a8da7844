"""What a station with a pinned site key trusts: bundle signatures and signed decisions.

Every decision that changes a verdict must verify (``core.decisions``): the live pointer, the
threshold, the tuning pick, the served bundle's ROI and, when its export gate refused it, the
force record. ``Trust`` remembers why each kind's newest record was refused; the last good
one keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from inspection.core.bundle import BundleMetadata, read_bundle_metadata
from inspection.core.decisions import LiveState, ThresholdVersion, newest_trusted, refusal
from inspection.core.errors import BundleError, RegistryError
from inspection.core.registry import Registry
from inspection.core.signing import bundle_digest, key_id, verify_signed_bundle
from inspection.runtime.predictor import Predictor

log = logging.getLogger(__name__)


class Trust:
    """The signature and decision checks of one station, and why records were refused."""

    def __init__(self, registry: Registry, public_key: Ed25519PublicKey | None) -> None:
        """``public_key``: the pinned site key; None (``allow_unsigned_bundles``) trusts
        every signature but still refuses a gate-refused bundle without a force record."""
        self.registry = registry
        self.public_key = public_key
        self._refused: dict[str, dict[str, str]] = {}  # product -> {kind: why refused}

    def refused(self, product: str) -> dict[str, str]:
        """Kind (live, threshold, tuning, gate, roi) -> why its newest record is refused."""
        return dict(self._refused.get(product, {}))

    def note(self, product: str, kind: str, why: str | None) -> str | None:
        """Record (or clear, ``why`` None) why the newest ``kind`` record was refused;
        returns ``why``."""
        notes = self._refused.setdefault(product, {})
        if why is None:
            notes.pop(kind, None)
        elif notes.get(kind) != why:
            log.error("%s: %s; the last good one keeps serving", product, why)
            notes[kind] = why
        return why

    def live_refusal(self, product: str, state: LiveState) -> str | None:
        """Why the live pointer ``state`` is refused (noted), or None."""
        return self.note(product, "live", refusal(state, self.public_key))

    def newest_threshold(
        self, product: str, versions: Iterable[ThresholdVersion]
    ) -> ThresholdVersion | None:
        """The newest of ``versions`` (oldest first) this station may serve; newer ones that
        fail the pinned key are noted as the ``threshold`` refusal."""
        version, refused = newest_trusted(versions, self.public_key)
        self.note(product, "threshold", "; ".join(refused) or None)
        return version

    def check_bundle(self, product: str, bundle_id: str) -> None:
        """With a pinned key: ``BundleError`` unless the bundle is signed by it and, if live,
        unchanged since promotion (``check_signature``)."""
        if self.public_key is not None:
            check_signature(self.registry, product, bundle_id, self.public_key)

    def refusal_before_load(self, product: str, bundle_id: str) -> str | None:
        """Why the bundle about to load fails its decisions on disk (noted as ``gate`` or
        ``roi``), or None; unreadable bundles pass (the load says what is wrong)."""
        try:
            bundle_dir = self.registry.bundles.bundle_dir(product, bundle_id)
            metadata = read_bundle_metadata(bundle_dir)
            refused = self._decision_refusal(
                product, bundle_id, metadata, bundle_digest(bundle_dir)
            )
        except (BundleError, RegistryError, ValueError, OSError):
            return None
        for kind in ("gate", "roi"):
            self.note(product, kind, refused[1] if refused and refused[0] == kind else None)
        return refused[1] if refused else None

    def check_loaded(
        self, product: str, served: str, inspector: Predictor, bundle_dir: Path
    ) -> None:
        """``BundleError`` unless the loaded bundle ``served`` may serve: with a pinned key the bytes
        compiled were verified and, if live, match the digest recorded at promotion (``bundle_dir``
        digested when the loader kept no verified copy); its decisions verify, a refused one noted."""
        if self.public_key is not None:
            verified = inspector.model.verified
            if verified.signed_by != key_id(self.public_key):
                raise BundleError(
                    "the loader did not verify the bundle's signature with the pinned key"
                )
            _check_promoted(self.registry.journal.live(product), served, verified.digest)
        verified = getattr(inspector.model, "verified", None)
        digest = verified.digest if verified is not None else bundle_digest(bundle_dir)
        refused = self._decision_refusal(product, served, inspector.metadata, digest)
        if refused is not None:
            self.note(product, *refused)
            raise BundleError(refused[1])

    def _decision_refusal(
        self, product: str, bundle_id: str, metadata: BundleMetadata, digest: str
    ) -> tuple[str, str] | None:
        """(kind, why) when a decision the bundle needs is missing or refused, else None."""
        trusted = [
            d for d in self.registry.journal.decisions(product)
            if d.bundle_id in (None, bundle_id) and refusal(d, self.public_key) is None
        ]  # fmt: skip
        gate = gate_refusal(metadata)
        forced = [d for d in trusted if d.kind == "force" and d.bundle_id == bundle_id]
        if gate and not any(d.value.get("digest") == digest for d in forced):
            return "gate", (
                f"bundle {bundle_id} was refused by its export gate ({gate}) and no signed force "
                "record names exactly this bundle"
            )
        if self.public_key is None:
            return None
        roi = metadata.roi.to_mapping() if metadata.roi is not None else None
        if roi is not None and not any(d.kind == "roi" and d.value == roi for d in trusted):
            return "roi", f"bundle {bundle_id}'s ROI is not a signed ROI decision of {product}"
        return None


def check_signature(
    registry: Registry, product: str, bundle_id: str, public_key: Ed25519PublicKey
) -> str:
    """The bundle's digest when it is signed by ``public_key`` and, if it is the live one,
    unchanged since promotion; ``BundleError`` saying what is wrong otherwise."""
    digest = verify_signed_bundle(registry.bundles.bundle_dir(product, bundle_id), public_key)
    _check_promoted(registry.journal.live(product), bundle_id, digest)
    return digest


def bundle_signature_status(
    registry: Registry, product: str, bundle_id: str, public_key: Ed25519PublicKey | None
) -> str:
    """One line for status pages: whether a station with ``public_key`` would load the bundle."""
    if public_key is None:
        return "not checked (allow_unsigned_bundles: true)"
    try:
        digest = check_signature(registry, product, bundle_id, public_key)
    except (BundleError, RegistryError) as exc:
        return f"REFUSED: {without_paths(str(exc), {registry.root: '<registry>'})}"
    return f"signed by the pinned key (digest {digest[:12]}…)"


def without_paths(message: str, paths: dict[Path, str]) -> str:
    """``message`` with each folder of ``paths`` replaced by its text ("" drops it), so API
    clients never learn registry paths."""
    for path, shown in paths.items():
        for form in {str(path.resolve()), str(path)}:
            message = message.replace(form + ": ", shown).replace(form, shown or ".")
    return message


def _check_promoted(state: LiveState | None, bundle_id: str, digest: str) -> None:
    """``BundleError`` when ``bundle_id`` is the live bundle and ``digest`` is not the one
    recorded at its promotion."""
    if state is not None and state.bundle_id == bundle_id and state.digest not in (None, digest):
        raise BundleError(
            f"bundle digest {digest[:12]}… differs from {state.digest[:12]}… recorded at "
            "promotion: the bundle changed after it was promoted"
        )


def gate_refusal(metadata: BundleMetadata) -> str | None:
    """Why the export gate refused the bundle; None when it passed or recorded no gate."""
    try:
        gate = metadata.export_record().gate
    except BundleError as exc:
        return f"unreadable export record: {exc}"
    return gate.refusal() if gate is not None and not gate.passed else None
