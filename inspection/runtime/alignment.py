"""Part alignment (torch-free): register an image to the product's reference with OpenCV's ECC.

Both images are reduced to ``working_size``, made grey and compared only within the reference's
ROI (grown by ``mask_margin``), so the part steers the search, not fixture clutter. A failed
search or a transform beyond the spec's limits raises ``AlignmentError``: never a verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from inspection.core.alignment import AlignmentSpec
from inspection.core.errors import AlignmentError
from inspection.core.roi import RoiSpec

_MOTIONS = {
    "translation": cv2.MOTION_TRANSLATION,
    "euclidean": cv2.MOTION_EUCLIDEAN,
    "affine": cv2.MOTION_AFFINE,
}
_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)


@dataclass(frozen=True)
class Alignment:
    """One registration: (2, 3) ``matrix`` from reference to image pixels, the ECC value,
    the centre's shift (px) and the rotation (degrees)."""

    matrix: np.ndarray
    correlation: float
    shift: float
    rotation: float


class Aligner:
    """Registers images of one product to its reference (an (H, W, 3) uint8 RGB image)."""

    def __init__(self, reference: np.ndarray, spec: AlignmentSpec, roi: RoiSpec | None = None):
        if reference.ndim != 3 or reference.shape[2] != 3 or reference.dtype != np.uint8:
            raise ValueError(
                f"reference must be (H, W, 3) uint8 RGB, got {reference.shape} {reference.dtype}"
            )
        self.spec = spec
        self.size = reference.shape[:2]
        self._scale = spec.working_size / max(self.size)
        self._template = self._grey(reference)
        self._mask = self._template_mask(roi)

    def _grey(self, image: np.ndarray) -> np.ndarray:
        height, width = self.size
        small = (max(8, round(width * self._scale)), max(8, round(height * self._scale)))
        grey = cv2.cvtColor(
            cv2.resize(image, small, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY
        )
        return grey.astype(np.float32)

    def _template_mask(self, roi: RoiSpec | None) -> np.ndarray:
        shape = self._template.shape
        if roi is None:
            return np.full(shape, 255, np.uint8)
        inside = roi.mask(*shape).astype(np.uint8)
        grow = round(self.spec.mask_margin * max(shape))
        if roi.include:  # the part's outline, not its excluded holes, bounds the search
            inside = RoiSpec(roi.reference_size, include=roi.include).mask(*shape).astype(np.uint8)
        if grow > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
            inside = cv2.dilate(inside, kernel)
        return inside * 255

    def register(self, image: np.ndarray) -> Alignment:
        """Find the transform of ``image`` (the reference's frame at any resolution)."""
        height, width = image.shape[:2]
        if abs(width / height - self.size[1] / self.size[0]) > 0.01:
            raise AlignmentError(
                f"image is {width}x{height} but the reference is {self.size[1]}x{self.size[0]}: "
                "alignment needs the camera's full frame"
            )
        warp = np.eye(2, 3, dtype=np.float32)
        moving = self._grey(image)
        try:
            correlation, warp = cv2.findTransformECCWithMask(
                self._template, moving, self._mask, None, warp,
                _MOTIONS[self.spec.motion], _CRITERIA, 5,
            )  # fmt: skip
        except cv2.error as exc:
            raise AlignmentError(f"alignment to the reference did not converge: {exc.err}") from exc
        full = warp.astype(np.float64)
        full[:, 2] *= max(height, width) / self.spec.working_size
        rotation = float(math.degrees(math.atan2(full[1, 0], full[0, 0])))
        result = Alignment(full, float(correlation), _centre_shift(full, (height, width)), rotation)
        self._check(result, (height, width))
        return result

    def _check(self, found: Alignment, size: tuple[int, int]) -> None:
        spec = self.spec
        if found.correlation < spec.min_correlation:
            raise AlignmentError(
                f"image does not match the reference: correlation {found.correlation:.3f} "
                f"< {spec.min_correlation} (wrong part, missing part or a blocked view?)"
            )
        limit = spec.max_shift * max(size)
        if found.shift > limit or abs(found.rotation) > spec.max_rotation:
            raise AlignmentError(
                f"part is out of position: shifted {found.shift:.1f} px (limit {limit:.1f}) and "
                f"rotated {found.rotation:.2f} deg (limit {spec.max_rotation})"
            )

    def align(self, image: np.ndarray) -> np.ndarray:
        return self.align_with_matrix(image)[0]

    def align_with_matrix(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = self.register(image)
        return to_reference(image, found.matrix), found.matrix


def to_reference(image: np.ndarray, matrix: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """Camera image warped into the reference frame by ``matrix`` (reference -> camera)."""
    height, width = image.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warp = np.asarray(matrix, dtype=np.float64).reshape(2, 3)
    return cv2.warpAffine(
        image, warp, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )


def _centre_shift(matrix: np.ndarray, size: tuple[int, int]) -> float:
    centre = np.asarray([size[1] / 2, size[0] / 2, 1.0])
    moved = matrix @ centre
    return float(math.hypot(moved[0] - centre[0], moved[1] - centre[1]))
