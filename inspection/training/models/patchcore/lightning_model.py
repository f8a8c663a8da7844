"""anomalib's PatchCore with our coreset selection and a bounded memory bank.

``Patchcore`` replaces only ``fit()``: ``coreset.select_coreset``, the bank capped at
``memory_bank_max``; ROI-outside patches are dropped as collected. Patch rows are float32 within
``rows_budget_gb``; past it float16 in an unlinked file mapping under ``TMPDIR``, the bank a
coreset of per-group coresets (``coreset.grouped_coreset_rows``).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from typing import Any

import torch
from anomalib.models import Patchcore as AnomalibPatchcore

from inspection.core.errors import ConfigError
from inspection.training.augment import views
from inspection.training.models.patchcore.coreset import grouped_coreset_rows, select_coreset
from inspection.training.models.patchcore.image_score import MapPeakHead, MapPeakPatchcoreModel
from inspection.training.models.patchcore.local_stats import FusedPatchcoreModel
from inspection.training.roi import TrainingRoi

logger = logging.getLogger(__name__)


def row_block(shape: tuple[int, ...]) -> torch.Tensor:
    """A float16 tensor of ``shape`` mapped from an unlinked temporary file (shared mapping:
    the kernel may write its pages out instead of swapping; gone when the tensor is)."""
    with tempfile.NamedTemporaryFile(prefix="inspection-rows-") as file:
        size = math.prod(shape)
        return torch.from_file(file.name, shared=True, size=size, dtype=torch.float16).view(shape)


class Patchcore(AnomalibPatchcore):
    """anomalib ``Patchcore`` whose memory bank is our capped greedy k-center coreset."""

    def __init__(
        self,
        *args: Any,
        memory_bank_max: int | None = None,
        local_statistics: bool = False,
        image_score: str = "patch",
        bank_augment: Sequence[str] = (),
        rows_budget_gb: float = 0.25,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        map_peak = image_score == "map_peak"
        if local_statistics or map_peak:  # the same model with (still empty) extra heads
            inner = self.model
            kind = FusedPatchcoreModel if local_statistics else MapPeakPatchcoreModel
            with torch.random.fork_rng():  # seeded training draws as without the heads
                self.model = kind(
                    backbone=inner.backbone, pre_trained=False, layers=inner.layers,
                    num_neighbors=inner.num_neighbors,
                )  # fmt: skip
            if local_statistics and map_peak:
                self.model.map_peak = MapPeakHead()
        self.memory_bank_max = memory_bank_max
        self.rows_budget_bytes = int(rows_budget_gb * 1024**3)
        self.expected_images = 0  # set by the trainer: do all rows fit the budget (``compact``)?
        self.compact = False
        self._block: torch.Tensor | None = None  # compact: every image's float16 rows
        self._held = 0  # images in it so far
        self.bank_augment = tuple(bank_augment)
        self.training_roi: TrainingRoi | None = None
        self.patches_seen = 0
        self.patches_kept = 0
        self.train_rows: dict[str, torch.Tensor] = {}
        """Training only: each image's patch rows (before the ROI, views appended), which the
        out-of-fold scores replay: the backbone runs once over the training images."""

    def training_step(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        """Collect the batch's patch embeddings (inside the ROI), then its views'."""
        loss = super().training_step(batch, *args, **kwargs)
        store = self.model.embedding_store
        embedding = store[-1]
        own = [embedding]  # the batch's rows before the ROI, then each view's
        self.patches_seen += embedding.shape[0]
        if self.training_roi is not None:
            if self.bank_augment:
                raise ConfigError(
                    "bank_augment: flipped or rotated views move patches off their place on the "
                    "part, which the product's ROI keeps them by; remove bank_augment"
                )
            size = tuple(batch.image.shape[-2:])
            store[-1] = embedding[self.training_roi.keep_rows(batch.image_path, embedding, size)]
        self.patches_kept += store[-1].shape[0]
        with torch.no_grad():
            for view in views(batch.image, self.bank_augment):
                self.model(view)  # in training mode the model appends the view's embedding
                own.append(store[-1])
                self.patches_seen += store[-1].shape[0]
                self.patches_kept += store[-1].shape[0]
        paths = batch.image_path
        rows = torch.cat([e.reshape(len(paths), -1, e.shape[-1]) for e in own], 1)
        if not self.train_rows:
            self.compact = self.expected_images * rows[0].nbytes > self.rows_budget_bytes
            if self.compact:  # one float16 block for every image's rows, on disk
                self._block, self._held = row_block((self.expected_images, *rows.shape[1:])), 0
        if self.compact:  # float16 from here on, one copy: the batch's float32 rows are freed
            end = self._held + len(rows)
            fits = self._block is not None and end <= len(self._block)
            rows = self._block[self._held : end].copy_(rows) if fits else rows.half()
            self._held = end
            whole = self.training_roi is None and len(own) == 1
            new = [rows.reshape(-1, rows.shape[-1])] if whole else store[-len(own) :]
            store[-len(own) :] = [e.half() for e in new]
        self.train_rows.update(zip(map(str, paths), rows, strict=True))
        return loss

    def fit(self) -> None:
        """Replace the collected patch embeddings by their coreset (the memory bank)."""
        store = self.model.embedding_store
        if not store:
            raise RuntimeError("no training embeddings collected: run the training epoch first")
        self._block = None  # the rows stay in ``train_rows`` until the out-of-fold scores
        if self.compact:
            self.model.memory_bank = grouped_coreset_rows(
                list(store), self.coreset_sampling_ratio, self.memory_bank_max,
                self.rows_budget_bytes,
            )  # fmt: skip
            store.clear()
            return
        embedding = torch.vstack(store)
        store.clear()
        if embedding.shape[0] == 0:
            raise RuntimeError("the ROI keeps no training patch: check the product's roi polygons")
        coreset = select_coreset(embedding, self.coreset_sampling_ratio, self.memory_bank_max)
        self.model.memory_bank = embedding[coreset.indices].contiguous()
        logger.info(
            "memory bank: %d of %d patches (coverage radius %.3f in projected space)",
            len(coreset.indices), embedding.shape[0], coreset.radius,
        )  # fmt: skip
