"""The input domain of a bundle: what its training images looked like, and the rule that
refuses an image unlike them (an error, never a verdict).

A model scores whatever it is given (a grey part under a colour-trained model, a thumbnail, a
16:9 frame squashed square) and the score means nothing. So export records the colour and
sizes of the version's images (``measure_input_domain``: sizes of all, colour of the held-out
ones and up to ``COLOUR_SAMPLE`` training ones, so its own images are never refused) and the
station holds every image against them (``InputDomain.problems``):

- **colour**: an all-grey bundle converts colour input to grey as the decoder turns a grey
  file into RGB (``core.images.grey_replicated``); an all-clearly-colour bundle refuses a grey
  image; ``"mixed"`` neither converts nor refuses.
- **aspect ratio** (width / height): refused beyond ``aspect_tolerance`` outside the range.
- **bit depth**: a 16-bit grey file whose values go beyond the bundle's ``source_bits`` (the
  product's ``image_bits``), or all lie 4 or more bits below them (read almost black), comes
  from a camera set to another bit depth (``bit_depth_problem``).
- **size**: refused when the shorter side is below ``min_side_fraction`` of the smallest
  training one *and*, unless tiled, below the model input's. An image as long as the
  station's ``work_side`` may be its own reduced copy of a camera frame: not held to it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np

from inspection.core.errors import InputDomainError
from inspection.core.images import DecodedImage, probe_image, read_image

log = logging.getLogger(__name__)
ColourMode = Literal["grey", "colour", "mixed"]
InputCheck = Literal["refuse", "warn", "off"]
"""What a station does with an image outside its bundle's input domain: refuse it (an error,
never a verdict), judge it and record a warning, or not check."""
INPUT_CHECKS: tuple[InputCheck, ...] = get_args(InputCheck)

GREY_SPREAD = 1.0
"""An image whose ``channel_spread`` is at most this (uint8 levels) is grey: exactly 0 for a
mono camera or a grey file, below 1 for a grey scene saved through a colour JPEG."""
CLEAR_COLOUR_SPREAD = 4.0
"""A bundle is trained on colour images when every measured image spreads at least this much
(four times the grey limit: no colour part of such a product is taken for grey)."""
ASPECT_TOLERANCE = 0.15
"""How far (relative) an image's width / height may lie outside the training range by
default: a 5:4 camera under a 4:3-trained bundle passes (6.7 %), 16:9 (33 %) does not."""
MAX_ASPECT_TOLERANCE = 1.0
"""The loosest aspect tolerance a product may set: half to twice the training range."""
MIN_SIDE_FRACTION = 0.5
"""By default an image's shorter side may be down to this fraction of the smallest training one."""
NARROW_BITS = 4
"""A 16-bit grey image whose values use this many bits fewer than declared reads as at most
16 grey levels: almost black, a camera writing fewer bits than the product declares."""
COLOUR_SAMPLE = 64
_PICKED_SIDE = 128
_CELLS_SIDE = 32


@dataclass(frozen=True)
class DomainTolerance:
    """How far a product's images may lie outside its training images' (``input_domain:``):
    ``aspect_tolerance``, the relative margin each side of the training aspect range (0 to
    ``MAX_ASPECT_TOLERANCE``), and ``min_side_fraction`` of the smallest training shorter side."""

    aspect_tolerance: float = ASPECT_TOLERANCE
    min_side_fraction: float = MIN_SIDE_FRACTION

    def __post_init__(self) -> None:
        aspect, side = self.aspect_tolerance, self.min_side_fraction
        if not (_is_number(aspect) and 0 <= aspect <= MAX_ASPECT_TOLERANCE):
            raise ValueError(
                f"aspect_tolerance: must be from 0 to {MAX_ASPECT_TOLERANCE:g} (0 % to "
                f"{_percent(MAX_ASPECT_TOLERANCE)} beyond the training aspect range), got "
                f"{aspect!r}"
            )
        if not (_is_number(side) and 0 < side <= 1):
            raise ValueError(
                "min_side_fraction: must be above 0 and at most 1 (of the smallest training "
                f"image's shorter side), got {side!r}"
            )

    def describe(self) -> str:
        """E.g. ``aspect within 40 %, shorter side down to 50 %``."""
        return (
            f"aspect within {_percent(self.aspect_tolerance)}, shorter side down to "
            f"{_percent(self.min_side_fraction)}"
        )


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.3g} %"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class InputDomain:
    """What a bundle's images were: ``colour`` mode and (lowest, highest) ``channel_spread``,
    ``height``, ``width`` (px) and ``aspect`` (width / height) over ``images`` images,
    ``colour_images`` of them measured for colour; ``tolerance`` (defaults in older bundles)."""

    colour: ColourMode
    channel_spread: tuple[float, float]
    height: tuple[int, int]
    width: tuple[int, int]
    aspect: tuple[float, float]
    images: int
    colour_images: int
    tolerance: DomainTolerance = field(default_factory=DomainTolerance)

    def __post_init__(self) -> None:
        if self.colour not in get_args(ColourMode):
            raise ValueError(f"colour must be one of {get_args(ColourMode)}, got {self.colour!r}")
        if self.images < 1 or not 1 <= self.colour_images <= self.images:
            raise ValueError(
                f"images must be >= 1 and colour_images in 1..images, got {self.images} and "
                f"{self.colour_images}"
            )
        for name in ("channel_spread", "height", "width", "aspect"):
            low, high = getattr(self, name)
            if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
                raise ValueError(
                    f"{name} must be (low, high) with 0 <= low <= high, got {(low, high)}"
                )
        if min(self.height[0], self.width[0]) < 1 or self.aspect[0] <= 0:
            raise ValueError(
                f"sizes must be >= 1 px and aspect > 0, got height {self.height}, width "
                f"{self.width}, aspect {self.aspect}"
            )
        low, high = self.channel_spread
        if (self.colour == "grey" and high > GREY_SPREAD) or (
            self.colour == "colour" and low < CLEAR_COLOUR_SPREAD
        ):
            raise ValueError(
                f"colour {self.colour!r} contradicts channel_spread {self.channel_spread} (grey: "
                f"at most {GREY_SPREAD}, colour: at least {CLEAR_COLOUR_SPREAD})"
            )

    def describe(self) -> str:
        text = (
            f"{self.colour} images (channel spread {_span(self.channel_spread, '.1f')}), "
            f"{_span(self.width, 'd')} x {_span(self.height, 'd')} px, aspect "
            f"{_span(self.aspect, '.2f')}, over {self.images} images"
        )
        if self.tolerance != DomainTolerance():
            text += f"; accepted: {self.tolerance.describe()}"
        return text

    def min_side(self, input_size: tuple[int, int], *, tiled: bool) -> int:
        """The smallest shorter side (px) accepted for a model of ``input_size`` (h, w)."""
        fraction = self.tolerance.min_side_fraction
        limit = math.ceil(fraction * min(self.height[0], self.width[0]))
        return limit if tiled else min(limit, *input_size)

    def aspect_range(self) -> tuple[float, float]:
        """(lowest, highest) width / height accepted."""
        low, high = self.aspect
        margin = 1 + self.tolerance.aspect_tolerance
        return low / margin, high * margin

    def problems(
        self,
        image: np.ndarray,
        *,
        input_size: tuple[int, int],
        tiled: bool,
        work_side: int | None = None,
    ) -> tuple[str, ...]:
        """Why (H, W, 3) uint8 RGB ``image`` is outside this domain (empty: inside), each
        saying what the bundle expects and what the image is. ``input_size``, ``tiled``: see
        ``min_side``; ``work_side``: the longer side the station reduces camera images to."""
        height, width = image.shape[:2]
        found = []
        if self.colour == "colour":
            spread = channel_spread(image)
            if spread <= GREY_SPREAD:
                low, high = self.channel_spread
                found.append(
                    f"grey image (its three channels are equal: channel spread {spread:.1f}) but "
                    f"the bundle was trained on colour images (spread {low:.1f}-{high:.1f})"
                )
        aspect = width / height
        low, high = self.aspect_range()
        if not low <= aspect <= high:
            found.append(
                f"image is {width}x{height} (aspect {aspect:.2f}) but the bundle was trained on "
                f"aspect {_span(self.aspect, '.2f')} (accepted {low:.2f}-{high:.2f}): resizing it "
                "to the model input would distort the part"
            )
        least = self.min_side(input_size, tiled=tiled)
        working_copy = work_side is not None and max(height, width) >= work_side
        if min(height, width) < least and not working_copy:
            trained = min(self.height[0], self.width[0])
            found.append(
                f"image is {width}x{height}, shorter side {min(height, width)} px, but the bundle "
                f"needs at least {least} px (its training images' shorter sides are {trained} px "
                "or more)"
            )
        return tuple(found)


def _span(pair: tuple[float, float], spec: str) -> str:
    low, high = pair
    return f"{low:{spec}}" if f"{low:{spec}}" == f"{high:{spec}}" else f"{low:{spec}}-{high:{spec}}"


def channel_spread(image: np.ndarray) -> float:
    """How colourful an (H, W, 3) uint8 image is, in uint8 levels: the mean channel spread
    (max - min) over up to 32x32 cells each averaging 4x4 pixels picked evenly; 0 for grey.
    Noise averages out in a cell, so a reduced copy measures as its original."""
    height, width = image.shape[:2]
    picked = cv2.resize(
        image,
        (min(width, _PICKED_SIDE), min(height, _PICKED_SIDE)),
        interpolation=cv2.INTER_NEAREST,
    )
    cells = cv2.resize(
        picked, (min(width, _CELLS_SIDE), min(height, _CELLS_SIDE)), interpolation=cv2.INTER_AREA
    )
    red, green, blue = cv2.split(cells)
    high = cv2.max(cv2.max(red, green), blue)
    low = cv2.min(cv2.min(red, green), blue)
    return float(cv2.mean(cv2.subtract(high, low))[0])


def colour_mode(spreads: Sequence[float]) -> ColourMode:
    """The colour mode of images with these ``channel_spread`` values."""
    if max(spreads) <= GREY_SPREAD:
        return "grey"
    return "colour" if min(spreads) >= CLEAR_COLOUR_SPREAD else "mixed"


def evenly(paths: Sequence[Path], count: int) -> list[Path]:
    """Up to ``count`` of ``paths`` (sorted), evenly spread: the first, the last, and between."""
    ordered = sorted(paths)
    if len(ordered) <= count:
        return ordered
    picks = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[i] for i in sorted(set(picks.tolist()))]


def measure_input_domain(
    size_paths: Sequence[Path],
    colour_paths: Sequence[Path],
    tolerance: DomainTolerance | None = None,
) -> InputDomain:
    """The domain of image files: sizes from the headers of ``size_paths``, colour from the
    decoded ``colour_paths`` (a subset), with the product's ``tolerance`` (None: defaults)."""
    if not size_paths or not colour_paths:
        raise ValueError("an input domain needs at least one image to measure")
    sizes = [probe_image(path) for path in size_paths]  # (width, height)
    spreads = [channel_spread(read_image(path)) for path in colour_paths]
    widths = [w for w, _ in sizes]
    heights = [h for _, h in sizes]
    aspects = [w / h for w, h in sizes]
    return InputDomain(
        colour=colour_mode(spreads),
        channel_spread=(round(min(spreads), 3), round(max(spreads), 3)),
        height=(min(heights), max(heights)),
        width=(min(widths), max(widths)),
        aspect=(math.floor(min(aspects) * 1e6) / 1e6, math.ceil(max(aspects) * 1e6) / 1e6),
        images=len(sizes),
        colour_images=len(spreads),
        tolerance=tolerance or DomainTolerance(),
    )


def input_check_mode(value: object) -> InputCheck:
    """``value`` as an ``InputCheck``; ``ValueError`` naming the valid ones otherwise."""
    if value not in INPUT_CHECKS:
        raise ValueError(f"input_check must be one of {', '.join(INPUT_CHECKS)}, got {value!r}")
    return value  # type: ignore[return-value]


def bit_depth_problem(peak: int | None, bits: int) -> str | None:
    """Why a 16-bit grey image whose highest raw value is ``peak`` does not fit a bundle read
    at ``bits`` significant bits (``image_bits``): values above ``2**bits - 1``, or all below
    ``2**(bits - NARROW_BITS)``. None: it fits, or the file is not 16-bit grey (``peak`` None)."""
    if peak is None:
        return None
    used = peak.bit_length()
    if used > bits:
        seen = f"values up to {peak} ({used} bits)"
    elif used <= bits - NARROW_BITS:
        seen = (
            f"values all below {2 ** (bits - NARROW_BITS)} (highest {peak}: it reads almost black)"
        )
    else:
        return None
    return (
        f"wrong camera bit depth: 16-bit image with {seen}, but the product reads image_bits: "
        f"{bits} (0..{2**bits - 1}). Set the camera to {bits} bits, or set image_bits in the "
        "product's config to the camera's and train again"
    )


def check_bit_depth(decoded: DecodedImage, bits: int, mode: InputCheck) -> None:
    """``bit_depth_problem`` of ``decoded`` under input-check ``mode``: ``InputDomainError``
    when refusing, a logged warning when warning, nothing when it fits or the check is off."""
    problem = None if mode == "off" else bit_depth_problem(decoded.peak, bits)
    if problem is not None and mode == "refuse":
        raise InputDomainError(problem)
    if problem is not None:
        log.warning("judged anyway (input_check: warn): %s", problem)
