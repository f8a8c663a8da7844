"""The mixed model: PatchCore plus a supervised head learned from labelled defects.

PatchCore learns only from good parts; a plant also has the defects its reviewers confirmed.
With ``supervised: auto`` (``configs/models/patchcore.yaml``) a dataset holding labelled
defective training images (``train/<defect>``, ``data.dataset``) trains the mixed model: the
PatchCore bank as ever, then a small per-cell head (``head.SupervisedHead``) on the bank's own
features and kNN distance, fused into the graph (``head.MixedCore``). Without labelled
defects nothing changes: the model, its graph and its files are PatchCore's.

What the head learns from (``fit_for_model``):
- positives: the labelled defects' cells, from their masks (a cell is a defect where the mask
  covers any of its pixels; the ring of cells around it is left out), or, for an image-level
  label, the image's most defective-looking cell (multiple-instance: "somewhere in here");
- negatives: every other cell of the labelled images and every cell of the good training
  images of the first ``SCALING_FOLDS`` folds, whose kNN distances leave the image's own bank
  rows out (as a new part sees the bank). Losses are class-balanced.
Calibration stays honest as for the fused local statistics: those training images and the good
validation images (which fit the fusion's standardisers) set no threshold; the other folds'
out-of-fold scores, through the whole mixed graph, do (``training.operating``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from inspection.core.errors import DatasetError
from inspection.core.operating_point import OperatingPoint
from inspection.core.product_config import ModelConfig
from inspection.data.dataset import Dataset, Sample
from inspection.training.backbones import ResolvedWeights, channels_last
from inspection.training.models.common import ModelKind
from inspection.training.models.mixed import keep
from inspection.training.models.mixed.head import (
    SupervisedHead,
    head_network,
    mixed_model_class,
)
from inspection.training.models.patchcore import KIND as PATCHCORE
from inspection.training.models.patchcore import build as build_patchcore
from inspection.training.models.patchcore.coreset import threads
from inspection.training.models.patchcore.lightning_model import Patchcore
from inspection.training.models.patchcore.local_stats import (
    FusedPatchcoreModel,
    LocalStatsHead,
    fit_standardisers,
    fuse_parts,
    no_disjoint_calibration,
    standardiser_images,
)
from inspection.training.models.patchcore.local_stats import fit_for_model as fit_statistics
from inspection.training.models.patchcore.out_of_fold import fold_of, model_inputs
from inspection.training.roi import TrainingRoi
from inspection.training.samples import load_mask

logger = logging.getLogger(__name__)

STEPS = 300
"""Adam steps of the head (seconds on 2 cores)."""
HEADS_AT_ONCE = 2
"""Heads trained side by side, each on one torch thread: the heads' convolutions are small, and
a second OpenMP thread beside a busy core costs several times its work."""
BATCH = 16
"""Grids (images) per step, drawn seeded from the labelled and the good ones."""
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
CELL_BATCH = 8
"""Images per backbone pass of ``_cells``: the validation pass before it (the local statistics'
``_outputs``) batches as many, so the validation images' backbone outputs are shared
(``shared_backbone`` matches whole batches); each image's cells do not depend on it."""
_DRAWS = threading.Lock()
"""Held while a head draws its seeded init (heads are taught side by side)."""
FUSION = (
    "per cell max(kNN distance, a + b * (logit - c) / d): (a, b) and (c, d) the median and "
    "largest-minus-median of the good validation images' distance and logit peaks"
)


@dataclass(frozen=True)
class SupervisedChoice:
    """What the mixed model learned from (for the version's record)."""

    kept: bool
    reason: str
    labelled: dict[str, int] = field(default_factory=dict)
    """Labelled defective training images per defect type."""
    masked: int = 0
    """Of them, those with a mask (the rest are image-level labels)."""
    good_images: int = 0
    cells: dict[str, int] = field(default_factory=dict)
    """Training cells: ``positive``, ``negative``, ``image_level`` (images)."""
    seconds: float = 0.0
    evidence: dict[str, float] = field(default_factory=dict)
    """What ``supervised: auto`` decided on (``keep.decide``): ``defects`` and ``good``
    images judged; of ``patchcore`` (what the product ships without the head: the kNN
    distance, fused with the local statistics where they are kept without it,
    ``local_statistics`` 1) and ``mixed`` (the head's cells, fused with the same statistics):
    ``<name>_missed`` and ``<name>_rejected`` at the config's operating point,
    ``<name>_auroc``, ``<name>_expected`` (errors over ``keep.DRAWS`` draws of the good
    images); ``error_change`` (mixed minus patchcore over the draws) and its one-sided 95 %
    upper ``error_change_bound`` (kept where below 0)."""
    fusion: str = FUSION


def build(config: ModelConfig, weights: ResolvedWeights) -> Patchcore:
    """PatchCore's builder (``patchcore.build``), whose torch model is the mixed one (an empty
    head, fitted by ``fit_for_model``) where ``config.supervised`` is true."""
    model = build_patchcore(config, weights)
    if config.supervised is not True:
        return model
    plain = model.model
    fused = isinstance(plain, FusedPatchcoreModel)
    kind = mixed_model_class(fused, getattr(plain, "map_peak", None) is not None)
    with torch.random.fork_rng():  # seeded training draws as without the head
        mixed = kind(
            backbone=plain.backbone, pre_trained=False, layers=plain.layers,
            num_neighbors=plain.num_neighbors,
        )  # fmt: skip
    mixed.feature_extractor = plain.feature_extractor  # its weights applied
    if fused:  # its map peak head is set apart from its class
        mixed.map_peak = plain.map_peak
    model.model = mixed
    return model


KIND: ModelKind = dataclasses.replace(PATCHCORE, build=build)
"""PatchCore's hooks, its models built with the head (the kind ``patchcore``)."""


def supervised_config(config: Any, dataset: Dataset) -> Any:
    """``config`` with ``supervised: auto`` resolved: true where ``dataset`` holds labelled
    defects (else unchanged: PatchCore exactly as without the option)."""
    labelled = bool(dataset.labelled_samples)
    if config.supervised is True and not labelled:
        raise DatasetError(
            f"supervised: true, but {dataset.name!r} has no labelled defects (train/<defect>/, "
            "see datasets/README.md); add some or set supervised: auto"
        )
    if config.supervised == "auto" and labelled:
        return dataclasses.replace(config, supervised=True)
    return config


def fit_for_model(
    model: Any,
    config: Any,
    dataset: Dataset,
    validation: Sequence[Sample],
    roi: TrainingRoi | None = None,
    *,
    gate: bool = True,
) -> SupervisedChoice | None:
    """Fit the mixed model's head of a trained anomalib ``Patchcore`` (None when ``config``
    is not supervised); off, with the reason, where calibration could not stay disjoint or
    (``gate``, ``supervised: auto``) where it does not lower the misses at the false-reject
    budget on defects it did not learn from (``keep``)."""
    if config.supervised is not True:
        return None
    train = dataset.train_samples
    reason = no_disjoint_calibration(config, len(train), roi)
    if reason:
        logger.warning("mixed model: head off (%s)", reason)
        return SupervisedChoice(False, reason)
    started = time.perf_counter()
    inner, size = model.model, tuple(config.image_size)
    reading = (config.image_bits, config.image_range)
    head: SupervisedHead = inner.supervised
    scaling = standardiser_images(len(train), config.calibration_folds, config.seed)
    good = [train[i] for i in np.flatnonzero(scaling)]
    labelled = dataset.labelled_samples
    statistics = _statistics(model, config, train, (validation, labelled), roi) if gate else None
    others = [train[i] for i in np.flatnonzero(~scaling)] if gate else []
    with torch.no_grad(), channels_last(inner):
        good_grid, good_distance = _cells(model, good, size, reading, leave_own_out=True)
        grid, distance = _cells(model, labelled, size, reading)
        checked = _Checked(*_cells(model, validation, size, reading), _labels(validation))
        judged = _cells(model, others, size, reading, leave_own_out=True) if others else None
    targets, weights, image_level = _targets(labelled, size, grid.shape[-2:])
    teaching = _Teaching(good_grid, good_distance, grid, distance, targets, weights, image_level)
    judge = _Judge(model, teaching, checked, size, config.seed, statistics, judged, scaling)
    kept, reason, evidence, counts = _taught(judge, head, labelled, config, gate)
    if not kept:
        inner.supervised = SupervisedHead()  # empty: the model scores as PatchCore
    kinds = sorted({s.defect_type for s in labelled})
    choice = SupervisedChoice(
        kept, reason,
        labelled={k: sum(s.defect_type == k for s in labelled) for k in kinds},
        masked=sum(s.mask_path is not None for s in labelled), good_images=len(good),
        cells=counts, seconds=round(time.perf_counter() - started, 2), evidence=evidence,
    )  # fmt: skip
    logger.info("mixed model: %s in %.1f s", reason, choice.seconds)
    return choice


def _taught(
    judge: _Judge, head: SupervisedHead, labelled: Sequence[Sample], config: Any, gate: bool
) -> tuple[bool, str, dict[str, float], dict[str, int]]:
    """Teach ``head`` (and, where ``gate``, the keep rule's fold heads) and decide: (kept,
    reason, evidence, cell counts). Where no head can be kept (``_Judge.unbeatable``) none is
    taught, and no cells are counted."""
    kinds, point = [s.defect_type for s in labelled], config.operating_point
    off = judge.unbeatable(kinds, point) if gate else None
    if off is not None:
        return *off, {}
    teaching, n_good = judge.teaching, len(judge.teaching.good_grid)
    with threads(1), ThreadPoolExecutor(HEADS_AT_ONCE) as pool:  # the model's and the fold heads
        taught = pool.submit(_teach, head, teaching, config.seed)
        folds = keep.cross_fitted(judge.fold, n_good, kinds, pool.map) if gate else None
        counts = taught.result()
    _fit_fusion(head, judge.checked)
    if not gate:
        return True, "supervised: true", {}, counts
    return *judge.decide(head, kinds, folds, point), counts


@dataclass(frozen=True)
class _Checked:
    """The validation images' cells: grids (N, C, h, w), kNN distances (N, 1, h, w), labels
    (N,) 0/1."""

    grid: torch.Tensor
    distance: torch.Tensor
    labels: np.ndarray


@dataclass(frozen=True)
class _Teaching:
    """What a head learns from: the good images' cells (distances without their own bank
    rows), the labelled images' cells with their ``_targets``."""

    good_grid: torch.Tensor
    good_distance: torch.Tensor
    grid: torch.Tensor
    distance: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor
    image_level: torch.Tensor

    def subset(self, good: np.ndarray, labelled: np.ndarray) -> _Teaching:
        """The images where the (G,) ``good`` and (L,) ``labelled`` bool masks are true."""
        g, d = torch.from_numpy(good), torch.from_numpy(labelled)
        return _Teaching(
            self.good_grid[g], self.good_distance[g], self.grid[d], self.distance[d],
            self.targets[d], self.weights[d], self.image_level[d],
        )  # fmt: skip


def _teach(head: SupervisedHead, teaching: _Teaching, seed: int) -> dict[str, int]:
    """Fit ``head``'s input standardisers and weights on ``teaching``; the cell counts."""
    t = teaching
    _set_input_standardisers(head, t.good_grid, t.good_distance)
    return _fit_head(
        head, torch.cat([t.good_grid, t.grid]), torch.cat([t.good_distance, t.distance]),
        torch.cat([torch.zeros_like(t.good_distance), t.targets]),
        torch.cat([torch.ones_like(t.good_distance), t.weights]),
        torch.cat([torch.zeros(len(t.good_grid), dtype=torch.bool), t.image_level]), seed,
    )  # fmt: skip


@dataclass(frozen=True)
class _Judge:
    """The keep rule's evidence (``keep``): map peaks of the kNN distance alone and of the
    fused cells on every image the run can score out of fold on both sides: the validation
    images (the model's head), the labelled defects and the good images that teach (the fold
    heads), and the other good training images (the model's head, which they did not teach;
    their distances without their own bank rows)."""

    model: Any
    teaching: _Teaching
    checked: _Checked
    size: tuple[int, int]
    seed: int
    statistics: _SidePeaks | None = None
    others: tuple[torch.Tensor, torch.Tensor] | None = None
    """Cells (grids, distances) of the good training images that do not teach the head."""
    teaches: np.ndarray | None = None
    """(T,) bool over the training images: those that teach the head (the rest are
    ``others``)."""

    def peaks(self, cells: torch.Tensor) -> np.ndarray:
        """(N,) peaks of the maps of (N, 1, h, w) cells after anomalib's upsampling and blur."""
        with torch.no_grad():
            maps = self.model.model.anomaly_map_generator(cells, self.size)
        return maps.amax(dim=(1, 2, 3)).double().numpy()

    def decide(
        self,
        head: SupervisedHead,
        kinds: list[str],
        folds: keep.FoldPeaks | None,
        point: OperatingPoint,
    ) -> tuple[bool, str, dict[str, float]]:
        """``keep.decide`` on the validation images and the other good training images (scored
        by the model's ``head``) and the teaching images' ``folds`` (``keep.cross_fitted`` by
        ``fold``)."""
        patchcore, mixed, side = self._joined(head, folds, folds is not None)
        kept, reason, evidence = keep.decide(
            *self.as_shipped(patchcore, mixed, side), point, len(kinds)
        )
        if self.statistics is not None and evidence:
            evidence["local_statistics"] = 1.0
        return kept, reason, evidence

    def unbeatable(
        self, kinds: list[str], point: OperatingPoint
    ) -> tuple[bool, str, dict[str, float]] | None:
        """``keep.unbeatable`` on PatchCore's side of the images ``decide`` would judge, known
        before any head is taught (its peaks need none)."""
        taught = keep.crossed(len(self.teaching.good_grid), len(kinds))
        patchcore, _, side = self._joined(None, None, taught)
        off = keep.unbeatable(self._shipped(patchcore, side), point, len(kinds))
        if off is not None and self.statistics is not None:
            off[2]["local_statistics"] = 1.0
        return off

    def _joined(
        self, head: SupervisedHead | None, folds: keep.FoldPeaks | None, taught: bool
    ) -> _Group:
        """The groups' PatchCore, mixed (None without ``head``) and statistics peaks, joined:
        the validation images, the other good training images, and (``taught``) the teaching
        images."""
        groups = [self._validation(head)]
        if self.others is not None:
            groups.append(self._others(head))
        if taught:
            groups.append(self._taught(folds))
        return tuple(keep.joined(group) for group in zip(*groups, strict=True))

    def as_shipped(
        self, patchcore: keep.Peaks, mixed: keep.Peaks, side: keep.Peaks | None
    ) -> tuple[keep.Peaks, keep.Peaks]:
        """Both sides fused with the local statistics' peaks ``side`` of the same images
        (``_shipped``)."""
        return self._shipped(patchcore, side), self._shipped(mixed, side)

    def _shipped(self, cells: keep.Peaks, side: keep.Peaks | None) -> keep.Peaks:
        """``cells`` fused with the local statistics' peaks ``side`` of the same images where
        the product without the head keeps them (``statistics``), each part standardised as
        the fused graph does (median and largest good peak: the cells' on the good validation
        images, listed first; the statistics' on those and the good teaching images);
        unchanged without them."""
        stats = self.statistics
        if stats is None or side is None:
            return cells
        good = self.checked.labels == 0
        scale_side = np.r_[stats.validation[good], stats.good[self.teaches]]
        standardisers = fit_standardisers(cells.good[: int(good.sum())], scale_side)
        return keep.Peaks(
            fuse_parts(cells.good, side.good, standardisers),
            fuse_parts(cells.defect, side.defect, standardisers),
        )

    def _fused(
        self, head: SupervisedHead | None, grid: torch.Tensor, distance: torch.Tensor
    ) -> np.ndarray | None:
        """(N,) peaks of ``head``'s fused cells (None without a head)."""
        if head is None:
            return None
        with torch.no_grad():
            return self.peaks(head.fuse(grid, distance))

    def _validation(self, head: SupervisedHead | None) -> _Group:
        c, good = self.checked, self.checked.labels == 0
        fused = self._fused(head, c.grid, c.distance)
        distance, stats = self.peaks(c.distance), self.statistics
        side = (
            None if stats is None else keep.Peaks(stats.validation[good], stats.validation[~good])
        )
        return (
            keep.Peaks(distance[good], distance[~good]),
            None if fused is None else keep.Peaks(fused[good], fused[~good]),
            side,
        )

    def _others(self, head: SupervisedHead | None) -> _Group:
        grid, distance = self.others
        fused = self._fused(head, grid, distance)
        stats, none = self.statistics, np.zeros(0)
        side = None if stats is None else keep.Peaks(stats.good[~self.teaches], none)
        mixed = None if fused is None else keep.Peaks(fused, none)
        return keep.Peaks(self.peaks(distance), none), mixed, side

    def _taught(self, folds: keep.FoldPeaks | None) -> _Group:
        t, stats = self.teaching, self.statistics
        side = None if stats is None else keep.Peaks(stats.good[self.teaches], stats.labelled)
        distance = keep.Peaks(self.peaks(t.good_distance), self.peaks(t.distance))
        return distance, None if folds is None else keep.Peaks(*folds), side

    def fold(self, good: np.ndarray, labelled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A head taught by the ``good`` and ``labelled`` images (bool masks), fused as the
        model's; its peaks of the images left out."""
        head = SupervisedHead()
        _teach(head, self.teaching.subset(good, labelled), self.seed)
        _fit_fusion(head, self.checked)
        held = self.teaching.subset(~good, ~labelled)
        with torch.no_grad():
            return (
                self.peaks(head.fuse(held.good_grid, held.good_distance)),
                self.peaks(head.fuse(held.grid, held.distance)),
            )


_Group = tuple[keep.Peaks, keep.Peaks | None, keep.Peaks | None]
"""One group of judged images: PatchCore's, the mixed model's and the statistics' peaks."""


@dataclass(frozen=True)
class _SidePeaks:
    """(N,) map peaks of the local statistics part: of the validation images and the
    labelled defects (the whole statistics bank), and of every good training image in order
    (out of fold: the bank of the other folds' images, as the statistics' own standardiser
    sees them)."""

    validation: np.ndarray
    labelled: np.ndarray
    good: np.ndarray


def _statistics(
    model: Any,
    config: Any,
    train: Sequence[Sample],
    judged: tuple[Sequence[Sample], Sequence[Sample]],
    roi: TrainingRoi | None,
) -> _SidePeaks | None:
    """The local statistics the product without the head would fuse (fitted as the
    ``local_statistics`` option would, on the model before its head), as map peaks of the
    (validation, labelled) images and of every training image out of fold; None where it would
    not fuse them. The model's statistics are left empty: training fits them again after the
    head, taking the statistics part's own fits from this one (``LocalStatsHead.reused``)."""
    inner = model.model
    if not isinstance(inner, FusedPatchcoreModel) or config.local_statistics_mode == "off":
        return None
    inner.local_stats.reused = {}
    try:
        if not fit_statistics(model, config, train, judged[0], roi).kept:
            return None
        stats = inner.local_stats
        size = tuple(config.image_size)

        def peaks(samples: Sequence[Sample], bank: torch.Tensor) -> np.ndarray:
            stats.bank = bank
            images = model_inputs(model, samples, size, config.image_bits, config.image_range)
            out = torch.cat([inner.side_outputs(b).anomaly_map for b in images.split(16)])
            return out.flatten(1).amax(1).double().numpy()

        folds = fold_of(len(train), config.calibration_folds, config.seed)
        good = np.zeros(len(train))
        with torch.no_grad(), channels_last(inner):
            validation, labelled = (peaks(samples, stats.bank) for samples in judged)
            for fold, bank in enumerate(stats.fold_banks):
                rows = np.flatnonzero(folds == fold)
                good[rows] = peaks([train[i] for i in rows], bank)
        return _SidePeaks(validation, labelled, good)
    finally:
        reused = inner.local_stats.reused
        inner.local_stats = LocalStatsHead().train(inner.local_stats.training)
        inner.local_stats.reused = reused


def _labels(samples: Sequence[Sample]) -> np.ndarray:
    return np.asarray([s.label for s in samples], dtype=np.int64)


def _cells(
    model: Any,
    samples: Sequence[Sample],
    size: tuple[int, int],
    reading: tuple[int, tuple[float, float] | None],
    *,
    leave_own_out: bool = False,
    batch_size: int = CELL_BATCH,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(embedding grids (N, C, h, w), kNN distances (N, 1, h, w)) of ``samples`` read at
    ``reading`` (significant bits, value range); ``leave_own_out``: training images scored
    without the bank rows they gave."""
    inner = model.model
    grids, distances = [], []
    for start in range(0, len(samples), batch_size):
        images = model_inputs(model, samples[start : start + batch_size], size, *reading)
        grid, distance = inner.cells(images.type(inner.memory_bank.dtype))
        if leave_own_out:
            distance = _without_own_rows(grid, inner.memory_bank)
        grids.append(grid.float())
        distances.append(distance.float())
    return torch.cat(grids), torch.cat(distances)


OWN_ROW_TOLERANCE = 1e-5
"""A bank row is one of an image's own where its squared distance to the image's nearest cell,
taken as a difference, is at most this share of its squared norm: the fit's rows, recomputed
(another batch, layout or thread count; float16 rows of a large fit), differ by rounding."""


def _without_own_rows(grid: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) distance of each cell to the nearest bank row that is not one of its own
    image's rows (a bank row equal to one of the image's cells came from that image, up to
    ``OWN_ROW_TOLERANCE``). Equality is judged on the difference of each bank row and its
    nearest cell (recomputed own rows came back bit-equal, other rows >= 0.5 % of the squared
    norm away): ``cdist``'s ``|x|^2 + |b|^2 - 2 x.b`` leaves a rounding residue of the squared
    norms (500 to 8,000: ~1e-3, about the old absolute tolerance) that hid ~40 % of the own
    rows, which ones varying with the thread count (and the keep rule's good peaks with them)."""
    out = []
    bank = bank.float()
    norms = bank.square().sum(1)
    for cells in grid:
        rows = cells.flatten(1).T.float()  # (h * w, C)
        squared = torch.cdist(rows, bank).square()
        nearest = rows[squared.argmin(0)]  # (K, C): each bank row's nearest cell
        own = (nearest - bank).square().sum(1) <= OWN_ROW_TOLERANCE * norms
        squared[:, own] = float("inf")
        out.append(squared.amin(1).sqrt().reshape(1, *cells.shape[-2:]))
    return torch.stack(out)


def _targets(
    samples: Sequence[Sample], size: tuple[int, int], cells: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per labelled image: cell targets (N, 1, h, w) (1 where the mask covers any pixel of
    the cell), weights (0 on the ring of cells around a defect, and on every cell of an
    image-level label) and which images are image-level labels (N,) bool."""
    masks = torch.from_numpy(np.stack([load_mask(s, size) for s in samples])).float()
    targets = F.adaptive_max_pool2d(masks.unsqueeze(1), tuple(cells))
    ring = F.max_pool2d(targets, 3, stride=1, padding=1) - targets
    image_level = torch.tensor([s.mask_path is None for s in samples])
    weights = 1.0 - ring
    weights[image_level] = 0.0
    return targets, weights, image_level


def _set_input_standardisers(
    head: SupervisedHead, grid: torch.Tensor, distance: torch.Tensor
) -> None:
    """z-score the head's inputs on the good cells: channels by mean and std, the distance
    by median and std."""
    channels = grid.transpose(0, 1).flatten(1)
    head.shift = channels.mean(1).reshape(1, -1, 1, 1)
    head.scale = 1.0 / channels.std(1).clamp_min(1e-6).reshape(1, -1, 1, 1)
    values = distance.flatten()
    head.standardisers[0] = values.median()
    head.standardisers[1] = values.std().clamp_min(1e-6)


def _fit_head(
    head: SupervisedHead,
    grid: torch.Tensor,
    distance: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    image_level: torch.Tensor,
    seed: int,
) -> dict[str, int]:
    """Train the head on seeded batches of ``BATCH`` grids: class-balanced BCE per cell, and
    BCE of each image-level label's largest logit. Returns the cell counts."""
    inputs = head.inputs(grid, distance).detach()
    positive = (targets > 0.5) & (weights > 0)
    negative = (targets < 0.5) & (weights > 0)
    n_pos, n_neg = int(positive.sum()), int(negative.sum())
    balance = torch.where(positive, 0.5 / max(n_pos, 1), 0.5 / max(n_neg, 1)) * weights
    balance = balance * len(inputs)  # per image on average: a batch's mean is the loss
    generator = torch.Generator().manual_seed(seed)
    with _DRAWS, torch.random.fork_rng():  # heads taught side by side draw their seeded init
        torch.manual_seed(seed)
        network = head_network(grid.shape[1])
    optimiser = torch.optim.Adam(network.parameters(), LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    for _ in range(STEPS):
        batch = torch.randint(len(inputs), (BATCH,), generator=generator)
        optimiser.zero_grad()
        with torch.enable_grad():
            logits = network(inputs[batch])
            cells = F.binary_cross_entropy_with_logits(logits, targets[batch], reduction="none")
            loss = (cells * balance[batch]).sum() / BATCH
            bags = image_level[batch]
            if bags.any():
                peaks = logits[bags].amax(dim=(1, 2, 3))
                loss = loss + F.binary_cross_entropy_with_logits(peaks, torch.ones_like(peaks))
            loss.backward()
        optimiser.step()
    head.set_weights(network)
    return {"positive": n_pos, "negative": n_neg, "image_level": int(image_level.sum())}


def _fit_fusion(head: SupervisedHead, checked: _Checked) -> None:
    """Set the fusion's standardisers on the good validation images' distance and logit
    peaks."""
    good = checked.labels == 0
    with torch.no_grad():
        logits = head.logits(checked.grid[good], checked.distance[good])
    distance_peaks = checked.distance[good].amax(dim=(1, 2, 3)).double().numpy()
    logit_peaks = logits.amax(dim=(1, 2, 3)).double().numpy()
    standardisers = fit_standardisers(distance_peaks, logit_peaks)
    head.standardisers[2:] = torch.tensor(standardisers, dtype=head.standardisers.dtype)
