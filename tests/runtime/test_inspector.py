"""The Inspector on a real FP32 bundle trained in the session (see conftest)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inspection.core.errors import BundleError
from inspection.core.images import read_image
from inspection.core.regions import extract_regions
from inspection.core.types import InspectionResult
from inspection.runtime.inspector import Inspector

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inspector(fp32_bundle: Path) -> Inspector:
    return Inspector.from_bundle(fp32_bundle)


@pytest.fixture(scope="module")
def images(tiny_product: Path) -> list[np.ndarray]:
    paths = sorted((tiny_product / "test").rglob("*.png"))[:5]
    return [read_image(p) for p in paths]


def test_inspect_returns_a_full_result_at_input_resolution(inspector, images) -> None:
    image = images[0]
    result = inspector.inspect(image)
    assert isinstance(result, InspectionResult)
    assert result.anomaly_map.shape == image.shape[:2] == result.mask.shape
    assert 0.0 <= result.score <= 1.0
    assert result.verdict == ("NG" if result.score > result.threshold else "OK")
    assert result.threshold == inspector.metadata.image_threshold
    assert result.model_version == "brick/v0001-fp32"
    assert result.latency_ms > 0
    assert {"preprocess", "infer", "postprocess", "regions"} <= set(result.timings_ms)
    np.testing.assert_array_equal(result.mask, result.anomaly_map > 0.5)
    assert result.regions == extract_regions(result.anomaly_map, result.mask)


def test_batch_one_batch_n_and_async_agree(inspector, images) -> None:
    singles = [inspector.inspect(image) for image in images]
    batched = inspector.inspect_batch(images)
    queued = inspector.inspect_many(images, jobs=2)
    for one, many, async_ in zip(singles, batched, queued, strict=True):
        assert many.score == pytest.approx(one.score, abs=1e-5)
        assert async_.score == pytest.approx(one.score, abs=1e-5)
        np.testing.assert_allclose(many.anomaly_map, one.anomaly_map, atol=1e-5)
        np.testing.assert_allclose(async_.anomaly_map, one.anomaly_map, atol=1e-5)


def test_throughput_mode_builds_and_runs(fp32_bundle, images) -> None:
    inspector = Inspector.from_bundle(fp32_bundle, performance_hint="THROUGHPUT")
    assert len(inspector.inspect_many(images * 2)) == 2 * len(images)


def _lowest_scoring(inspector: Inspector, images: list[np.ndarray]) -> tuple[np.ndarray, float]:
    scores = [inspector.inspect(image).score for image in images]
    k = int(np.argmin(scores))
    assert scores[k] < 0.99, f"every test image scores >= 0.99: {scores}"
    return images[k], scores[k]


def test_threshold_per_call_changes_the_verdict_and_nothing_else(fp32_bundle, images) -> None:
    inspector = Inspector.from_bundle(fp32_bundle)
    default = inspector.threshold
    image, score = _lowest_scoring(inspector, images)
    assert inspector.inspect(image, threshold=(score + 1.0) / 2).verdict == "OK"
    assert inspector.inspect(image, threshold=1e-6).verdict == "NG" or score == 0.0
    assert any(inspector.inspect(i, threshold=1e-6).verdict == "NG" for i in images)
    assert inspector.threshold == default  # a call's threshold never sticks


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_thresholds_outside_0_1_are_refused(fp32_bundle, inspector, value) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        inspector.inspect(np.zeros((32, 32, 3), np.uint8), threshold=value)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Inspector.from_bundle(fp32_bundle, threshold=value)


def test_threshold_option_at_load(fp32_bundle) -> None:
    assert Inspector.from_bundle(fp32_bundle, threshold=0.8).threshold == 0.8


class EraseSmallRegions:
    """A tiny real refiner: keeps only the largest region of the mask."""

    name = "largest-region"

    def __init__(self) -> None:
        self.calls = 0

    def refine_result(self, image: np.ndarray, result: InspectionResult) -> InspectionResult:
        self.calls += 1
        mask = np.zeros_like(result.mask)
        if result.regions:
            x0, y0, x1, y1 = result.regions[0].box
            mask[y0:y1, x0:x1] = result.mask[y0:y1, x0:x1]
        return dataclasses.replace(
            result,
            mask=mask,
            regions=extract_regions(result.anomaly_map, mask),
            mask_source=self.name,
        )


def test_refiner_runs_only_on_ng(fp32_bundle, images) -> None:
    refiner = EraseSmallRegions()
    inspector = Inspector.from_bundle(fp32_bundle, refiner=refiner)
    image, score = _lowest_scoring(inspector, images)
    refiner.calls = 0
    result = inspector.inspect(image, threshold=(score + 1.0) / 2)  # OK: no refinement
    assert result.verdict == "OK" and refiner.calls == 0 and result.mask_source == "raw"
    top = max(images, key=lambda candidate: inspector.inspect(candidate, threshold=0.999).score)
    refiner.calls = 0
    result = inspector.inspect(top, threshold=1e-6)  # NG: refined once
    assert result.verdict == "NG" and refiner.calls == 1 and result.mask_source == "largest-region"
    assert len(result.regions) <= 1 and "refine" in result.timings_ms


def test_corrupt_bundle_is_refused_before_loading(fp32_bundle, tmp_path) -> None:
    copy = shutil.copytree(fp32_bundle, tmp_path / "bundle")
    with open(copy / "model.bin", "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match=r"checksum mismatch for model\.bin"):
        Inspector.from_bundle(copy)


def test_missing_metadata_and_unknown_device(fp32_bundle, tmp_path) -> None:
    with pytest.raises(BundleError, match="not a model bundle"):
        Inspector.from_bundle(tmp_path)
    with pytest.raises(BundleError, match="device 'NPU9' is not available"):
        Inspector.from_bundle(fp32_bundle, device="NPU9")


def test_metadata_is_complete(fp32_bundle) -> None:
    data = json.loads((fp32_bundle / "metadata.json").read_text())
    assert data["precision"] == "fp32" and data["model_kind"] == "patchcore"
    assert data["preprocessing"]["input_size"] == [64, 64]
    assert data["preprocessing"]["pixel_scale"] == pytest.approx(1 / 255)
    golden = {name for name in data["files"] if name.startswith("golden/")}
    # the first 4 images plus up to 4 nearest the threshold (core.golden.choose_golden)
    assert 4 <= len(golden) <= 8
    assert golden == {f"golden/{i:02d}.png" for i in range(len(golden))}
    assert set(data["files"]) == {"model.xml", "model.bin", "validation_scores.json", *golden}
    assert data["metrics"]["overall"]["image_auroc"] is not None
    assert set(data["normalization"]) >= {"image_threshold_raw", "pixel_min", "pixel_max"}
