"""A trial (#67, not wired into the model): a supervised pixel decoder for the masks.

The mixed model's head scores PatchCore's stride-8 cells; a 2-3 px crack is blurred over a
cell. ``PixelDecoder`` predicts a defect logit per stride-4 pixel from the frozen backbone's
stride-2 (max-pooled) and stride-4 features (``FINE_LAYERS``, tapped while the model computes
its cells) and the stride-8 cells the model already has (kNN distance and the head's logit),
upsampled. It is taught by the labelled defects' masks (image-level labels teach no pixel)
and by the good images' pixels, with class-balanced BCE plus soft Dice at full resolution. The
mask of an image judged NG would be its probability above a threshold chosen on the
validation defects; the image score is untouched. ``bench/mask_decoder_trial.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from inspection.core.metrics import JudgedSet, mask_counts, mask_figures
from inspection.data.dataset import Sample
from inspection.training.models.mixed import _cells
from inspection.training.samples import load_mask

FINE_LAYERS = ("blocks.0", "blocks.1")
"""EfficientNet-Lite0 blocks at strides 2 and 4 (16 and 24 channels)."""
HIDDEN = 8
"""Hidden channels: a multiple of the 8 floats of an AVX2 register (12 measured slower than 16)."""
STEPS = 300
BATCH = 8
LEARNING_RATE = 3e-3
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
"""Probability thresholds the validation defects choose from."""


@dataclass(frozen=True)
class PixelInputs:
    """The decoder's inputs of N images: ``fine`` (N, 16, H/2, W/2), ``mid`` (N, 24, H/4,
    W/4) backbone features and ``coarse`` (N, 2, H/8, W/8): kNN distance and head logit."""

    fine: torch.Tensor
    mid: torch.Tensor
    coarse: torch.Tensor

    def __getitem__(self, rows: Any) -> PixelInputs:
        return PixelInputs(self.fine[rows], self.mid[rows], self.coarse[rows])

    @staticmethod
    def cat(parts: Sequence[PixelInputs]) -> PixelInputs:
        return PixelInputs(
            *(torch.cat([getattr(p, n) for p in parts]) for n in ("fine", "mid", "coarse"))
        )


class PixelDecoder(torch.nn.Module):
    """The stride-2 features 2x2 max-pooled to stride 4 (no learned layer at stride 2), joined
    with the stride-4 features and the upsampled cells; a 1x1 convolution to ``HIDDEN``
    channels, two depthwise-separable 3x3 blocks, one logit per stride-4 pixel. Sized by cost
    alone (``reports/learning/mask_decoder_small.md``): 2.5 MMAC at 256 px, against 34 for the
    first trial's full 3x3 convolutions and learned stride-2 branch."""

    def __init__(self, fine: int = 16, mid: int = 24, coarse: int = 2) -> None:
        super().__init__()
        self.join = torch.nn.Conv2d(fine + mid + coarse, HIDDEN, 1)
        layers: list[torch.nn.Module] = []
        for _ in range(2):
            layers += [
                torch.nn.ReLU(),
                torch.nn.Conv2d(HIDDEN, HIDDEN, 3, padding=1, groups=HIDDEN),
                torch.nn.Conv2d(HIDDEN, HIDDEN, 1),
            ]
        self.body = torch.nn.Sequential(*layers, torch.nn.ReLU(), torch.nn.Conv2d(HIDDEN, 1, 1))
        self.register_buffer("shift", torch.zeros(1, fine + mid + coarse, 1, 1))
        self.register_buffer("scale", torch.ones(1, fine + mid + coarse, 1, 1))

    def standardise_on(self, good: PixelInputs) -> None:
        """z-score every joined channel on the good images' pixels."""
        values = self._joined(good.fine, good.mid, good.coarse).transpose(0, 1).flatten(1)
        self.shift.copy_(values.mean(1).reshape(self.shift.shape))
        self.scale.copy_(1 / values.std(1).clamp_min(1e-6).reshape(self.scale.shape))

    @staticmethod
    def _joined(fine: torch.Tensor, mid: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        coarse = F.interpolate(coarse, size=mid.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([F.max_pool2d(fine, 2), mid, coarse], 1)

    def forward(self, fine: torch.Tensor, mid: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """(N, 1, H/4, W/4) defect logits. The z-scoring lives in the 1x1 join's weights (exact
        for a 1x1 convolution), which an exported graph folds: no pass over the inputs."""
        weight = self.join.weight * self.scale
        bias = self.join.bias - (weight * self.shift).sum((1, 2, 3))
        return self.body(F.conv2d(self._joined(fine, mid, coarse), weight, bias))

    def probabilities(self, inputs: PixelInputs, size: tuple[int, int]) -> torch.Tensor:
        """(N, H, W) defect probability at the image size (logits upsampled bilinearly)."""
        with torch.no_grad():
            logits = self(inputs.fine, inputs.mid, inputs.coarse)
            return torch.sigmoid(F.interpolate(logits, size=size, mode="bilinear")).squeeze(1)


@contextmanager
def _tapped(extractor: torch.nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """The outputs of ``FINE_LAYERS`` while ``extractor`` runs, per layer in call order."""
    modules = dict(extractor.named_modules())
    names = [next(n for n in modules if n.endswith(layer)) for layer in FINE_LAYERS]
    outputs: dict[str, list[torch.Tensor]] = {layer: [] for layer in FINE_LAYERS}
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, layer=layer: outputs[layer].append(out.detach().float())
        )
        for name, layer in zip(names, FINE_LAYERS, strict=True)
    ]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def pixel_inputs(
    model: Any,
    samples: Sequence[Sample],
    size: tuple[int, int],
    bits: int,
    *,
    leave_own_out: bool = False,
) -> PixelInputs:
    """The decoder's inputs of ``samples`` from a trained mixed ``Patchcore`` (one backbone
    pass; ``leave_own_out``: training images' distances without their own bank rows)."""
    inner = model.model
    with torch.no_grad(), _tapped(inner.feature_extractor) as tapped:
        grid, distance = _cells(model, samples, size, bits, leave_own_out=leave_own_out)
        head = inner.supervised
        logit = head.logits(grid, distance) if head.enabled else torch.zeros_like(distance)
    fine, mid = (torch.cat(tapped[layer]) for layer in FINE_LAYERS)
    return PixelInputs(fine, mid, torch.cat([distance, logit.float()], 1))


def masks_of(samples: Sequence[Sample], size: tuple[int, int]) -> torch.Tensor:
    """(N, 1, H, W) float ground truth (all zero for good images)."""
    return torch.from_numpy(np.stack([load_mask(s, size) for s in samples])).float().unsqueeze(1)


def fit_decoder(
    good: PixelInputs, defects: PixelInputs, masks: torch.Tensor, seed: int
) -> PixelDecoder:
    """A decoder taught by the good images (every pixel negative) and the masked labelled
    defects (``masks`` (L, 1, H, W)): class-balanced BCE plus soft Dice, ``STEPS`` Adam steps
    on seeded batches of ``BATCH`` images."""
    inputs = PixelInputs.cat([good, defects])
    targets = torch.cat([torch.zeros(len(good.fine), *masks.shape[1:]), masks])
    n_pos = float(targets.sum())
    n_neg = float(targets.numel()) - n_pos
    positive_weight, negative_weight = 0.5 * targets.numel() / n_pos, 0.5 * targets.numel() / n_neg
    torch.manual_seed(seed)
    decoder = PixelDecoder(good.fine.shape[1], good.mid.shape[1], good.coarse.shape[1])
    decoder.standardise_on(good)
    optimiser = torch.optim.Adam(decoder.parameters(), LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        batch = torch.randint(len(targets), (BATCH,), generator=generator)
        x, t = inputs[batch], targets[batch]
        logits = F.interpolate(decoder(x.fine, x.mid, x.coarse), size=t.shape[-2:], mode="bilinear")
        weights = torch.where(t > 0.5, positive_weight, negative_weight)
        loss = F.binary_cross_entropy_with_logits(logits, t, weight=weights)
        p = torch.sigmoid(logits)
        loss = loss + 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return decoder.eval()


def pixel_threshold(probabilities: torch.Tensor, masks: torch.Tensor) -> float:
    """The probability threshold of the best pooled pixel F1 (``core.metrics.mask_figures``)
    on (N, H, W) defect images with (N, 1, H, W) ground truth."""
    truth = masks.squeeze(1).numpy() > 0.5
    every = np.ones(len(truth), np.int64)

    def f1(threshold: float) -> float:
        judged = JudgedSet(every.astype(bool), (probabilities >= threshold).numpy(), 0 * every)
        return mask_figures(mask_counts(judged, truth), every)["pixel_f1"] or 0.0

    return float(max(THRESHOLDS, key=f1))
