"""``build_refiner(config) -> MaskRefiner``: a registry of builders keyed by method name."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from inspection.core.bundle import BundleMetadata
from inspection.core.errors import ConfigError, WeightsError
from inspection.core.signing import PublicKeys
from inspection.core.types import InspectionResult
from inspection.refine.base import MaskRefiner
from inspection.refine.classical import ClassicalRefiner
from inspection.refine.config import RefineConfig

log = logging.getLogger(__name__)


class RawRefiner:
    """A ``MaskRefiner`` that keeps the raw thresholded mask (method "none")."""

    name = "raw"

    def refine_result(self, image: np.ndarray, result: InspectionResult) -> InspectionResult:
        return result


def _build_sam(config: RefineConfig, keys: PublicKeys | None) -> MaskRefiner:
    # deferred: pulls OpenVINO (0.3 s), only for the SAM refiner (cli.refine imports this at --help)
    from inspection.refine.sam import SamRefiner

    if config.sam.bundle is None:
        raise ConfigError(
            "refine.method is 'sam' but refine.sam.bundle is not set: export one with "
            "`inspection refine export-sam --checkpoint <weights> --out <dir>` and set its path"
        )
    refiner = SamRefiner.from_bundle(config.sam.bundle, config=config, public_key=keys)
    if refiner.metadata.random_weights and not config.sam.allow_random_weights:
        raise WeightsError(
            f"SAM refiner bundle {config.sam.bundle} was exported with random weights; re-export "
            "from a real checkpoint, or set refine.sam.allow_random_weights: true (benchmarks only)"
        )
    return refiner


def _build_auto(config: RefineConfig, keys: PublicKeys | None) -> MaskRefiner:
    if config.sam.bundle is not None:
        return _build_sam(config, keys)
    log.info("no SAM refiner bundle configured: refining masks with GrabCut")
    return ClassicalRefiner("grabcut", config)


REFINERS: dict[str, Callable[[RefineConfig, PublicKeys | None], MaskRefiner]] = {
    # keys: what the SAM refiner bundle must be signed by (None: checksums only)
    "auto": _build_auto,
    "none": lambda config, keys: RawRefiner(),
    "grabcut": lambda config, keys: ClassicalRefiner("grabcut", config),
    "random_walker": lambda config, keys: ClassicalRefiner("random_walker", config),
    "sam": _build_sam,
}


def build_refiner(
    config: RefineConfig | None = None,
    method: str | None = None,
    public_key: PublicKeys | None = None,
) -> MaskRefiner:
    """The refiner named by ``method`` (default ``config.method``); unknown → ValueError. A SAM
    refiner bundle not signed by ``public_key`` (when given) is refused before anything compiles."""
    config = config or RefineConfig()
    name = method or config.method
    if name not in REFINERS:
        raise ValueError(f"unknown refiner {name!r}; valid: {', '.join(sorted(REFINERS))}")
    return REFINERS[name](config, public_key)


def bundle_refiner(
    metadata: BundleMetadata,
    config: RefineConfig | None = None,
    public_key: PublicKeys | None = None,
) -> MaskRefiner | None:
    """The refiner a bundle's ``metadata.refinement`` chose (``build_refiner``); None: none."""
    choice = metadata.refinement
    if choice is None or choice.method == "none":
        return None
    return build_refiner(config, choice.method, public_key)
