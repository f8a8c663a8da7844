"""The mixed model fits the local statistics' own part once: the fit after the head takes the
bank and fold banks the keep rule's fit made, and stores the same model."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
import torch
from anomalib.models.components import TimmFeatureExtractor

from inspection.core.product_config import model_config_from_mapping
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.data.demo import write_demo_product
from inspection.training.models.patchcore import local_stats
from inspection.training.models.patchcore.out_of_fold import model_inputs
from inspection.training.train import TrainOutcome, evaluation_splits, train_model
from tests.conftest import TINY_PATCHCORE

pytestmark = pytest.mark.slow
STATISTICS = {**TINY_PATCHCORE, "supervised": "auto", "local_statistics": True}


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small grass product with 3 labelled defects per kind (masked), at 128 px."""
    return write_demo_product(
        tmp_path_factory.mktemp("labelled"), "grass", seed=7, n_train=24, n_test_good=8,
        n_test_per_defect=4, size=128, n_labelled=3,
    )  # fmt: skip


def _train(product: Path, tmp: Path) -> TrainOutcome:
    config = model_config_from_mapping(STATISTICS, where="tests STATISTICS")
    return train_model(
        config, load_dataset(product), product="grass", registry=Registry(tmp), progress=False
    )


def test_the_fit_after_the_head_reuses_the_statistics_and_stores_the_same_model(
    product: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fits: list[object] = []
    real = local_stats._fit_bank

    def counted(*args: object, **kwargs: object) -> list[torch.Tensor]:
        fits.append(args[2:])
        return real(*args, **kwargs)

    monkeypatch.setattr(local_stats, "_fit_bank", counted)
    once = _train(product, tmp_path / "once")
    assert len(fits) == 1  # the keep rule's fit; the fit after the head took it
    assert once.record.extra["local_statistics"]["kept"]
    monkeypatch.setattr(local_stats, "_reusable", lambda head, key, fit: fit())
    twice = _train(product, tmp_path / "twice")
    assert len(fits) == 3  # each fit its own bank
    ours, theirs = once.model.model.state_dict(), twice.model.model.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        torch.testing.assert_close(tensor, theirs[name], rtol=0, atol=0, msg=name)
    for key in ("local_statistics", "supervised", "good_scores", "normalization", "segmentation"):
        first, second = once.record.extra[key], twice.record.extra[key]
        if key == "supervised":
            first, second = (
                {k: v for k, v in c.items() if k != "seconds"} for c in (first, second)
            )
        assert first == second, key
    assert once.metrics == twice.metrics


def test_the_validation_images_pass_the_backbone_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statistics' validation pass, the head's cells and the validation predictions share
    one backbone pass of each validation image (more than one batch of them)."""
    product = write_demo_product(
        tmp_path / "data", "grass", seed=7, n_train=24, n_test_good=24, n_test_per_defect=6,
        size=128, n_labelled=3,
    )  # fmt: skip
    seen: Counter[bytes] = Counter()
    forward = TimmFeatureExtractor.forward

    def counted(self: TimmFeatureExtractor, images: torch.Tensor) -> object:
        seen.update(_digest(image) for image in images)
        return forward(self, images)

    monkeypatch.setattr(TimmFeatureExtractor, "forward", counted)
    outcome = _train(product, tmp_path / "registry")
    config = model_config_from_mapping(STATISTICS, where="tests STATISTICS")
    validation, _ = evaluation_splits(config, load_dataset(product))
    images = model_inputs(outcome.model, validation, tuple(config.image_size))
    assert len(validation) > 8  # more than one batch of the statistics' validation pass
    assert outcome.record.extra["supervised"]["cells"]  # a head was taught on the cells
    assert [seen[_digest(image)] for image in images] == [1] * len(validation)


def _digest(image: torch.Tensor) -> bytes:
    return hashlib.blake2b(image.detach().contiguous().numpy().tobytes()).digest()
