"""Which threshold a station serves, and the golden check and re-calibration behind it.

The registry's newest threshold version that ``Trust`` accepts serves. A bundle re-calibrated
on this CPU (its golden outputs drifted) scores on a new scale: a version is carried across at
its false-reject budget or not applied, and the product's golden status (``/healthz``, the
dashboard, the registry's golden outcomes) says which.
"""

from __future__ import annotations

import logging

from inspection.core.decisions import ThresholdVersion
from inspection.core.errors import RegistryError
from inspection.core.golden import GoldenDriftError, golden_status
from inspection.core.registry import Registry
from inspection.runtime.predictor import Predictor
from inspection.runtime.recalibration import record_golden_outcome
from inspection.station.trust import Trust

log = logging.getLogger(__name__)

THRESHOLD_NOTES = ("threshold_carried", "threshold_not_applied")
"""What ``golden`` says of the registry threshold of a re-calibrated bundle (one of them)."""


class Thresholds:
    """The threshold each product is served at and its last golden check on this CPU."""

    def __init__(self, registry: Registry, trust: Trust) -> None:
        self.registry = registry
        self.trust = trust
        self._golden: dict[str, dict[str, object]] = {}  # product -> last golden check

    def golden(self, product: str) -> dict[str, object] | None:
        """The last golden status of ``product`` (``core.golden.golden_status``), if any."""
        return self._golden.get(product)

    def newest(self, product: str, bundle_id: str) -> ThresholdVersion | None:
        """The newest threshold version for ``bundle_id`` (or any) this station may serve."""
        try:
            history = self.registry.journal.threshold_history(product)
        except (RegistryError, ValueError, TypeError) as exc:
            log.error("%s: unreadable threshold history: %s", product, exc)
            history = []
        versions = [v for v in history if v.bundle_id in (None, bundle_id)]
        return self.trust.newest_threshold(product, versions)

    def loaded(
        self,
        product: str,
        served: str,
        inspector: Predictor,
        threshold: ThresholdVersion | None,
    ) -> float:
        """Record the golden check of bundle ``served``, just loaded, and return its threshold:
        registry version ``threshold`` across a re-calibration, else the bundle's own."""
        self._golden[product] = golden_status(
            served, getattr(inspector, "golden", None), getattr(inspector, "recalibration", None)
        )
        value = inspector.threshold
        if threshold is not None:
            value = self._across_recalibration(product, served, inspector, threshold)
        record_golden_outcome(self.registry, product, self._golden[product])
        return value

    def drifted(self, product: str, bundle_id: str, exc: GoldenDriftError) -> None:
        """Record the golden check that refused bundle ``bundle_id``."""
        self._golden[product] = golden_status(bundle_id, exc.check, refusal=exc.reason)
        record_golden_outcome(self.registry, product, self._golden[product])

    def moved(
        self, product: str, served: str, inspector: Predictor, threshold: ThresholdVersion
    ) -> float:
        """The value to serve the new registry version ``threshold`` at on the running bundle
        ``served`` (a re-calibrated bundle's golden outcome is recorded again)."""
        value = self._across_recalibration(product, served, inspector, threshold)
        recalibrated = getattr(inspector, "recalibration", None) is not None
        if recalibrated and (self._golden.get(product) or {}).get("bundle_id") == served:
            record_golden_outcome(self.registry, product, self._golden[product])
        return value

    def _across_recalibration(
        self,
        product: str,
        served: str,
        inspector: Predictor,
        threshold: ThresholdVersion,
    ) -> float:
        """The threshold to serve for registry version ``threshold`` on bundle ``served``. A bundle
        re-calibrated here scores on a new scale: the version is carried across at its false-reject
        budget (``Recalibration.carry``) or not applied; the golden status and the log say which."""
        recalibration = getattr(inspector, "recalibration", None)
        if recalibration is None:
            return threshold.value
        carry = recalibration.carry(threshold.number, threshold.value, threshold.budget)
        if carry.carried is not None:
            self._note(product, served, "threshold_carried", carry.summary())
            log.warning(
                "%s: threshold v%d %.4f served as %.4f after re-calibrating on this CPU, %s",
                product, carry.number, carry.value, carry.carried, carry.how,
            )  # fmt: skip
            return carry.carried
        note = _not_applied(threshold, inspector.threshold, carry.how)
        self._note(product, served, "threshold_not_applied", note)
        log.warning("%s: %s", product, note)
        return inspector.threshold

    def _note(self, product: str, served: str, key: str, note: object) -> None:
        """Bundle ``served``'s golden status with ``key`` as its only threshold note, replaced, never
        changed in place (requests may be serialising it); another bundle's is left as it is."""
        golden = self._golden.get(product)
        if golden is None or golden.get("bundle_id") != served:
            return
        kept = {name: value for name, value in golden.items() if name not in THRESHOLD_NOTES}
        self._golden[product] = {**kept, key: note}


def _not_applied(threshold: ThresholdVersion, served: float, why: str) -> str:
    """Why a re-calibrated bundle does not serve the registry's threshold version."""
    return (
        f"threshold v{threshold.number} ({threshold.value:.4f}) was set for the bundle's export "
        f"calibration and cannot be carried across its re-calibration on this CPU: {why}; "
        f"serving the re-calibrated operating point ({served:.4f}). Save the threshold at a "
        "false-reject budget (Thresholds page) to have it re-derived here"
    )
