"""Live models per product, hot-swapped from the registry without dropping requests.

A background poller reads each product's live bundle and threshold from the registry.
A new bundle is loaded completely (checksums verified by ``Inspector.from_bundle``)
before the reference is swapped; requests already running keep the model they started
with. A bundle that fails to load is rejected with a logged reason and the previous
model keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspection.core.bundle import read_bundle_metadata
from inspection.core.errors import BundleError, RegistryError
from inspection.core.registry import Registry, ThresholdVersion
from inspection.core.types import InspectionResult
from inspection.service.errors import NoLiveModel

log = logging.getLogger(__name__)


class InspectorLike(Protocol):
    """What the service needs of ``inspection.runtime.inspector.Inspector``.

    ``inspect`` must be safe to call from several threads at once (the Inspector
    serialises its OpenVINO infer request internally).
    """

    @property
    def model_version(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    def inspect(self, image: np.ndarray) -> InspectionResult: ...

    def set_threshold(self, value: float) -> None: ...


InspectorLoader = Callable[[Path], InspectorLike]


def default_loader(bundle_dir: Path) -> InspectorLike:
    """``Inspector.from_bundle`` (OpenVINO, torch-free), imported on first use."""
    from inspection.runtime.inspector import Inspector

    return Inspector.from_bundle(bundle_dir)


@dataclass(frozen=True)
class LiveModel:
    """One loaded model. Immutable: a swap replaces the whole object, so a request that
    already holds a ``LiveModel`` finishes with it."""

    product: str
    bundle_id: str
    model_version: str
    threshold: float
    threshold_number: int | None
    inspector: InspectorLike

    def inspect(self, image: np.ndarray) -> InspectionResult:
        """(H, W, 3) uint8 RGB -> result."""
        return self.inspector.inspect(image)


class LiveModels:
    """Holds the live model of every served product and keeps it in step with the registry."""

    def __init__(
        self,
        registry: Registry,
        products: tuple[str, ...],
        *,
        loader: InspectorLoader = default_loader,
        on_change: Callable[[LiveModel], None] | None = None,
    ) -> None:
        self.registry = registry
        self.products = tuple(products)
        self._loader = loader
        self._on_change = on_change
        self._models: dict[str, LiveModel] = {}
        self._problems: dict[str, str] = {}
        self._rejected: dict[str, str] = {}  # product -> bundle id that failed to load
        self._swap_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        for product in self.products:
            model = self._models.get(product)
            out[product] = {
                "loaded": model is not None,
                "bundle_id": model.bundle_id if model else None,
                "model_version": model.model_version if model else None,
                "threshold": model.threshold if model else None,
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
        state = self.registry.live(product)
        if state is None:
            if product not in self._models:
                self._problems[product] = "the registry has no live bundle; promote one first"
            return
        current = self._models.get(product)
        changed = current is None or current.bundle_id != state.bundle_id
        # Bundles are immutable: a rejected one stays rejected until the live pointer moves.
        if changed and self._rejected.get(product) != state.bundle_id:
            threshold = _threshold_for(self.registry, product, state.bundle_id)
            self._load(product, state.bundle_id, threshold)
            return
        if current is not None:
            threshold = _threshold_for(self.registry, product, current.bundle_id)
            if threshold is not None and threshold.number != current.threshold_number:
                self._set_threshold(current, threshold)

    def _load(self, product: str, bundle_id: str, threshold: ThresholdVersion | None) -> None:
        bundle_dir = self.registry.root / product / "bundles" / bundle_id
        try:
            bundle_dir = self.registry.bundle_dir(product, bundle_id)
            metadata = read_bundle_metadata(bundle_dir)
            if metadata.product != product:
                raise BundleError(f"the bundle was exported for product {metadata.product!r}")
            inspector = self._loader(bundle_dir)
            if threshold is not None:
                inspector.set_threshold(threshold.value)
        except Exception as exc:
            self._rejected[product] = bundle_id
            keeps = self._models.get(product)
            detail = _without_paths(str(exc), {bundle_dir: "", self.registry.root: "<registry>"})
            reason = f"bundle {bundle_id} rejected: {detail}"
            if keeps is not None:
                reason += f"; still serving {keeps.bundle_id}"
            self._problems[product] = reason
            log.error("%s: %s", product, reason)
            return
        model = LiveModel(
            product=product,
            bundle_id=bundle_id,
            model_version=inspector.model_version,
            threshold=inspector.threshold,
            threshold_number=threshold.number if threshold else None,
            inspector=inspector,
        )
        self._swap(model)
        log.info("%s: now serving bundle %s (%s)", product, bundle_id, model.model_version)

    def _set_threshold(self, current: LiveModel, threshold: ThresholdVersion) -> None:
        try:
            current.inspector.set_threshold(threshold.value)
        except ValueError as exc:
            self._problems[current.product] = f"threshold v{threshold.number} rejected: {exc}"
            log.error("%s: %s", current.product, self._problems[current.product])
            return
        self._swap(replace(current, threshold=threshold.value, threshold_number=threshold.number))
        log.info("%s: threshold now %.4f (v%d)", current.product, threshold.value, threshold.number)

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
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._poll, args=(interval_s,), name="registry-poller", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _poll(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.refresh()


def _without_paths(message: str, paths: dict[Path, str]) -> str:
    """``message`` with local folders replaced, so API clients never learn registry paths."""
    for path, shown in paths.items():
        for form in {str(path.resolve()), str(path)}:
            message = message.replace(form + ": ", shown).replace(form, shown or ".")
    return message


def _threshold_for(registry: Registry, product: str, bundle_id: str) -> ThresholdVersion | None:
    """The newest threshold version that applies to ``bundle_id`` (or to any bundle)."""
    try:
        history = registry.threshold_history(product)
    except (RegistryError, ValueError, TypeError) as exc:
        log.error("%s: unreadable threshold history: %s", product, exc)
        return None
    for version in reversed(history):
        if version.bundle_id in (None, bundle_id):
            return version
    return None
