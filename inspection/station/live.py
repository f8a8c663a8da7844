"""Live models per product, hot-swapped from the registry without dropping requests: a new
bundle is loaded and verified completely before the reference is swapped, and one that fails to
load is logged while the previous one serves. What may serve is ``station.trust``'s rule.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from inspection.core.background import Background
from inspection.core.bundle import read_bundle_metadata
from inspection.core.decisions import ThresholdVersion
from inspection.core.errors import BundleError
from inspection.core.golden import GoldenDriftError
from inspection.core.registry import Registry
from inspection.core.threshold import check_threshold
from inspection.core.types import InspectionResult
from inspection.refine.config import RefineConfig
from inspection.runtime.predictor import Predictor, load_inspector
from inspection.runtime.tuning import TuningRecord
from inspection.station.errors import NoLiveModel
from inspection.station.selection import BundleSelector, Selection, serve_live_bundle
from inspection.station.thresholds import Thresholds
from inspection.station.trust import Trust, without_paths

log = logging.getLogger(__name__)


InspectorLoader = Callable[[Path], Predictor]
"""Bundle folder -> loaded predictor (``runtime.predictor.load_inspector``)."""


def default_loader(bundle_dir: Path) -> Predictor:
    """``runtime.predictor.load_inspector`` with the refiner the bundle chose (the default
    refine config, no pinned key, no re-calibration)."""
    return load_inspector(bundle_dir, refiner="bundle")


def station_loader(
    refine: RefineConfig,
    validation_images: Mapping[str, Path] | None = None,
    public_key: Ed25519PublicKey | None = None,
    num_threads: int | None = None,
) -> InspectorLoader:
    """``default_loader`` with the station's settings: the refiner's config, per product the
    validation images to re-calibrate a drifting bundle on, the pinned key, OpenVINO threads."""
    folders = dict(validation_images or {})

    def load(bundle_dir: Path) -> Predictor:
        product = read_bundle_metadata(bundle_dir).product if folders else None
        return load_inspector(
            bundle_dir, refiner="bundle", validation=folders.get(product or ""), refine=refine,
            public_key=public_key, num_threads=num_threads,
        )  # fmt: skip

    return load


@dataclass(frozen=True)
class LiveModel:
    """One loaded model and the threshold it is served at. Immutable: a swap replaces the
    whole object, so a request holding one finishes with it."""

    product: str
    bundle_id: str
    """The registry's live pointer."""
    model_version: str
    threshold: float
    threshold_number: int | None
    inspector: Predictor
    served_bundle_id: str
    """The bundle actually running: the live one or its measured-fastest sibling."""
    precision: str
    tuning: TuningRecord | None = None

    def inspect(self, image: np.ndarray, *, started: float | None = None) -> InspectionResult:
        """(H, W, 3) uint8 RGB -> result at this model's threshold; ``started``: the
        ``perf_counter`` time the inspection began (before decoding), for the latency budget."""
        return self.inspector.inspect(image, threshold=self.threshold, started=started)


class LiveModels:
    """The live model of every served product, kept in step with the registry (poll, load,
    swap); ``trust`` decides what may serve, ``thresholds`` at which threshold."""

    def __init__(
        self,
        registry: Registry,
        products: tuple[str, ...],
        *,
        loader: InspectorLoader = default_loader,
        on_change: Callable[[LiveModel], None] | None = None,
        selector: BundleSelector = serve_live_bundle,
        public_key: Ed25519PublicKey | None = None,
    ) -> None:
        """``selector`` picks the bundle to serve for a live pointer; with ``public_key`` only bundles
        it signed (and unchanged since promotion) load."""
        self.registry, self.products = registry, tuple(products)
        self.trust = Trust(registry, public_key)
        self.thresholds = Thresholds(registry, self.trust)
        self._loader, self._selector, self._on_change = loader, selector, on_change
        self._models: dict[str, LiveModel] = {}
        self._problems: dict[str, str] = {}
        self._rejected: dict[str, str] = {}  # product -> bundle id that failed to load
        self._swap_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._poller = Background("registry-poller", self._poll)
        self._interval_s = 1.0

    # ------------------------------------------------------------------ queries
    def get(self, product: str) -> LiveModel:
        model = self._models.get(product)
        if model is None:
            reason = self._problems.get(product, "no model loaded yet")
            raise NoLiveModel(f"product {product!r} cannot be inspected right now: {reason}")
        return model

    def status(self) -> dict[str, dict[str, Any]]:
        """Per product: live bundle, model version, threshold, and any problem."""
        out = {}
        shown = ("bundle_id", "model_version", "threshold", "served_bundle_id", "precision")
        for product in self.products:
            model = self._models.get(product)
            refused = self.trust.refused(product)
            out[product] = {
                "loaded": model is not None,
                **{name: getattr(model, name, None) for name in shown},
                "tuning": model.tuning.summary() if model and model.tuning else None,
                "golden": self.thresholds.golden(product),
                "threshold_refused": refused.get("threshold"),
                "refused": refused,
                "problem": self._problems.get(product),
            }
        return out

    # ---------------------------------------------------------------- refreshing
    def refresh(self) -> None:
        """Bring every product in step with the registry once (the poller calls this)."""
        with self._refresh_lock:
            for product in self.products:
                try:
                    self._refresh_product(product)
                except Exception as exc:  # never let one product stop the poller
                    log.exception("refreshing %s failed", product)
                    self._problems[product] = f"refresh failed: {exc}"

    def _refresh_product(self, product: str) -> None:
        state = self.registry.journal.live(product)
        if state is None:
            if product not in self._models:
                self._problems[product] = "the registry has no live bundle; promote one first"
            return
        current = self._models.get(product)
        if why := self.trust.live_refusal(product, state):
            if current is None:
                self._problems[product] = f"live pointer refused: {why}"
            self._follow_threshold(product, current)
            return
        pointer_moved = current is None or current.bundle_id != state.bundle_id
        # With a pinned key the promoted bundle must pass before the selector measures siblings.
        if pointer_moved and not self._signed(product, state.bundle_id):
            self._follow_threshold(product, current)
            return
        selection = self._selector(product, state.bundle_id)
        self.trust.note(product, "tuning", selection.refused)
        changed = (
            current is None
            or current.bundle_id != state.bundle_id
            or current.served_bundle_id != selection.bundle_id
        )
        # Bundles are immutable: a rejected one stays rejected until the live pointer moves.
        if changed and self._rejected.get(product) != selection.bundle_id:
            if self._decisions_refuse(product, selection.bundle_id):
                self._follow_threshold(product, current)
                return
            threshold = self.thresholds.newest(product, state.bundle_id)
            self._load(product, state.bundle_id, selection, threshold)
            return
        self._follow_threshold(product, current)

    def _follow_threshold(self, product: str, current: LiveModel | None) -> None:
        if current is None:
            return
        threshold = self.thresholds.newest(product, current.bundle_id)
        if threshold is None or threshold.number == current.threshold_number:
            return
        try:
            check_threshold(threshold.value)
        except ValueError as exc:
            self._problems[product] = f"threshold v{threshold.number} rejected: {exc}"
            log.error("%s: %s", product, self._problems[product])
            return
        served, inspector = current.served_bundle_id, current.inspector
        value = self.thresholds.moved(product, served, inspector, threshold)
        self._swap(replace(current, threshold=value, threshold_number=threshold.number))
        log.info("%s: threshold now %.4f (v%d)", product, value, threshold.number)

    def _load(
        self,
        product: str,
        bundle_id: str,
        selection: Selection,
        threshold: ThresholdVersion | None,
    ) -> None:
        served = selection.bundle_id
        try:
            bundle_dir = self.registry.bundles.bundle_dir(product, served)
            metadata = read_bundle_metadata(bundle_dir)
            if metadata.product != product:
                raise BundleError(f"the bundle was exported for product {metadata.product!r}")
            inspector = self._loader(bundle_dir)
            self.trust.check_loaded(product, served, inspector, bundle_dir)
            if threshold is not None:
                check_threshold(threshold.value)
        except Exception as exc:
            self._reject(product, served, exc)
            return
        value = self.thresholds.loaded(product, served, inspector, threshold)
        model = LiveModel(
            product=product,
            bundle_id=bundle_id,
            model_version=inspector.model_version,
            threshold=value,
            threshold_number=threshold.number if threshold else None,
            inspector=inspector,
            served_bundle_id=served,
            precision=metadata.precision,
            tuning=selection.tuning,
        )
        self._swap(model)
        log.info("%s: now serving bundle %s (%s)", product, served, model.model_version)

    def _signed(self, product: str, bundle_id: str) -> bool:
        """Whether the promoted bundle passes the signature check; rejects it otherwise."""
        if self.trust.public_key is None:
            return True
        if self._rejected.get(product) == bundle_id:
            return False
        try:
            self.registry.bundles.bundle_dir(product, bundle_id)
            self.trust.check_bundle(product, bundle_id)
        except Exception as exc:
            self._reject(product, bundle_id, exc)
            return False
        return True

    def _decisions_refuse(self, product: str, bundle_id: str) -> bool:
        """Whether the bundle about to load fails its decisions on disk (not cached: a
        decision signed later lets it load)."""
        why = self.trust.refusal_before_load(product, bundle_id)
        if why is None:
            return False
        self._problems[product] = f"bundle {bundle_id} refused: {why}{self._still_serving(product)}"
        return True

    def _reject(self, product: str, bundle_id: str, exc: Exception) -> None:
        """Keep the previous model serving and say why ``bundle_id`` was refused (registry
        paths shown as ``<registry>``)."""
        self._rejected[product] = bundle_id
        if isinstance(exc, GoldenDriftError):
            self.thresholds.drifted(product, bundle_id, exc)
        detail = without_paths(str(exc), {self.registry.root: "<registry>"})
        reason = f"bundle {bundle_id} rejected: {detail}{self._still_serving(product)}"
        self._problems[product] = reason
        log.error("%s: %s", product, reason)

    def _still_serving(self, product: str) -> str:
        keeps = self._models.get(product)
        return f"; still serving {keeps.served_bundle_id}" if keeps else ""

    def _swap(self, model: LiveModel) -> None:
        with self._swap_lock:
            self._models[model.product] = model
            self._problems.pop(model.product, None)
            self._rejected.pop(model.product, None)
        if self._on_change is not None:
            self._on_change(model)

    # ------------------------------------------------------------------- poller
    def start(self, interval_s: float) -> None:
        """Refresh now, then every ``interval_s`` seconds in a daemon thread."""
        self.refresh()
        self._interval_s = interval_s
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()

    def _poll(self) -> None:
        self._poller.every(self._interval_s, self.refresh)
