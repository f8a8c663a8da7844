"""The supervised head of the mixed model and the PatchCore model that fuses it into its graph.

``SupervisedHead`` scores each cell of PatchCore's stride-8 grid from the cell's backbone
features (the same pooled embedding the memory bank holds, 3x3 cells wide) and its kNN
distance to the bank: a 1x1 convolution to ``HIDDEN`` channels, ReLU, then a 3x3 convolution
to one logit (it sees a cell's neighbours: a thin crack is a line of cells). Its weights are
buffers, so the state dict and the exported graph carry them like the bank.

Fusion, per cell, before anomalib's upsampling and blur: ``max(distance, a + b * z)``, where
``z`` is the head's logit standardised on good images ((logit - median) / (largest - median) of
their per-image peaks) and (a, b) are the same location and scale of the distance peaks: the
head speaks in PatchCore's units, so an unlabelled kind still scores by its distance, and a
labelled one by whichever part sees it more strongly. The image score is the fused grid's peak
(``image_score: map_peak`` takes the blurred map's, as for PatchCore).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from anomalib.models.components.base import DynamicBufferMixin
from anomalib.models.image.patchcore.torch_model import PatchcoreModel

from inspection.training.models.patchcore.image_score import MapPeakPatchcoreModel
from inspection.training.models.patchcore.local_stats import FusedPatchcoreModel

HIDDEN = 32
"""Channels of the head's hidden layer."""


class SupervisedHead(DynamicBufferMixin, torch.nn.Module):
    """The head's weights and standardisers (all buffers); empty weights: off."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("shift", "scale", "hidden_weight", "hidden_bias", "out_weight", "out_bias"):
            self.register_buffer(name, torch.empty(0))
        # (location, scale) of the kNN distance input, then of the distance and the logit
        # peaks of good images (the fusion's standardisers)
        self.register_buffer("standardisers", torch.tensor([0.0, 1.0] * 3))

    @property
    def enabled(self) -> bool:
        return self.hidden_weight.numel() > 0

    def inputs(self, grid: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """(N, C + 1, h, w): the embedding grid (N, C, h, w) z-scored on the training cells
        and the (N, 1, h, w) kNN distance standardised on good cells."""
        s = self.standardisers
        return torch.cat([(grid - self.shift) * self.scale, (distance - s[0]) / s[1]], 1)

    def logits(self, grid: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """(N, 1, h, w) defect logit of each cell."""
        hidden = F.relu(F.conv2d(self.inputs(grid, distance), self.hidden_weight, self.hidden_bias))
        return F.conv2d(hidden, self.out_weight, self.out_bias, padding=1)

    def fuse(self, grid: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """(N, 1, h, w): per cell the max of the distance and the head in distance units."""
        s = self.standardisers
        head = s[2] + s[3] * (self.logits(grid, distance) - s[4]) / s[5]
        return torch.maximum(distance, head)

    def set_weights(self, network: torch.nn.Sequential) -> None:
        """Take the trained ``network`` (``head_network``)'s convolution weights."""
        hidden, out = network[0], network[2]
        self.hidden_weight = hidden.weight.detach().clone()
        self.hidden_bias = hidden.bias.detach().clone()
        self.out_weight = out.weight.detach().clone()
        self.out_bias = out.bias.detach().clone()


def head_network(channels: int) -> torch.nn.Sequential:
    """The trainable form of ``SupervisedHead.logits`` on (N, ``channels`` + 1, h, w) inputs."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels + 1, HIDDEN, 1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(HIDDEN, 1, 3, padding=1),
    )


class MixedCore(PatchcoreModel):
    """anomalib's ``PatchcoreModel`` whose cell scores fuse a ``SupervisedHead`` (the
    unfused forward while training or while the head is off). Listed after a PatchCore head
    class (map peak, local statistics) so that their ``super().forward`` reaches this one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.supervised = SupervisedHead()

    def cells(self, input_tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding grid (N, C, h, w), kNN distance to the bank (N, 1, h, w)), as
        anomalib's forward computes them (a replayed embedding included)."""
        with torch.no_grad():
            features = self.feature_extractor(input_tensor)
        features = {layer: self.feature_pooler(f) for layer, f in features.items()}
        grid = self.generate_embedding(features)
        batch, _, height, width = grid.shape
        distance, _ = self.nearest_neighbors(self.reshape_embedding(grid), n_neighbors=1)
        return grid, distance.reshape(batch, 1, height, width)

    def forward(self, input_tensor: torch.Tensor) -> torch.Tensor | InferenceBatch:
        if self.training or not self.supervised.enabled or self.tiler:
            return super().forward(input_tensor)
        input_tensor = input_tensor.type(self.memory_bank.dtype)
        grid, distance = self.cells(input_tensor)
        fused = self.supervised.fuse(grid, distance)
        anomaly_map = self.anomaly_map_generator(fused, input_tensor.shape[-2:])
        return InferenceBatch(pred_score=fused.amax(dim=(1, 2, 3)), anomaly_map=anomaly_map)


class MixedMapPeakModel(MapPeakPatchcoreModel, MixedCore):
    """The mixed model scored by the map's peak (``image_score: map_peak``)."""


class MixedFusedModel(FusedPatchcoreModel, MixedCore):
    """The mixed model with local statistics fused too (their standardisers see its cells)."""


def mixed_model_class(local_statistics: bool, map_peak: bool) -> type[PatchcoreModel]:
    """The mixed torch model class for PatchCore's other heads (``Patchcore.__init__``)."""
    if local_statistics:
        return MixedFusedModel
    return MixedMapPeakModel if map_peak else MixedCore
