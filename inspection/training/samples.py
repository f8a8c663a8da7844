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
from inspection.core.outputs import RawOutputs
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
        value_range: tuple[float, float] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.image_size = image_size
        self.bits = bits
        self.value_range = value_range

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        # deferred: anomalib (5 s on top of torch), only when items are built
        from anomalib.data import ImageItem
        from torchvision.tv_tensors import Image, Mask

        sample = self.samples[index]
        image = load_image(sample.path, self.image_size, self.bits, self.value_range)
        mask = load_mask(sample, self.image_size)
        return ImageItem(
            image=Image(torch.from_numpy(image).permute(2, 0, 1).contiguous()),
            gt_label=torch.tensor(sample.label),
            gt_mask=Mask(torch.from_numpy(mask)),
            image_path=str(sample.path),
            mask_path=str(sample.mask_path or ""),
        )


def load_image(
    path: Path,
    image_size: tuple[int, int],
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Read (16-bit at ``bits``, signed and float over ``value_range``) and resize to (H, W, 3)
    float32 RGB in [0, 1], bilinear."""
    height, width = image_size
    rgb = decoded_image(path, bits, value_range)
    if rgb.shape[:2] != (height, width):
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    return rgb.astype(np.float32) / 255.0


def decoded_image(
    path: Path, bits: int = DEFAULT_SOURCE_BITS, value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 RGB of ``path`` (``core.images.read_image``): the dataset check's or a
    held decoding (``KEPT``) where there is one."""
    rgb = KEPT.take(Path(path), bits, value_range)
    if rgb is None:
        rgb = read_image(path, bits=bits, value_range=value_range)
        KEPT.offer(Path(path), bits, rgb, value_range)  # kept inside ``KEPT.held()`` only
    return rgb


def load_mask(sample: Sample, image_size: tuple[int, int]) -> np.ndarray:
    """Ground truth as (H, W) bool at ``image_size``; all False for good samples and for a
    defective one without a mask file (``mask_known`` tells them apart)."""
    return read_mask(sample.mask_path if sample.label else None, image_size)


def mask_known(sample: Sample) -> bool:
    """Whether the sample's pixel ground truth is known (good, or defective with a mask)."""
    return sample.label == 0 or sample.mask_path is not None


@dataclass(frozen=True)
class Predictions(RawOutputs):
    """``RawOutputs`` of a torch model on N test images, with their ``paths`` and the
    ``bits`` 16-bit images and ``value_range`` signed or float ones were read at (for the
    report's examples)."""

    paths: tuple[str, ...] = ()
    bits: int = DEFAULT_SOURCE_BITS
    value_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.paths) != len(self.scores):
            raise ValueError(f"paths: expected {len(self.scores)} entries, got {len(self.paths)}")
