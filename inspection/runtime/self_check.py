"""Does a live bundle, on the station runtime, judge its own labelled parts as exported?

``check_live_bundle`` judges labelled images as a line station does and compares the
false-reject and miss rates, and NG verdicts without a region, with the FP32 figures its export
gate recorded, within ``GateTolerances``. ``inspection demo`` fails on a refusal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from inspection.core.bundle import BundleMetadata, verify_bundle
from inspection.core.certificate import Certificate
from inspection.core.errors import BundleError, RegistryError
from inspection.core.export_gate import (
    BundleFigures,
    GateDecision,
    GateRecord,
    GateTolerances,
    check_gate,
    with_budget,
)
from inspection.core.operating_point import KindMiss, ThresholdChoice, miss_by_kind
from inspection.core.readiness import Readiness, held_out_at, kind_misses, line_readiness
from inspection.runtime.paths import inspect_paths
from inspection.runtime.predictor import load_inspector


@dataclass(frozen=True)
class LabelledPath:
    path: Path
    label: int  # 0 good, 1 defective
    defect_type: str = ""
    """The defect kind of a defective part ("" unknown: counted under "defect")."""


@dataclass(frozen=True)
class LiveCheck:
    """Station figures of a bundle on labelled parts vs the FP32 figures of its export gate."""

    bundle: str
    figures: BundleFigures
    reference: BundleFigures
    decision: GateDecision
    unreadable: int = 0
    refused: int = 0
    """Parts the bundle refused (outside its input domain, or not alignable): no verdict."""
    miss: dict[str, KindMiss] = field(default_factory=dict)
    """Miss rate per defect kind at the bundle's operating point (empty: no defects given)."""
    operating: ThresholdChoice | None = None
    """How the bundle's threshold was chosen (None: calibrated before operating points)."""

    @property
    def passed(self) -> bool:
        return self.decision.passed and not self.unreadable and not self.refused

    def readiness(self, served: Certificate | None = None) -> Readiness:
        """The LINE-READY verdict on these figures (``core.readiness``): absolute shortfalls no
        relative gate catches, as an FP32 reference that itself misses defects. ``served``: the
        certificate a station serves instead of the export's (with the line's audited parts)."""
        f = self.figures
        miss = self.miss
        if not miss and f.n_defective:  # kinds unknown: every defect as one kind
            miss = kind_misses({"defects": (round(f.miss_rate * f.n_defective), f.n_defective)})
        held = held_out_at(self.bundle, f.n_good, f.rejected_good(), miss, self.operating)
        return line_readiness(held if served is None else replace(held, certificate=served))

    def summary(self) -> str:
        f = self.figures
        missed = (
            f"missed {round(f.miss_rate * f.n_defective)}/{f.n_defective} defective"
            if f.n_defective
            else "miss rate unknown (no defective parts)"
        )
        text = (
            f"{self.bundle}: rejected {f.rejected_good()}/{f.n_good} good, {missed}, "
            f"{f.ng_without_region} NG without a region"
        )
        if self.miss:
            text += " (" + "; ".join(f"{m.kind} {m.missed}/{m.n}" for m in self.miss.values()) + ")"
        if self.unreadable:
            text += f", {self.unreadable} unreadable image(s)"
        if self.refused:
            text += f", {self.refused} part(s) refused as unlike the training images or unaligned"
        return text if self.passed else f"{text}: {self.decision.message('station check')}"


def recorded_reference(metadata: BundleMetadata) -> BundleFigures:
    """The FP32 figures the bundle's export gate recorded."""
    return _recorded_gate(metadata).reference_fp32


def _recorded_gate(metadata: BundleMetadata) -> GateRecord:
    gate = metadata.export_record().gate
    if gate is None:
        raise BundleError(
            "the bundle records no export gate (it was not calibrated on its own outputs); "
            "re-export it with this version of inspection"
        )
    return gate


def promotion_reason(
    metadata: BundleMetadata, reason: str, *, not_ready: bool, override: str
) -> str:
    """The audit log's reason for making this bundle live: ``reason``, and for a NOT LINE-READY
    bundle (``recorded_check(metadata).readiness()``) what it lacks. One rule for every surface
    (``promote``, ``export --promote``, the dashboard).

    Raises:
        RegistryError: the bundle is NOT LINE-READY and ``not_ready`` (the explicit choice to
            serve it anyway, named by ``override`` in the message) was not given.
    """
    readiness = recorded_check(metadata).readiness()
    if readiness.ready:
        return reason
    if not not_ready:
        raise RegistryError(
            f"{metadata.product}/{metadata.bundle_id} is NOT LINE-READY "
            f"({'; '.join(readiness.lacks)}): not promoted. To serve it anyway, for a trial: "
            f"{override}"
        )
    return f"{reason}; promoted NOT LINE-READY ({'; '.join(readiness.lacks)})"


def recorded_check(metadata: BundleMetadata) -> LiveCheck:
    """The bundle's held-out figures as its export measured them, for ``readiness``."""
    gate = _recorded_gate(metadata)
    miss = kind_misses(
        {
            kind: (round(s.miss_rate * s.n_defective), s.n_defective)
            for kind, s in metadata.evaluation().per_defect.items()
            if s.n_defective and s.miss_rate is not None
        }
    )
    calibration = metadata.output_calibration
    return LiveCheck(
        f"{metadata.product}/{metadata.bundle_id}", gate.figures, gate.reference_fp32,
        GateDecision(gate.passed, gate.failures, ()), miss=miss,
        operating=None if calibration is None else calibration.operating,
    )  # fmt: skip


def check_live_bundle(
    bundle_dir: str | Path,
    parts: Sequence[LabelledPath],
    tolerances: GateTolerances | None = None,
    *,
    batch_size: int = 8,
) -> LiveCheck:
    """Judge ``parts`` with the bundle on the station runtime and gate the outcome."""
    metadata = verify_bundle(bundle_dir)
    reference = recorded_reference(metadata)
    labels = {Path(p.path): int(p.label) for p in parts}
    kinds = {Path(p.path): p.defect_type or "defect" for p in parts}
    inspector = load_inspector(bundle_dir)
    outcomes = inspect_paths(inspector, list(labels), batch_size=batch_size)
    judged = [(labels[o.path], o.result) for o in outcomes if o.result is not None]
    good = [r for label, r in judged if label == 0]
    bad = [r for label, r in judged if label == 1]
    figures = BundleFigures(
        false_reject_rate=sum(r.is_defective for r in good) / max(len(good), 1),
        miss_rate=sum(not r.is_defective for r in bad) / max(len(bad), 1),
        **dict.fromkeys(("image_auroc", "pixel_auroc", "aupro", "region_recall")),
        ng_without_region=sum(r.is_defective and not r.regions for _, r in judged),
        n_good=len(good),
        n_defective=len(bad),
    )
    decision = check_gate(figures, reference, tolerances or GateTolerances())
    calibration = metadata.output_calibration
    if calibration is not None:
        decision = with_budget(decision, figures, calibration)
    bad_outcomes = [o for o in outcomes if o.result is not None and labels[o.path] == 1]
    miss = miss_by_kind(
        [not o.result.is_defective for o in bad_outcomes], [kinds[o.path] for o in bad_outcomes]
    )
    refused = sum(o.refused for o in outcomes)
    return LiveCheck(
        inspector.model_version, figures, reference, decision,
        unreadable=len(outcomes) - len(judged) - refused, refused=refused,
        miss=miss, operating=None if calibration is None else calibration.operating,
    )  # fmt: skip
