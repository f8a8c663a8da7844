"""The one leak check: is an image that would be trained on a copy of a held-out image?

A copy is the same picture renamed, re-saved (PNG, BMP, a metadata change), re-encoded (JPEG
quality 50 and up) or made slightly brighter or darker; a look-alike part (a solar cell, a PCB,
a label, a regular texture) or a copy with a defect added is not one. Two stages, as
image-deduplication tools pair a perceptual hash with an exact check:

1. Candidates (cheap, in memory): 32x32 grey thumbnails (``pixel_print``) with their mean
   removed, within ``CANDIDATE_LEVELS``. A thumbnail only decides "certainly different": thin
   defects vanish in it and distinct look-alike parts collide.
2. Confirmation at full resolution (``same_picture``), the ``CONFIRMED`` nearest candidates
   decoded again: the 8x8 block means of the grey images after a brightness fit must agree
   within ``BLOCK_LEVELS``. JPEG quantises each 8x8 block's DC coefficient (8 x the block mean)
   with a step of 16 at quality 50 and 8 at 75, so re-encoding moves a block mean by at most
   1 (0.5) grey level whatever the texture, while a per-pixel error reaches 30-50 levels on
   grass or gravel at quality 75. A defect moves the means of the blocks it lies in: a 1 px line
   of contrast c through a block by c/8 (c/16 where it runs along a block border), a stain by
   its depth. ``reports/data/leak_check.md`` has the figures.

``data check``, ``train``, ``train --update`` and ``retrain`` ask it. A trained version keeps
its training images' thumbnails (``TrainPrints``), so that ``train --update`` does not decode
them again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspection.core.errors import DatasetError, ImageDecodeError, RegistryError
from inspection.core.images import DEFAULT_SOURCE_BITS, read_image

THUMB_SIDE = 32
CANDIDATE_LEVELS = 3.0
"""Mean absolute difference (grey levels) of two mean-removed thumbnails within which the pair
is confirmed at full resolution: twice the former rule's 1.5 on raw thumbnails (so it finds at
least every pair that rule found), and a 10 % contrast change of a textured part."""
CONFIRMED = 3
"""Nearest candidates of one image confirmed at full resolution (a copy is the nearest)."""
BLOCK = 8
"""Side of the compared blocks: JPEG's DCT block, so a re-encoding's block means stay put."""
BLOCK_LEVELS = 2.0
"""Largest difference of two copies' 8x8 block means (grey levels): twice the bound JPEG's DC
quantiser puts on it at quality 50 (1 level; 0.5 at 75). Copies' and look-alikes' distances in
these units: ``reports/data/leak_check.md``."""
CLIPPED_LEVELS = 6.0
"""The same for a block holding a pixel at 0 or 255 in either image: the codec's ringing
clipped there biases the mean (measured up to 3.4 levels at quality 75, 4.9 at 50, on black
text on white)."""
GAIN_CHANGE = 0.1
"""Largest contrast change (fitted gain - 1) of a copy made brighter or darker..."""
SHIFT_LEVELS = 16.0
"""...and largest change of its mean grey level."""
ASPECT_CHANGE = 0.01
"""Largest relative aspect-ratio difference of a copy saved at another size."""
NAMED = 5
"""Names one message lists before "and N more" (``listed``)."""
PRINTS_FILE = "train_prints.npz"
"""The file of a trained version holding its ``TrainPrints``."""


def pixel_print(image: np.ndarray) -> np.ndarray:
    """(THUMB_SIDE, THUMB_SIDE) float32 grey thumbnail of an (H, W, 3) uint8 RGB image."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    side = (THUMB_SIDE, THUMB_SIDE)
    return cv2.resize(grey, side, interpolation=cv2.INTER_AREA).astype(np.float32)


def held_out_copies(
    candidates: Mapping[Path, np.ndarray],
    held_out: Mapping[Path, np.ndarray],
    *,
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> dict[Path, Path]:
    """Candidate -> the held-out image it copies. The maps hold ``pixel_print``s (each (32, 32));
    a pair they bring close is decoded again (at ``bits``, float and signed data over
    ``value_range``, the product's ``image_range``) and confirmed by ``same_picture``."""
    if not candidates or not held_out:
        return {}
    names = list(held_out)
    stack = np.stack([held_out[name] for name in names])  # (n, 32, 32)
    stack = stack - stack.mean(axis=(1, 2), keepdims=True)
    greys: dict[Path, np.ndarray | None] = {}
    found = {}
    for path, print_ in candidates.items():
        distance = np.abs(stack - (print_ - print_.mean())).mean(axis=(1, 2))
        near = np.flatnonzero(distance <= CANDIDATE_LEVELS)
        for index in near[np.argsort(distance[near])][:CONFIRMED]:
            match = names[int(index)]
            pair = [_grey(p, (bits, value_range), greys) for p in (path, match)]
            if pair[0] is not None and pair[1] is not None and same_picture(*pair):
                found[path] = match
                break
    return found


def same_picture(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two images, (H, W, 3) uint8 RGB or (H, W) grey, show one picture at full
    resolution: ``picture_distance`` at most 1."""
    return picture_distance(first, second) <= 1.0


def picture_distance(first: np.ndarray, second: np.ndarray) -> float:
    """The largest difference of the two images' 8x8 block means (the larger image resized to
    the smaller) in units of its allowance, ``BLOCK_LEVELS`` (``CLIPPED_LEVELS`` where a block
    is clipped), after fitting the second's brightness and contrast to the first's; ``inf``
    where the aspect ratios differ by more than ``ASPECT_CHANGE`` or the fit by more than
    ``GAIN_CHANGE`` or ``SHIFT_LEVELS``. Images as ``same_picture`` takes them."""
    first, second = _luma(first), _luma(second)
    (h1, w1), (h2, w2) = first.shape, second.shape
    if abs(w1 * h2 - w2 * h1) > ASPECT_CHANGE * w1 * h2:
        return float("inf")
    if h2 * w2 > h1 * w1:
        second = cv2.resize(second, (w1, h1), interpolation=cv2.INTER_AREA)
    elif h2 * w2 < h1 * w1:
        first = cv2.resize(first, (w2, h2), interpolation=cv2.INTER_AREA)
    side = min(BLOCK, *first.shape)
    (mean1, clipped1), (mean2, clipped2) = _blocks(first, side), _blocks(second, side)
    clipped = clipped1 | clipped2
    fit = ~clipped if np.count_nonzero(~clipped) >= 2 else np.ones_like(clipped)
    level1, level2 = float(mean1[fit].mean()), float(mean2[fit].mean())
    gain = _gain(mean1[fit], mean2[fit])
    if abs(gain - 1.0) > GAIN_CHANGE or abs(level2 - level1) > SHIFT_LEVELS:
        return float("inf")
    residual = np.abs(mean2 - level2 - gain * (mean1 - level1))
    return float((residual / np.where(clipped, CLIPPED_LEVELS, BLOCK_LEVELS)).max())


def _luma(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 luma (ITU-R 601) of an (H, W, 3) RGB or (H, W) grey image, unrounded."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def _blocks(grey: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(H // side, W // side) block means of ``grey`` and whether each holds a pixel at 0 or
    255 (a trailing strip narrower than ``side`` is left out)."""
    rows, cols = grey.shape[0] // side, grey.shape[1] // side
    grey = np.ascontiguousarray(grey[: rows * side, : cols * side])
    clipped = ((grey <= 0.0) | (grey >= 255.0)).astype(np.float32)
    means = [cv2.resize(x, (cols, rows), interpolation=cv2.INTER_AREA) for x in (grey, clipped)]
    return means[0], means[1] > 0.0


def _gain(first: np.ndarray, second: np.ndarray) -> float:
    """Slope of the least-squares line ``second ~ first`` (1-D block means); 1 where ``first``
    is flat."""
    spread = float(first.var())
    return float(np.cov(first, second, bias=True)[0, 1]) / spread if spread > 1e-6 else 1.0


def _grey(
    path: Path,
    reading: tuple[int, tuple[float, float] | None],
    cache: dict[Path, np.ndarray | None],
) -> np.ndarray | None:
    """``path`` decoded by ``reading`` (bits, value range) as (H, W) float32 luma, once per call
    of the check (None: it no longer decodes; the caller's own decode names it)."""
    if path not in cache:
        try:
            bits, value_range = reading
            cache[path] = _luma(read_image(path, bits=bits, value_range=value_range))
        except ImageDecodeError:
            cache[path] = None
    return cache[path]


def prints_of(
    paths: Sequence[Path],
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> dict[Path, np.ndarray]:
    """``pixel_print`` of each readable file of ``paths`` decoded at ``bits`` over
    ``value_range`` (``core.images.read_image``; an unreadable one is left out: the caller's
    decode refuses it with its own message)."""
    prints = {}
    for path in paths:
        try:
            prints[Path(path)] = pixel_print(read_image(path, bits=bits, value_range=value_range))
        except ImageDecodeError:
            continue
    return prints


def refuse_held_out(
    prints: Mapping[Path, np.ndarray],
    held_out: Sequence[Path],
    *,
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> None:
    """``DatasetError`` naming each image of ``prints`` (path -> its ``prints_of`` print at
    ``bits`` over ``value_range``) that is a copy of a ``held_out`` image, decoded as it."""
    held = prints_of(held_out, bits, value_range)
    copies = held_out_copies(prints, held, bits=bits, value_range=value_range)
    if copies:
        raise DatasetError(leak_message(copies))


@dataclass(frozen=True, eq=False)
class TrainPrints:
    """``pixel_print`` of each image a version was trained on, by its name under the dataset
    root: row i of ``prints``, (n, THUMB_SIDE, THUMB_SIDE) float32, is ``names[i]``'s.
    Training writes it to the version (``PRINTS_FILE``); ``train --update`` reads it."""

    names: tuple[str, ...]
    prints: np.ndarray

    def __post_init__(self) -> None:
        if not all(isinstance(name, str) for name in self.names):
            raise ValueError(
                f"names: expected str, got {sorted({type(n).__name__ for n in self.names})}"
            )
        expected = (len(self.names), THUMB_SIDE, THUMB_SIDE)
        if self.prints.shape != expected or self.prints.dtype != np.float32:
            got = f"{self.prints.shape} {self.prints.dtype}"
            raise ValueError(f"prints: expected {expected} float32, got {got}")

    @classmethod
    def of(cls, prints: Mapping[str, np.ndarray]) -> TrainPrints:
        """From name -> ``pixel_print``."""
        empty = np.empty((0, THUMB_SIDE, THUMB_SIDE), np.float32)
        return cls(tuple(prints), np.stack(list(prints.values())) if prints else empty)

    def by_name(self) -> dict[str, np.ndarray]:
        """Name -> its (THUMB_SIDE, THUMB_SIDE) print."""
        return dict(zip(self.names, self.prints, strict=True))

    def save(self, path: Path) -> None:
        """Write to ``path`` (numpy's ``.npz``: ``names`` and ``prints``)."""
        np.savez_compressed(path, names=np.array(self.names, dtype=np.str_), prints=self.prints)

    @classmethod
    def load(cls, path: Path) -> TrainPrints:
        """Read what ``save`` wrote; ``RegistryError`` naming ``path`` when it does not hold that."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(tuple(data["names"].tolist()), data["prints"])
        except (OSError, KeyError, ValueError) as exc:
            raise RegistryError(
                f"{path} does not hold training prints ({exc}): restore the version folder "
                "from a backup, or train the product again"
            ) from exc


def leak_message(copies: Mapping[Path, Path]) -> str:
    """What to tell the user about ``copies`` (image -> the held-out image it copies)."""
    named = listed([f"{path} is held-out {match}" for path, match in copies.items()], sep="; ")
    return (
        f"{len(copies)} image(s) to train on copy held-out test images (same decoded pixels): "
        f"{named}. Training on them would fake every held-out figure: leave them out"
    )


def listed(names: Sequence[str], limit: int = NAMED, sep: str = ", ") -> str:
    """The first ``limit`` of ``names``, joined by ``sep``, and how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return sep.join(names[:limit]) + more
