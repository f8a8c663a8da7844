"""Which bundle a station serves for a product's live pointer: the live one, or the sibling
this CPU's tuning record (``inspection station tune``) measured fastest (``TunedSelector``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from inspection.core.registry import Registry
from inspection.runtime.tuning import (
    TuningRecord,
    gated_candidates,
    read_tuning_row,
    tune_product,
    tuning_refusal,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """Which bundle to serve for a live pointer, and the measurement that chose it (if any)."""

    bundle_id: str
    tuning: TuningRecord | None = None
    refused: str | None = None
    """Why the tuning record on disk was refused (the last good pick serves); None: none."""


BundleSelector = Callable[[str, str], Selection]
"""(product, live bundle id) -> the bundle this station serves."""


def serve_live_bundle(product: str, live_bundle_id: str) -> Selection:
    """No tuning: serve exactly the bundle the registry points at."""
    return Selection(live_bundle_id)


class TunedSelector:
    """Serve this CPU's tuning record's choice (``inspection station tune``) for the live
    bundle; without one, measure two or more gated bundles once at load (``tune_on_load``)."""

    def __init__(
        self,
        registry: Registry,
        *,
        tune_on_load: bool = True,
        public_key: Ed25519PublicKey | None = None,
    ) -> None:
        """``public_key``: the pinned site key; siblings failing it are never measured."""
        self.registry, self.tune_on_load, self.public_key = registry, tune_on_load, public_key
        self._attempted: set[tuple[str, str]] = set()
        self._accepted: dict[str, TuningRecord] = {}  # product -> last tuning record trusted
        self._checked: dict[str, tuple[dict[str, object], str | None]] = {}  # row, refusal

    def __call__(self, product: str, live_bundle_id: str) -> Selection:
        record, refused = self._trusted(product)
        if record is not None and record.live_bundle_id == live_bundle_id:
            return Selection(record.chosen_bundle_id, record, refused)
        if refused is not None:
            return Selection(live_bundle_id, refused=refused)
        if self.tune_on_load and (product, live_bundle_id) not in self._attempted:
            self._attempted.add((product, live_bundle_id))
            record = self._tune(product, live_bundle_id)
            if record is not None:
                return Selection(record.chosen_bundle_id, record)
        return Selection(live_bundle_id)

    def _trusted(self, product: str) -> tuple[TuningRecord | None, str | None]:
        """The tuning record to follow (the last trusted one when the file's is refused) and
        why the file's was refused. Each new row is checked once (``tuning_refusal``)."""
        try:
            found = read_tuning_row(self.registry, product)
        except (ValueError, OSError) as exc:  # a bad file must not stop serving
            found, why = None, f"unreadable tuning record: {exc}"
        else:
            why = None
        if found is not None:
            record, row = found
            if self._checked.get(product, ({}, None))[0] != row:
                refused = tuning_refusal(self.registry, record, row, self.public_key)
                self._checked[product] = (row, refused)
            why = self._checked[product][1]
            if why is None:
                self._accepted[product] = record
        if why is not None:
            log.error("%s: %s; the last good pick keeps serving", product, why)
        return self._accepted.get(product), why

    def _tune(self, product: str, live_bundle_id: str) -> TuningRecord | None:
        try:
            candidates = gated_candidates(
                self.registry, product, live_bundle_id, public_key=self.public_key
            )
            gated = [c for c in candidates if c[3][0]]
            if len(gated) < 2:
                return None  # nothing to choose between
            log.info("%s: measuring %d gated bundles on this CPU", product, len(gated))
            record = tune_product(
                self.registry, product, progress=log.info, public_key=self.public_key
            )
        except Exception:
            log.exception("%s: self-benchmark failed; serving the live bundle", product)
            return None
        log.info("%s: serving %s (fastest here)", product, record.chosen_bundle_id)
        self._accepted[product] = record
        return record
