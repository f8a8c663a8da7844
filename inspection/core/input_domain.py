"""The input domain of a bundle: what its training images looked like, and the rule that
refuses an image unlike them (an error, never a verdict), since a model scores whatever it is
given. Export records it (``measure_input_domain``); the station holds every image against it
(``InputDomain.problems``):

- **colour**: an all-grey bundle converts colour input to grey, an all-colour one refuses a
  grey image, ``"mixed"`` neither.
- **aspect ratio**: refused beyond ``aspect_tolerance`` outside the training range.
- **bit depth**: a 16-bit grey file beyond ``image_bits``, or 4+ bits below (``bit_depth_problem``).
- **size**: a shorter side below ``min_side_fraction`` of the training one and, unless tiled,
  below the model input's (a station's own reduced copy, ``work_side`` long, is not held to it).
- **intensities** (gain, exposure, swapped red and blue): the Wasserstein-1 distance of each
  channel's and the red-green and blue-green differences' quantile functions from the training
  images' mean, refused beyond ``histogram_margin`` times their own spread
  (``IntensityReference``). A tint defect alone is the model's to judge, not refused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np

from inspection.core.errors import InputDomainError
from inspection.core.images import (
    DEFAULT_SOURCE_BITS,
    READERS,
    DecodedImage,
    probe_image,
    read_image,
)

log = logging.getLogger(__name__)
ColourMode = Literal["grey", "colour", "mixed"]
InputCheck = Literal["refuse", "warn", "off"]
"""What a station does with an image outside its bundle's input domain."""
INPUT_CHECKS: tuple[InputCheck, ...] = get_args(InputCheck)

GREY_SPREAD = 1.0
"""An image whose ``channel_spread`` is at most this (uint8 levels) is grey (a grey scene
through a colour JPEG stays below 1)."""
CLEAR_COLOUR_SPREAD = 4.0
"""A bundle is trained on colour images when every measured image spreads at least this much."""
ASPECT_TOLERANCE = 0.15
"""Default relative margin of width / height outside the training range: 5:4 under a
4:3-trained bundle passes, 16:9 does not."""
MAX_ASPECT_TOLERANCE = 1.0
"""The loosest aspect tolerance a product may set: half to twice the training range."""
MIN_SIDE_FRACTION = 0.5
"""By default an image's shorter side may be down to this fraction of the smallest training one."""
NARROW_BITS = 4
"""A 16-bit grey image this many bits narrower than declared reads almost black."""
COLOUR_SAMPLE = 64
"""Training images export measures colour and intensities on (evenly picked)."""
HISTOGRAM_MARGIN = 2.0
"""Default times the training images' own spread an image's intensities may lie from them."""
HISTOGRAM_FLOOR = 2.0
"""The smallest intensity distance refused (uint8 levels): two levels are no camera change."""
QUANTILE_LEVELS = 32
_LEVELS = (np.arange(QUANTILE_LEVELS) + 0.5) / QUANTILE_LEVELS
_PICKED_SIDE = 128
_CELLS_SIDE = 32


@dataclass(frozen=True)
class DomainTolerance:
    """How far a product's images may lie outside its training images' (``input_domain:``);
    ``histogram_margin`` 0: no intensity check."""

    aspect_tolerance: float = ASPECT_TOLERANCE
    min_side_fraction: float = MIN_SIDE_FRACTION
    histogram_margin: float = HISTOGRAM_MARGIN

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
        margin = self.histogram_margin
        if not (_is_number(margin) and (margin == 0 or margin >= 1)):
            raise ValueError(
                "histogram_margin: must be 0 (no intensity check) or at least 1 (times the "
                f"training images' own spread), got {margin!r}"
            )

    def describe(self) -> str:
        """E.g. ``aspect within 40 %, shorter side down to 50 %``."""
        return (
            f"aspect within {_percent(self.aspect_tolerance)}, shorter side down to "
            f"{_percent(self.min_side_fraction)}, intensities within "
            f"{self.histogram_margin:g} x the training spread"
        )


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.3g} %"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class IntensityReference:
    """The training images' intensities per row of ``intensity_quantiles``: ``quantiles``, the
    mean of ``images`` images' quantile functions (their Wasserstein barycentre); ``spread``,
    per row, the farthest one of them lies from the mean of the others."""

    quantiles: tuple[tuple[float, ...], ...]
    spread: tuple[float, ...]
    images: int

    def __post_init__(self) -> None:
        shape = np.shape(self.quantiles)
        if shape not in ((len(COLOUR_ROWS), QUANTILE_LEVELS), (1, QUANTILE_LEVELS)):
            raise ValueError(
                f"quantiles must be {len(COLOUR_ROWS)} rows (colour) or 1 (grey) of "
                f"{QUANTILE_LEVELS} levels, got {shape}"
            )
        spread = np.asarray(self.spread, float)
        if spread.shape != shape[:1] or not (np.isfinite(spread).all() and (spread >= 0).all()):
            raise ValueError(f"spread must be {shape[0]} values >= 0, got {self.spread!r}")
        if self.images < 1:
            raise ValueError(f"images must be >= 1, got {self.images!r}")

    def limits(self, margin: float) -> np.ndarray:
        """(rows,) the largest distance accepted per row at ``margin`` times its spread."""
        return np.maximum(HISTOGRAM_FLOOR, margin * np.asarray(self.spread, np.float32))

    def problem(
        self, image: np.ndarray, margin: float, cause: Callable[[], str | None] = lambda: None
    ) -> str | None:
        """Why (H, W, 3) uint8 RGB ``image``'s intensities are unlike the training images'
        at ``margin`` (None: alike); ``cause``, asked only for an image refused: the likely
        cause to say instead of a changed camera (None: that one)."""
        reference, limits = np.asarray(self.quantiles, np.float32), self.limits(margin)
        grey = reference.shape[0] == 1
        own = intensity_quantiles(image, grey=grey)
        far = distances(own, reference)
        over = far > limits
        swapped = (
            not grey
            and bool(over[3:].any())
            and bool((distances(_swapped(own), reference) <= limits).all())
        )
        if not (swapped or over[:3].any()):
            return None
        rows = np.arange(3, 5) if swapped else np.arange(min(3, far.size))  # what refused it
        worst = int(rows[np.argmax(far[rows] / limits[rows])])
        said = (
            "its red and blue channels are swapped (BGR sent for RGB): fix the channel order "
            "in the camera or its driver"
            if swapped
            else (
                cause()
                or "a camera's gain, exposure or lighting changed? Set it back; if the line "
                "really changed, train again"
            )
        )
        row = (GREY_ROWS if grey else COLOUR_ROWS)[worst]
        return (
            f"image intensities unlike the training images' ({row} histogram distance "
            f"{far[worst]:.1f} levels, training images within {self.spread[worst]:.1f} of each "
            f"other, accepted up to {limits[worst]:.1f}): {said}"
        )


COLOUR_ROWS = ("red", "green", "blue", "red-green", "blue-green")
GREY_ROWS = ("luma",)


def intensity_quantiles(image: np.ndarray, *, grey: bool = False) -> np.ndarray:
    """(rows, QUANTILE_LEVELS) float32 quantiles, in uint8 levels, of (H, W, 3) uint8 RGB
    ``image``'s ``COLOUR_ROWS`` (differences as (a - b) / 2 + 128) or, when ``grey``, its
    luma, over up to 128x128 pixels picked evenly."""
    picked = _picked(image, _PICKED_SIDE, cv2.INTER_NEAREST)
    if grey:
        planes = [cv2.cvtColor(picked, cv2.COLOR_RGB2GRAY)]
    else:
        red, green, blue = cv2.split(picked)
        differences = (cv2.addWeighted(c, 0.5, green, -0.5, 128) for c in (red, blue))
        planes = [red, green, blue, *differences]
    return np.stack([_quantiles(plane) for plane in planes])


def _picked(image: np.ndarray, side: int, interpolation: int) -> np.ndarray:
    """``image`` resized to at most ``side`` x ``side`` (``image`` itself when it fits)."""
    height, width = image.shape[:2]
    if height <= side and width <= side:
        return image
    return cv2.resize(image, (min(width, side), min(height, side)), interpolation=interpolation)


def _quantiles(plane: np.ndarray) -> np.ndarray:
    counts = cv2.calcHist([plane], [0], None, [256], [0, 256]).ravel()
    cumulative = np.cumsum(counts)
    return np.searchsorted(cumulative, _LEVELS * cumulative[-1]).astype(np.float32)


def _swapped(rows: np.ndarray) -> np.ndarray:
    """``COLOUR_ROWS`` quantiles of the image with red and blue exchanged."""
    return rows[[2, 1, 0, 4, 3]]


def distances(quantiles: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(rows,) Wasserstein-1 distances of (rows, Q) ``quantiles`` from (rows, Q) ``reference``
    (uint8 levels): the mean absolute difference of the quantile functions."""
    return np.abs(quantiles - reference).mean(axis=1)


def intensity_reference(quantiles: Sequence[np.ndarray]) -> IntensityReference:
    """The ``IntensityReference`` of training images' (rows, Q) ``intensity_quantiles``."""
    stack = np.stack(quantiles).astype(np.float64)  # (N, rows, Q)
    total, n = stack.sum(axis=0), len(stack)
    spread = np.zeros(stack.shape[1])
    for own in stack if n > 1 else ():
        spread = np.maximum(spread, distances(own, (total - own) / (n - 1)))
    mean = (total / n).round(3)
    return IntensityReference(tuple(map(tuple, mean.tolist())), tuple(spread.round(3).tolist()), n)


@dataclass(frozen=True)
class InputDomain:
    """What a bundle's images were: (lowest, highest) of each measure over ``images`` images,
    ``colour_images`` of them measured for colour; ``intensity`` None: not checked;
    ``largest_pixels`` and ``largest_file_bytes``: of the largest image and file (None: not
    recorded, bundles exported before), held against a station's limits."""

    colour: ColourMode
    channel_spread: tuple[float, float]
    height: tuple[int, int]
    width: tuple[int, int]
    aspect: tuple[float, float]
    images: int
    colour_images: int
    tolerance: DomainTolerance = field(default_factory=DomainTolerance)
    intensity: IntensityReference | None = None
    largest_pixels: int | None = None
    largest_file_bytes: int | None = None

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
        if self.intensity is not None:
            text += f", intensities within {max(self.intensity.spread):.1f} levels of each other"
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
        # both measures pick the same pixels first: pick them once (picking a picked copy
        # again is the identity, so the measures are the same)
        picked = _picked(image, _PICKED_SIDE, cv2.INTER_NEAREST)
        found = []
        if self.colour == "colour":
            spread = channel_spread(picked)
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
        margin = self.tolerance.histogram_margin
        if self.intensity is not None and margin > 0:
            colour = partial(self._colour_under_grey, picked)  # only for an image refused
            found.append(self.intensity.problem(picked, margin, colour))
        return tuple(problem for problem in found if problem is not None)

    def _colour_under_grey(self, picked: np.ndarray) -> str | None:
        """Why a colour image's grey copy may read unlike a grey bundle's images (None: the
        bundle is not grey, or the image is not clearly colour)."""
        if self.colour != "grey" or (spread := channel_spread(picked)) < CLEAR_COLOUR_SPREAD:
            return None
        return (
            f"it is a colour image (channel spread {spread:.1f}), judged in grey by a bundle "
            "trained on grey images: send the camera's grey (mono) frames, or train on colour"
        )


def _span(pair: tuple[float, float], spec: str) -> str:
    low, high = pair
    return f"{low:{spec}}" if f"{low:{spec}}" == f"{high:{spec}}" else f"{low:{spec}}-{high:{spec}}"


def channel_spread(image: np.ndarray) -> float:
    """How colourful an (H, W, 3) uint8 image is, in uint8 levels: the mean channel spread
    (max - min) over up to 32x32 cells each averaging 4x4 pixels picked evenly; 0 for grey.
    Noise averages out in a cell, so a reduced copy measures as its original."""
    picked = _picked(image, _PICKED_SIDE, cv2.INTER_NEAREST)
    cells = _picked(picked, _CELLS_SIDE, cv2.INTER_AREA)
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
    *,
    training: Sequence[Path] = (),
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> InputDomain:
    """The domain of image files: sizes from the headers of ``size_paths``, colour from the
    decoded ``colour_paths`` (a subset), intensities from those of them in ``training`` (none:
    not recorded) read at ``bits`` and ``value_range``, with the product's ``tolerance``
    (None: defaults)."""
    if not size_paths or not colour_paths:
        raise ValueError("an input domain needs at least one image to measure")
    sizes = [probe_image(path) for path in size_paths]  # (width, height)
    file_bytes = [Path(path).stat().st_size for path in size_paths]
    trained = set(training)

    def measured(path: Path) -> tuple[float, tuple[np.ndarray, np.ndarray] | None]:
        """``path``'s channel spread and, for a training image, its (grey, colour) quantiles."""
        image = read_image(path, bits=bits, value_range=value_range)
        rows = None
        if path in trained:
            rows = (intensity_quantiles(image, grey=True), intensity_quantiles(image))
        return channel_spread(image), rows

    with ThreadPoolExecutor(READERS) as pool:  # decoding releases the GIL
        spreads, of_training = zip(*pool.map(measured, colour_paths), strict=True)
    quantiles = [rows for rows in of_training if rows is not None]
    colour = colour_mode(spreads)
    widths = [w for w, _ in sizes]
    heights = [h for _, h in sizes]
    aspects = [w / h for w, h in sizes]
    return InputDomain(
        colour=colour,
        channel_spread=(round(min(spreads), 3), round(max(spreads), 3)),
        height=(min(heights), max(heights)),
        width=(min(widths), max(widths)),
        aspect=(math.floor(min(aspects) * 1e6) / 1e6, math.ceil(max(aspects) * 1e6) / 1e6),
        images=len(sizes),
        colour_images=len(spreads),
        tolerance=tolerance or DomainTolerance(),
        intensity=intensity_reference([rows[colour != "grey"] for rows in quantiles])
        if quantiles
        else None,
        largest_pixels=max(w * h for w, h in sizes),
        largest_file_bytes=max(file_bytes),
    )


def input_check_mode(value: object) -> InputCheck:
    """``value`` as an ``InputCheck``; ``ValueError`` naming the valid ones otherwise."""
    if value not in INPUT_CHECKS:
        raise ValueError(f"input_check must be one of {', '.join(INPUT_CHECKS)}, got {value!r}")
    return value  # type: ignore[return-value]


def bit_depth_problem(peak: int | None, bits: int) -> str | None:
    """Why a 16-bit grey image whose highest raw value is ``peak`` does not fit a bundle read
    at ``bits`` (``image_bits``); None: it fits, or it is not 16-bit grey (``peak`` None)."""
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
