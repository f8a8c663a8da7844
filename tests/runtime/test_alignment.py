"""Part alignment: recovers a known shift/rotation, refuses unrelated or displaced images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.core.alignment import AlignmentSpec
from inspection.core.config import from_mapping
from inspection.core.errors import AlignmentError, ConfigError
from inspection.core.roi import RoiSpec
from inspection.data import hires
from inspection.runtime.alignment import Aligner

SIZE = 384


@pytest.fixture(scope="module")
def aligner() -> Aligner:
    reference, _ = hires.render_plate(SIZE, (0, 99, 0, 0, 0), None, jitter=False)
    roi = from_mapping(RoiSpec, {"reference_size": [SIZE, SIZE], **hires.plate_roi(SIZE)})
    return Aligner(reference, AlignmentSpec(working_size=256), roi)


def _corners_error(found: np.ndarray, truth: np.ndarray) -> float:
    corners = np.asarray([[0, 0, 1], [SIZE, 0, 1], [0, SIZE, 1], [SIZE, SIZE, 1]], float).T
    return float(np.abs(found @ corners - truth @ corners).max())


@pytest.mark.parametrize("index", [0, 1, 2])
def test_recovers_the_pose_of_another_jittered_plate(aligner: Aligner, index: int) -> None:
    seed = (0, 98, 0, 0, index)
    image, _ = hires.render_plate(SIZE, seed, None)
    found = aligner.register(image)
    assert found.correlation > 0.8
    assert _corners_error(found.matrix, hires.plate_pose(SIZE, seed)) < 1.5  # pixels


def test_aligned_image_matches_the_reference_frame(aligner: Aligner) -> None:
    truth = hires.pose_matrix(SIZE, 9.0, -6.0, 2.0)  # beyond the generator's jitter
    reference, _ = hires.render_plate(SIZE, (0, 99, 0, 0, 0), None, jitter=False)
    moved = cv2.warpAffine(reference, truth, (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE)
    aligned = aligner.align(moved)
    include = np.asarray(hires.plate_roi(SIZE)["include"][0], np.int32)
    inside = cv2.fillPoly(np.zeros((SIZE, SIZE), np.uint8), [include], 1) > 0
    before = np.abs(moved.astype(int) - reference.astype(int)).mean(axis=2)[inside].mean()
    after = np.abs(aligned.astype(int) - reference.astype(int)).mean(axis=2)[inside].mean()
    assert after < before / 3


def test_unrelated_image_is_an_alignment_error(aligner: Aligner) -> None:
    from skimage import data

    unrelated = cv2.resize(data.astronaut(), (SIZE, SIZE))
    with pytest.raises(AlignmentError, match=r"does not match|did not converge|out of position"):
        aligner.register(unrelated)


def test_out_of_bounds_transform_is_an_alignment_error() -> None:
    reference, _ = hires.render_plate(SIZE, (0, 99, 0, 0, 0), None, jitter=False)
    tight = Aligner(reference, AlignmentSpec(working_size=256, max_rotation=0.5))
    moved = cv2.warpAffine(reference, hires.pose_matrix(SIZE, 0.0, 0.0, 3.0), (SIZE, SIZE))
    with pytest.raises(AlignmentError, match=r"out of position|does not match"):
        tight.register(moved)


def test_other_aspect_is_refused_other_resolution_aligns(aligner: Aligner) -> None:
    with pytest.raises(AlignmentError, match="full frame"):
        aligner.register(np.zeros((100, 150, 3), np.uint8))
    seed = (0, 98, 0, 0, 1)
    image, _ = hires.render_plate(SIZE, seed, None)
    half = cv2.resize(image, (SIZE // 2, SIZE // 2), interpolation=cv2.INTER_AREA)
    truth = hires.plate_pose(SIZE, seed)
    truth[:, 2] /= 2  # the same pose in half-size pixels
    found = aligner.register(half)
    corners = np.asarray([[0, 0, 1], [SIZE / 2, SIZE / 2, 1]], float).T
    assert float(np.abs(found.matrix @ corners - truth @ corners).max()) < 1.5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"motion": "homography"}, "must be one of"),
        ({"min_correlation": 1.5}, "min_correlation"),
        ({"working_size": 10}, "working_size"),
        ({"max_shift": 0}, "max_shift"),
    ],
)
def test_bad_specs_are_rejected(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(AlignmentSpec, data, where="alignment")
