"""Synthetic anomalies for the mixed model's head (``synthetic: true``), from anomalib's generators.

Taught: SuperSimpleNet's feature-level anomalies (``AnomalyGenerator``: Gaussian noise inside a
Perlin mask at the grid's resolution) on the good teaching images' cell grids, z-scored per
channel on those cells so that ``NOISE`` is a fraction of each channel's good spread. Judged
(where no labelled defect exists): DRAEM-style image-level anomalies (``PerlinAnomalyGenerator``:
a rotated Perlin mask blending in an augmented Perlin texture) on good images the head did not
learn from, a kind it was never taught. Both are seeded. Why and what the evidence can show:
``reports/learning/synthetic.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator
from anomalib.models.image.supersimplenet.anomaly_generator import AnomalyGenerator

from inspection.data.dataset import Sample
from inspection.training.samples import SampleDataset

NOISE = 0.25
"""Standard deviation of the feature noise, in units of each channel's spread on good cells."""
PERLIN_THRESHOLD = 0.2
"""Where the feature-level Perlin noise is a defect (SuperSimpleNet's default)."""
COPIES = 4
"""Perturbation draws per good teaching grid (the generator leaves about half of them clean)."""
PERLIN_SIDE = 32
"""Smallest side Perlin noise is drawn at: anomalib draws up to 32 noise periods per side."""


class _Generator(AnomalyGenerator):
    """SuperSimpleNet's generator on grids of any size: masks drawn at ``PERLIN_SIDE`` or more
    and max-pooled to the grid."""

    def generate_perlin(self, batches: int, height: int, width: int) -> torch.Tensor:
        side = (max(height, PERLIN_SIDE), max(width, PERLIN_SIDE))
        masks = super().generate_perlin(batches, *side).float()
        return F.adaptive_max_pool2d(masks, (height, width))


@dataclass(frozen=True)
class Perturbed:
    """Perturbed grids (P, C, h, w), their (P, 1, h, w) cell masks and (P,) int64 index of the
    good grid each came from (its kNN distances are set by the caller)."""

    grid: torch.Tensor
    masks: torch.Tensor
    source: torch.Tensor


def perturbed(grid: torch.Tensor, seed: int) -> Perturbed:
    """The good (N, C, h, w) ``grid`` perturbed ``COPIES`` times each, the clean draws dropped."""
    cells = grid.transpose(0, 1).flatten(1)
    shift = cells.mean(1).reshape(1, -1, 1, 1)
    spread = cells.std(1).clamp_min(1e-6).reshape(1, -1, 1, 1)
    source = torch.arange(len(grid)).repeat(COPIES)
    blank = torch.zeros(len(source), 1, *grid.shape[-2:])
    generator = _Generator(noise_mean=0.0, noise_std=NOISE, threshold=PERLIN_THRESHOLD)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        _, noisy, masks, labels = generator(
            None, (grid[source] - shift) / spread, blank, torch.zeros(len(source))
        )
    anomalous = labels > 0  # the generator doubles the batch, then clears half the masks
    return Perturbed(
        noisy[anomalous] * spread + shift, masks[anomalous].float(), source.repeat(2)[anomalous]
    )


def blended_inputs(
    model: Any, samples: Sequence[Sample], size: tuple[int, int], bits: int, seed: int
) -> torch.Tensor:
    """(N, 3, H, W) float32: each sample with one image-level Perlin anomaly, through the
    model's pre-processor (as ``out_of_fold.model_inputs``)."""
    dataset = SampleDataset(samples, size, bits)
    images = torch.stack([dataset[i].image for i in range(len(dataset))])
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        blended, _ = PerlinAnomalyGenerator(probability=1.0)(images.as_subclass(torch.Tensor))
        return model.pre_processor(blended.clamp(0.0, 1.0))
