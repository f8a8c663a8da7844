"""Labelled samples as model inputs (``SampleDataset``), and a model's raw predictions on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from inspection.core.images import DEFAULT_SOURCE_BITS, read_image, read_mask
from inspection.data.dataset import Sample
from inspection.data.decoded import KEPT


class SampleDataset(TorchDataset):
    """Samples as anomalib ``ImageItem``s at the model resolution (bilinear, as the bundle's
    ``resize``): image (3, H, W) float32 in [0, 1], gt_mask (H, W) bool."""

    def __init__(
        self,
        samples: Sequence[Sample],
        image_size: tuple[int, int],
        bits: int = DEFAULT_SOURCE_BITS,
    ) -> None:
        self.samples = list(samples)
        self.image_size = image_size
        self.bits = bits

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        # deferred: anomalib (5 s on top of torch), only when items are built
        from anomalib.data import ImageItem
        from torchvision.tv_tensors import Image, Mask

        sample = self.samples[index]
        image = load_image(sample.path, self.image_size, self.bits)
        mask = load_mask(sample, self.image_size)
        return ImageItem(
            image=Image(torch.from_numpy(image).permute(2, 0, 1).contiguous()),
            gt_label=torch.tensor(sample.label),
            gt_mask=Mask(torch.from_numpy(mask)),
            image_path=str(sample.path),
            mask_path=str(sample.mask_path or ""),
        )


def load_image(
    path: Path, image_size: tuple[int, int], bits: int = DEFAULT_SOURCE_BITS
) -> np.ndarray:
    """Read (16-bit at ``bits``) and resize to (H, W, 3) float32 RGB in [0, 1], bilinear."""
    height, width = image_size
    rgb = KEPT.take(Path(path), bits)  # the dataset check's decoding, if it kept it
    rgb = read_image(path, bits=bits) if rgb is None else rgb
    if rgb.shape[:2] != (height, width):
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    return rgb.astype(np.float32) / 255.0


def load_mask(sample: Sample, image_size: tuple[int, int]) -> np.ndarray:
    """Ground truth as (H, W) bool at ``image_size``; all False for good samples and for a
    defective one without a mask file (``mask_known`` tells them apart)."""
    return read_mask(sample.mask_path if sample.label else None, image_size)


def mask_known(sample: Sample) -> bool:
    """Whether the sample's pixel ground truth is known (good, or defective with a mask)."""
    return sample.label == 0 or sample.mask_path is not None


@dataclass(frozen=True)
class Predictions:
    """Raw outputs on N test images: scores (N,) float32, maps (N, H, W) float32, labels (N,) 0/1,
    gt_masks (N, H, W) bool, mask_known (N,) bool; ``bits``: how 16-bit images were read."""

    scores: np.ndarray
    maps: np.ndarray
    labels: np.ndarray
    gt_masks: np.ndarray
    mask_known: np.ndarray
    defect_types: tuple[str, ...]
    paths: tuple[str, ...]
    bits: int = DEFAULT_SOURCE_BITS

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.scores.shape != (n,):
            raise ValueError(f"scores: expected shape (N,), got {self.scores.shape}")
        if self.maps.ndim != 3 or len(self.maps) != n:
            raise ValueError(f"maps: expected ({n}, H, W), got {self.maps.shape}")
        if self.gt_masks.shape != self.maps.shape:
            raise ValueError(f"gt_masks: expected {self.maps.shape}, got {self.gt_masks.shape}")
        for name in ("labels", "mask_known", "defect_types", "paths"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name}: expected {n} entries, got {len(getattr(self, name))}")
