"""Live models per product, hot-swapped from the registry without dropping requests.

A background poller reads each product's live bundle and threshold from the registry.
A new bundle is loaded completely (read once, verified with the pinned key and compiled
from the verified bytes by ``runtime.predictor.load_inspector``) before the reference is swapped; requests already running keep the model they started
with. A bundle that fails to load is rejected with a logged reason and the previous
model keeps serving.

With a pinned key every decision that changes a verdict must verify (``core.decisions``): the
live pointer, the threshold, the tuning pick, and for the bundle served its ROI and, when the
export gate refused it, the admin's force record (its refiner choice is in its signed
metadata). A refused one is named in ``status()["refused"]`` (``/healthz``, Prometheus, the
dashboard) and the last good one keeps serving.
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

from inspection.core.bundle import BundleMetadata, read_bundle_metadata
from inspection.core.decisions import LiveState, ThresholdVersion, newest_trusted, refusal
from inspection.core.errors import BundleError, RegistryError
from inspection.core.golden import GoldenDriftError, golden_status
from inspection.core.registry import Registry
from inspection.core.signing import bundle_digest, key_id, verify_signed_bundle
from inspection.core.threshold import check_threshold
from inspection.core.types import InspectionResult
from inspection.refine.config import RefineConfig
from inspection.runtime.predictor import Predictor, load_inspector
from inspection.runtime.recalibration import record_golden_outcome
from inspection.runtime.tuning import (
    TuningRecord,
    gated_candidates,
    read_tuning_row,
    tune_product,
    tuning_refusal,
)
from inspection.station.errors import NoLiveModel

log = logging.getLogger(__name__)


InspectorLoader = Callable[[Path], Predictor]
"""Bundle folder -> loaded predictor (``runtime.predictor.load_inspector``)."""


def default_loader(
    bundle_dir: Path,
    validation: Path | None = None,
    refine: RefineConfig | None = None,
    public_key: Ed25519PublicKey | None = None,
    num_threads: int | None = None,
) -> Predictor:
    """``runtime.predictor.load_inspector`` (OpenVINO, torch-free; the signature checked with
    ``public_key`` on the bytes it compiles), refining NG masks with the refiner the bundle's
    validation measurement chose, seeded from ``refine`` (the station's refine config, read
    once at start; None: the defaults); ``validation``: the station's validation images of the
    bundle's product, to re-calibrate it on when its golden outputs drift; ``num_threads``:
    OpenVINO threads per inference (None: OpenVINO's choice)."""
    return load_inspector(
        bundle_dir, refiner="bundle", validation=validation, refine=refine,
        public_key=public_key, num_threads=num_threads,
    )  # fmt: skip


def station_loader(
    refine: RefineConfig,
    validation_images: Mapping[str, Path] | None = None,
    public_key: Ed25519PublicKey | None = None,
    num_threads: int | None = None,
) -> InspectorLoader:
    """``default_loader`` seeded with the station's ``refine`` config, pinned key and threads
    per inference, given the station's validation folder of each bundle's product
    (``validation_images``) when it has one."""
    folders = dict(validation_images or {})

    def load(bundle_dir: Path) -> Predictor:
        product = read_bundle_metadata(bundle_dir).product if folders else None
        folder = folders.get(product or "")
        return default_loader(bundle_dir, folder, refine, public_key, num_threads)

    return load


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
    """Serve this CPU's measured choice among the live model's gated bundles.

    A tuning record (``inspection station tune``) for this CPU and the current live bundle
    decides. Without one, and when the live model has two or more gated bundles, the
    station measures them once at load (``tune_on_load``) and records the result.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        tune_on_load: bool = True,
        public_key: Ed25519PublicKey | None = None,
    ) -> None:
        """``public_key``: the pinned site key; siblings failing it are never measured."""
        self.registry = registry
        self.tune_on_load = tune_on_load
        self.public_key = public_key
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


@dataclass(frozen=True)
class LiveModel:
    """One loaded model and the threshold it is served at. Immutable: a swap (new bundle or
    new threshold) replaces the whole object, so a request that already holds a
    ``LiveModel`` finishes with it; the shared inspector is never changed."""

    product: str
    bundle_id: str
    """The registry's live pointer."""
    model_version: str
    threshold: float
    threshold_number: int | None
    inspector: Predictor
    served_bundle_id: str = ""
    """The bundle actually running: the live one or its measured-fastest sibling."""
    precision: str = ""
    tuning: TuningRecord | None = None

    def __post_init__(self) -> None:
        if not self.served_bundle_id:
            object.__setattr__(self, "served_bundle_id", self.bundle_id)

    def inspect(self, image: np.ndarray, *, started: float | None = None) -> InspectionResult:
        """(H, W, 3) uint8 RGB -> result at this model's threshold; ``started``: the
        ``perf_counter`` time the inspection began (before decoding), for the latency budget."""
        return self.inspector.inspect(image, threshold=self.threshold, started=started)


class LiveModels:
    """Holds the live model of every served product and keeps it in step with the registry."""

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
        """``public_key``: the pinned site signing key; with it, only bundles signed by that
        key (and unchanged since promotion) load."""
        self.registry = registry
        self.products = tuple(products)
        self._loader = loader
        self._public_key = public_key
        self._selector = selector
        self._on_change = on_change
        self._models: dict[str, LiveModel] = {}
        self._problems: dict[str, str] = {}
        self._rejected: dict[str, str] = {}  # product -> bundle id that failed to load
        self._golden: dict[str, dict[str, object]] = {}  # product -> last golden check
        self._refused: dict[str, dict[str, str]] = {}  # product -> {kind: why refused}
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
                "served_bundle_id": model.served_bundle_id if model else None,
                "precision": model.precision if model else None,
                "tuning": model.tuning.summary() if model and model.tuning else None,
                "golden": self._golden.get(product),
                "threshold_refused": self._refused.get(product, {}).get("threshold"),
                "refused": dict(self._refused.get(product, {})),
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
        if self._note(product, "live", refusal(state, self._public_key)):
            if current is None:
                self._problems[product] = f"live pointer refused: {self._refused[product]['live']}"
            self._follow_threshold(product, current)
            return
        pointer_moved = current is None or current.bundle_id != state.bundle_id
        # With a pinned key the promoted bundle must pass before the selector measures siblings.
        if pointer_moved and not self._signed(product, state):
            self._follow_threshold(product, current)
            return
        selection = self._selector(product, state.bundle_id)
        self._note(product, "tuning", selection.refused)
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
            threshold = self._threshold_for(product, state.bundle_id)
            self._load(product, state.bundle_id, selection, threshold)
            return
        self._follow_threshold(product, current)

    def _follow_threshold(self, product: str, current: LiveModel | None) -> None:
        if current is not None:
            threshold = self._threshold_for(product, current.bundle_id)
            if threshold is not None and threshold.number != current.threshold_number:
                self._set_threshold(current, threshold)

    def _load(
        self,
        product: str,
        bundle_id: str,
        selection: Selection,
        threshold: ThresholdVersion | None,
    ) -> None:
        served = selection.bundle_id
        bundle_dir = self.registry.root / product / "bundles" / served
        try:
            bundle_dir = self.registry.bundle_dir(product, served)
            metadata = read_bundle_metadata(bundle_dir)
            if metadata.product != product:
                raise BundleError(f"the bundle was exported for product {metadata.product!r}")
            inspector = self._loader(bundle_dir)
            self._check_loaded(product, served, inspector)
            verified = getattr(inspector.model, "verified", None)
            digest = verified.digest if verified is not None else bundle_digest(bundle_dir)
            refused = self._decision_refusal(product, served, inspector.metadata, digest)
            if refused is not None:
                self._note(product, *refused)
                raise BundleError(refused[1])
            value = inspector.threshold if threshold is None else check_threshold(threshold.value)
        except Exception as exc:
            self._reject(product, served, bundle_dir, exc)
            return
        self._golden[product] = golden_status(
            served, getattr(inspector, "golden", None), getattr(inspector, "recalibration", None)
        )
        if threshold is not None:
            value = self._across_recalibration(product, served, inspector, threshold)
        record_golden_outcome(self.registry, product, self._golden[product])
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

    def _signed(self, product: str, state: LiveState) -> bool:
        """Whether the promoted bundle passes the signature check; rejects it otherwise."""
        if self._public_key is None:
            return True
        if self._rejected.get(product) == state.bundle_id:
            return False
        bundle_dir = self.registry.root / product / "bundles" / state.bundle_id
        try:
            bundle_dir = self.registry.bundle_dir(product, state.bundle_id)
            self._check_signature(product, state.bundle_id, bundle_dir)
        except Exception as exc:
            self._reject(product, state.bundle_id, bundle_dir, exc)
            return False
        return True

    def _reject(self, product: str, bundle_id: str, bundle_dir: Path, exc: Exception) -> None:
        self._rejected[product] = bundle_id
        if isinstance(exc, GoldenDriftError):
            self._golden[product] = golden_status(bundle_id, exc.check, refusal=exc.reason)
            record_golden_outcome(self.registry, product, self._golden[product])
        keeps = self._models.get(product)
        detail = _without_paths(str(exc), {bundle_dir: "", self.registry.root: "<registry>"})
        reason = f"bundle {bundle_id} rejected: {detail}"
        if keeps is not None:
            reason += f"; still serving {keeps.served_bundle_id}"
        self._problems[product] = reason
        log.error("%s: %s", product, reason)

    def _check_signature(self, product: str, served: str, bundle_dir: Path) -> None:
        """With a pinned site key: a valid signature, and the digest recorded at promotion."""
        if self._public_key is not None:
            check_signature(self.registry, product, served, self._public_key)

    def _check_loaded(self, product: str, served: str, inspector: Predictor) -> None:
        """With a pinned site key: the bytes compiled were verified with it (the loader read
        the bundle once and checked that copy) and, for the live bundle, their digest is the
        one recorded at promotion. A loader that did not check the signature is refused."""
        if self._public_key is None:
            return
        verified = inspector.model.verified
        if verified.signed_by != key_id(self._public_key):
            raise BundleError(
                "the loader did not verify the bundle's signature with the pinned key"
            )
        _check_promoted(self.registry.live(product), served, verified.digest)

    def _threshold_for(self, product: str, bundle_id: str) -> ThresholdVersion | None:
        """The newest threshold version for ``bundle_id`` that this station may serve: with a
        pinned key, one signed by it; an unsigned or altered newer one is refused (named in
        ``status()["refused"]`` and the log) and the last good one keeps serving."""
        versions = reversed(_threshold_versions(self.registry, product, bundle_id))
        version, refused = newest_trusted(versions, self._public_key)
        self._note(product, "threshold", "; ".join(refused) or None)
        return version

    def _note(self, product: str, kind: str, why: str | None) -> str | None:
        """Record (or clear) why the newest ``kind`` record was refused; returns ``why``."""
        notes = self._refused.setdefault(product, {})
        if why is None:
            notes.pop(kind, None)
        elif notes.get(kind) != why:
            log.error("%s: %s; the last good one keeps serving", product, why)
            notes[kind] = why
        return why

    def _decisions_refuse(self, product: str, bundle_id: str) -> bool:
        """Whether the bundle about to load fails its decisions on disk (cheap, before the
        load; checked again on the verified bytes after it). Not cached: a decision signed
        later lets it load."""
        try:
            bundle_dir = self.registry.bundle_dir(product, bundle_id)
            metadata = read_bundle_metadata(bundle_dir)
            refused = self._decision_refusal(
                product, bundle_id, metadata, bundle_digest(bundle_dir)
            )
        except (BundleError, RegistryError, ValueError, OSError):
            return False  # the load itself says what is wrong
        for kind in ("gate", "roi"):
            self._note(product, kind, refused[1] if refused and refused[0] == kind else None)
        if refused is None:
            return False
        keeps = self._models.get(product)
        self._problems[product] = f"bundle {bundle_id} refused: {refused[1]}" + (
            f"; still serving {keeps.served_bundle_id}" if keeps else ""
        )
        return True

    def _decision_refusal(
        self,
        product: str,
        bundle_id: str,
        metadata: BundleMetadata,
        digest: str,
    ) -> tuple[str, str] | None:
        """(kind, why) when a decision the bundle needs is missing or refused, else None."""
        trusted = [
            d for d in self.registry.decisions(product)
            if d.bundle_id in (None, bundle_id) and refusal(d, self._public_key) is None
        ]  # fmt: skip
        gate = _gate_refusal(metadata)
        forced = [d for d in trusted if d.kind == "force" and d.bundle_id == bundle_id]
        if gate and not any(d.value.get("digest") == digest for d in forced):
            return "gate", (
                f"bundle {bundle_id} was refused by its export gate ({gate}) and no signed force "
                "record names exactly this bundle"
            )
        if self._public_key is None:
            return None
        roi = metadata.roi.to_mapping() if metadata.roi is not None else None
        if roi is not None and not any(d.kind == "roi" and d.value == roi for d in trusted):
            return "roi", f"bundle {bundle_id}'s ROI is not a signed ROI decision of {product}"
        return None

    def _set_threshold(self, current: LiveModel, threshold: ThresholdVersion) -> None:
        try:
            check_threshold(threshold.value)
        except ValueError as exc:
            self._problems[current.product] = f"threshold v{threshold.number} rejected: {exc}"
            log.error("%s: %s", current.product, self._problems[current.product])
            return
        product, served = current.product, current.served_bundle_id
        value = self._across_recalibration(product, served, current.inspector, threshold)
        self._swap(replace(current, threshold=value, threshold_number=threshold.number))
        recalibrated = getattr(current.inspector, "recalibration", None) is not None
        if recalibrated and self._golden.get(product, {}).get("bundle_id") == served:
            # its note on the registry threshold changed; no golden check ran
            record_golden_outcome(self.registry, product, self._golden[product])
        log.info("%s: threshold now %.4f (v%d)", current.product, value, threshold.number)

    def _across_recalibration(
        self,
        product: str,
        served: str,
        inspector: Predictor,
        threshold: ThresholdVersion,
    ) -> float:
        """The threshold to serve for registry version ``threshold`` on bundle ``served``.

        A bundle re-calibrated on this CPU scores on a new scale; the version was set on its
        export calibration's. It is carried across at the false-reject budget it was set at
        (recorded with it) or, when it records none, the one it held on the bundle's
        validation scores (``Recalibration.carry``). When it cannot be, it is not applied and
        the re-calibrated operating point serves, whether the version came before the load or
        after it, so a restart never changes the threshold served. ``golden.threshold_carried``
        / ``threshold_not_applied`` (``/healthz``, the dashboard) and the log say which.
        """
        recalibration = getattr(inspector, "recalibration", None)
        if recalibration is None:
            return threshold.value
        carry = recalibration.carry(threshold.number, threshold.value, threshold.budget)
        if carry.carried is not None:
            self._note_threshold(product, served, "threshold_carried", carry.summary())
            log.warning(
                "%s: threshold v%d %.4f served as %.4f after re-calibrating on this CPU, %s",
                product, carry.number, carry.value, carry.carried, carry.how,
            )  # fmt: skip
            return carry.carried
        note = _not_applied(threshold, inspector.threshold, carry.how)
        self._note_threshold(product, served, "threshold_not_applied", note)
        log.warning("%s: %s", product, note)
        return inspector.threshold

    def _note_threshold(self, product: str, served: str, key: str, note: object) -> None:
        """The golden status of bundle ``served`` with ``key`` (one of ``THRESHOLD_NOTES``)
        as the only note on its registry threshold. The status is replaced, never changed in
        place: ``status()`` hands it to requests that may be serialising it. The status of
        another bundle (the last check was of a refused one) is left as it is."""
        golden = self._golden.get(product)
        if golden is None or golden.get("bundle_id") != served:
            return
        kept = {name: value for name, value in golden.items() if name not in THRESHOLD_NOTES}
        self._golden[product] = {**kept, key: note}

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


THRESHOLD_NOTES = ("threshold_carried", "threshold_not_applied")
"""What ``golden`` says of the registry threshold of a re-calibrated bundle (one of them)."""


def _not_applied(threshold: ThresholdVersion, served: float, why: str) -> str:
    """Why a re-calibrated bundle does not serve the registry's threshold version."""
    return (
        f"threshold v{threshold.number} ({threshold.value:.4f}) was set for the bundle's export "
        f"calibration and cannot be carried across its re-calibration on this CPU: {why}; "
        f"serving the re-calibrated operating point ({served:.4f}). Save the threshold at a "
        "false-reject budget (Thresholds page) to have it re-derived here"
    )


def _gate_refusal(metadata: BundleMetadata) -> str | None:
    """Why the export gate refused the bundle; None when it passed or recorded no gate."""
    try:
        gate = metadata.export_record().gate
    except BundleError as exc:
        return f"unreadable export record: {exc}"
    return gate.refusal() if gate is not None and not gate.passed else None


def _without_paths(message: str, paths: dict[Path, str]) -> str:
    """``message`` with local folders replaced, so API clients never learn registry paths."""
    for path, shown in paths.items():
        for form in {str(path.resolve()), str(path)}:
            message = message.replace(form + ": ", shown).replace(form, shown or ".")
    return message


def check_signature(
    registry: Registry, product: str, bundle_id: str, public_key: Ed25519PublicKey
) -> str:
    """The bundle's digest when it is signed by ``public_key`` and, if it is the live one,
    unchanged since promotion; ``BundleError`` saying what is wrong otherwise."""
    digest = verify_signed_bundle(registry.bundle_dir(product, bundle_id), public_key)
    _check_promoted(registry.live(product), bundle_id, digest)
    return digest


def _check_promoted(state: LiveState | None, bundle_id: str, digest: str) -> None:
    """``BundleError`` when ``bundle_id`` is the live bundle and ``digest`` is not the one
    recorded at its promotion."""
    if state is not None and state.bundle_id == bundle_id and state.digest not in (None, digest):
        raise BundleError(
            f"bundle digest {digest[:12]}… differs from {state.digest[:12]}… recorded at "
            "promotion: the bundle changed after it was promoted"
        )


def bundle_signature_status(
    registry: Registry, product: str, bundle_id: str, public_key: Ed25519PublicKey | None
) -> str:
    """One line for status pages: whether a station with ``public_key`` would load the bundle."""
    if public_key is None:
        return "not checked (allow_unsigned_bundles: true)"
    try:
        digest = check_signature(registry, product, bundle_id, public_key)
    except (BundleError, RegistryError) as exc:
        return f"REFUSED: {_without_paths(str(exc), {registry.root: '<registry>'})}"
    return f"signed by the pinned key (digest {digest[:12]}…)"


def _threshold_versions(registry: Registry, product: str, bundle_id: str) -> list[ThresholdVersion]:
    """The threshold versions that apply to ``bundle_id`` (or to any bundle), newest first."""
    try:
        history = registry.threshold_history(product)
    except (RegistryError, ValueError, TypeError) as exc:
        log.error("%s: unreadable threshold history: %s", product, exc)
        return []
    return [v for v in reversed(history) if v.bundle_id in (None, bundle_id)]
