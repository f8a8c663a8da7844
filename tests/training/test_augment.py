"""Flipped and rotated training views in PatchCore's bank (``training.augment``): the views
against numpy, their rows per image, training with them, the out-of-fold folds, an ROI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspection.core.errors import ConfigError
from inspection.core.product_config import BANK_VIEWS, model_config_from_mapping
from inspection.core.roi import RoiSpec
from inspection.data.dataset import load_dataset
from inspection.training.augment import VIEWS, views, with_views
from inspection.training.backbones import resolve_weights
from inspection.training.models.patchcore.out_of_fold import _embeddings, model_inputs
from inspection.training.roi import TrainingRoi
from inspection.training.train import fit
from tests.conftest import TINY_PATCHCORE

slow = pytest.mark.slow
ALL = ("hflip", "vflip", "rot90")


def test_views_are_the_mirrors_and_the_quarter_turn() -> None:
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    hflip, vflip, rot90 = views(images, ALL)
    array = images.numpy()
    np.testing.assert_array_equal(hflip.numpy(), array[..., ::-1])
    np.testing.assert_array_equal(vflip.numpy(), array[..., ::-1, :])
    np.testing.assert_array_equal(rot90.numpy(), np.rot90(array, 1, axes=(-2, -1)))
    assert tuple(VIEWS) == BANK_VIEWS
    assert views(images, ()) == []


def test_rows_of_an_image_are_its_own_then_its_views() -> None:
    def rows_of(images: torch.Tensor) -> torch.Tensor:  # (B, 2, 1): first and last pixel
        flat = images.flatten(1)
        return torch.stack([flat[:, :1], flat[:, -1:]], 1)

    images = torch.rand(3, 1, 4, 4)
    rows = with_views(rows_of, ("hflip",))(images)
    assert rows.shape == (3, 4, 1)
    torch.testing.assert_close(rows[:, :2], rows_of(images))
    torch.testing.assert_close(rows[:, 2:], rows_of(images.flip(-1)))
    assert with_views(rows_of, ()) is rows_of


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bank_augment": ["mirror"]}, "unknown views ['mirror']"),
        ({"bank_augment": ["hflip", "hflip"]}, "listed twice"),
        ({"bank_augment": ["rot90"], "image_size": [64, 96]}, "rot90 needs a square image_size"),
        ({"kind": "stfpm", "bank_augment": ["hflip"]}, "only a patchcore model"),
    ],
)
def test_config_refuses_views_that_cannot_work(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        model_config_from_mapping({**TINY_PATCHCORE, **settings})


@slow
def test_training_with_views_collects_four_times_the_patches(tiny_product: Path) -> None:
    dataset = load_dataset(tiny_product)
    samples = dataset.train_samples[:6]
    base = {**TINY_PATCHCORE, "backbone": {"weights": "random"}}
    fitted = {}
    for name, augment in (("plain", []), ("views", list(ALL))):
        config = model_config_from_mapping({**base, "bank_augment": augment})
        weights = resolve_weights(config.backbone.name, "random", None)
        fitted[name], _ = fit(config, samples, samples[:2], weights, progress=False)
    plain, viewed = fitted["plain"], fitted["views"]
    assert viewed.bank_augment == ALL
    assert viewed.patches_seen == viewed.patches_kept == 4 * plain.patches_seen
    # the bank keeps the same share of four times the patches
    assert viewed.model.memory_bank.shape[0] == pytest.approx(
        4 * plain.model.memory_bank.shape[0], abs=4
    )
    # out of fold, an image's rows are its own and its views': the folds cannot split them
    images = model_inputs(plain, samples, (64, 64))
    own = _embeddings(plain.model, images, samples, None, 4)
    with_all = _embeddings(viewed.model, images, samples, None, 4, ALL)
    assert len(with_all) == len(own) == len(samples)
    assert all(w.shape[0] == 4 * o.shape[0] for w, o in zip(with_all, own, strict=True))


@slow
def test_views_are_refused_with_a_product_roi(tiny_product: Path) -> None:
    samples = load_dataset(tiny_product).train_samples[:4]
    config = model_config_from_mapping(
        {**TINY_PATCHCORE, "backbone": {"weights": "random"}, "bank_augment": ["hflip"]}
    )
    left_half = RoiSpec((64, 64), include=(((0, 0), (32, 0), (32, 64), (0, 64)),))
    masks = TrainingRoi.whole_image(left_half, (64, 64))
    weights = resolve_weights(config.backbone.name, "random", None)
    with pytest.raises(ConfigError, match="bank_augment: flipped or rotated views"):
        fit(config, samples, samples[:2], weights, progress=False, roi=masks)
