"""Image-level labels teach the mixed model's head: top-k bags of defects against good images."""

from __future__ import annotations

import torch

from inspection.training.models.mixed import _teach, _Teaching, bag_logits
from inspection.training.models.mixed.head import SupervisedHead

SIDE, CHANNELS = 8, 4


def cells(n: int, draw: torch.Generator, *, cracked: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(grids (n, CHANNELS, SIDE, SIDE), distances (n, 1, SIDE, SIDE)): noise, and in every
    image a bright nuisance cell (channel 0, a large distance: the good tail, as a cell's dark
    corner); ``cracked``: a faint line of 4 cells in channel 1 (a small distance) too."""
    grid = 0.3 * torch.randn(n, CHANNELS, SIDE, SIDE, generator=draw)
    distance = 1.0 + 0.1 * torch.rand(n, 1, SIDE, SIDE, generator=draw)
    for i in range(n):
        row, col = torch.randint(SIDE, (2,), generator=draw).tolist()
        grid[i, 0, row, col] += 4.0
        distance[i, 0, row, col] += 2.0
        if cracked:
            row, col = torch.randint(SIDE - 4, (2,), generator=draw).tolist()
            grid[i, 1, row, col : col + 4] += 1.5
            distance[i, 0, row, col : col + 4] += 0.5
    return grid, distance


def taught(draw: torch.Generator) -> SupervisedHead:
    """A head taught by 12 good images and 12 image-level labels (no masks)."""
    good, labelled = cells(12, draw, cracked=False), cells(12, draw, cracked=True)
    targets = torch.zeros(12, 1, SIDE, SIDE)
    teaching = _Teaching(*good, *labelled, targets, torch.zeros_like(targets), torch.ones(12) > 0)
    head = SupervisedHead()
    _teach(head, teaching, 0)
    return head


def test_bag_logits_pool_each_images_largest_cells() -> None:
    logits = torch.zeros(2, 1, 16, 16)  # 256 cells: a bag of 2
    logits[0, 0, 0, :3] = torch.tensor([9.0, 5.0, 1.0])
    logits[1, 0, 3, 3] = -1.0
    assert torch.equal(bag_logits(logits), torch.tensor([7.0, 0.0]))
    assert torch.equal(bag_logits(logits[:, :, :4, :4]), torch.tensor([9.0, 0.0]))  # at least 1


def test_image_level_labels_rank_new_cracks_above_the_good_tail() -> None:
    """Every good image has a cell that looks more unusual (a larger distance) than any cell of a
    crack: PatchCore's peaks cannot part them; the head taught by image-level labels must rank
    every new cracked image's peak logit above every new good image's."""
    draw = torch.Generator().manual_seed(3)
    head = taught(draw)
    (good_grid, good_distance), (grid, distance) = (
        cells(20, draw, cracked=False),
        cells(20, draw, cracked=True),
    )
    assert good_distance.amax((1, 2, 3)).min() > distance.amax((1, 2, 3)).max() - 0.6
    with torch.no_grad():
        good_peaks = head.logits(good_grid, good_distance).amax((1, 2, 3))
        crack_peaks = head.logits(grid, distance).amax((1, 2, 3))
    assert crack_peaks.min() > good_peaks.max()
