"""Registry and bundle files written by an earlier release must still read.

``tests/fixtures/registry_v1`` was written by the registry code of 2026-11 (one version, one
bundle, a promotion and a threshold change). ``tests/fixtures/registry_v2`` was written by main
at 32cdde8 (2026-11-23: metrics schema 1, calibrated FP32 and forced INT8 bundles with their
export gate records; the model and weight files are left out, so bundles are read, not
verified). Never regenerate them: add a newer fixture instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspection.core.bundle import read_bundle_metadata, verify_bundle
from inspection.core.errors import RegistryError
from inspection.core.model_record import DatasetRef, FitFigures
from inspection.core.registry import Registry
from inspection.core.validation_scores import read_validation_scores

FIXTURE = Path(__file__).parents[1] / "fixtures" / "registry_v1"
FIXTURE_V2 = Path(__file__).parents[1] / "fixtures" / "registry_v2"


def test_a_registry_written_by_the_first_release_reads(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    shutil.copytree(FIXTURE, root)
    registry = Registry(root)

    [record] = registry.bundles.versions("brick")
    assert (record.model_version, record.model_kind) == ("brick/v0001", "patchcore")
    evaluation = record.evaluation()  # an ``overall`` section with one figure, no schema
    assert (evaluation.schema, evaluation.image_auroc) == (0, 0.9)
    assert evaluation.overall.aupro is None and evaluation.per_defect == {}
    assert record.calibration().normalization == record.normalization()  # none was recorded
    assert record.file("model.ckpt").read_bytes() == b"weights"
    assert record.preprocessing().input_size == (64, 64)
    assert record.normalization().image_threshold_raw == 2.0
    assert record.splits().validation == ("test/good/000.png", "test/crack/000.png")
    assert record.fit_figures() == FitFigures()  # it recorded no fit time
    assert record.dataset_ref() == DatasetRef(sha256="abc", count=3)
    assert record.weights == {}
    with pytest.raises(RegistryError, match="does not record its dataset folder"):
        record.dataset_root()

    live = registry.journal.live("brick")
    assert live is not None and (live.bundle_id, live.actor) == ("v0001-fp32", "qa")
    [threshold] = registry.journal.threshold_history("brick")
    assert (threshold.value, threshold.bundle_id) == (0.42, "v0001-fp32")
    assert threshold.budget is None  # set by value: carried by its rank (core.golden)
    assert [e["action"] for e in registry.journal.events("brick")] == ["promote", "threshold"]


def test_a_bundle_written_by_the_first_release_reads(tmp_path: Path) -> None:
    bundle = shutil.copytree(FIXTURE / "brick" / "bundles" / "v0001-fp32", tmp_path / "b")
    verify_bundle(bundle)
    metadata = read_bundle_metadata(bundle)
    assert (metadata.bundle_id, metadata.precision) == ("v0001-fp32", "fp32")
    assert metadata.preprocessing.input_size == (64, 64)
    assert metadata.inference_precision == "f32"  # moved out of extra by the reader
    assert "inference_precision" not in metadata.extra
    assert metadata.evaluation().image_auroc is None  # it recorded no metrics


def test_a_registry_version_with_schema_1_metrics_reads(tmp_path: Path) -> None:
    registry = Registry(shutil.copytree(FIXTURE_V2, tmp_path / "registry"))
    [record] = registry.bundles.versions("brick")
    evaluation = record.evaluation()
    assert evaluation.schema == 1 and evaluation.image_auroc is not None
    assert set(evaluation.per_defect) == {"crack", "hole", "scratch", "stain"}
    assert evaluation.calibration is not None
    assert record.calibration() == evaluation.calibration
    assert record.train_image_count() == 24
    assert len(record.splits().validation) == 6
    assert record.fit_figures() == FitFigures(fit_seconds=0.52, test_images=12)
    dataset = record.dataset_ref()
    assert (dataset.name, dataset.count, len(dataset.sha256 or "")) == ("brick", 54, 64)
    assert record.dataset_root() == Path("/tmp/pytest-of-root/pytest-218/datasets0/brick")
    weights = record.weights
    assert (weights["backbone"], weights["source"], weights["mean"]) == (
        "tf_efficientnet_lite0",
        "bundled",
        [0.5, 0.5, 0.5],
    )


def test_bundles_with_export_gate_records_read(tmp_path: Path) -> None:
    bundles = shutil.copytree(FIXTURE_V2 / "brick" / "bundles", tmp_path / "bundles")
    fp32 = read_bundle_metadata(bundles / "v0001-fp32")
    int8 = read_bundle_metadata(bundles / "v0001-int8")
    assert fp32.output_calibration is not None and int8.output_calibration is not None
    # written as ``calibration`` (an untyped dict) before the quantisation set was typed
    assert fp32.quantization_set is None and int8.quantization_set is not None
    assert (int8.quantization_set.split, int8.quantization_set.size) == ("train", 24)
    assert len(int8.quantization_set.files) == 24 and int8.quantization_set.head_fp32
    assert int8.quantization_set.seven_bit_weights is None  # not recorded then: first layer only
    own = fp32.export_record()
    assert own.gate is not None and own.gate.passed and own.reference_fp32 is None
    assert own.gate.reference_fp32 == own.gate.figures  # FP32 is its own reference
    record = int8.export_record()
    gate = record.gate
    assert gate is not None and (gate.passed, gate.forced) == (False, True)
    assert gate.failures[0].startswith("miss_rate 0.125 vs FP32 0.000")
    assert gate.reference_fp32 == own.gate.figures  # the same FP32 bundle, re-calibrated
    assert (gate.figures.n_good, gate.figures.n_defective) == (4, 8)
    assert record.reference_fp32 is not None
    assert record.image_auroc_drop == pytest.approx(
        record.reference_fp32.image_auroc - int8.evaluation().image_auroc
    )
    scores = read_validation_scores(bundles / "v0001-int8")
    assert scores is not None and scores.split == "test"
    assert len(scores.scores) == len(scores.names) == len(scores.defect_types) == 12


def test_a_bundle_from_a_newer_release_is_refused_with_the_upgrade_order(tmp_path: Path) -> None:
    """A field this release does not know (here nested, as new fields usually arrive) is
    refused, and the message says what to do: upgrade the station first."""
    import json

    from inspection.core.errors import BundleError

    bundle = shutil.copytree(FIXTURE / "brick" / "bundles" / "v0001-fp32", tmp_path / "b")
    path = bundle / "metadata.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["preprocessing"]["colour_profile"] = "sRGB"
    path.write_text(json.dumps(data), encoding="utf-8")

    with pytest.raises(BundleError) as info:
        read_bundle_metadata(bundle)

    message = str(info.value)
    assert "unknown key(s) 'colour_profile'" in message
    assert "newer release" in message and "upgrade this station before" in message
