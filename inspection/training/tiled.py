"""Tiled training at native resolution: one model over every tile of the training images.

``train_tiled`` cuts the tiles the station cuts (``core.tiling``; never anomalib's ``Tiler``,
which pads or interpolates), fits one model on them, and calibrates on whole validation images
stitched back as an exported bundle is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import torch
from anomalib.data import ImageBatch, ImageItem
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from torchvision.tv_tensors import Image, Mask

from inspection.core.config import to_mapping
from inspection.core.errors import ConfigError
from inspection.core.images import DEFAULT_SOURCE_BITS, read_image, read_mask
from inspection.core.model_record import FitFigures, ModelRecord
from inspection.core.outputs import RawOutputs
from inspection.core.product_config import ModelConfig
from inspection.core.registry import Registry
from inspection.core.roi import RoiSpec
from inspection.core.tiling import TilingSpec, cut, stitch
from inspection.data.dataset import Dataset, Sample
from inspection.runtime.tiled import evaluation_size
from inspection.training.backbones import ResolvedWeights
from inspection.training.evaluate import metrics_of_predictions
from inspection.training.models import model_kind
from inspection.training.roi import TrainingRoi
from inspection.training.train import (
    config_weights,
    evaluation_splits,
    fit_loaders,
    register_version,
    training_roi_extra,
    version_extra,
)

logger = logging.getLogger(__name__)


def tile_key(path: object, tile: int) -> str:
    """The ``image_path`` of one tile of an image (how ROI masks find it)."""
    return f"{path}#tile{tile}"


class TileDataset(TorchDataset):
    """Every tile of every sample, image-major, as anomalib ``ImageItem``s; with ``roi``, tiles
    without an ROI pixel are left out. Only the last image is cached: read in order."""

    def __init__(
        self,
        samples: Sequence[Sample],
        tiling: TilingSpec,
        roi: RoiSpec | None = None,
        bits: int = DEFAULT_SOURCE_BITS,
        value_range: tuple[float, float] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.tiling = tiling
        self.bits, self.value_range = bits, value_range
        self.total_tiles = 0
        self._index: list[tuple[int, int]] = []
        masks: dict[str, np.ndarray] = {}
        for number, sample in enumerate(self.samples):
            grid = tiling.grid(
                *read_image(sample.path, bits=bits, value_range=value_range).shape[:2]
            )
            self.total_tiles += len(grid)
            tiles = range(len(grid))
            if roi is not None:
                tile_masks = cut(np.asarray(roi.mask(*grid.size)), grid)
                tiles = [tile for tile in tiles if tile_masks[tile].any()]
                masks.update((tile_key(sample.path, t), tile_masks[t]) for t in tiles)
            self._index.extend((number, tile) for tile in tiles)
        self.training_roi = TrainingRoi(masks) if roi is not None and masks else None
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._index)

    def tiles_of(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, th, tw) float32 image tiles and (N, th, tw) bool mask tiles of a sample."""
        if self._cached is None or self._cached[0] != number:
            sample = self.samples[number]
            image = read_image(sample.path, bits=self.bits, value_range=self.value_range)
            grid = self.tiling.grid(*image.shape[:2])
            height, width = grid.size
            if image.shape[:2] != grid.size:
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            chw = image.astype(np.float32).transpose(2, 0, 1) / 255.0
            mask = read_mask(sample.mask_path if sample.label else None, grid.size)
            self._cached = (number, cut(chw, grid, channels_first=True), cut(mask, grid))
        return self._cached[1], self._cached[2]

    def __getitem__(self, index: int) -> Any:
        number, tile = self._index[index]
        images, masks = self.tiles_of(number)
        sample = self.samples[number]
        return ImageItem(
            image=Image(torch.from_numpy(np.ascontiguousarray(images[tile]))),
            gt_label=torch.tensor(int(masks[tile].any())),
            gt_mask=Mask(torch.from_numpy(np.ascontiguousarray(masks[tile]))),
            image_path=tile_key(sample.path, tile),
            mask_path=str(sample.mask_path or ""),
        )


def _tile_loader(
    samples: Sequence[Sample], tiling: TilingSpec, config: ModelConfig, roi: RoiSpec | None
) -> DataLoader:
    data = TileDataset(samples, tiling, roi, config.image_bits, config.image_range)
    # unshuffled: image-major order keeps the one-image cache hot
    return DataLoader(data, config.batch_size, shuffle=False, collate_fn=ImageBatch.collate)


def predict_tiled(
    model: Any,
    samples: Sequence[Sample],
    tiling: TilingSpec,
    *,
    batch_size: int = 16,
    roi: RoiSpec | None = None,
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> RawOutputs:
    """Raw scores (N,) (highest tile) and stitched maps of the tiles of ``samples`` (in ``roi``),
    read at ``bits`` and ``value_range`` (``core.images.decode_reduced``)."""
    data = TileDataset(samples, tiling, bits=bits, value_range=value_range)
    scores, maps = [], []
    model.eval()
    for number, sample in enumerate(data.samples):
        images, _ = data.tiles_of(number)
        grid = tiling.grid(*read_image(sample.path, bits=bits, value_range=value_range).shape[:2])
        if roi is not None:
            kept = grid.inside(roi)
            images = images[[grid.origins.index(origin) for origin in kept.origins]]
            grid = kept
        tile_scores, tile_maps = [], []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = torch.from_numpy(images[start : start + batch_size])
                output = model.model(model.pre_processor(batch))
                tile_scores.append(output.pred_score.reshape(-1).float().numpy())
                tile_maps.append(output.anomaly_map.reshape(len(batch), *batch.shape[-2:]).numpy())
        stitched = stitch(np.concatenate(tile_maps), grid, tiling.blend)
        size = evaluation_size(grid.size)
        maps.append(cv2.resize(stitched, (size[1], size[0]), interpolation=cv2.INTER_AREA))
        scores.append(float(np.concatenate(tile_scores).max()))
    return RawOutputs.of_samples(samples, np.asarray(scores), np.stack(maps))


def fit_tiles(
    config: ModelConfig,
    tiling: TilingSpec,
    train_samples: Sequence[Sample],
    validation: Sequence[Sample],
    weights: ResolvedWeights,
    *,
    progress: bool = True,
    roi: RoiSpec | None = None,
) -> tuple[Any, float, TileDataset]:
    """Seeded fit on the tiles (inside ``roi``); returns (model, seconds, the training tiles)."""
    train_loader = _tile_loader(train_samples, tiling, config, roi)
    validation_loader = _tile_loader(validation, tiling, config, roi)
    tiles = train_loader.dataset
    masks = tiles.training_roi if roi is not None else None
    if roi is not None and masks is None:
        raise ConfigError("the ROI holds no training tile: check the product's roi polygons")
    model, seconds = fit_loaders(config, weights, train_loader, validation_loader, progress, masks)
    model.train_rows = {}  # no out-of-fold scores over tiles: the fit's rows are not needed
    return model, seconds, tiles


def check_tiling(config: ModelConfig, tiling: TilingSpec) -> None:
    refusal = model_kind(config.kind).tiling_refusal
    if refusal:
        raise ConfigError(refusal)
    if tuple(config.image_size) != tuple(tiling.tile_size):
        raise ConfigError(
            f"tiling.tile_size {list(tiling.tile_size)} must equal the model image_size "
            f"{list(config.image_size)}: the model's input is one tile"
        )


def train_tiled(
    config: ModelConfig,
    tiling: TilingSpec,
    dataset: Dataset,
    *,
    product: str,
    registry: Registry,
    progress: bool = True,
    evaluate: bool = True,
    roi: RoiSpec | None = None,
) -> ModelRecord:
    """Fit on tiles, calibrate on whole images, measure and register a version with its tiling."""
    check_tiling(config, tiling)
    validation, test = evaluation_splits(config, dataset)
    weights = config_weights(config)
    model, fit_seconds, tile_data = fit_tiles(
        config, tiling, dataset.train_samples, validation, weights, progress=progress, roi=roi
    )
    tiles = len(tile_data)
    reading = {"bits": config.image_bits, "value_range": config.image_range}
    calibration = predict_tiled(model, validation, tiling, roi=roi, **reading).calibrate(
        config.operating_point
    )
    fit = FitFigures(fit_seconds=round(fit_seconds, 2), train_tiles=tiles)
    metrics: dict[str, Any] = fit.to_mapping()
    if evaluate:
        judged = metrics_of_predictions(
            predict_tiled(model, test, tiling, roi=roi, **reading), calibration
        )
        metrics = {**judged.to_mapping(), **replace(fit, test_images=len(test)).to_mapping()}
    roi_extra = training_roi_extra(roi, tile_data.training_roi, model, tiles_kept=tiles,
                                   tiles_total=tile_data.total_tiles)  # fmt: skip
    record = register_version(
        registry, product, model, dataset, model_kind=config.kind, config=to_mapping(config),
        metrics=metrics, weights=weights.record(),
        extra={
            **version_extra(config, weights, dataset, (validation, test), calibration),
            "tiling": to_mapping(tiling), "train_tiles": tiles, **roi_extra,
        },
    )  # fmt: skip
    logger.info("registered %s (%s, tiled %s)", record.model_version, config.kind, tiling)
    return record
