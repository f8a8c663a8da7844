"""anomalib's STFPM whose training loss can leave out positions outside the product's ROI:
with ``training_roi`` set, the loss (``masked_stfpm_loss``) covers only the feature positions
whose receptive-field centre lies inside it, so the student never learns the fixture.
"""

from __future__ import annotations

from typing import Any

from anomalib.models import Stfpm as AnomalibStfpm

from inspection.training.roi import TrainingRoi, masked_stfpm_loss


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
