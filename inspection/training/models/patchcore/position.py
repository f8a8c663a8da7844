"""Position as a soft constraint of PatchCore's kNN (``position_weight``, #91 trial 11).

Each patch row gets two more columns, ``w * (x, y)``, its centre in [0, 1] of the embedding
grid's width and height, so its nearest bank row lies mostly among training patches near the
same place, while a shift of a few patches costs little. ``w = position_weight * m``, ``m`` the
median distance of a seeded sample of training patches (plain features) to their nearest
patch of another training image (``nearest_other_median``): a displacement of 1 /
``position_weight`` of the grid costs as much as a typical good patch's distance. The columns
are the constant buffer ``PositionColumns.columns`` concatenated in ``generate_embedding``, so
the exported graph scores as the trained model does. ``position_weight: 0``: no module, the
model of before, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from anomalib.models.components.base import DynamicBufferMixin
from anomalib.models.image.patchcore.torch_model import PatchcoreModel

SAMPLE = 1024
"""Training patches whose nearest other-image distance sets ``m``."""


class PositionColumns(DynamicBufferMixin, torch.nn.Module):
    """Appends ``columns`` (1, 2, h, w), ``weight * (x, y)`` per patch centre, to a (N, C, h, w)
    embedding. The first training forward sets the grid at weight 1 (``scale`` sets the fitted
    weight); in evaluation a grid of another size is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("columns", torch.empty(0))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = embedding.shape
        if tuple(self.columns.shape[-2:]) != (height, width):
            if not self.training or self.columns.numel():
                raise ValueError(
                    f"position columns are fitted for a {tuple(self.columns.shape[-2:])} grid, "
                    f"got {(height, width)}: retrain at this image_size or set position_weight: 0"
                )
            x = (torch.arange(width, dtype=torch.float32) + 0.5) / width
            y = (torch.arange(height, dtype=torch.float32) + 0.5) / height
            self.columns = torch.stack(torch.meshgrid(x, y, indexing="xy")).unsqueeze(0)
        columns = self.columns.to(embedding.dtype).expand(batch, -1, -1, -1)
        return torch.cat((embedding, columns), 1)

    def scale(self, weight: float) -> None:
        """Set the columns' weight (they were fitted at weight 1)."""
        self.columns = self.columns * weight


class PositionedPatchcoreModel(PatchcoreModel):
    """anomalib's ``PatchcoreModel`` whose embedding carries ``position``'s columns when set
    (the base of the product's PatchCore torch models)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.position: PositionColumns | None = None

    def generate_embedding(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        embedding = super().generate_embedding(features)
        return embedding if self.position is None else self.position(embedding)


@dataclass(frozen=True)
class PositionWeight:
    """The fitted rule (the version's record ``extra["position"]``): ``weight`` = ``factor`` x
    ``median_distance``, over ``sample`` training patches."""

    factor: float
    median_distance: float
    weight: float
    sample: int


def nearest_other_median(rows: Mapping[str, torch.Tensor], seed: int = 0) -> float:
    """The median, over ``SAMPLE`` seeded patches of ``rows`` (per image, (n, d + 2), the last
    2 columns the position's), of each patch's Euclidean distance (first d columns) to its
    nearest patch of another image. Raises ValueError with fewer than 2 images."""
    images = [r[:, :-2] for r in rows.values()]
    if len(images) < 2:
        raise ValueError("position_weight needs at least 2 training images")
    owner = torch.cat([torch.full((len(r),), i) for i, r in enumerate(images)])
    draw = torch.randperm(len(owner), generator=torch.Generator().manual_seed(seed))[:SAMPLE]
    starts = torch.tensor([0, *(len(r) for r in images)]).cumsum(0)
    queries = torch.stack([images[int(owner[i])][int(i - starts[owner[i]])] for i in draw])
    queries, best = queries.float(), torch.full((len(draw),), torch.inf)
    for index, image in enumerate(images):
        distance = torch.cdist(queries, image.float()).amin(1)
        best = torch.minimum(best, distance.masked_fill(owner[draw] == index, torch.inf))
    return float(best.median())


def fit_weight(
    position: PositionColumns,
    factor: float,
    train_rows: Mapping[str, torch.Tensor],
    store: list[torch.Tensor],
) -> PositionWeight:
    """Set ``position``'s weight by the rule (module doc) and scale the position columns of the
    collected rows in place: each image's ``train_rows`` and the bank's candidates ``store``
    (those not sharing memory with ``train_rows``: a compact fit holds both in one block)."""
    median = nearest_other_median(train_rows)
    weight = factor * median
    shared = {rows.untyped_storage().data_ptr() for rows in train_rows.values()}
    own = [e for e in store if e.untyped_storage().data_ptr() not in shared]
    with torch.no_grad():
        for rows in [*train_rows.values(), *own]:
            rows[..., -2:] *= weight
    position.scale(weight)
    return PositionWeight(factor, round(median, 4), round(weight, 4), SAMPLE)
