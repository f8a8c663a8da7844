"""Synthetic anomalies teach the mixed model's head where no defect is labelled (#82)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import torch

from inspection.core.product_config import model_config_from_mapping
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.training.models.mixed.head import SupervisedHead
from inspection.training.train import train_model
from tests.conftest import TINY_PATCHCORE

SYNTHETIC = {**TINY_PATCHCORE, "supervised": "auto", "synthetic": True}


def test_synthetic_anomalies_teach_a_head_the_keep_rule_judges(
    tiny_product: Path, tmp_path: Path
) -> None:
    """No labelled defect: the head learns from perturbed grids and is judged on image-level
    anomalies of the good images it did not learn from (not on the validation defects)."""
    registry = Registry(tmp_path)
    config = model_config_from_mapping(SYNTHETIC, where="tests SYNTHETIC")
    dataset = load_dataset(tiny_product)
    assert not dataset.labelled_samples
    outcome = train_model(config, dataset, product="brick", registry=registry, progress=False)
    choice = outcome.record.extra["supervised"]
    assert choice["labelled"] == {} and choice["synthetic"]["taught"] > 0
    judged = choice["synthetic"]["judged"]
    evidence = choice["evidence"]
    assert judged > 0 and evidence["defects"] == judged
    train = len(dataset.train_samples)
    assert evidence["good"] > train - choice["good_images"]  # the others and the validation good
    decided = "error_change_bound" in evidence  # else PatchCore alone made no error: none taught
    assert choice["kept"] is (decided and evidence["error_change_bound"] < 0)
    assert outcome.model.model.supervised.enabled is choice["kept"]


def test_a_synthetic_head_is_in_the_graph_with_one_score(
    tiny_product: Path, tmp_path: Path
) -> None:
    """``supervised: true`` keeps the synthetic head: the converted graph scores as the mixed
    torch model (not as PatchCore alone), through the outputs plain PatchCore's graph has."""
    from inspection.training.convert import convert_torch_model

    registry = Registry(tmp_path)
    config = model_config_from_mapping({**SYNTHETIC, "supervised": True}, where="tests")
    outcome = train_model(
        config, load_dataset(tiny_product), product="brick", registry=registry, progress=False
    )
    inner = outcome.model.model
    assert inner.supervised.enabled
    graph = ov.Core().compile_model(convert_torch_model(inner, (64, 64)), "CPU")
    assert [o.get_any_name() for o in graph.outputs] == ["pred_score", "anomaly_map"]
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        mixed = inner(images).pred_score
        head = inner.supervised
        inner.supervised = SupervisedHead()
        alone = inner(images).pred_score
        inner.supervised = head
    scores = graph(images.numpy())["pred_score"].reshape(-1)
    np.testing.assert_allclose(scores, mixed.numpy(), rtol=1e-2)
    assert not np.allclose(scores, alone.numpy(), rtol=1e-2)
