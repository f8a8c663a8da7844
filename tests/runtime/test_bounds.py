"""Bounded per-image stages (``runtime.bounds``): decode, regions, refinement and overlays
cost what the working size costs, whatever the camera's resolution."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inspection.core.errors import ImageDecodeError, ImageTooLarge
from inspection.core.images import DecodedImage, decode_reduced, read_image
from inspection.core.regions import extract_regions
from inspection.core.types import InspectionResult, scale_regions
from inspection.refine.classical import ClassicalRefiner, bounded_crop, grabcut_region
from inspection.refine.config import ClassicalConfig, RefineConfig
from inspection.runtime.bounds import (
    BoundsConfig,
    CameraOptions,
    Reading,
    RefineGate,
    stored_copy,
    with_camera_size,
    work_size,
)
from inspection.runtime.inspector import Inspector
from inspection.runtime.overlays import render_overlay


def _encoded(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def wide() -> np.ndarray:
    """A 3000 x 2000 textured RGB image with a dark blob (a camera frame, 6 MP)."""
    rng = np.random.default_rng(0)
    small = rng.integers(60, 200, size=(200, 300, 3), dtype=np.uint8)
    image = cv2.resize(small, (3000, 2000), interpolation=cv2.INTER_CUBIC)
    cv2.circle(image, (1500, 1000), 150, (10, 10, 10), -1)
    return image


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_decode_reduces_to_the_working_side(wide: np.ndarray, fmt: str) -> None:
    decoded = decode_reduced(_encoded(wide, fmt), work_side=1024)
    assert decoded.source_size == (2000, 3000)
    assert decoded.image.shape == (683, 1024, 3) and decoded.image.dtype == np.uint8
    assert decoded.reduced
    # the reduced copy shows the same picture: the blob stays dark, the texture does not
    assert decoded.image[341, 512].max() < 40
    reference = cv2.resize(wide, (1024, 683), interpolation=cv2.INTER_AREA).astype(np.int16)
    assert np.abs(decoded.image.astype(np.int16) - reference).mean() < 8


def test_decode_keeps_small_images_and_its_limits(wide: np.ndarray) -> None:
    small = wide[:300, :400].copy()
    decoded = decode_reduced(_encoded(small, "PNG"), work_side=1024)
    assert not decoded.reduced and np.array_equal(decoded.image, small)
    with pytest.raises(ImageDecodeError, match="above the limit of 1000000"):
        decode_reduced(_encoded(wide, "JPEG"), work_side=1024, max_pixels=1_000_000)
    with pytest.raises(ValueError, match="work_side must be >= 1"):
        decode_reduced(_encoded(small, "PNG"), work_side=0)


def _frame(shape: tuple[int, ...]) -> tuple[np.ndarray, bytes]:
    """A textured 8-bit frame of ``shape`` and its PNG as a GenICam camera writes it (cv2)."""
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    ok, png = cv2.imencode(".png", pixels if pixels.ndim == 2 else pixels[:, :, ::-1])
    assert ok
    return pixels, png.tobytes()


@pytest.mark.parametrize("channels", [(), (3,)], ids=["grey", "rgb"])
@pytest.mark.parametrize("size", [(30, 40), (120, 160)], ids=["kept", "reduced"])
def test_captured_pixels_read_as_their_png_decodes(size: tuple[int, int], channels: tuple) -> None:
    """``Reading.adopt`` of a camera's pixels gives the ``DecodedImage`` decoding its PNG gives:
    every field, the working copy pixel for pixel (160 x 120 reduced to 96 x 72)."""
    pixels, png = _frame(size + channels)
    before, reading = pixels.copy(), Reading(work_side=96)
    adopted, decoded = reading.adopt(pixels, name="cam"), reading.decode(png, name="cam")
    assert adopted.reduced == (size == (120, 160)) == decoded.reduced
    assert adopted.kind == ("L" if not channels else "RGB")
    for name in ("source_size", "clipped_pixels", "peak", "kind", "alpha_ignored"):
        assert getattr(adopted, name) == getattr(decoded, name), name
    assert adopted.unmeasured_pixels == decoded.unmeasured_pixels
    assert adopted.image.dtype == np.uint8 and np.array_equal(adopted.image, decoded.image)
    assert np.array_equal(pixels, before), "the camera's pixels were changed"


@pytest.mark.parametrize(
    ("limits", "key"),
    [({"max_pixels": 19_199}, "max_pixels"), ({"max_side": 159}, "max_side")],
)
def test_captured_pixels_over_a_limit_are_refused_as_their_png(limits: dict, key: str) -> None:
    pixels, png = _frame((120, 160))
    reading = Reading(work_side=96)
    with pytest.raises(ImageTooLarge) as adopted:
        reading.adopt(pixels, name="cam", **limits)
    with pytest.raises(ImageTooLarge) as decoded:
        reading.decode(png, name="cam", **limits)
    assert str(adopted.value) == str(decoded.value) and adopted.value.limit == key
    assert str(adopted.value).startswith("cam: image is 160x120")


@pytest.mark.parametrize("shape", [(4, 5, 4), (4, 5, 1), (4,)])
def test_captured_pixels_of_another_layout_are_refused(shape: tuple[int, ...]) -> None:
    expected = f"cam: captured pixels must be (H, W) or (H, W, 3) uint8, got {shape} uint8"
    with pytest.raises(ValueError, match=re.escape(expected)):
        Reading(work_side=96).adopt(np.zeros(shape, np.uint8), name="cam")
    with pytest.raises(ValueError, match="uint16"):
        Reading(work_side=96).adopt(np.zeros((4, 5), np.uint16), name="cam")


def test_work_size_and_options() -> None:
    assert work_size((5000, 5000, 3), 1024) == (1024, 1024)
    assert work_size((2000, 3000), 1024) == (683, 1024)
    assert work_size((500, 600), 1024) == (500, 600)
    assert CameraOptions(work_max_side=128).work_side((256, 256)) == 256  # never below the model
    config = BoundsConfig(latency_budget_ms=800, products={"brick": CameraOptions(512, 300.0)})
    assert config.options("brick") == CameraOptions(512, 300.0)
    assert config.options("grass") == CameraOptions(1024, 800.0)
    with pytest.raises(ValueError, match="latency_budget_ms must be > 0"):
        CameraOptions(latency_budget_ms=0)


def test_scaled_regions_cover_the_same_pixels() -> None:
    amap = np.zeros((100, 150), np.float32)
    mask = np.zeros((100, 150), bool)
    mask[10:20, 30:50] = True
    amap[mask] = 0.9
    (region,) = extract_regions(amap, mask)
    (big,) = scale_regions((region,), (100, 150), (1000, 1500))
    assert big.box == (300, 100, 500, 200)
    assert big.area == region.area * 100
    assert 300 <= big.peak[0] < 500 and 100 <= big.peak[1] < 200
    assert scale_regions((region,), (100, 150), (100, 150)) == (region,)


def test_bounded_crop_keeps_within_the_pixel_budget() -> None:
    crop = np.zeros((900, 700, 3), np.uint8)
    labels = np.full((900, 700), cv2.GC_PR_BGD, np.uint8)
    small, small_labels = bounded_crop(crop, labels, 65_536)
    assert small.shape[0] * small.shape[1] <= 65_536
    assert small.shape[:2] == small_labels.shape
    same, same_labels = bounded_crop(crop[:100, :100], labels[:100, :100], 65_536)
    assert same.shape == (100, 100, 3) and same_labels.shape == (100, 100)


def test_grabcut_on_a_shrunk_crop_is_pasted_back_at_full_resolution() -> None:
    """A 1200 px defect segmented on a crop of at most 4096 px still comes back as a
    full-resolution mask that matches the dark disc."""
    image = np.full((1600, 1600, 3), 180, np.uint8)
    cv2.circle(image, (800, 800), 400, (20, 20, 20), -1)
    truth = np.zeros((1600, 1600), np.uint8)
    cv2.circle(truth, (800, 800), 400, 1, -1)
    amap = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 40)
    region = amap >= 0.5
    config = ClassicalConfig(max_crop_pixels=4096)
    mask = grabcut_region(image, amap, region, 0.5, config)
    assert mask is not None and mask.shape == (1600, 1600)
    truth = truth.astype(bool)
    f1 = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert f1 > 0.95


def _ng(shape: tuple[int, int]) -> tuple[np.ndarray, InspectionResult]:
    image = np.full((*shape, 3), 170, np.uint8)
    centre = (shape[1] // 2, shape[0] // 2)
    cv2.circle(image, centre, shape[0] // 8, (30, 30, 30), -1)
    truth = np.zeros(shape, np.float32)
    cv2.circle(truth, centre, shape[0] // 8, 1.0, -1)
    amap = np.clip(cv2.GaussianBlur(truth, (0, 0), shape[0] / 40), 0, 1).astype(np.float32)
    mask = amap >= 0.5
    result = InspectionResult(
        score=0.9, threshold=0.5, verdict="NG", anomaly_map=amap, mask=mask,
        regions=extract_regions(amap, mask), latency_ms=0.0, model_version="t/v1",
    )  # fmt: skip
    return image, result


def test_refine_gate_skips_refinement_that_would_exceed_the_budget() -> None:
    image, result = _ng((400, 400))
    refiner = ClassicalRefiner("grabcut", RefineConfig())
    gate = RefineGate()
    import time

    started = time.perf_counter()
    skipped = gate.refine(refiner, image, result, started=started, budget_ms=1e-3)
    assert skipped.timings_ms["refine_skipped"] == 1.0
    assert skipped.mask_source == "raw" and skipped.regions == result.regions
    assert np.array_equal(skipped.mask, result.mask)
    refined = gate.refine(refiner, image, result, started=time.perf_counter(), budget_ms=None)
    assert "refine_skipped" not in refined.timings_ms and refined.mask_source == "grabcut"
    assert refined.timings_ms["refine"] > 0
    assert gate.predict_ms(result) != RefineGate().predict_ms(result)  # learned from the run


def test_overlay_of_a_camera_image_is_bounded(wide: np.ndarray) -> None:
    _, result = _ng((683, 1024))
    decoded = DecodedImage(np.zeros((683, 1024, 3), np.uint8), source_size=(2000, 3000))
    result = with_camera_size(result, decoded)
    assert result.camera_size == (2000, 3000)
    overlay = render_overlay(wide, result, max_side=512)
    assert overlay.shape == (342, 512, 3)  # 683 * 512 / 1024 rounded
    with pytest.raises(ValueError, match="the result's map is"):
        render_overlay(wide[:1000], result)
    assert result.summary()["height"] == 2000 and result.summary()["work_size"] == [683, 1024]
    aligned = dataclasses.replace(result, camera_size=None, alignment=(1, 0, 5, 0, 1, 7))
    rescaled = with_camera_size(aligned, decoded)
    assert rescaled.camera_size is None
    assert rescaled.alignment[2] == pytest.approx(5 * 3000 / 1024)


def test_stored_copy_is_the_working_copy_unless_originals_are_kept(wide: np.ndarray) -> None:
    decoded = decode_reduced(_encoded(wide, "JPEG"), work_side=1024)
    copy = stored_copy(decoded, keep_original=False)
    assert copy is not None and Image.open(io.BytesIO(copy)).size == (1024, 683)
    assert stored_copy(decoded, keep_original=True) is None
    small = decode_reduced(_encoded(wide[:200, :200], "PNG"), work_side=1024)
    assert stored_copy(small, keep_original=False) is None


@pytest.mark.slow
def test_25_mp_image_is_judged_and_refined_within_the_pixel_budget(
    fp32_bundle: Path, tiny_product: Path
) -> None:
    """A defect image upscaled to 5000 x 5000: map, mask, regions and the refiner's input
    are at the working size; the regions are reported in camera pixels."""
    seen: list[tuple[int, ...]] = []

    class Recording:
        name = "grabcut"

        def __init__(self) -> None:
            self._inner = ClassicalRefiner("grabcut", RefineConfig())

        def refine_result(self, image: np.ndarray, result: InspectionResult) -> InspectionResult:
            seen.append(image.shape)
            return self._inner.refine_result(image, result)

    inspector = Inspector.from_bundle(fp32_bundle, refiner=Recording(), threshold=0.01)
    defect = next(p for p in sorted((tiny_product / "test").rglob("*.png")) if "good" not in str(p))
    camera = cv2.resize(read_image(defect), (5000, 5000), interpolation=cv2.INTER_LINEAR)
    result = inspector.inspect(camera)
    assert result.verdict == "NG"
    assert result.anomaly_map.shape == result.mask.shape == (1024, 1024)
    assert result.camera_size == (5000, 5000)
    assert seen == [(1024, 1024, 3)]
    for region in result.camera_regions:
        x0, y0, x1, y1 = region.box
        assert 0 <= x0 < x1 <= 5000 and 0 <= y0 < y1 <= 5000
    assert result.summary()["width"] == 5000
