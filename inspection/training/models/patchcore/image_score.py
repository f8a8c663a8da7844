"""PatchCore's image score: the peak of its (optionally further blurred) anomaly map.

anomalib's largest patch distance lets one odd patch set a good part's score; ``map_peak`` takes
the blurred map's peak, and ``image_score_blur: auto`` keeps a sigma from ``BLUR_CANDIDATES``
only when its paired bootstrap gain on validation is above 0. ``MapPeakHead`` is in the graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from anomalib.models.components.base import DynamicBufferMixin
from anomalib.models.image.patchcore.torch_model import PatchcoreModel

from inspection.core.bootstrap import auroc_gain_interval
from inspection.core.metrics import image_auroc

logger = logging.getLogger(__name__)

BLUR_CANDIDATES = (1 / 32, 1 / 16)
"""``auto``'s blur sigmas, as fractions of the image side (8 and 16 px at 256 px)."""
POOL = 4
"""The map is average-pooled by this factor before the blur: the blur is wide (sigma >= 8 px)
and anomalib's map already smooth, so the peak hardly moves and the graph stays cheap."""


def gaussian_kernel(sigma: float, max_radius: int) -> torch.Tensor:
    """A normalised 1-D Gaussian of ``sigma`` (>0) samples, radius 3 sigma (at most
    ``max_radius``, so that a reflected border fits in a small map)."""
    radius = max(1, min(round(3 * sigma), max_radius))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


class MapPeakHead(DynamicBufferMixin, torch.nn.Module):
    """The image score as the peak of the (N, 1, H, W) anomaly map, after the Gaussian blur in
    ``kernel`` (1-D, applied along both axes at 1/``POOL`` resolution; empty: no blur)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", torch.empty(0))

    def set_blur(self, fraction: float, side: int) -> None:
        """Blur with sigma = ``fraction`` of ``side`` (the map's shorter side, px; 0: none)."""
        sigma = fraction * side / POOL
        pooled_side = max(2, side // POOL)
        self.kernel = gaussian_kernel(sigma, pooled_side - 1) if sigma > 0 else torch.empty(0)

    def peaks(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """(N,) peak of each map, blurred first when a kernel is set."""
        smoothed = anomaly_map
        if self.kernel.numel():
            kernel, radius = self.kernel, self.kernel.numel() // 2
            pooled = F.avg_pool2d(anomaly_map, POOL)
            padded = F.pad(pooled, (radius, radius, radius, radius), mode="reflect")
            rows = F.conv2d(padded, kernel.reshape(1, 1, 1, -1).to(pooled.dtype))
            smoothed = F.conv2d(rows, kernel.reshape(1, 1, -1, 1).to(pooled.dtype))
        return smoothed.amax(dim=(1, 2, 3))

    def forward(self, out: InferenceBatch) -> InferenceBatch:
        amap = out.anomaly_map if out.anomaly_map.ndim == 4 else out.anomaly_map.unsqueeze(1)
        return InferenceBatch(pred_score=self.peaks(amap), anomaly_map=out.anomaly_map)


class MapPeakPatchcoreModel(PatchcoreModel):
    """anomalib's ``PatchcoreModel`` scored by ``MapPeakHead`` (``image_score: map_peak``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.map_peak = MapPeakHead()

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor | InferenceBatch:
        out = super().forward(input_tensor)
        return out if self.training else self.map_peak(out)


@dataclass(frozen=True)
class BlurChoice:
    """What ``choose_blur`` decided, with its validation evidence (for the record)."""

    mode: str
    fraction: float
    reason: str
    validation_auroc: dict[str, float] = field(default_factory=dict)
    """Validation image AUROC per sigma fraction tried (``"0"``: no extra blur)."""


def choose_blur(
    head: MapPeakHead,
    maps: torch.Tensor,
    labels: np.ndarray,
    setting: float | str,
    side: int,
) -> BlurChoice:
    """Set ``head``'s blur from ``setting`` (a fraction, or ``auto``: chosen on the validation
    ``maps`` (N, 1, H, W) with their ``labels``; see the module doc)."""
    if setting != "auto":
        head.set_blur(float(setting), side)
        return BlurChoice("fixed", float(setting), f"image_score_blur: {setting}")
    labels = np.asarray(labels, dtype=int)
    if labels.min() == labels.max():
        head.set_blur(0.0, side)
        return BlurChoice("auto", 0.0, "auto: no defect images in the validation split")
    scores = {}
    for fraction in (0.0, *BLUR_CANDIDATES):
        head.set_blur(fraction, side)
        with torch.no_grad():
            scores[fraction] = torch.cat([head.peaks(m) for m in maps.split(16)]).double().numpy()
    evidence = {f"{f:.4g}": round(float(image_auroc(s, labels)), 4) for f, s in scores.items()}
    gains = {f: auroc_gain_interval(scores[f], scores[0.0], labels) for f in BLUR_CANDIDATES}
    passed = {f: g for f, g in gains.items() if g.low > 0}
    best, reason = 0.0, "auto: no blur adds validation AUROC with a 95 % interval above 0"
    if passed:
        best = max(passed, key=lambda f: passed[f].value)
        gain = passed[best]
        reason = (f"auto: sigma {best:.4g} of the side adds validation AUROC "
                  f"{gain.value:+.3f} [{gain.low:+.3f}, {gain.high:+.3f}]")  # fmt: skip
    head.set_blur(best, side)
    logger.info("image score blur: %s (validation AUROC %s)", reason, evidence)
    return BlurChoice("auto", best, reason, evidence)
