"""A good-only product (``train/good`` + ``test/good``, no defect folders) trains, calibrates
at its false-reject budget, exports FP32 and INT8, passes the gate and serves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspection.core.registry import Registry

TINY = {
    "kind": "patchcore",
    "image_size": [64, 64],
    "batch_size": 8,
    "coreset_sampling_ratio": 0.1,
    "num_neighbors": 3,
    "val_fraction": 0.3,
    "operating_point": {"budget": 0.05},
}


@pytest.fixture(scope="module")
def good_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from inspection.data.demo import write_demo_product

    root = write_demo_product(
        tmp_path_factory.mktemp("datasets"), "brick", seed=11, n_train=30, n_test_good=10,
        n_test_per_defect=1, size=96,
    )  # fmt: skip
    for folder in (root / "test").iterdir():
        if folder.name != "good":
            shutil.rmtree(folder)
    shutil.rmtree(root / "ground_truth", ignore_errors=True)
    return root


@pytest.mark.slow
def test_good_only_product_trains_exports_and_serves(good_only: Path, tmp_path: Path) -> None:
    from inspection.core.product_config import model_config_from_mapping
    from inspection.data.dataset import load_dataset
    from inspection.runtime.self_check import LabelledPath, check_live_bundle
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import (
        RegistryExport,
        export_bundle,
        held_out_test_samples,
    )
    from inspection.training.train import train

    registry = Registry(tmp_path / "registry")
    dataset = load_dataset(good_only)
    config = model_config_from_mapping(TINY)
    record = train(config, dataset, product="brick", registry=registry, progress=False)
    choice = record.calibration().operating
    assert choice is not None and choice.policy == "false_reject_budget"
    assert choice.good_sources == {"validation": 3, "out_of_fold_train": 30}
    assert choice.n_good == 33 and choice.sufficient  # 0.05 needs n >= 19
    assert record.evaluation().per_defect == {}
    assert record.evaluation().overall.miss_rate is None

    held_out = held_out_test_samples(record, dataset)
    assert len(held_out) == 7 and all(s.label == 0 for s in held_out)
    parts = [LabelledPath(s.path, 0) for s in held_out]
    for precision in ("fp32", "int8"):
        result = export_bundle(
            registry, "brick", ExportOptions(precision=precision), RegistryExport(record.version)
        )
        assert result.gate.passed
        calibration = result.metadata.output_calibration
        assert calibration is not None and calibration.operating is not None
        assert calibration.operating.good_sources["out_of_fold_train"] == 30
        check = check_live_bundle(result.bundle_dir, parts)
        # 7 held-out good parts at a 5 % budget: the binomial test allows 1 reject
        assert check.figures.rejected_good() <= 1
        assert "miss rate unknown" in check.summary()
        # good-only: nothing shows what it misses, whatever it rejects
        assert check.readiness().lacks[-1] == (
            "nothing shows what it misses: no defective parts held out"
        )


def test_a_product_with_only_train_good_trains(
    tiny_product: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README step 1 says only ``train/good`` is required; ``train`` refused a folder without
    ``test/``. It now holds good images out of it (``data.dataset.hold_out_good``): they and
    the out-of-fold scores set the threshold, and the verdict says nothing shows what it misses."""
    from inspection.cli.operating import train_verdict
    from inspection.cli.train import _print_metrics
    from inspection.core.operating_point import OUT_OF_FOLD
    from inspection.core.product_config import model_config_from_mapping
    from inspection.data.dataset import load_dataset
    from inspection.training.train import train
    from tests.conftest import TINY_PATCHCORE

    root = tmp_path / "brick"
    shutil.copytree(tiny_product / "train" / "good", root / "train" / "good")
    dataset = load_dataset(root)
    config = model_config_from_mapping(TINY_PATCHCORE)
    record = train(config, dataset, product="brick", registry=Registry(tmp_path / "r"))

    choice = record.calibration().operating
    assert choice is not None and choice.good_sources is not None
    assert choice.good_sources[OUT_OF_FOLD] == len(dataset.train_samples)
    splits = record.splits()
    assert len(splits.validation) + len(splits.test) == len(dataset.test_samples)
    overall = record.evaluation().overall
    assert overall.n_good == len(splits.test) and overall.n_defective == 0
    advice = train_verdict("brick", record.version, record.evaluation())
    assert advice.startswith(f"NOT LINE-READY brick/{record.version}: ")
    assert "nothing shows what it misses: no defective parts held out" in advice
    _print_metrics([(record, record.evaluation())])  # no defect: no F1 (it said 0.000)
    row = next(line for line in capsys.readouterr().out.splitlines() if "patchcore" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[5:7] == ["-", "-"], row  # img F1, px F1
