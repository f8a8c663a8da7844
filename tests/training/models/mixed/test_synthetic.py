"""Synthetic anomalies teach the mixed model's head where no defect is labelled (#82)."""

from __future__ import annotations

from pathlib import Path

import openvino as ov

from inspection.core.product_config import model_config_from_mapping
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
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


def test_a_synthetic_head_exports_one_score(tiny_product: Path, tmp_path: Path) -> None:
    """``supervised: true`` keeps the synthetic head: the bundle's graph holds it, with the
    outputs plain PatchCore's has."""
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import export_bundle

    registry = Registry(tmp_path)
    config = model_config_from_mapping({**SYNTHETIC, "supervised": True}, where="tests")
    outcome = train_model(
        config, load_dataset(tiny_product), product="brick", registry=registry, progress=False
    )
    assert outcome.model.model.supervised.enabled
    bundle = export_bundle(registry, "brick", ExportOptions(precision="fp32")).bundle_dir
    model = ov.Core().read_model(next(Path(bundle).glob("*.xml")))
    assert [o.get_any_name() for o in model.outputs] == ["pred_score", "anomaly_map"]
