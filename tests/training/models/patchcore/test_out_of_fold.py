"""Out-of-fold scores (``training.models.patchcore.out_of_fold``): the fit's patch embeddings replayed score the
training images as a backbone pass over them does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspection.core.product_config import model_config_from_mapping
from inspection.data.dataset import load_dataset
from inspection.training.backbones import resolve_weights
from inspection.training.evaluate import predict
from inspection.training.models.patchcore.out_of_fold import (
    fit_embeddings,
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
