"""The supervised head of the mixed model and the PatchCore model that fuses it into its graph.

``SupervisedHead`` scores each stride-4 cell (#67 trial ``finer_head``): from PatchCore's
stride-8 grid (the same pooled embedding the memory bank holds, 3x3 cells wide) and its kNN
distance to the bank, a 1x1 convolution to ``HIDDEN`` channels, upsampled to stride 4; plus a
1x1 convolution of the backbone's stride-4 block (``FINE_LAYER``, 3x3 mean-pooled as PatchCore
pools its layers, tapped while the model computes its cells, carried folded into the grid's
cells); ReLU, then a 3x3 convolution to one logit (it sees a cell's neighbours: a thin crack
is a line of cells). Its weights are buffers, so the state dict and the exported graph carry
them like the bank.

Fusion, per stride-4 cell, before anomalib's upsampling and blur: ``max(distance, a + b * z)``,
where the distance is upsampled bilinearly, ``z`` is the head's logit standardised on good
images ((logit - median) / (largest - median) of their per-image peaks) and (a, b) are the
same location and scale of the distance peaks: the head speaks in PatchCore's units, so an
unlabelled kind still scores by its distance, and a labelled one by whichever part sees it
more strongly. The image score is the fused grid's peak (``image_score: map_peak`` takes the
blurred map's, as for PatchCore).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
FINE_LAYER = "blocks.1"
"""The backbone block at stride 4 the head also sees (EfficientNet-Lite0: 24 channels)."""
FINE_CHANNELS = 24


class SupervisedHead(DynamicBufferMixin, torch.nn.Module):
    """The head's weights and standardisers (all buffers); empty weights: off."""

    def __init__(self) -> None:
        super().__init__()
        names = ("shift", "scale", "hidden_weight", "hidden_bias", "fine_weight", "out_weight")
        for name in (*names, "out_bias"):
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
        """(N, 1, 2h, 2w) defect logit of each stride-4 cell (``HeadNetwork``)."""
        return finer_logits(
            self.inputs(grid, distance), 4 * self.fine_weight.shape[1], self.hidden_weight,
            self.hidden_bias, self.fine_weight, self.out_weight, self.out_bias,
        )  # fmt: skip

    def fuse(self, grid: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """(N, 1, 2h, 2w): per stride-4 cell the max of the (upsampled) distance and the head
        in distance units."""
        s = self.standardisers
        head = s[2] + s[3] * (self.logits(grid, distance) - s[4]) / s[5]
        return torch.maximum(upsampled(distance), head)

    def set_weights(self, network: HeadNetwork) -> None:
        """Take the trained ``network`` (``head_network``)'s convolution weights."""
        self.hidden_weight = network.coarse.weight.detach().clone()
        self.hidden_bias = network.coarse.bias.detach().clone()
        self.fine_weight = network.fine.weight.detach().clone()
        self.out_weight = network.out.weight.detach().clone()
        self.out_bias = network.out.bias.detach().clone()


class HeadNetwork(torch.nn.Module):
    """The trainable form of ``SupervisedHead.logits``: inputs (N, C + F + 1, h, w), the
    stride-8 grid's C channels, the stride-4 features' F channels folded into its cells
    (``fold_fine``) and the kNN distance; one logit per stride-4 cell (N, 1, 2h, 2w). The grid
    and distance pass a 1x1 convolution at stride 8, upsampled (exact: a 1x1 convolution
    commutes with bilinear upsampling); the stride-4 features their own, added; ReLU, 3x3."""

    def __init__(self, channels: int, fine: int) -> None:
        super().__init__()
        self.fine_channels = fine
        self.coarse = torch.nn.Conv2d(channels + 1, HIDDEN, 1)
        self.fine = torch.nn.Conv2d(fine // 4, HIDDEN, 1, bias=False)
        self.out = torch.nn.Conv2d(HIDDEN, 1, 3, padding=1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return finer_logits(
            inputs, self.fine_channels, self.coarse.weight, self.coarse.bias, self.fine.weight,
            self.out.weight, self.out.bias,
        )  # fmt: skip


def finer_logits(
    inputs: torch.Tensor,
    fine: int,
    coarse_weight: torch.Tensor,
    coarse_bias: torch.Tensor,
    fine_weight: torch.Tensor,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor,
) -> torch.Tensor:
    """(N, 1, 2h, 2w) logits of (N, C + ``fine`` + 1, h, w) ``inputs`` (``HeadNetwork``)."""
    split = inputs.shape[1] - 1 - fine
    coarse = torch.cat([inputs[:, :split], inputs[:, -1:]], 1)
    hidden = F.interpolate(
        F.conv2d(coarse, coarse_weight, coarse_bias), scale_factor=2, mode="bilinear"
    )
    hidden = hidden + F.conv2d(F.pixel_shuffle(inputs[:, split:-1], 2), fine_weight)
    return F.conv2d(F.relu(hidden), out_weight, out_bias, padding=1)


def head_network(channels: int, fine: int = 4 * FINE_CHANNELS) -> HeadNetwork:
    """The trainable head on ``channels`` grid channels and ``fine`` folded stride-4 ones."""
    return HeadNetwork(channels, fine)


def fold_fine(fine: torch.Tensor, cells: Sequence[int]) -> torch.Tensor:
    """(N, 4 F, h, w): (N, F, ~2h, ~2w) stride-4 features folded into the (h, w) cells (each
    cell's 2x2 block of stride-4 pixels as channels: ``F.pixel_unshuffle``)."""
    size = (2 * cells[0], 2 * cells[1])
    if tuple(fine.shape[-2:]) != size:
        fine = F.interpolate(fine, size=size, mode="bilinear")
    return F.pixel_unshuffle(fine, 2)


def upsampled(distance: torch.Tensor) -> torch.Tensor:
    """(N, 1, 2h, 2w): the stride-8 kNN distance on the stride-4 grid (bilinear)."""
    return F.interpolate(distance, scale_factor=2, mode="bilinear")


@contextmanager
def tapped(extractor: torch.nn.Module, layer: str) -> Iterator[list[torch.Tensor]]:
    """The outputs of ``extractor``'s module ``layer`` while it runs, in call order."""
    modules = dict(extractor.named_modules())
    name = next(n for n in modules if n.endswith(layer))
    outputs: list[torch.Tensor] = []
    handle = modules[name].register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        yield outputs
    finally:
        handle.remove()


class MixedCore(PatchcoreModel):
    """anomalib's ``PatchcoreModel`` whose cell scores fuse a ``SupervisedHead`` (the
    unfused forward while training or while the head is off). Listed after a PatchCore head
    class (map peak, local statistics) so that their ``super().forward`` reaches this one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.supervised = SupervisedHead()

    def cells(self, input_tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(grid (N, C + 4 F, h, w), kNN distance to the bank (N, 1, h, w)): the embedding
        grid as anomalib's forward computes it (a replayed embedding included), then the
        stride-4 block ``FINE_LAYER`` folded into its cells (``fold_fine``)."""
        backbone = self._backbone()
        with torch.no_grad(), tapped(backbone, FINE_LAYER) as fine:
            features = self.feature_extractor(input_tensor)
            if not fine:  # outputs kept (``shared_features``) or replayed: run it for the tap
                backbone(input_tensor)
        features = {layer: self.feature_pooler(f) for layer, f in features.items()}
        grid = self.generate_embedding(features)
        batch, _, height, width = grid.shape
        distance, _ = self.nearest_neighbors(self.reshape_embedding(grid), n_neighbors=1)
        fine_grid = self.feature_pooler(fine[-1].type(grid.dtype))  # 3x3 mean, as its layers'
        grid = torch.cat([grid, fold_fine(fine_grid, (height, width))], 1)
        return grid, distance.reshape(batch, 1, height, width)

    def _backbone(self) -> torch.nn.Module:
        """The backbone itself, behind a ``shared_features`` wrapper or a replay's stand-in
        (the last one seen, kept out of the module tree)."""
        extractor = getattr(self.feature_extractor, "extractor", self.feature_extractor)
        if any(n.endswith(FINE_LAYER) for n, _ in extractor.named_modules()):
            self.__dict__["_fine_backbone"] = extractor
        return self.__dict__["_fine_backbone"]

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
