"""PatchCore levers on cached backbone features, for ``bench/hard_surfaces.py``.

A ``Lever`` is one PatchCore variant: backbone, feature layers, input scale, the neighbourhood
(average-pool kernel) of each patch, coreset ratio, PatchCore's image-score re-weighting
(``num_neighbors``; 1 = plain max), horizontal-flip test-time augmentation, and optional
position-aware nearest neighbours (a patch is compared only with bank rows from nearby grid
positions, for aligned parts).

Backbone features are extracted once per (backbone, input size, flip) and product and reused by
every lever that shares them (``FeatureCache``); the rest follows anomalib's ``PatchcoreModel``
exactly: pool 3x3 (here: ``pool``), upsample deeper layers bilinearly to the first layer's grid,
concatenate, our exact coreset (``training.coreset.select_coreset``) capped at
``memory_bank_max``, nearest-neighbour patch scores, anomalib's re-weighted image score and its
map (nearest upsampling + Gaussian blur, sigma 4, at the model input size).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from inspection.data.dataset import Sample
from inspection.training.backbones import apply_weights, no_pretrained_download, resolve_weights
from inspection.training.coreset import select_coreset
from inspection.training.samples import load_image, load_mask

NATIVE = 256
"""Demo images' side; pixel metrics are computed on maps brought back to this size."""
BANK_CAP = 8192


@dataclass(frozen=True)
class Lever:
    """One PatchCore variant (see module docstring)."""

    name: str
    family: str
    backbone: str = "tf_efficientnet_lite0"
    layers: tuple[str, ...] = ("blocks.2", "blocks.4")
    scale: float = 1.0
    pool: int = 3
    ratio: float = 0.01
    neighbors: int = 9
    flip_tta: bool = False
    map_score: bool = False
    """Image score = peak of the blurred anomaly map (at the input size) instead of
    PatchCore's (re-weighted) largest patch distance."""
    position_radius: int | None = None
    """Grid cells: a patch's nearest neighbour is searched only among training patches from
    cells within this Chebyshev radius (None: anywhere, plain PatchCore). The image score is
    then the largest patch distance (no re-weighting)."""

    @property
    def size(self) -> int:
        """Model input side in pixels (multiple of 32)."""
        return int(round(NATIVE * self.scale / 32) * 32)

    def overrides(self) -> tuple[str, ...] | None:
        """``--set`` overrides that give this lever through ``ModelConfig``; None when it
        needs something the config cannot express (pool, flip TTA, positions)."""
        if self.pool != 3 or self.flip_tta or self.map_score or self.position_radius is not None:
            return None
        out = []
        if self.backbone != "tf_efficientnet_lite0":
            out.append(f"backbone.name={self.backbone}")
        if self.layers != ("blocks.2", "blocks.4"):
            out.append(f"backbone.layers=[{','.join(self.layers)}]")
        if self.size != NATIVE:
            out.append(f"image_size=[{self.size},{self.size}]")
        if self.ratio != 0.01:
            out.append(f"coreset_sampling_ratio={self.ratio}")
        if self.neighbors != 9:
            out.append(f"num_neighbors={self.neighbors}")
        return tuple(out)


@dataclass
class Split:
    """Samples of one split with their cached per-layer features."""

    samples: list[Sample]
    features: dict[str, torch.Tensor] = field(default_factory=dict)


class FeatureCache:
    """Backbone features per (backbone, size, flip) of a product's train/validation/test."""

    def __init__(self, splits: dict[str, list[Sample]]) -> None:
        self.splits = splits
        self._cache: dict[tuple[str, int, bool], dict[str, dict[str, torch.Tensor]]] = {}
        self.extract_s: dict[tuple[str, int, bool], dict[str, float]] = {}

    def get(self, backbone: str, size: int, flip: bool, layers: Sequence[str]) -> dict:
        """{split: {layer: (N, C, h, w) float32}}; extracts missing layers (all splits)."""
        key = (backbone, size, flip)
        have = self._cache.setdefault(key, {})
        missing = [layer for layer in layers if layer not in have.get("train", {})]
        if missing:
            wanted = sorted(set(missing) | set(have.get("train", {})))
            timing = {}
            for split, samples in self.splits.items():
                if flip and split == "train":
                    continue  # flips are for test-time augmentation only
                started = time.perf_counter()
                have[split] = _extract(backbone, size, flip, wanted, samples)
                timing[split] = time.perf_counter() - started
            self.extract_s[key] = timing
        return have

    def drop(self, backbone: str, size: int) -> None:
        """Free the features of one backbone and size (both flips)."""
        for flip in (False, True):
            self._cache.pop((backbone, size, flip), None)


def _extract(
    backbone: str, size: int, flip: bool, layers: Sequence[str], samples: Sequence[Sample]
) -> dict[str, torch.Tensor]:
    from anomalib.models.components import TimmFeatureExtractor

    weights = resolve_weights(backbone)
    with no_pretrained_download():
        extractor = TimmFeatureExtractor(backbone, list(layers), pre_trained=False).eval()
    apply_weights(extractor.feature_extractor, weights)
    mean = torch.tensor(weights.mean).view(1, 3, 1, 1)
    std = torch.tensor(weights.std).view(1, 3, 1, 1)
    out: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    with torch.no_grad():
        extractor.to(memory_format=torch.channels_last)
        for start in range(0, len(samples), 8):
            batch = np.stack([load_image(s.path, (size, size)) for s in samples[start : start + 8]])
            images = torch.from_numpy(batch).permute(0, 3, 1, 2)
            if flip:
                images = images.flip(-1)
            features = extractor((images - mean) / std)
            for layer in layers:
                out[layer].append(features[layer].contiguous())
    return {layer: torch.cat(parts) for layer, parts in out.items()}


def embed(features: dict[str, torch.Tensor], lever: Lever) -> torch.Tensor:
    """(N, D, h, w) PatchCore embedding: pooled layers on the first layer's grid."""
    pool = torch.nn.AvgPool2d(lever.pool, 1, lever.pool // 2) if lever.pool > 1 else None
    parts = []
    for layer in lever.layers:
        feature = features[layer]
        feature = pool(feature) if pool is not None else feature
        if parts:
            feature = F.interpolate(feature, size=parts[0].shape[-2:], mode="bilinear")
        parts.append(feature)
    return torch.cat(parts, 1)


@dataclass(frozen=True)
class Scored:
    """A lever's outputs on one split: scores (N,), maps (N, 256, 256) float32."""

    scores: np.ndarray
    maps: np.ndarray


@dataclass
class FittedLever:
    bank: torch.Tensor  # (k, D) coreset rows; positional levers: (n * h * w, D), every patch
    grid: torch.Tensor | None  # positional levers: (n, D, h, w) training embedding
    select_s: float
    patches: int


def fit_lever(train: torch.Tensor, lever: Lever, seed: int = 0) -> FittedLever:
    """Coreset of the training embedding (N, D, h, w): the memory bank. Position-aware levers
    keep every training patch with its grid cell (no coreset: each cell has few candidates)."""
    d = train.shape[1]
    rows = train.permute(0, 2, 3, 1).reshape(-1, d).contiguous()
    if lever.position_radius is not None:
        return FittedLever(rows, train.contiguous(), 0.0, rows.shape[0])
    torch.manual_seed(seed)
    np.random.seed(seed)
    started = time.perf_counter()
    coreset = select_coreset(rows, lever.ratio, BANK_CAP)
    seconds = time.perf_counter() - started
    return FittedLever(rows[coreset.indices].contiguous(), None, seconds, rows.shape[0])


def _distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, m) Euclidean distances, anomalib's formula."""
    res = x.pow(2).sum(-1, keepdim=True) - 2 * x @ y.T + y.pow(2).sum(-1)[None]
    return res.clamp_min_(0).sqrt_()


def score(embedding: torch.Tensor, fitted: FittedLever, lever: Lever) -> tuple[torch.Tensor, ...]:
    """(image scores (N,), patch scores (N, h, w)) of an (N, D, h, w) embedding."""
    n, d, h, w = embedding.shape
    if lever.position_radius is not None:
        patch_scores = _positional_nn(embedding, fitted.grid, lever.position_radius)
        return patch_scores.reshape(n, -1).amax(1), patch_scores
    bank = fitted.bank
    patch = embedding.permute(0, 2, 3, 1).reshape(n, h * w, d)
    best = [_distances(patch[i], bank).min(1) for i in range(n)]
    patch_scores = torch.stack([b.values for b in best])
    locations = torch.stack([b.indices for b in best])
    image = _reweighted(patch_scores, locations, patch, bank, lever.neighbors)
    return image, patch_scores.reshape(n, h, w)


def _positional_nn(embedding: torch.Tensor, grid: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, h, w) distance of each patch to its nearest training patch from grid cells within
    ``radius`` (Chebyshev) of its own cell; embedding (N, D, h, w), grid (n, D, h, w)."""
    n, d, h, w = embedding.shape
    out = torch.empty(n, h, w)
    for i in range(h):
        for j in range(w):
            near = grid[
                :, :, max(i - radius, 0) : i + radius + 1, max(j - radius, 0) : j + radius + 1
            ]
            candidates = near.permute(0, 2, 3, 1).reshape(-1, d)
            out[:, i, j] = _distances(embedding[:, :, i, j], candidates).min(1).values
    return out


def _reweighted(
    patch_scores: torch.Tensor,
    locations: torch.Tensor,
    patch: torch.Tensor,
    bank: torch.Tensor,
    neighbors: int,
) -> torch.Tensor:
    """anomalib ``PatchcoreModel.compute_anomaly_score`` (num_neighbors 1: the max)."""
    if neighbors == 1:
        return patch_scores.amax(1)
    rows = torch.arange(len(patch_scores))
    top = patch_scores.argmax(1)
    best = patch[rows, top]  # (N, D)
    score_ = patch_scores[rows, top]
    nn_sample = bank[locations[rows, top]]
    support = _distances(nn_sample, bank).topk(min(neighbors, len(bank)), largest=False).indices
    dist = torch.stack([_distances(best[i : i + 1], bank[support[i]])[0] for i in rows])
    weights = 1 - F.softmax(dist, 1)[:, 0]
    return weights * score_


_BLUR = None


def anomaly_maps(patch_scores: torch.Tensor, size: int) -> tuple[np.ndarray, np.ndarray]:
    """anomalib's map at the input size (nearest upsampling, Gaussian blur sigma 4), then
    area-resized to 256 px: ((N, 256, 256) float32, (N,) peaks at the input size)."""
    global _BLUR
    from anomalib.models.image.patchcore.anomaly_map import AnomalyMapGenerator

    if _BLUR is None:
        _BLUR = AnomalyMapGenerator()
    with torch.no_grad():
        maps = _BLUR(patch_scores[:, None], (size, size))[:, 0].numpy()
    peaks = maps.reshape(len(maps), -1).max(1).astype(np.float32)
    if size == NATIVE:
        return maps.astype(np.float32), peaks
    resized = [cv2.resize(m, (NATIVE, NATIVE), interpolation=cv2.INTER_AREA) for m in maps]
    return np.stack(resized).astype(np.float32), peaks


def run_split(
    cache: FeatureCache, split: str, fitted: FittedLever, lever: Lever
) -> tuple[Scored, float]:
    """Scores and maps of ``split``, and the seconds the scoring took."""
    started = time.perf_counter()
    feats = cache.get(lever.backbone, lever.size, False, lever.layers)[split]
    with torch.no_grad():
        image, patches = score(embed(feats, lever), fitted, lever)
        if lever.flip_tta:
            flipped = cache.get(lever.backbone, lever.size, True, lever.layers)[split]
            image_f, patches_f = score(embed(flipped, lever), fitted, lever)
            image = (image + image_f) / 2
            patches = (patches + patches_f.flip(-1)) / 2
    maps, peaks = anomaly_maps(patches, lever.size)
    scores = peaks if lever.map_score else image.numpy().astype(np.float32)
    return Scored(scores, maps), time.perf_counter() - started


def masks_of(samples: Sequence[Sample]) -> np.ndarray:
    """(N, 256, 256) bool ground truth."""
    return np.stack([load_mask(s, (NATIVE, NATIVE)) for s in samples])
