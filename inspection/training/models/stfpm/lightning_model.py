"""anomalib's STFPM whose training loss can leave out positions outside the product's ROI
(``masked_stfpm_loss``), so the student never learns the fixture."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from anomalib.models import Stfpm as AnomalibStfpm
from torch.nn import functional as F

from inspection.training.roi import TrainingRoi


class Stfpm(AnomalibStfpm):
    """anomalib ``Stfpm`` with an optional ROI-masked training loss."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.training_roi: TrainingRoi | None = None

    def training_step(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        if self.training_roi is None:
            return super().training_step(batch, *args, **kwargs)
        teacher, student = self.model.forward(batch.image)
        keep = {
            layer: self.training_roi.patch_keep(batch.image_path, *features.shape[-2:])
            for layer, features in teacher.items()
        }
        loss = masked_stfpm_loss(teacher, student, keep)
        self.log("train_loss", loss.item(), on_epoch=True, prog_bar=True, logger=True)
        return {"loss": loss}


def masked_stfpm_loss(
    teacher: Mapping[str, torch.Tensor],
    student: Mapping[str, torch.Tensor],
    keep: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """anomalib's STFPM loss over kept positions only (``keep``: (B, h, w) bool per layer):
    per layer, 0.5 * the squared distance of the L2-normalised features summed over channels
    and kept positions, divided by the kept positions per image (all kept: anomalib's loss)."""
    total = torch.zeros((), dtype=next(iter(teacher.values())).dtype)
    for layer, teacher_features in teacher.items():
        squared = (F.normalize(teacher_features) - F.normalize(student[layer])) ** 2
        per_position = squared.sum(dim=1)  # (B, h, w)
        if keep is None:
            kept = per_position.sum()
            positions = per_position[0].numel()
        else:
            mask = keep[layer].to(per_position.device)
            kept = per_position[mask].sum()
            positions = max(int(mask.sum()), 1) / mask.shape[0]
        total = total + 0.5 * kept / positions
    return total
