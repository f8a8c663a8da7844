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
    stats: float = 0.0
    """Weight of local colour statistics appended to each patch's embedding (0: off): mean and
    std per channel of the normalised pixels in a ``STATS_WINDOW`` window around the patch,
    z-scored on the training patches and scaled so their summed variance is ``stats**2``
    times the CNN embedding's (``_stats_norm``)."""
    fusion: str = ""
    """Scores fused on validation-good-standardised z-scores (max rule, ``core.global_context
    .fuse``): "stats" = a separate nearest-neighbour model of the local statistics alone
    (image score and map); "global" = the product's global-context components (colour,
    frequency, pooled features; image score only), chosen on validation like the product
    does (``training.global_context.select_components``). "" = none."""
    padim: bool = False
    """PaDiM: a Gaussian per grid cell (mean, shrunk covariance) of the training embedding;
    Mahalanobis distance per patch, image score = its maximum (no coreset, no bank)."""

    @property
    def size(self) -> int:
        """Model input side in pixels (multiple of 32)."""
        return int(round(NATIVE * self.scale / 32) * 32)

    def overrides(self) -> tuple[str, ...] | None:
        """``--set`` overrides that give this lever through ``ModelConfig``; None when it
        needs something the config cannot express (pool, flip TTA, positions)."""
        if (
            self.pool != 3
            or self.flip_tta
            or self.map_score
            or self.position_radius is not None
            or self.stats
            or self.padim
            or self.fusion not in ("", "global")
        ):
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
        if self.fusion == "global":
            out.append("global_context=[features,colour,frequency]")
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
        missing = [layer for layer in layers if layer not in have.get("val", {})]
        if missing:
            timing = self.extract_s.setdefault(key, {})
            for split, samples in self.splits.items():
                if flip and split == "train":
                    continue  # flips are for test-time augmentation only
                started = time.perf_counter()
                have.setdefault(split, {}).update(_extract(backbone, size, flip, missing, samples))
                timing[split] = timing.get(split, 0.0) + time.perf_counter() - started
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
    cnn = [layer for layer in layers if layer != STATS]
    extractor = None
    if cnn:
        with no_pretrained_download():
            extractor = TimmFeatureExtractor(backbone, cnn, pre_trained=False).eval()
        apply_weights(extractor.feature_extractor, weights)
        extractor.to(memory_format=torch.channels_last)
    mean = torch.tensor(weights.mean).view(1, 3, 1, 1)
    std = torch.tensor(weights.std).view(1, 3, 1, 1)
    out: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    with torch.no_grad():
        for start in range(0, len(samples), 8):
            batch = np.stack([load_image(s.path, (size, size)) for s in samples[start : start + 8]])
            images = torch.from_numpy(batch).permute(0, 3, 1, 2)
            if flip:
                images = images.flip(-1)
            normalised = (images - mean) / std
            features = extractor(normalised) if extractor is not None else {}
            if STATS in layers:
                features[STATS] = local_statistics(normalised)
            for layer in layers:
                out[layer].append(features[layer].contiguous())
    return {layer: torch.cat(parts) for layer, parts in out.items()}


STATS = "stats"
"""Pseudo-layer name of the local colour statistics in the feature cache."""
STATS_WINDOW, STATS_STRIDE = 32, 8
"""Window (input pixels) and stride of the local statistics: the first layer's (blocks.2) grid."""


def local_statistics(images: torch.Tensor) -> torch.Tensor:
    """(N, 6, H/8, W/8): per-channel mean and std of (N, 3, H, W) normalised pixels over a
    ``STATS_WINDOW`` square window around each cell of the stride-8 grid."""
    pad = (STATS_WINDOW - STATS_STRIDE) // 2
    pool = torch.nn.AvgPool2d(STATS_WINDOW, STATS_STRIDE, pad, count_include_pad=False)
    mean = pool(images)
    var = (pool(images * images) - mean * mean).clamp_min(0)
    return torch.cat([mean, var.sqrt()], 1)


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
    stats_norm: tuple[torch.Tensor, torch.Tensor] | None = None  # (1, 6, 1, 1) shift, scale
    gaussians: tuple[torch.Tensor, torch.Tensor] | None = None  # PaDiM (hw, D), (hw, D, D)
    side: FittedLever | None = None  # the local statistics model ("stats" fusion)


def lever_layers(lever: Lever) -> tuple[str, ...]:
    """Cache layers a lever needs (its CNN layers and, if used, the local statistics)."""
    return (*lever.layers, STATS) if lever.stats or lever.fusion == "stats" else lever.layers


def full_embedding(
    features: dict[str, torch.Tensor], lever: Lever, norm: tuple[torch.Tensor, torch.Tensor] | None
) -> torch.Tensor:
    """(N, D [+ 6], h, w): ``embed`` with the scaled local statistics appended (``stats``)."""
    emb = embed(features, lever)
    if not lever.stats or norm is None:
        return emb
    return torch.cat([emb, _on_grid((features[STATS] - norm[0]) * norm[1], emb)], 1)


def _on_grid(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear")


def _stats_norm(stats: torch.Tensor, emb: torch.Tensor | None, weight: float) -> tuple:
    """Shift and scale of the (N, 6, h, w) training statistics: z-scored per channel, then
    scaled so their summed variance is ``weight**2`` times the embedding's (or 1 each)."""
    mean = stats.mean((0, 2, 3), keepdim=True)
    std = stats.std((0, 2, 3), keepdim=True).clamp_min(1e-6)
    total = emb.var((0, 2, 3)).sum() if emb is not None else torch.tensor(float(stats.shape[1]))
    return mean, weight * (total / stats.shape[1]).sqrt() / std


def fit_lever(features: dict[str, torch.Tensor], lever: Lever, seed: int = 0) -> FittedLever:
    """The memory bank (coreset of the training embedding), or every patch with its grid
    cell (position-aware), or per-cell Gaussians (PaDiM); ``features``: train layers."""
    norm = (
        _stats_norm(features[STATS], embed(features, lever), lever.stats) if lever.stats else None
    )
    train = full_embedding(features, lever, norm)
    n, d, h, w = train.shape
    rows = train.permute(0, 2, 3, 1).reshape(-1, d).contiguous()
    side = None
    if lever.fusion == "stats":
        side_lever = Lever("stats alone", "stats", neighbors=1)
        stats = features[STATS]
        snorm = _stats_norm(stats, None, 1.0)
        srows = ((stats - snorm[0]) * snorm[1]).permute(0, 2, 3, 1).reshape(-1, stats.shape[1])
        torch.manual_seed(seed)
        picked = select_coreset(srows.contiguous(), side_lever.ratio, BANK_CAP)
        side = FittedLever(srows[picked.indices].contiguous(), None, 0.0, len(srows), snorm)
    if lever.padim:
        started = time.perf_counter()
        cells = train.permute(2, 3, 0, 1).reshape(h * w, n, d)  # (hw, n, D)
        mean = cells.mean(1)
        centred = cells - mean[:, None]
        cov = centred.transpose(1, 2) @ centred / max(n - 1, 1) + 0.01 * torch.eye(d)
        precision = torch.from_numpy(np.linalg.inv(cov.double().numpy()).astype(np.float32))
        gaussians = (mean, precision)
        seconds = time.perf_counter() - started
        return FittedLever(mean, None, seconds, rows.shape[0], norm, gaussians, side)
    if lever.position_radius is not None:
        return FittedLever(rows, train.contiguous(), 0.0, rows.shape[0], norm, None, side)
    torch.manual_seed(seed)
    np.random.seed(seed)
    started = time.perf_counter()
    coreset = select_coreset(rows, lever.ratio, BANK_CAP)
    seconds = time.perf_counter() - started
    return FittedLever(
        rows[coreset.indices].contiguous(), None, seconds, rows.shape[0], norm, None, side
    )


def _distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, m) Euclidean distances, anomalib's formula."""
    res = x.pow(2).sum(-1, keepdim=True) - 2 * x @ y.T + y.pow(2).sum(-1)[None]
    return res.clamp_min_(0).sqrt_()


def score(embedding: torch.Tensor, fitted: FittedLever, lever: Lever) -> tuple[torch.Tensor, ...]:
    """(image scores (N,), patch scores (N, h, w)) of an (N, D, h, w) embedding."""
    n, d, h, w = embedding.shape
    if lever.padim and fitted.gaussians is not None:
        patch_scores = _mahalanobis(embedding, *fitted.gaussians)
        return patch_scores.reshape(n, -1).amax(1), patch_scores
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


def _mahalanobis(
    embedding: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor
) -> torch.Tensor:
    """(N, h, w) Mahalanobis distance of each patch to its cell's Gaussian."""
    n, d, h, w = embedding.shape
    delta = embedding.permute(2, 3, 0, 1).reshape(h * w, n, d) - mean[:, None]
    squared = torch.einsum("knd,kde,kne->kn", delta, precision, delta)
    return squared.clamp_min(0).sqrt().T.reshape(n, h, w)


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


@dataclass(frozen=True)
class Outputs:
    """A lever's scores and maps on one split, and its side model's (``fusion="stats"``)."""

    main: Scored
    side: Scored | None


def run_split(
    cache: FeatureCache, split: str, fitted: FittedLever, lever: Lever
) -> tuple[Outputs, float]:
    """Scores and maps of ``split`` (unfused), and the seconds the scoring took."""
    started = time.perf_counter()
    layers = lever_layers(lever)
    feats = cache.get(lever.backbone, lever.size, False, layers)[split]
    with torch.no_grad():
        image, patches = score(full_embedding(feats, lever, fitted.stats_norm), fitted, lever)
        if lever.flip_tta:
            flipped = cache.get(lever.backbone, lever.size, True, layers)[split]
            emb = full_embedding(flipped, lever, fitted.stats_norm)
            image_f, patches_f = score(emb, fitted, lever)
            image = (image + image_f) / 2
            patches = (patches + patches_f.flip(-1)) / 2
    maps, peaks = anomaly_maps(patches, lever.size)
    scores = peaks if lever.map_score else image.numpy().astype(np.float32)
    side = None
    if fitted.side is not None:
        norm = fitted.side.stats_norm
        stats = (feats[STATS] - norm[0]) * norm[1]
        side_lever = Lever("stats alone", "stats", neighbors=1)
        with torch.no_grad():
            side_image, side_patches = score(stats, fitted.side, side_lever)
        side_maps, _ = anomaly_maps(side_patches, lever.size)
        side = Scored(side_image.numpy().astype(np.float32), side_maps)
    return Outputs(Scored(scores, maps), side), time.perf_counter() - started


def fuse_stats(val: Outputs, val_labels: np.ndarray, test: Outputs) -> tuple[Scored, Scored]:
    """Validation and test fused by the max rule on z-scores standardised on the validation
    good images: image scores by their own mean/std, maps by the good images' map peaks."""
    from inspection.core.global_context import fuse

    good = val_labels == 0

    def z(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
        return (values - reference.mean()) / max(float(reference.std(ddof=1)), 1e-6)

    out = []
    for outputs in (val, test):
        parts = {"main": outputs.main, "side": outputs.side}
        fused_scores, _ = fuse(
            {k: z(p.scores, getattr(val, k).scores[good]) for k, p in parts.items()}
        )
        peak = {k: getattr(val, k).maps[good].reshape(good.sum(), -1).max(1) for k in parts}
        fused_maps = np.maximum(*(z(p.maps, peak[k]) for k, p in parts.items()))
        out.append(Scored(fused_scores.astype(np.float32), fused_maps.astype(np.float32)))
    return out[0], out[1]


def fuse_global(
    cache: FeatureCache, lever: Lever, val: Scored, val_labels: np.ndarray, test: Scored
) -> tuple[Scored, Scored, tuple[str, ...]]:
    """The product's global context (``training.global_context``) fused with the image score:
    components fitted on train, chosen on validation; maps unchanged."""
    from inspection.core.global_context import LOCAL, fuse
    from inspection.training.global_context import fit_global_context, select_components

    feats = cache.get(lever.backbone, lever.size, False, lever.layers)
    images = {
        split: [load_image(s.path, (NATIVE, NATIVE)) for s in samples]
        for split, samples in cache.splits.items()
    }
    pooled = {
        split: torch.cat([f[layer].mean((2, 3)) for layer in lever.layers], 1).numpy()
        for split, f in feats.items()
    }
    context = fit_global_context(
        ("features", "colour", "frequency"),
        images["train"],
        train_pooled=pooled["train"],
        feature_layers=lever.layers,
        validation_local_raw=val.scores[val_labels == 0],
    )
    z_val = context.z_scores(context.distances(images["val"], pooled["val"]), val.scores)
    kept = select_components(z_val, val_labels).kept
    z_test = context.z_scores(context.distances(images["test"], pooled["test"]), test.scores)
    fused = [fuse({k: z[k] for k in (LOCAL, *kept)})[0].astype(np.float32) for z in (z_val, z_test)]
    return Scored(fused[0], val.maps), Scored(fused[1], test.maps), kept


def masks_of(samples: Sequence[Sample]) -> np.ndarray:
    """(N, 256, 256) bool ground truth."""
    return np.stack([load_mask(s, (NATIVE, NATIVE)) for s in samples])
