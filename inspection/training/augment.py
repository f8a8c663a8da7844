"""Flipped and rotated copies of the training images in PatchCore's memory bank.

Good surface mirrored or turned is still good surface; ``bank_augment`` adds each training
image's ``VIEWS`` to the patches the coreset is chosen from (an image and its views share a
fold). The station is unchanged; views move patches, so an ROI refuses them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hflip": lambda images: images.flip(-1),
    "vflip": lambda images: images.flip(-2),
    "rot90": lambda images: images.rot90(1, (-2, -1)),
}
"""Each view of a (N, C, H, W) batch, by its name in ``core.product_config.BANK_VIEWS`` (rot90
needs square images; ``ModelConfig`` checks both)."""


def views(images: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
    """The batch's extra views, in ``names`` order (the batch itself not included)."""
    return [VIEWS[name](images) for name in names]


def with_views(
    rows_of: Callable[[torch.Tensor], torch.Tensor], names: Sequence[str]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``rows_of`` ((B, rows, d) per batch) with each image's views' rows appended to its own."""
    if not names:
        return rows_of

    def rows(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([rows_of(images), *(rows_of(v) for v in views(images, names))], 1)

    return rows
