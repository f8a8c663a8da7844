"""Registry and bundle files written by an earlier release must still read.

``tests/fixtures/registry_v1`` was written by the registry code of 2026-11 (one version, one
bundle, a promotion and a threshold change). Never regenerate it: add a newer fixture instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from inspection.core.bundle import read_bundle_metadata, verify_bundle
from inspection.core.registry import Registry

FIXTURE = Path(__file__).parents[1] / "fixtures" / "registry_v1"


def test_a_registry_written_by_the_first_release_reads(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    shutil.copytree(FIXTURE, root)
    registry = Registry(root)

    [record] = registry.versions("brick")
    assert (record.model_version, record.model_kind) == ("brick/v0001", "patchcore")
    evaluation = record.evaluation()  # an ``overall`` section with one figure, no schema
    assert (evaluation.schema, evaluation.image_auroc) == (0, 0.9)
    assert evaluation.overall.aupro is None and evaluation.per_defect == {}
    assert record.calibration().normalization == record.normalization()  # none was recorded
    assert record.file("model.ckpt").read_bytes() == b"weights"
    assert record.preprocessing().input_size == (64, 64)
    assert record.normalization().image_threshold_raw == 2.0
    assert record.splits().validation == ("test/good/000.png", "test/crack/000.png")

    live = registry.live("brick")
    assert live is not None and (live.bundle_id, live.actor) == ("v0001-fp32", "qa")
    [threshold] = registry.threshold_history("brick")
    assert (threshold.value, threshold.bundle_id) == (0.42, "v0001-fp32")
    assert [e["action"] for e in registry.events("brick")] == ["promote", "threshold"]


def test_a_bundle_written_by_the_first_release_reads(tmp_path: Path) -> None:
    bundle = shutil.copytree(FIXTURE / "brick" / "bundles" / "v0001-fp32", tmp_path / "b")
    verify_bundle(bundle)
    metadata = read_bundle_metadata(bundle)
    assert (metadata.bundle_id, metadata.precision) == ("v0001-fp32", "fp32")
    assert metadata.preprocessing.input_size == (64, 64)
    assert metadata.inference_precision == "f32"  # moved out of extra by the reader
    assert "inference_precision" not in metadata.extra
    assert metadata.evaluation().image_auroc is None  # it recorded no metrics
