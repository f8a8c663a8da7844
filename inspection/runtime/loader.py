"""Loading a bundle: verify -> compile -> golden check -> refiner (torch-free)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from inspection.core.bundle import BundleMetadata
from inspection.core.golden import GoldenCheck, Recalibration
from inspection.refine.base import MaskRefiner
from inspection.refine.config import RefineConfig
from inspection.refine.factory import bundle_refiner
from inspection.runtime.golden import GoldenDriftError, check_golden
from inspection.runtime.model import BundleModel
from inspection.runtime.recalibration import recalibrate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedBundle:
    """A bundle ready to inspect with: the compiled model, the golden check run here, the
    re-calibration a drift led to and the mask refiner (each None when absent)."""

    model: BundleModel
    golden: GoldenCheck | None = None
    recalibration: Recalibration | None = None
    refiner: MaskRefiner | None = None


def load_bundle(
    path: str | Path,
    *,
    public_key: Ed25519PublicKey | None = None,
    device: str = "CPU",
    performance_hint: str = "LATENCY",
    num_threads: int | None = None,
    optimize: bool = True,
    golden: bool = True,
    validation: str | Path | None = None,
    refiner: MaskRefiner | Literal["bundle"] | None = None,
    refine: RefineConfig | None = None,
) -> LoadedBundle:
    """Verify, compile and check the bundle at ``path`` (keywords as ``BundleModel.load``).
    ``golden``: a drift beyond tolerance raises ``GoldenDriftError`` unless ``validation``
    names the station's images to re-calibrate on. ``refiner="bundle"``: the refiner the
    bundle chose, seeded from ``refine`` (the site's ``refine.yaml``)."""
    model = BundleModel.load(
        path, device=device, performance_hint=performance_hint, num_threads=num_threads,
        optimize=optimize, public_key=public_key,
    )  # fmt: skip
    check, recalibration = _golden(model, validation) if golden else (None, None)
    if refiner == "bundle":
        refiner = _bundle_refiner(model.metadata, refine, public_key)
    return LoadedBundle(model, check, recalibration, refiner)


def _golden(
    model: BundleModel, validation: str | Path | None
) -> tuple[GoldenCheck | None, Recalibration | None]:
    check = check_golden(model)
    if check is None or check.passed:
        if check is not None:
            log.info("%s", check.message())
        return check, None
    if validation is None:
        raise GoldenDriftError(check)
    return check, recalibrate(model, check, validation)


def _bundle_refiner(
    metadata: BundleMetadata, refine: RefineConfig | None, public_key: Ed25519PublicKey | None
) -> MaskRefiner | None:
    """The bundle's measured refiner choice, seeded from the station's refine config."""
    refiner = bundle_refiner(metadata, refine, public_key)
    if refiner is not None and metadata.refinement is not None:
        log.info("%s refines NG masks: %s", metadata.bundle_id, metadata.refinement.describe())
    return refiner
