"""anomalib's PatchCore with our coreset selection and a bounded memory bank.

``Patchcore`` keeps anomalib's model (feature extractor, pooling, scoring, post-processing)
and replaces only what ``fit()`` does with the embeddings collected during the training
epoch: ``inspection.training.coreset.select_coreset`` instead of anomalib's ``KCenterGreedy``,
with the bank capped at ``memory_bank_max`` rows.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from anomalib.models import Patchcore as AnomalibPatchcore

from inspection.training.coreset import select_coreset

logger = logging.getLogger(__name__)


class Patchcore(AnomalibPatchcore):
    """anomalib ``Patchcore`` whose memory bank is our capped greedy k-center coreset."""

    def __init__(self, *args: Any, memory_bank_max: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.memory_bank_max = memory_bank_max

    def fit(self) -> None:
        """Replace the collected patch embeddings by their coreset (the memory bank)."""
        store = self.model.embedding_store
        if not store:
            raise RuntimeError("no training embeddings collected: run the training epoch first")
        embedding = torch.vstack(store)
        store.clear()
        coreset = select_coreset(embedding, self.coreset_sampling_ratio, self.memory_bank_max)
        self.model.memory_bank = embedding[coreset.indices].contiguous()
        logger.info(
            "memory bank: %d of %d patches (coverage radius %.3f in projected space)",
            len(coreset.indices), embedding.shape[0], coreset.radius,
        )  # fmt: skip
