"""Image-level synthetic anomalies for the mixed model's head (``synthetic: true``).

Taught (where no defect is labelled): a fixed pool made once from the good images that teach the
head, ``COPIES`` per image, half DRAEM-style Perlin blends (anomalib's ``PerlinAnomalyGenerator``,
its texture anomalib's own Perlin noise, foreign to the product) and half thin strokes (chains of quadratic Bezier
curves, 1-3 px, darker or lighter than the texture beneath: crack- and scratch-like), made in image
space so that thin structure exists before the backbone pools it into stride-8 cells. Judged (by
the keep rule): CutPaste patches (Li et al. 2021) on the good images that do not teach, a kind the
head never saw. All seeded. Why and what the evidence can show: ``reports/learning/synthetic.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator
from scipy.ndimage import binary_dilation
from skimage.draw import bezier_curve, polygon
from torchvision.transforms.v2 import ColorJitter

from inspection.data.dataset import Sample
from inspection.training.samples import SampleDataset

COPIES = 8
"""Synthetic images per teaching image: the first half Perlin blends, the rest strokes."""
STROKES = (1, 3)
"""Strokes per image (inclusive range), each a chain of ``SEGMENTS`` Bezier segments."""
SEGMENTS = (1, 3)
SEGMENT_LENGTH = (0.05, 0.25)
"""A Bezier segment's chord, as a fraction of the image side."""
WIDTH = (1, 3)
"""Stroke width in pixels (inclusive range)."""
CONTRAST = (0.35, 0.75)
"""Darker: pixel x U(range); lighter: pixel + (1 - pixel) x U(range)."""
PATCH_AREA = (0.02, 0.15)
"""CutPaste: the pasted rectangle's area as a fraction of the image's."""
PATCH_ASPECT = (0.3, 3.3)
SCAR_LENGTH = (10, 25)
"""CutPaste-scar: length and width in pixels at 256 px, rotation in degrees (the paper's)."""
SCAR_WIDTH = (2, 16)
SCAR_ANGLE = (-45, 45)
JITTER = (0.1, 0.1, 0.1, 0.1)
"""CutPaste's colour jitter of the pasted region: brightness, contrast, saturation, hue."""


@dataclass(frozen=True)
class Pool:
    """Synthetic images through the model's pre-processor (P, 3, H, W), their (P, 1, H, W)
    masks and (P,) int64 index of the teaching image each was made from."""

    images: torch.Tensor
    masks: torch.Tensor
    source: torch.Tensor


def teaching_pool(
    model: Any,
    samples: Sequence[Sample],
    texture: Sequence[Sample],
    size: tuple[int, int],
    bits: int,
    seed: int,
) -> Pool:
    """``COPIES`` synthetic anomalies of each of ``samples``: Perlin blends of the ``texture``
    images, then thin strokes."""
    images = _images(samples, size, bits)
    source = torch.arange(len(images)).repeat_interleave(COPIES)
    strokes = (torch.arange(len(source)) % COPIES) >= COPIES // 2
    generator = PerlinAnomalyGenerator(probability=1.0)
    # v5: no source images: anomalib's own Perlin-noise texture (DRAEM without DTD), foreign to
    # the product (``texture`` unused)
    rng = np.random.default_rng(seed)
    out, masks = [], []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for index, stroke in zip(source.tolist(), strokes.tolist(), strict=True):
            if stroke:
                image, mask = _stroked(images[index], rng)
            else:
                image, mask = generator(images[index])
            out.append(image.clamp(0.0, 1.0))
            masks.append(mask.float())
        return Pool(model.pre_processor(torch.stack(out)), torch.stack(masks), source)


def cutpaste_inputs(
    model: Any, samples: Sequence[Sample], size: tuple[int, int], bits: int, seed: int
) -> torch.Tensor:
    """(N, 3, H, W): each of ``samples`` (at least two) with one region of another of them
    pasted in, colour-jittered as CutPaste's paper does: a rectangle ("patch") on even
    indices, a thin rotated one ("scar") on odd ones; through the model's pre-processor."""
    images = _images(samples, size, bits)
    rng = np.random.default_rng(seed)
    pasted = images.clone()
    jitter = ColorJitter(*JITTER)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for index in range(len(images)):
            other = (index + rng.integers(1, len(images))) % len(images)
            _paste(pasted[index], images[other], jitter, rng, scar=bool(index % 2))
    with torch.no_grad():
        return model.pre_processor(pasted)


def _paste(
    image: torch.Tensor, source: torch.Tensor, jitter: Any, rng: np.random.Generator, scar: bool
) -> None:
    """Paste a jittered region of ``source`` into ``image`` (3, H, W) in place."""
    height, width = image.shape[-2:]
    scale = min(height, width) / 256
    if scar:
        long, thin = rng.uniform(*SCAR_LENGTH) * scale, rng.uniform(*SCAR_WIDTH) * scale
        angle = np.deg2rad(rng.uniform(*SCAR_ANGLE))
        side = int(np.ceil(long + thin)) + 2
        corners = np.array([[-long, -thin], [long, -thin], [long, thin], [-long, thin]]) / 2
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        rows, cols = (corners @ turn.T + side / 2).T
        mask = np.zeros((side, side), dtype=bool)
        mask[polygon(rows, cols, mask.shape)] = True
        h = w = side
    else:
        area = rng.uniform(*PATCH_AREA) * height * width
        aspect = np.exp(rng.uniform(*np.log(PATCH_ASPECT)))
        h = int(np.clip(np.sqrt(area * aspect), 2, height - 1))
        w = int(np.clip(np.sqrt(area / aspect), 2, width - 1))
        mask = np.ones((h, w), dtype=bool)
    top, left = rng.integers(0, height - h), rng.integers(0, width - w)
    to_top, to_left = rng.integers(0, height - h), rng.integers(0, width - w)
    patch = jitter(source[:, top : top + h, left : left + w]).clamp(0.0, 1.0)
    region = image[:, to_top : to_top + h, to_left : to_left + w]
    keep = torch.from_numpy(mask)
    region[:, keep] = patch[:, keep]


def _images(samples: Sequence[Sample], size: tuple[int, int], bits: int) -> torch.Tensor:
    """(N, 3, H, W) float32 in [0, 1] at the model resolution."""
    dataset = SampleDataset(samples, size, bits)
    return torch.stack([dataset[i].image.as_subclass(torch.Tensor) for i in range(len(dataset))])


def _stroked(image: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` (3, H, W) with thin strokes drawn in, and their (1, H, W) mask."""
    height, width = image.shape[-2:]
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(rng.integers(STROKES[0], STROKES[1] + 1)):
        mask |= _stroke((height, width), rng)
    change = torch.from_numpy(mask)[None].float()
    amount = float(rng.uniform(*CONTRAST))
    if rng.random() < 0.5:  # darker
        return image * (1 - change * (1 - amount)), change
    return image + (1 - image) * change * amount, change


def _stroke(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W) bool: one chain of Bezier segments from a random point, dilated to its width."""
    side = min(shape)
    mask = np.zeros(shape, dtype=bool)
    point = rng.uniform((0, 0), shape)
    for _ in range(rng.integers(SEGMENTS[0], SEGMENTS[1] + 1)):
        angle = rng.uniform(0, 2 * np.pi)
        end = point + rng.uniform(*SEGMENT_LENGTH) * side * np.array([np.sin(angle), np.cos(angle)])
        bend = (point + end) / 2 + rng.normal(0, 0.25, 2) * np.linalg.norm(end - point)
        rows, cols = bezier_curve(
            *np.round(point).astype(int), *np.round(bend).astype(int),
            *np.round(end).astype(int), rng.uniform(0.5, 3.0), shape=shape,
        )  # fmt: skip
        mask[rows, cols] = True
        point = end
    width = int(rng.integers(WIDTH[0], WIDTH[1] + 1))
    return binary_dilation(mask, np.ones((width, width), bool)) if width > 1 else mask
