"""``choose_refiner``: measured on labelled images, a refiner is chosen only where it helps."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.core.types import InspectionResult
from inspection.refine.classical import ClassicalRefiner
from inspection.refine.config import ClassicalConfig, RefineConfig
from inspection.refine.evaluate import evaluate_refiners
from inspection.refine.select import CANDIDATES, CHOICE_MAX_SIDE, choose_refiner
from inspection.runtime.inspector import Inspector

from .refine_cases import blurred_blob_case


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    defect_type: str
    mask_path: Path | None


class StoredMaps:
    """Map source for synthetic cases: the precomputed result of each image, by its bytes."""

    def __init__(self) -> None:
        self.results: dict[bytes, InspectionResult] = {}

    def inspect(self, image: np.ndarray) -> InspectionResult:
        return self.results[image.tobytes()]


def blob_samples(tmp_path: Path, threshold: float, n: int = 3) -> tuple[list[Sample], StoredMaps]:
    maps, samples = StoredMaps(), []
    for seed in range(n):
        image, gt, result = blurred_blob_case(threshold, seed=seed, size=96)
        path, mask_path = tmp_path / f"{seed}.png", tmp_path / f"{seed}_mask.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(mask_path), gt.astype(np.uint8) * 255)
        maps.results[image.tobytes()] = result
        samples.append(Sample(path, 1, "blob", mask_path))
    return samples, maps


def test_a_refiner_that_helps_is_chosen_with_its_figures(tmp_path: Path) -> None:
    samples, maps = blob_samples(tmp_path, threshold=0.2)  # raw mask far too large
    config = RefineConfig(classical=ClassicalConfig(sure_bg_fraction=0.9))
    choice, results = choose_refiner(maps, samples, config=config)
    assert choice.method in CANDIDATES
    assert choice.images == 3 and choice.split == "validation"
    assert choice.gain is not None and choice.gain >= choice.min_gain
    assert choice.pixel_f1[choice.method] == max(choice.pixel_f1.values())
    assert choice.region_iou[choice.method] >= choice.region_iou["raw"]
    assert set(choice.region_iou) == set(choice.pixel_f1)
    assert results["methods"]["raw"]["quality"]["aupro"] is None  # skipped: not needed


class MeetingRefiner:
    """A real classical refiner that refines an image only once every other refiner of the
    barrier has started on it too: refiners run one after the other never meet."""

    def __init__(self, method: str, config: RefineConfig, barrier: threading.Barrier) -> None:
        self.refiner, self.name, self.barrier = ClassicalRefiner(method, config), method, barrier

    def refine_result(self, image: np.ndarray, result: InspectionResult) -> InspectionResult:
        self.barrier.wait()
        return self.refiner.refine_result(image, result)


def test_the_refiners_refine_each_image_at_once_with_the_masks_of_one_after_the_other(
    tmp_path: Path,
) -> None:
    """The choice ran GrabCut and random walker one after the other on each NG image (2.2 s of
    GrabCut and ~1.8 s of random walker for brick's two bundles, one core busy of two)."""
    samples, maps = blob_samples(tmp_path, threshold=0.2, n=4)
    config = RefineConfig(classical=ClassicalConfig(sure_bg_fraction=0.9))
    alone = {name: ClassicalRefiner(name, config) for name in CANDIDATES}
    barrier = threading.Barrier(len(CANDIDATES), timeout=20)
    meeting = {name: MeetingRefiner(name, config, barrier) for name in CANDIDATES}
    apart = evaluate_refiners(maps, samples, alone, with_aupro=False)
    together = evaluate_refiners(maps, samples, meeting, with_aupro=False, workers=2)
    assert not barrier.broken  # every image refined by both at once
    for name in ("raw", *CANDIDATES):
        assert together["methods"][name]["quality"] == apart["methods"][name]["quality"]
        assert together["methods"][name]["mask_sources"] == apart["methods"][name]["mask_sources"]
    assert apart["methods"]["grabcut"]["quality"] != apart["methods"]["raw"]["quality"]
    with pytest.raises(threading.BrokenBarrierError):  # one after the other: they never meet
        evaluate_refiners(
            maps, samples[:1], {name: MeetingRefiner(name, config, threading.Barrier(2, timeout=1))
                                for name in CANDIDATES}, with_aupro=False,
        )  # fmt: skip


def test_no_refiner_unless_it_beats_raw_by_min_gain(tmp_path: Path) -> None:
    samples, maps = blob_samples(tmp_path, threshold=0.2)
    choice, _ = choose_refiner(maps, samples, min_gain=1.0)
    assert choice.method == "none" and choice.min_gain == 1.0 and "raw" in choice.pixel_f1


def test_no_labelled_defects_means_no_refiner(tmp_path: Path) -> None:
    good = [Sample(tmp_path / "good.png", 0, "good", None)]
    choice, results = choose_refiner(StoredMaps(), good)
    assert choice.method == "none" and choice.images == 0 and results == {}


def test_12_bit_images_are_measured_as_the_bundle_reads_them(tmp_path: Path) -> None:
    """The choice read every image at 16 bits (the high byte: near black for 12-bit camera
    files), so an export of an ``image_bits: 12`` product chose on images it never serves."""
    samples, maps = blob_samples(tmp_path, threshold=0.2)
    deep, grey_maps = [], StoredMaps()
    for sample in samples:
        image = cv2.cvtColor(cv2.imread(str(sample.path)), cv2.COLOR_BGR2RGB)
        grey = image[..., 0]  # the 12-bit file's 8-bit reading, replicated as a grey file is
        grey_maps.results[np.repeat(grey[..., None], 3, axis=2).tobytes()] = maps.results[
            image.tobytes()
        ]
        path = sample.path.with_name(f"{sample.path.stem}-12bit.png")
        cv2.imwrite(str(path), grey.astype(np.uint16) << 4)
        deep.append(Sample(path, 1, "blob", sample.mask_path))
    config = RefineConfig(classical=ClassicalConfig(sure_bg_fraction=0.9))
    choice, _ = choose_refiner(grey_maps, deep, config=config, bits=12)
    assert choice.images == 3 and choice.method != "none"
    with pytest.raises(KeyError):  # read at 16 bits: images no bundle of the product sees
        choose_refiner(grey_maps, deep, config=config)


@pytest.mark.slow
def test_export_records_the_choice_and_the_station_applies_it(fp32_bundle: Path) -> None:
    inspector = Inspector.from_bundle(fp32_bundle, refiner="bundle")
    choice = inspector.metadata.refinement
    assert choice is not None and choice.split == "validation" and choice.images > 0
    assert "raw" in choice.pixel_f1
    if choice.method == "none":
        assert inspector.refiner is None
    else:
        assert inspector.refiner is not None and inspector.refiner.name == choice.method
    assert Inspector.from_bundle(fp32_bundle).refiner is None  # opt-in: tuning, gates


def test_images_under_the_budget_are_measured_exactly_as_without_one(tmp_path: Path) -> None:
    samples, maps = blob_samples(tmp_path, threshold=0.2)  # 96 px: under the 512 px budget
    config = RefineConfig(classical=ClassicalConfig(sure_bg_fraction=0.9))
    budgeted, results = choose_refiner(maps, samples, config=config)
    native, native_results = choose_refiner(maps, samples, config=config, max_side=None)
    assert budgeted.max_side == CHOICE_MAX_SIDE and native.max_side is None
    assert budgeted.method == native.method and budgeted.pixel_f1 == native.pixel_f1
    for name, entry in results["methods"].items():
        assert entry["quality"] == native_results["methods"][name]["quality"]


def test_images_over_the_budget_are_measured_resized(tmp_path: Path) -> None:
    samples, maps = blob_samples(tmp_path, threshold=0.2)
    config = RefineConfig(classical=ClassicalConfig(sure_bg_fraction=0.9))
    native, _ = choose_refiner(maps, samples, config=config, max_side=None)
    small, results = choose_refiner(maps, samples, config=config, max_side=48)
    assert small.max_side == 48 and results["max_side"] == 48 and "<= 48 px" in small.describe()
    assert small.pixel_f1 != native.pixel_f1  # measured on other pixels
    assert small.pixel_f1["raw"] == pytest.approx(native.pixel_f1["raw"], abs=0.1)
    assert native.method != "none" and small.method != "none"  # refining still helps at 48 px
