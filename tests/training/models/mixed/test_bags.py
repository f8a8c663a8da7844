"""Image-level labels teach the mixed model's head: top-k bags of defects against good images."""

from __future__ import annotations

import torch

from inspection.training.models.mixed import _bag_loss, bag_logits


def test_bag_logits_pool_each_images_largest_cells() -> None:
    logits = torch.zeros(2, 1, 16, 16)  # 256 cells: a bag of 2
    logits[0, 0, 0, :3] = torch.tensor([9.0, 5.0, 1.0])
    logits[1, 0, 3, 3] = -1.0
    assert torch.equal(bag_logits(logits), torch.tensor([7.0, 0.0]))
    assert torch.equal(bag_logits(logits[:, :, :4, :4]), torch.tensor([9.0, 0.0]))  # at least 1


def test_good_images_peaks_are_negative_bags() -> None:
    """The loss pushes a good image's largest cells down (its peak: the good tail that sets a
    1 % threshold), not its other cells, and a labelled image's largest cells up."""
    logits = torch.zeros(2, 1, 16, 16)
    logits[:, 0, 5, 5:7] = 4.0  # each image's bag: its 2 largest cells
    logits.requires_grad_(True)
    labelled, good = torch.tensor([True, False]), torch.tensor([False, True])
    _bag_loss(logits, labelled, good).backward()
    grad = logits.grad[:, 0]
    assert (grad[1, 5, 5:7] > 0).all() and (grad[0, 5, 5:7] < 0).all()
    grad[:, 5, 5:7] = 0.0
    assert not grad.any()  # only the bags' cells move


def test_without_image_level_labels_no_bag_is_learned() -> None:
    logits = torch.ones(3, 1, 16, 16, requires_grad=True)
    loss = _bag_loss(logits, torch.zeros(3) > 0, torch.zeros(3) > 0)
    assert loss.item() == 0.0
