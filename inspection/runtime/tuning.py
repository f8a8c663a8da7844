"""Precision chosen by measurement: time every gated bundle of the live model on this CPU.

Which of a version's bundles (fp32, fp16, int8) is fastest depends on the CPU, so the station
times each gated one, serves the fastest and records the choice per CPU (``TuningRecord``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from inspection.core.bundle import BundleMetadata, read_bundle_metadata
from inspection.core.config import from_mapping, to_mapping
from inspection.core.decisions import refusal
from inspection.core.errors import BundleError, ImageDecodeError, RegistryError
from inspection.core.images import read_image
from inspection.core.jsonl import write_json
from inspection.core.model_record import utc_now
from inspection.core.registry import Registry
from inspection.core.signing import sign_record, site_signing_key, verify_signed_bundle
from inspection.core.types import Progress
from inspection.runtime.golden import (
    GoldenDriftError,
    check_golden,
    executed_kernels,
    executed_precision,
)
from inspection.runtime.hardware import (
    CpuInfo,
    cpu_info,
    cpu_record_path,
    load_1m,
    read_cpu_records,
)
from inspection.runtime.inspector import Inspector
from inspection.runtime.predictor import Predictor, load_inspector
from inspection.runtime.tiled import TiledInspector

log = logging.getLogger(__name__)

TUNING_SCHEMA = 1
GATE_TOLERANCE = 0.01
"""Largest image-AUROC drop vs FP32 a lower precision may have (the export gate's default)."""
CHOICE_MARGIN = 0.05
"""A lower precision must be this much faster (p50) than a higher one to be chosen."""
_PRECISION_RANK = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}  # higher = lower precision


@dataclass(frozen=True)
class PrecisionMeasurement:
    """One bundle timed on this CPU: batch-1 latency of the full ``inspect`` and throughput."""

    bundle_id: str
    precision: str
    p50_ms: float
    p95_ms: float
    throughput_ips: float
    """Best of sequential batch-1 and the async queue, images per second."""
    gate_passed: bool
    gate_note: str = ""
    executed_precision: str = ""
    """The inference precision OpenVINO executed (``f32``, ``bf16``, ``f16``)."""
    kernels: tuple[str, ...] = ()
    """The CPU kernel families of the compiled graph: the ISA actually used."""
    golden_drift: float | None = None
    """Worst drift of the bundle's golden outputs here (normalised units); None: none."""

    def __post_init__(self) -> None:
        if self.p50_ms <= 0 or self.p95_ms <= 0 or self.throughput_ips <= 0:
            raise ValueError(
                f"{self.bundle_id}: timings must be > 0, got p50 {self.p50_ms} ms, "
                f"p95 {self.p95_ms} ms, {self.throughput_ips} img/s"
            )


@dataclass(frozen=True)
class TuningRecord:
    """Which bundle this CPU serves for a product's live model, and the figures that chose it."""

    schema_version: int
    product: str
    live_bundle_id: str
    """The registry's live pointer when measured; a new promotion makes the record stale."""
    model_version: str
    chosen_bundle_id: str
    chosen_precision: str
    measurements: tuple[PrecisionMeasurement, ...]
    cpu: CpuInfo
    load_1m: float
    measured_at: str
    key_id: str | None = None
    """The site key that signed the record (written where the key is held); None: unsigned,
    a station's own measurement."""
    signature: str | None = None

    def __post_init__(self) -> None:
        if self.schema_version != TUNING_SCHEMA:
            raise ValueError(
                f"tuning record schema {self.schema_version} is not supported "
                f"(expected {TUNING_SCHEMA}); run 'inspection station tune' again"
            )
        ids = [m.bundle_id for m in self.measurements]
        if self.chosen_bundle_id not in ids:
            raise ValueError(f"chosen bundle {self.chosen_bundle_id!r} was not measured: {ids}")

    @property
    def chosen(self) -> PrecisionMeasurement:
        return next(m for m in self.measurements if m.bundle_id == self.chosen_bundle_id)

    def summary(self) -> dict[str, object]:
        """The JSON-ready view for ``/healthz`` and the dashboard."""
        return {
            "chosen_bundle_id": self.chosen_bundle_id,
            "precision": self.chosen_precision,
            "measured_at": self.measured_at,
            "load_1m": self.load_1m,
            "cpu": self.cpu.summary(),
            "measurements": [to_mapping(m) for m in self.measurements],
        }


# ---------------------------------------------------------------------------- choice
def choose_fastest(
    measurements: Sequence[PrecisionMeasurement], *, margin: float = CHOICE_MARGIN
) -> PrecisionMeasurement:
    """The gated measurement with the lowest p50; ties within ``margin`` go to the higher
    precision: a lower one is only worth serving when clearly faster."""
    passed = [m for m in measurements if m.gate_passed]
    if not passed:
        raise ValueError(
            "no measured bundle passed the accuracy gate: "
            + ", ".join(f"{m.bundle_id} ({m.gate_note})" for m in measurements)
        )
    fastest = min(passed, key=lambda m: m.p50_ms)
    close = [m for m in passed if m.p50_ms <= fastest.p50_ms * (1.0 + margin)]
    return min(close, key=lambda m: (_PRECISION_RANK.get(m.precision, 9), m.p50_ms))


def gate_status(meta: BundleMetadata, fp32_auroc: float | None) -> tuple[bool, str]:
    """(passed, why) of the accuracy gate from the bundle's recorded metrics; ``fp32_auroc``:
    its FP32 sibling's, for a record without the drop."""
    if meta.precision == "fp32":
        return True, "fp32 reference"
    try:
        record = meta.export_record()
    except BundleError as exc:
        return False, f"unreadable export record: {exc}"
    if record.gate is not None and not record.gate.passed:
        # The export gate refused it (registered only with --force): never serve it.
        return False, f"refused by its export gate: {record.gate.refusal()}"
    drop = record.image_auroc_drop
    if drop is None and fp32_auroc is not None:
        auroc = _image_auroc(meta)
        drop = None if auroc is None else fp32_auroc - auroc
    if drop is None:
        return False, "no image-AUROC drop vs FP32 recorded"
    passed = drop <= GATE_TOLERANCE + 1e-9
    verdict = "passed" if passed else "failed"
    return passed, f"image AUROC drop {drop:.4f} vs FP32 ({verdict}, max {GATE_TOLERANCE})"


def gated_candidates(
    registry: Registry,
    product: str,
    live_bundle_id: str,
    *,
    public_key: Ed25519PublicKey | None = None,
) -> list[tuple[str, Path, BundleMetadata, tuple[bool, str]]]:
    """The live bundle and its same-version siblings with their gate (passed, note). A live
    bundle failing ``public_key`` raises; a sibling failing it or not native here never
    passes; the live bundle otherwise always does (it was promoted)."""
    live_dir = registry.bundles.bundle_dir(product, live_bundle_id)
    if problem := signature_problem(live_dir, public_key):
        raise BundleError(f"live bundle {live_bundle_id} refused: {problem}")
    live_meta = read_bundle_metadata(live_dir)
    candidates = [(live_bundle_id, live_dir, live_meta, "")]
    for bundle_id in registry.bundles.bundle_ids(product):
        if bundle_id == live_bundle_id:
            continue
        path = registry.bundles.bundle_dir(product, bundle_id)
        try:
            meta = read_bundle_metadata(path)  # parsed only, to find the siblings
        except (BundleError, ValueError, OSError):
            continue  # an unreadable bundle is never a candidate
        if meta.model_version == live_meta.model_version:
            candidates.append((bundle_id, path, meta, signature_problem(path, public_key)))
    trusted = [meta for _, _, meta, problem in candidates if not problem]
    fp32 = next((meta for meta in trusted if meta.precision == "fp32"), None)
    fp32_auroc = _image_auroc(fp32) if fp32 is not None else None
    out = []
    for bundle_id, path, meta, problem in candidates:
        unavailable = cpu_info().unavailable(meta.precision)
        if problem:
            gate = (False, f"signature refused: {problem}")
        elif unavailable:
            gate = (False, unavailable)
        else:
            gate = gate_status(meta, fp32_auroc)
            if bundle_id == live_bundle_id and not gate[0]:
                gate = (True, f"live bundle, promoted by hand ({gate[1]})")
        out.append((bundle_id, path, meta, gate))
    return out


def signature_problem(bundle_dir: Path, public_key: Ed25519PublicKey | None) -> str:
    """Why the bundle fails the pinned key's check ('' when it passes or no key is pinned)."""
    if public_key is None:
        return ""
    try:
        verify_signed_bundle(bundle_dir, public_key)
    except (BundleError, ValueError, OSError) as exc:
        return str(exc).replace(str(bundle_dir), "<bundle>")
    return ""


# ----------------------------------------------------------------------- measurement
def probe_image(height: int, width: int) -> np.ndarray:
    """A deterministic, smooth (H, W, 3) uint8 part-like image (a gradient with mild noise)."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 110.0 + 30.0 * np.sin(xs / 17.0) + 20.0 * np.cos(ys / 23.0)
    image = base[..., None] + rng.normal(0.0, 4.0, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def probe_images(bundle_dir: Path, meta: BundleMetadata) -> tuple[list[np.ndarray], str]:
    """Images of the size the station serves the bundle at, and what they are (an aligned
    bundle's reference: a synthetic part would not align)."""
    if meta.alignment is not None:
        try:
            reference = read_image(bundle_dir / meta.alignment.file)
        except (ImageDecodeError, OSError) as exc:
            raise BundleError(f"{bundle_dir}: alignment reference unreadable: {exc}") from exc
        height, width = reference.shape[:2]
        return [reference], f"its alignment reference ({width}x{height} px)"
    tiling = meta.tiling
    tiled = ", tiled" if tiling is not None else ""
    if meta.input_domain is not None:
        height, width = meta.input_domain.height[1], meta.input_domain.width[1]
        what = f"its largest training image{tiled}"
    elif tiling is None:
        height, width = meta.preprocessing.input_size
        what = "model input: the bundle records no image size; time it with --images"
    elif meta.roi is not None:
        height, width = meta.roi.reference_size
        what = "its ROI's reference image, tiled"
    else:
        height = max(1, round(tiling.tile_size[0] / tiling.scale))
        width = max(1, round(tiling.tile_size[1] / tiling.scale))
        what = "ONE tile: the bundle records no image size; time it with --images"
    return [probe_image(height, width)], f"a synthetic {width}x{height} px part ({what})"


MEASUREMENT_ROUNDS = 5
"""Bundles are timed in this many interleaved rounds (see ``measure_bundles``)."""


def measure_bundles(
    bundles: Sequence[tuple[Predictor, tuple[bool, str]]],
    images: Sequence[np.ndarray],
    *,
    samples: int = 40,
    throughput_images: int = 24,
    rounds: int = MEASUREMENT_ROUNDS,
) -> list[PrecisionMeasurement]:
    """Time ``inspect`` (batch 1) and the async queue (none when tiled) of every (bundle loaded
    as the station loads it, ``checked_inspector``; gate). The bundles take turns over
    ``rounds`` rounds, so a machine whose speed drifts slows all alike and does not decide
    between two close precisions.
    """
    rounds = max(1, min(rounds, samples))
    latency = [inspector for inspector, _ in bundles]
    queued = [_queued(inspector) for inspector in latency]
    stream = [images[i % len(images)] for i in range(throughput_images)]
    for inspector, fast in zip(latency, queued, strict=True):
        for image in images[:3]:
            inspector.inspect(image)  # warm-up: first inferences allocate
        if fast is not None:
            fast.inspect_many(stream[:4])
    latencies: list[list[float]] = [[] for _ in bundles]
    busy_seconds = [0.0 for _ in bundles]
    for round_index in range(rounds):
        share = samples // rounds + (round_index < samples % rounds)
        for index, inspector in enumerate(latency):
            latencies[index] += _latencies(inspector, images, share)
        for index, fast in enumerate(queued):
            if fast is None:
                continue
            start = time.perf_counter()
            fast.inspect_many(stream)
            busy_seconds[index] += time.perf_counter() - start
    return [
        _measurement(inspector, gate, times, rounds * len(stream) / busy if busy else 0.0)
        for inspector, (_, gate), times, busy in zip(
            latency, bundles, latencies, busy_seconds, strict=True
        )
    ]


def _queued(inspector: Predictor) -> Inspector | None:
    """The bundle for the async queue: the latency load's bundle on its THROUGHPUT compile
    (``BundleModel.throughput``), whose own golden outputs are checked here
    (``GoldenDriftError``); None when tiled (one image at a time)."""
    if isinstance(inspector, TiledInspector):
        return None
    model = inspector.model.throughput()
    check = check_golden(model)
    if check is not None and not check.passed:
        raise GoldenDriftError(check)
    queued = Inspector(model, input_check="off")
    queued.golden = check
    return queued


def checked_inspector(bundle_dir: Path) -> tuple[Predictor | None, str]:
    """The bundle loaded as the station loads it (``load_inspector``; synthetic probes are never
    held against its input domain), its golden outputs checked on this CPU by that very load:
    (predictor, the check's note); (None, why) when the golden check refused it."""
    try:
        inspector = load_inspector(bundle_dir, input_check="off")
    except GoldenDriftError as exc:
        return None, str(exc)
    if inspector.golden is None:
        return inspector, "no golden outputs (older bundle, not checked)"
    return inspector, inspector.golden.message()


def _latencies(inspector: Predictor, images: Sequence[np.ndarray], count: int) -> list[float]:
    times = []
    for index in range(count):
        start = time.perf_counter()
        inspector.inspect(images[index % len(images)])
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _measurement(
    inspector: Predictor, gate: tuple[bool, str], latencies: list[float], queued_ips: float
) -> PrecisionMeasurement:
    meta, compiled, check = inspector.metadata, inspector.model.compiled, inspector.golden
    sequential = 1e3 / float(np.mean(latencies))
    return PrecisionMeasurement(
        bundle_id=meta.bundle_id,
        precision=meta.precision,
        p50_ms=round(float(np.percentile(latencies, 50)), 3),
        p95_ms=round(float(np.percentile(latencies, 95)), 3),
        throughput_ips=round(max(sequential, queued_ips), 1),
        gate_passed=gate[0],
        gate_note=gate[1],
        executed_precision=executed_precision(compiled),
        kernels=executed_kernels(compiled),
        golden_drift=None if check is None else round(check.worst_drift, 6),
    )


def tune_product(
    registry: Registry,
    product: str,
    *,
    images: Sequence[Path] | None = None,
    samples: int = 40,
    progress: Progress | None = None,
    write: bool = True,
    public_key: Ed25519PublicKey | None = None,
) -> TuningRecord:
    """Check every gated bundle's golden outputs here, time those that pass, choose, and
    record (``write``). ``images``: files to time on (None: ``probe_images``); bundles failing
    ``public_key`` are never loaded."""
    say = progress or (lambda message: None)
    state = registry.journal.live(product)
    if state is None:
        raise RegistryError(f"product {product!r} has no live bundle; promote one first")
    candidates = gated_candidates(registry, product, state.bundle_id, public_key=public_key)
    for bundle_id, _, _, (passed, note) in candidates:
        if not passed:
            say(f"{bundle_id}: not measured, {note}")
    gated = []
    for bundle_id, path, meta, gate in (c for c in candidates if c[3][0]):
        inspector, note = checked_inspector(path)
        say(f"{bundle_id}: {note}" if inspector else f"{bundle_id}: not measured, {note}")
        if inspector is not None:
            gated.append((bundle_id, inspector, meta, gate))
    if not gated:
        raise BundleError(f"{product}: no bundle of the live model passed its gates on this CPU")
    if images is None:
        probes, what = probe_images(candidates[0][1], candidates[0][2])
        say(f"timing on {what}")
    else:
        prep = candidates[0][2].preprocessing
        reading = {"bits": prep.source_bits, "value_range": prep.source_range}
        probes = [read_image(path, **reading) for path in images]
    names = ", ".join(f"{bundle_id} ({meta.precision})" for bundle_id, _, meta, _ in gated)
    say(f"measuring {names} in {MEASUREMENT_ROUNDS} interleaved rounds")
    timed = [(inspector, gate) for _, inspector, _, gate in gated]
    measured = measure_bundles(timed, probes, samples=samples)
    chosen = choose_fastest(measured)
    record = TuningRecord(
        schema_version=TUNING_SCHEMA,
        product=product,
        live_bundle_id=state.bundle_id,
        model_version=candidates[0][2].model_version,
        chosen_bundle_id=chosen.bundle_id,
        chosen_precision=chosen.precision,
        measurements=tuple(measured),
        cpu=cpu_info(),
        load_1m=load_1m(),
        measured_at=utc_now(),
    )
    if write:
        write_tuning(registry, record)
    return record


def promote_fastest(
    registry: Registry,
    product: str,
    *,
    actor: str,
    samples: int = 40,
    progress: Progress | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> TuningRecord:
    """Tune, then make the measured-fastest gated bundle the registry's live one (demo, CI)."""
    record = tune_product(
        registry, product, samples=samples, progress=progress, write=False, public_key=public_key
    )
    if record.chosen_bundle_id != record.live_bundle_id:
        others = ", ".join(
            f"{m.precision} {m.p50_ms:.1f} ms" for m in record.measurements if m != record.chosen
        )
        reason = (
            f"fastest gated precision on this CPU: {record.chosen_precision} "
            f"{record.chosen.p50_ms:.1f} ms p50 (vs {others})"
        )
        registry.journal.promote(product, record.chosen_bundle_id, actor=actor, reason=reason)
        record = replace(record, live_bundle_id=record.chosen_bundle_id)
    write_tuning(registry, record)
    return record


def _image_auroc(meta: BundleMetadata) -> float | None:
    try:
        return meta.evaluation().image_auroc
    except BundleError as exc:
        log.warning("%s", exc)
        return None


# ------------------------------------------------------------------------ storage
def tuning_path(registry: Registry, product: str, cpu: CpuInfo | None = None) -> Path:
    return cpu_record_path(registry.root, product, "tuning", cpu)


def write_tuning(registry: Registry, record: TuningRecord) -> Path:
    """Write ``record`` as this CPU's tuning file, signed when this machine holds the site key."""
    path = tuning_path(registry, record.product, record.cpu)
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {k: v for k, v in to_mapping(record).items() if k not in ("key_id", "signature")}
    signing_key = site_signing_key(registry.root)
    write_json(path, row if signing_key is None else sign_record(row, signing_key))
    return path


def read_tuning_row(
    registry: Registry, product: str, cpu: CpuInfo | None = None
) -> tuple[TuningRecord, dict[str, object]] | None:
    """This CPU's tuning record for ``product`` and the JSON row its signature covers."""
    path = tuning_path(registry, product, cpu)
    if not path.is_file():
        return None
    row = json.loads(path.read_text(encoding="utf-8"))
    return from_mapping(TuningRecord, row, str(path)), row


def tuning_refusal(
    registry: Registry,
    record: TuningRecord,
    row: dict[str, object],
    public_key: Ed25519PublicKey | None,
) -> str | None:
    """Why a station pinning ``public_key`` refuses the record (None: it may serve): a signed
    one must verify, and any choice must be the live bundle or a gated sibling."""
    what = f"tuning record of {record.product} ({record.chosen_bundle_id})"
    if row.get("signature") and (why := refusal(row, public_key, what)):
        return why
    live = registry.journal.live(record.product)
    if live is None or record.live_bundle_id != live.bundle_id:
        return None  # stale: not used
    if record.chosen_bundle_id == live.bundle_id:
        return None
    candidates = gated_candidates(registry, record.product, live.bundle_id, public_key=public_key)
    gate = next((g for b, _, _, g in candidates if b == record.chosen_bundle_id), None)
    if gate is None:
        return f"{what} points at a bundle that is not of the live model version"
    if not gate[0]:
        return f"{what} points at a bundle that may not serve: {gate[1]}"
    return None


def served_bundle_id(record: TuningRecord | None, live_bundle_id: str) -> str:
    """The bundle to serve: the tuned choice if it was measured for this live bundle."""
    if record is not None and record.live_bundle_id == live_bundle_id:
        return record.chosen_bundle_id
    return live_bundle_id


def read_tunings(registry: Registry, product: str) -> list[TuningRecord]:
    """Every CPU's tuning record for ``product`` (unreadable files are skipped), newest first."""
    records = []
    for path, data in read_cpu_records(registry.root, product, "tuning"):
        try:
            records.append(from_mapping(TuningRecord, data, str(path)))
        except ValueError:  # ConfigError is a ValueError too
            continue
    return sorted(records, key=lambda r: r.measured_at, reverse=True)
