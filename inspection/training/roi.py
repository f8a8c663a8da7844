"""The product's ROI in training: which feature-map patches a model may learn from.

A patch is kept when its receptive-field centre lies inside the ROI (``core.roi``); masks are
looked up by ``image_path``, so one ``TrainingRoi`` serves whole images and tiles.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from inspection.core.roi import RoiSpec, apply_roi_batch
from inspection.training.samples import Predictions


class TrainingRoi:
    """Input-resolution ROI masks of training items, (H, W) bool: ``masks`` by ``image_path``,
    ``every`` for any other; ``spec``: the ROI whole images' scores are masked to."""

    def __init__(
        self,
        masks: Mapping[str, np.ndarray] | None = None,
        every: np.ndarray | None = None,
        spec: RoiSpec | None = None,
    ) -> None:
        if not masks and every is None:
            raise ValueError("a TrainingRoi needs per-item masks or one mask for every item")
        self.masks = dict(masks or {})
        self.every = every
        self.spec = spec

    @classmethod
    def whole_image(cls, roi: RoiSpec, image_size: tuple[int, int]) -> TrainingRoi:
        """Every item is a whole image resized to ``image_size`` (height, width)."""
        return cls(every=np.array(roi.mask(*image_size)), spec=roi)

    def input_mask(self, path: str) -> np.ndarray:
        mask = self.masks.get(path, self.every)
        if mask is None:
            raise KeyError(f"no ROI mask for training item {path!r}")
        return mask

    def patch_keep(self, paths: Sequence[str], height: int, width: int) -> torch.Tensor:
        """(B, height, width) bool: the cells of a feature map whose centre is inside."""
        return torch.from_numpy(
            np.stack([centres(self.input_mask(p), height, width) for p in paths])
        )

    def keep_rows(
        self, paths: Sequence[str], embedding: torch.Tensor, input_size: tuple[int, int]
    ) -> torch.Tensor:
        """(rows,) bool over an embedding of ``paths`` (B * h * w rows): True for patches inside."""
        grid = feature_grid(embedding.shape[0], len(paths), input_size)
        return self.patch_keep(paths, *grid).reshape(-1).to(embedding.device)

    def inside_fraction(self) -> float:
        masks = list(self.masks.values()) or [self.every]
        return float(np.mean([m.mean() for m in masks if m is not None]))


def masked_predictions(predictions: Predictions, roi: RoiSpec | None) -> Predictions:
    """``predictions`` masked to ``roi`` exactly as a bundle masks its outputs (None: unchanged)."""
    if roi is None:
        return predictions
    scores, maps = apply_roi_batch(predictions.scores, predictions.maps, roi)
    return dataclasses.replace(predictions, scores=scores, maps=maps)


def centres(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height, width) bool: the (H, W) ``mask`` at the centres of a height x width cell grid."""
    rows = ((np.arange(height) + 0.5) * mask.shape[0] / height).astype(int)
    cols = ((np.arange(width) + 0.5) * mask.shape[1] / width).astype(int)
    return mask[np.ix_(rows, cols)]


def feature_grid(rows: int, batch: int, input_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a feature map of ``rows`` = batch * h * w over an ``input_size`` input."""
    cells = rows // batch
    height = round(math.sqrt(cells * input_size[0] / input_size[1]))
    width = cells // max(height, 1)
    if batch * height * width != rows:
        raise ValueError(
            f"cannot lay {rows} embedding rows out as {batch} x h x w over {input_size}"
        )
    return height, width


def per_image_rows(
    rows_of: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int,
    roi: TrainingRoi | None = None,
    paths: Sequence[str] = (),
) -> list[torch.Tensor]:
    """Per image of (N, 3, H, W) ``images``, the rows ``rows_of(batch)`` ((B, rows, d), cells in
    row-major order) gives it; with ``roi``, those outside it left out (``paths``: the images')."""
    per_image: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            for offset, chunk in enumerate(rows_of(batch)):
                if roi is not None:
                    path = str(paths[start + offset])
                    chunk = chunk[roi.keep_rows([path], chunk, tuple(batch.shape[-2:]))]
                per_image.append(chunk.contiguous())
    return per_image
