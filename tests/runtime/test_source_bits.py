"""Stations decode 16-bit files at their bundle's ``preprocessing.source_bits``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from inspection.core.bundle import Preprocessing
from inspection.runtime.bounds import CameraOptions, Reading
from inspection.runtime.paths import iter_paths

TWELVE_BIT = (np.arange(96 * 96, dtype=np.uint16).reshape(96, 96) % 4096).astype(np.uint16)


@dataclass
class SeeingInspector:
    """Records the images it is given; refuses each (a string outcome: no result needed)."""

    metadata: object
    camera: CameraOptions = field(default_factory=CameraOptions)
    input_check: str = "refuse"
    seen: list[np.ndarray] = field(default_factory=list)

    def inspect_batch(self, images: list[np.ndarray]) -> list[str]:
        self.seen.extend(images)
        return ["seen"] * len(images)


def _metadata(bits: int) -> object:
    prep = Preprocessing((64, 64), (0.5,) * 3, (0.25,) * 3, source_bits=bits)
    return SimpleNamespace(preprocessing=prep, tiling=None)


def test_the_reading_is_the_bundles() -> None:
    assert Reading.of(SeeingInspector(_metadata(12))) == Reading(1024, 12, None)
    assert Reading.of(SeeingInspector(_metadata(16))).bits == 16


def test_a_12_bit_frame_under_a_12_bit_bundle_is_seen_as_its_8_bit_equivalent(
    tmp_path: Path,
) -> None:
    deep, eight = tmp_path / "deep.png", tmp_path / "eight.png"
    cv2.imwrite(str(deep), TWELVE_BIT)
    cv2.imwrite(str(eight), (TWELVE_BIT >> 4).astype(np.uint8))
    twelve = SeeingInspector(_metadata(12))
    list(iter_paths(twelve, [deep, eight]))
    assert np.array_equal(twelve.seen[0], twelve.seen[1])
    assert twelve.seen[0].max() == 255
    old = SeeingInspector(_metadata(16))  # a bundle without the setting: the camera is refused
    (refused,) = iter_paths(old, [deep])
    assert refused.refused and refused.error.startswith("wrong camera bit depth")
    assert old.seen == []
    judged = SeeingInspector(_metadata(16), input_check="warn")  # judged anyway: the high byte
    list(iter_paths(judged, [deep]))
    assert judged.seen[0].max() == 15
