"""Local colour statistics: a second nearest-neighbour model, fused with PatchCore in its graph.

PatchCore's CNN patches are blind to defects that change colour or contrast more than texture.
This model describes each stride-8 cell by the per-channel mean and std of a ``WINDOW`` px
square, relative to the whole image's, and scores it by its distance to a coreset bank of
training cells. Fusion: the max of both scores, each standardised on good images (median to 0,
largest to 1), so one part's tail does not set the other's threshold. Standardisers fitted on
the images a conformal threshold is set on break its guarantee, so the fusion needs
``calibration_folds`` >= 2, no global context and no ROI. It lives in the torch model
(``FusedPatchcoreModel``): the exported graph, its calibration and gate all see it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from anomalib.data import InferenceBatch
from anomalib.models.components.base import DynamicBufferMixin
from anomalib.models.image.patchcore.torch_model import PatchcoreModel

from inspection.core.metrics import image_auroc, pixel_auroc
from inspection.data.dataset import Sample
from inspection.training.backbones import channels_last
from inspection.training.models.patchcore.coreset import seed_selection, select_coreset
from inspection.training.models.patchcore.image_score import MapPeakHead
from inspection.training.models.patchcore.out_of_fold import fold_banks, fold_of, model_inputs
from inspection.training.roi import TrainingRoi, per_image_rows
from inspection.training.samples import load_mask, mask_known

logger = logging.getLogger(__name__)

WINDOW, STRIDE = 32, 8
"""Window (input pixels) and stride of the statistics: the grid of PatchCore's stride-8 layer."""
CHANNELS = 6
MIN_GAIN = 0.01
"""Validation image AUROC the fusion must add over PatchCore alone to be kept (``auto``)."""
MAX_PIXEL_LOSS = 0.01
"""Validation pixel AUROC the fusion may lose and still be kept (``auto``): every NG shows its
region, so a better verdict must not come with worse regions."""
MIN_STD = 1e-6
SCALING_FOLDS = 1
"""Out-of-fold folds whose training images fit the statistics part's standardiser (with the
good validation images); the other folds' images are the fused model's calibration set."""
PROXY_IMAGES = 60
PROXY = (
    f"auto decides first on a statistics bank of at most {PROXY_IMAGES} training images and "
    "the good validation images' standardisers alone; the whole bank and the training images' "
    "out-of-fold statistics are fitted only for a kept model"
)
FUSION = (
    "max of the two parts, each standardised to (score - median) / (largest - median) of its "
    f"good scores: the good validation images, plus the out-of-fold scores of the first "
    f"{SCALING_FOLDS} fold's training images for the statistics part; none of them calibrates "
    "the threshold"
)


def relative(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) pixels centred and scaled by each image's own per-channel mean and std: a
    part lit brighter than the training parts is no defect (colour is the global context's)."""
    centre = images.mean((2, 3), keepdim=True)
    spread = images.std((2, 3), keepdim=True).clamp_min(MIN_STD)
    return (images - centre) / spread


class LocalStatsHead(DynamicBufferMixin, torch.nn.Module):
    """The statistics model: its bank, the training cells' z-scoring and the fusion's
    standardisers. An empty bank means off (the model is plain PatchCore)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bank", torch.empty(0))
        self.register_buffer("shift", torch.zeros(1, CHANNELS, 1, 1))
        self.register_buffer("scale", torch.ones(1, CHANNELS, 1, 1))
        # (location, scale) of: PatchCore image score, statistics image score, PatchCore map
        # peak, statistics map peak, on good images (``fit_local_statistics``).
        self.register_buffer("standardisers", torch.tensor([0.0, 1.0] * 4))
        self.fold_banks: list[torch.Tensor] = []  # training only: reused by the out-of-fold scores
        self.reused: dict[tuple[Any, ...], Any] | None = None
        """Training only, set by a caller that fits twice on the same images (``mixed``): the
        statistics part's own fits (they need no PatchCore), kept by one fit, taken by the next."""
        pad = (WINDOW - STRIDE) // 2
        # a WINDOW x WINDOW mean over the pixels inside the image, as a column then a row mean
        # (the inside of a window is a rectangle: the same mean at 2 x WINDOW adds, not WINDOW^2)
        self.pool = torch.nn.Sequential(
            torch.nn.AvgPool2d((WINDOW, 1), (STRIDE, 1), (pad, 0), count_include_pad=False),
            torch.nn.AvgPool2d((1, WINDOW), (1, STRIDE), (0, pad), count_include_pad=False),
        )

    @property
    def enabled(self) -> bool:
        return self.bank.numel() > 0

    def raw_cells(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 6, H/8, W/8): per-channel mean and std of each window of ``relative`` pixels."""
        pixels = relative(images)
        mean = self.pool(pixels)
        variance = (self.pool(pixels * pixels) - mean * mean).clamp_min(0)
        return torch.cat([mean, variance.sqrt()], 1)

    def cells(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 6, h, w): ``raw_cells`` z-scored on the training cells."""
        return (self.raw_cells(images) - self.shift) * self.scale

    def rows(self, images: torch.Tensor) -> torch.Tensor:
        """(N, h * w, 6): ``cells`` as bank rows, row-major per image."""
        return self.cells(images).flatten(2).transpose(1, 2)

    def patch_scores(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, h, w) distance of each cell to its nearest bank row."""
        cells = self.cells(images)
        height, width = cells.shape[-2:]
        rows = cells.flatten(2).transpose(1, 2)  # (N, h * w, 6)
        squared = (
            rows.pow(2).sum(-1, keepdim=True) - 2 * rows @ self.bank.T + self.bank.pow(2).sum(-1)
        )
        nearest = squared.amin(-1).clamp_min(0).sqrt()  # monotone: one root per cell
        return nearest.reshape(-1, 1, height, width)


class FusedPatchcoreModel(PatchcoreModel):
    """anomalib's ``PatchcoreModel`` with a ``LocalStatsHead`` fused into its outputs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.local_stats = LocalStatsHead()
        self.map_peak: MapPeakHead | None = None
        """Set for ``image_score: map_peak``: the fused map's peak is the image score."""

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor | InferenceBatch:
        out = self.main_outputs(input_tensor)
        if self.training:
            return out
        if self.local_stats.enabled:
            side = self.side_outputs(input_tensor)
            s = self.local_stats.standardisers
            score = torch.maximum((out.pred_score - s[0]) / s[1], (side.pred_score - s[2]) / s[3])
            amap = torch.maximum((out.anomaly_map - s[4]) / s[5], (side.anomaly_map - s[6]) / s[7])
            out = InferenceBatch(pred_score=score, anomaly_map=amap)
        return out if self.map_peak is None else self.map_peak(out)

    @property
    def peak_scored(self) -> bool:
        return self.map_peak is not None

    def main_outputs(self, input_tensor: torch.Tensor) -> torch.Tensor | InferenceBatch:
        """PatchCore's own unfused outputs (image score: the largest patch distance)."""
        return super().forward(input_tensor)

    def side_outputs(self, input_tensor: torch.Tensor) -> InferenceBatch:
        """The statistics model's own (unfused) image scores (N,) and maps (N, 1, H, W)."""
        patches = self.local_stats.patch_scores(input_tensor.type(self.memory_bank.dtype))
        amap = self.anomaly_map_generator(patches, input_tensor.shape[-2:])
        return InferenceBatch(pred_score=patches.amax(dim=(1, 2, 3)), anomaly_map=amap)


# ------------------------------------------------------------------ fitting


@dataclass(frozen=True)
class LocalStatsChoice:
    """What ``fit_local_statistics`` decided, with its validation evidence (for the record)."""

    mode: str
    kept: bool
    reason: str
    bank_rows: int = 0
    cells: int = 0
    validation_auroc: dict[str, float] = field(default_factory=dict)
    """Image AUROC on the validation split: ``patchcore``, ``local_statistics``, ``fused``;
    pixel AUROC: ``pixel_patchcore``, ``pixel_fused``."""
    good_for_scale: int = 0
    """Good scores the statistics part's standardiser saw (validation good + the scaling
    folds' out-of-fold training images)."""
    window_px: int = WINDOW
    fusion: str = FUSION


class LazyImages:
    """(N, 3, H, W) pre-processed images read when indexed (``[:]`` reads and keeps all):
    ``auto`` decides on a proxy of a few (``PROXY``), the rest are read for a kept model."""

    def __init__(self, count: int, read: Callable[[Sequence[int]], torch.Tensor]) -> None:
        self.count, self.read = count, read
        self.every: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: slice | np.ndarray) -> torch.Tensor:
        if self.every is None and isinstance(key, slice) and key == slice(None):
            self.every = self.read(range(self.count))
        if self.every is not None:
            return self.every[key]
        return self.read(np.arange(self.count)[key].tolist())


def fit_local_statistics(
    inner: FusedPatchcoreModel,
    train_images: torch.Tensor | LazyImages,
    validation_images: torch.Tensor,
    validation_labels: np.ndarray,
    *,
    mode: str,
    ratio: float,
    cap_rows: int | None,
    seed: int = 0,
    folds: int = 0,
    validation_masks: np.ndarray | None = None,
    mask_known: np.ndarray | None = None,
    train_paths: Sequence[str] = (),
    roi: TrainingRoi | None = None,
) -> LocalStatsChoice:
    """Fit the statistics model of a trained PatchCore ``inner`` on its (N, 3, H, W) pre-processed
    training images, standardise both parts on good images, and keep it (``mode`` on, or auto and
    it helps on validation) or leave the bank empty. ``folds`` >= 2: the first ``SCALING_FOLDS``
    folds' out-of-fold scores join the statistics part's standardiser. ``validation_masks``:
    (N, H, W) bool, used where ``mask_known``; with them ``auto`` also refuses worse pixel AUROC."""
    head = inner.local_stats
    head.bank = torch.empty(0)
    labels = np.asarray(validation_labels, dtype=int)
    good = labels == 0
    if good.sum() < 2:
        return LocalStatsChoice(mode, False, "fewer than 2 good validation images")
    main = _outputs(inner.main_outputs, validation_images)
    known = np.ones(len(labels), bool) if mask_known is None else np.asarray(mask_known, bool)

    def judged(
        side: _Outputs, extra: tuple[np.ndarray, np.ndarray]
    ) -> tuple[list[float], dict[str, float]]:
        standardisers = _standardisers(main, side, good, extra)
        evidence = _validation_evidence(
            standardisers, labels, main, side, validation_masks, known, inner.peak_scored,
            pixels_need_gain=mode == "auto",
        )  # fmt: skip
        return standardisers, evidence

    some = _proxy_images(len(train_images), seed) if mode == "auto" else None
    options = (ratio, cap_rows, seed, roi)
    if some is not None:  # auto: decide on the cheap proxy first (``PROXY``)
        paths = [train_paths[i] for i in some] if train_paths else ()
        rows, side = _side(inner, lambda: train_images[some], validation_images, paths, options)
        _, evidence = judged(side, (np.empty(0), np.empty(0)))
        kept, reason = _decide(mode, evidence)
        if not kept:
            head.bank = torch.empty(0)
            logger.info("local statistics: off (%s; %s; validation AUROC %s)", reason, PROXY,
                        evidence)  # fmt: skip
            cells = sum(len(r) for r in rows)
            return LocalStatsChoice(mode, False, reason, 0, cells, evidence)
    if some is None or len(some) < len(train_images):  # the whole model, every training image
        rows, side = _side(inner, lambda: train_images[:], validation_images, train_paths, options)
    extra, head.fold_banks = _reusable(
        head, _key("folds", train_paths, folds, *options),
        lambda: side_out_of_fold(inner, train_images[:], rows, folds, ratio, cap_rows, seed),
    )  # fmt: skip
    if len(extra[0]):  # only the scaling folds' images fit the standardisers
        scaling = standardiser_images(len(train_images), folds, seed)
        extra = (extra[0][scaling], extra[1][scaling])
    standardisers, evidence = judged(side, extra)
    head.standardisers = torch.tensor(standardisers, dtype=torch.float32)
    kept, reason = _decide(mode, evidence)
    bank_rows = int(head.bank.shape[0])
    if not kept:
        head.bank, head.fold_banks = torch.empty(0), []
    logger.info("local statistics: %s (%s; validation AUROC %s)",
                "kept" if kept else "off", reason, evidence)  # fmt: skip
    cells = sum(len(r) for r in rows)
    return LocalStatsChoice(mode, kept, reason, bank_rows if kept else 0, cells, evidence,
                            good_for_scale=int(good.sum() + len(extra[0])))  # fmt: skip


def side_out_of_fold(
    inner: FusedPatchcoreModel,
    images: torch.Tensor,
    rows: Sequence[torch.Tensor],
    folds: int,
    ratio: float,
    cap_rows: int | None,
    seed: int,
) -> tuple[tuple[np.ndarray, np.ndarray], list[torch.Tensor]]:
    """(scores, map peaks) of the statistics part on each training image from its fold's bank
    (empty with too few images), and the fold banks, which ``out_of_fold_scores`` reuses."""
    if folds < 2 or len(images) < 2 * folds:
        return (np.empty(0), np.empty(0)), []
    head = inner.local_stats
    trained = head.bank
    assignment = fold_of(len(images), folds, seed)
    scores, peaks = np.empty(len(images)), np.empty(len(images))
    banks = fold_banks(rows, assignment, ratio, cap_rows, seed)
    try:
        for fold in range(folds):
            head.bank = banks[fold]
            held = np.flatnonzero(assignment == fold)
            with torch.no_grad():
                out = inner.side_outputs(images[held])
            scores[held] = out.pred_score.double().numpy()
            peaks[held] = out.anomaly_map.flatten(1).amax(1).double().numpy()
    finally:
        head.bank = trained
    return (scores, peaks), banks


def _side(
    inner: FusedPatchcoreModel,
    images: Callable[[], torch.Tensor],
    validation_images: torch.Tensor,
    paths: Sequence[str],
    options: tuple[float, int | None, int, TrainingRoi | None],
) -> tuple[list[torch.Tensor], _Outputs]:
    """``_fit_bank`` on ``images()`` with ``options`` (ratio, cap_rows, seed, roi), then the
    statistics part's validation outputs; taken from ``head.reused`` where kept."""
    head = inner.local_stats

    def fit() -> tuple[Any, ...]:
        rows = _fit_bank(head, images(), *options[:3], paths, options[3])
        return (
            head.shift,
            head.scale,
            head.bank,
            rows,
            _outputs(inner.side_outputs, validation_images),
        )

    digest = hashlib.blake2b(validation_images.contiguous().numpy().tobytes()).hexdigest()
    head.shift, head.scale, head.bank, rows, side = _reusable(
        head, _key("bank", paths, digest, *options), fit
    )
    return rows, side


def _key(name: str, paths: Sequence[str], *inputs: Any) -> tuple[Any, ...] | None:
    """What a statistics fit is reused by: its training image paths and other inputs (None
    without paths, or with an ROI: not reused)."""
    if not paths or inputs[-1] is not None:
        return None
    return (name, tuple(paths), *inputs[:-1])


def _reusable(head: LocalStatsHead, key: tuple[Any, ...] | None, fit: Callable[[], Any]) -> Any:
    """``fit()``, kept in ``head.reused`` (where set) for the next fit on the same ``key``, or
    taken from there."""
    if head.reused is None or key is None:
        return fit()
    if key in head.reused:
        return head.reused.pop(key)
    head.reused[key] = value = fit()
    return value


def _fit_bank(
    head: LocalStatsHead,
    images: torch.Tensor,
    ratio: float,
    cap_rows: int | None,
    seed: int,
    paths: Sequence[str],
    roi: TrainingRoi | None,
) -> list[torch.Tensor]:
    """Z-score the training cells and put their coreset in the bank; returns each image's
    z-scored cells (rows inside the ROI)."""
    with torch.no_grad():
        raw = torch.cat([head.raw_cells(b) for b in images.split(8)])
        head.shift = raw.mean((0, 2, 3), keepdim=True)
        head.scale = 1 / raw.std((0, 2, 3), keepdim=True).clamp_min(MIN_STD)
    per_image = per_image_rows(head.rows, images, 8, roi, paths)
    every = torch.cat(per_image).contiguous()
    seed_selection(seed)
    head.bank = every[select_coreset(every, ratio, cap_rows).indices].contiguous()
    return per_image


@dataclass(frozen=True)
class _Outputs:
    """One part's unfused outputs on the validation images."""

    scores: np.ndarray  # (N,) float64
    maps: np.ndarray  # (N, H, W) float32
    kept: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def peaks(self) -> np.ndarray:
        return self.maps.reshape(len(self.maps), -1).max(1).astype(np.float64)

    def pixel_auroc(self, masks: np.ndarray, known: np.ndarray) -> float:
        """Pixel AUROC of the ``known`` images' maps, rounded; computed once per outputs."""
        if "pixel_auroc" not in self.kept:
            figure = pixel_auroc(self.maps[known], masks[known])
            self.kept["pixel_auroc"] = round(float(figure), 4)
        return self.kept["pixel_auroc"]


def _outputs(part: Any, images: torch.Tensor) -> _Outputs:
    """One part's (``main_outputs`` or ``side_outputs``) unfused outputs on the images."""
    with torch.no_grad():
        batches = [part(batch) for batch in images.split(8)]
    scores = torch.cat([b.pred_score.reshape(-1) for b in batches]).double().numpy()
    maps = torch.cat([b.anomaly_map.flatten(0, 1) for b in batches]).float().numpy()
    return _Outputs(scores, maps)


def _proxy_images(count: int, seed: int) -> np.ndarray:
    """Indices of the training images the proxy fits on: all, or a seeded ``PROXY_IMAGES``."""
    if count <= PROXY_IMAGES:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, PROXY_IMAGES, replace=False))


def standardiser_images(count: int, folds: int, seed: int) -> np.ndarray:
    """(count,) bool: the training images whose out-of-fold scores fit the standardisers (the
    first ``SCALING_FOLDS`` seeded folds; none with fewer than 2 folds or images per fold)."""
    if folds < 2 or count < 2 * folds:
        return np.zeros(count, dtype=bool)
    return fold_of(count, folds, seed) < SCALING_FOLDS


def fit_standardisers(main_good: np.ndarray, side_good: np.ndarray) -> tuple[float, ...]:
    """(location, scale) of PatchCore's then the statistics part's (G,) good values (image
    scores or map peaks): what ``fuse_parts`` and the fused graph apply."""
    return (*_location_scale(main_good), *_location_scale(side_good))


def fuse_parts(main: np.ndarray, side: np.ndarray, standardisers: Sequence[float]) -> np.ndarray:
    """The fused score of both parts' raw values, as ``FusedPatchcoreModel.forward`` computes
    it: the max of each standardised by its (location, scale) of ``fit_standardisers``."""
    s = standardisers
    return np.maximum((np.asarray(main) - s[0]) / s[1], (np.asarray(side) - s[2]) / s[3])


def _standardisers(
    main: _Outputs, side: _Outputs, good: np.ndarray, extra: tuple[np.ndarray, np.ndarray]
) -> list[float]:
    """Both parts' (location, scale) of image scores and map peaks on the good validation
    images; ``extra``: the statistics part's out-of-fold (scores, peaks) of training images."""
    return [
        *fit_standardisers(main.scores[good], np.concatenate([side.scores[good], extra[0]])),
        *fit_standardisers(main.peaks[good], np.concatenate([side.peaks[good], extra[1]])),
    ]


def _location_scale(values: np.ndarray) -> tuple[float, float]:
    """(median, largest - median) of good scores: a part's largest good score maps to 1."""
    median = float(np.median(values))
    return median, max(float(values.max()) - median, MIN_STD)


def _validation_evidence(
    standardisers: Sequence[float],
    labels: np.ndarray,
    main: _Outputs,
    side: _Outputs,
    masks: np.ndarray | None,
    known: np.ndarray,
    peak_scored: bool = False,
    pixels_need_gain: bool = False,
) -> dict[str, float]:
    """Validation image AUROC of PatchCore, the statistics model and their fusion as the graph
    computes it, and pixel AUROC of PatchCore and the fusion on the ``known`` images (only when
    the image gain would keep it, with ``pixels_need_gain``); {} without defect images."""
    if labels.min() == labels.max():
        return {}
    s = standardisers
    if peak_scored:  # the image score is the (fused) map's peak
        main_scores, side_scores = main.peaks, side.peaks
        fused = fuse_parts(main.peaks, side.peaks, s[4:])
    else:
        main_scores, side_scores = main.scores, side.scores
        fused = fuse_parts(main.scores, side.scores, s[:4])
    evidence = {
        name: round(float(image_auroc(scores, labels)), 4)
        for name, scores in (("patchcore", main_scores), ("local_statistics", side_scores),
                             ("fused", fused))
    }  # fmt: skip
    gained = evidence["fused"] - evidence["patchcore"] >= MIN_GAIN or not pixels_need_gain
    if masks is not None and masks[known].any() and gained:
        fused = _Outputs(fused, fuse_parts(main.maps, side.maps, s[4:]))
        evidence["pixel_patchcore"] = main.pixel_auroc(masks, known)
        evidence["pixel_fused"] = fused.pixel_auroc(masks, known)
    return evidence


def _decide(mode: str, evidence: dict[str, float]) -> tuple[bool, str]:
    if mode == "on":
        return True, "local_statistics: true"
    if not evidence:
        return False, "auto: no defect images in the validation split to show a gain"
    gain = evidence["fused"] - evidence["patchcore"]
    if gain < MIN_GAIN:
        return False, f"auto: validation image AUROC {gain:+.3f} (< +{MIN_GAIN})"
    if "pixel_fused" in evidence:
        pixel = evidence["pixel_fused"] - evidence["pixel_patchcore"]
        if pixel < -MAX_PIXEL_LOSS:
            return False, (
                f"auto: validation image AUROC +{gain:.3f}, but pixel AUROC {pixel:+.3f} "
                f"(regions would get worse; more than -{MAX_PIXEL_LOSS})"
            )
    return True, f"auto: validation image AUROC +{gain:.3f} (>= {MIN_GAIN})"


def fit_for_model(
    model: Any,
    config: Any,
    train: Sequence[Sample],
    validation: Sequence[Sample],
    roi: TrainingRoi | None = None,
) -> LocalStatsChoice:
    """``fit_local_statistics`` for a trained anomalib ``Patchcore`` and its ``ModelConfig``."""
    mode = config.local_statistics_mode
    reason = no_disjoint_calibration(config, len(train), roi)
    if reason:
        logger.info("local statistics: off (%s)", reason)
        return LocalStatsChoice(mode, False, reason)
    size = tuple(config.image_size)
    bits, value_range = config.image_bits, config.image_range
    validation_images = model_inputs(model, validation, size, bits, value_range)
    labels = np.asarray([s.label for s in validation])

    def read(indices: Sequence[int]) -> torch.Tensor:
        return model_inputs(model, [train[i] for i in indices], size, bits, value_range)

    with channels_last(model.model):  # the validation images' backbone pass (then shared)
        if mode == "auto":  # decided before the training images are even read
            full = no_room_to_gain(model.model, validation_images, labels)
            if full:
                logger.info("local statistics: off (%s)", full)
                return LocalStatsChoice(mode, False, full)
        return fit_local_statistics(
            model.model, LazyImages(len(train), read), validation_images, labels, mode=mode,
            ratio=config.coreset_sampling_ratio, cap_rows=config.memory_bank_max,
            seed=config.seed, folds=config.calibration_folds,
            validation_masks=np.stack([load_mask(s, size) for s in validation]),
            mask_known=np.array([mask_known(s) for s in validation]),
            train_paths=[str(s.path) for s in train], roi=roi,
        )  # fmt: skip


def no_room_to_gain(
    inner: FusedPatchcoreModel, validation_images: torch.Tensor, labels: np.ndarray
) -> str:
    """Why ``auto`` cannot keep the fusion whatever the statistics model does ('' when it
    can): PatchCore's own validation image AUROC leaves less than ``MIN_GAIN`` below 1."""
    if labels.min() == labels.max():
        return ""  # ``_decide``'s own reason follows
    main = _outputs(inner.main_outputs, validation_images)
    auroc = round(float(image_auroc(main.peaks if inner.peak_scored else main.scores, labels)), 4)
    if 1 - auroc >= MIN_GAIN:
        return ""
    return f"auto: PatchCore's validation image AUROC {auroc} leaves less than +{MIN_GAIN} to gain"


def no_disjoint_calibration(config: Any, train_images: int, roi: TrainingRoi | None) -> str:
    """Why a fused model would have no good scores apart from its standardisers' ('' if not)."""
    folds = config.calibration_folds
    if folds < 2 or train_images < 2 * folds:
        return "needs calibration_folds >= 2 and 2 training images per fold (a calibration set apart from its standardisers')"
    if config.global_context:
        return "not with a global context: its threshold is set on the good validation images, which fit the standardisers"
    if roi is not None:
        return "not with an ROI: the out-of-fold scores (whole images) cannot calibrate an ROI-masked bundle"
    return ""
