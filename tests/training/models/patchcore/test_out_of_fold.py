"""Out-of-fold scores (``training.models.patchcore.out_of_fold``): the fit's patch embeddings replayed score the
training images as a backbone pass over them does, and a held-out fold scores as fresh parts do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspection.core.product_config import model_config_from_mapping
from inspection.data.dataset import load_dataset
from inspection.training.backbones import resolve_weights
from inspection.training.evaluate import predict
from inspection.training.models.patchcore.coreset import seed_selection, select_coreset
from inspection.training.models.patchcore.out_of_fold import (
    fit_embeddings,
    fold_banks,
    fold_of,
    model_inputs,
    score_images,
    trained_scores,
)
from inspection.training.train import fit
from tests.conftest import TINY_PATCHCORE


@pytest.mark.slow
@pytest.mark.parametrize("bank_augment", [[], ["hflip"]])
def test_replayed_fit_embeddings_score_as_the_backbone_does(
    tiny_product: Path, bank_augment: list[str]
) -> None:
    size = (64, 96)  # not square: the replayed grid keeps the input's aspect
    config = model_config_from_mapping(
        {**TINY_PATCHCORE, "image_size": list(size), "bank_augment": bank_augment}
    )
    samples = load_dataset(tiny_product).train_samples
    weights = resolve_weights(config.backbone.name, config.backbone.weights, None)
    model, _ = fit(config, samples, [], weights, progress=False)
    embeddings = fit_embeddings(model, samples)
    assert embeddings is not None and len(embeddings) == len(samples)
    assert fit_embeddings(model, [*samples, *load_dataset(tiny_product).test_samples[:1]]) is None
    every = np.arange(len(samples))
    images = model_inputs(model, samples, size)
    computed = score_images(model.model, every, images, None, image_size=size)
    replayed = score_images(model.model, every, None, embeddings, image_size=size)
    np.testing.assert_allclose(replayed, computed, rtol=1e-4, atol=1e-5)
    assert model.model.feature_extractor(images[:1])  # the backbone is back after the replay
    predicted = predict(model, samples[:5], image_size=size).scores
    np.testing.assert_allclose(trained_scores(model, samples[:5], size), predicted, rtol=1e-4)


def _patches(images: int, seed: int) -> list[torch.Tensor]:
    """Per image, 100 (24,) patch rows near a smooth 2-D surface (a part's patch appearance)."""
    lift = 2 * torch.randn(2, 24, generator=torch.Generator().manual_seed(99))
    draw = torch.Generator().manual_seed(seed)
    surface = torch.sin(torch.rand(images * 100, 2, generator=draw) @ lift)
    return list((surface + 0.05 * torch.randn(images * 100, 24, generator=draw)).split(100))


def _image_scores(images: list[torch.Tensor], bank: torch.Tensor) -> np.ndarray:
    return np.array([float(torch.cdist(rows, bank).min(1).values.max()) for rows in images])


@pytest.mark.parametrize("seed", [0, 1])
def test_out_of_fold_scores_sit_where_fresh_good_parts_do(seed: int) -> None:
    """The threshold is set on out-of-fold scores as if they were new good parts scored by the
    trained bank: their median stays within 15 % of fresh parts' (measured 1.07-1.09; the union
    of per-fold coresets, 070852a's banks, gave 1.34-1.40)."""
    train, fresh = _patches(40, 10 + seed), _patches(40, 50 + seed)
    seed_selection(seed)
    rows = torch.cat(train)
    trained = rows[select_coreset(rows, 0.05).indices]
    assignment = fold_of(len(train), 5, seed)
    banks = fold_banks(train, assignment, 0.05, None, seed)
    oof = np.empty(len(train))
    for fold, bank in enumerate(banks):
        held = np.flatnonzero(assignment == fold)
        oof[held] = _image_scores([train[i] for i in held], bank)
    ratio = np.median(oof) / np.median(_image_scores(fresh, trained))
    assert 0.95 < ratio < 1.15
