"""The one leak check: is an image that would be trained on one of the held-out images?

Compared by decoded pixels (32x32 grey thumbnails within ``NEAR_LEVELS``), so a copy renamed,
re-saved or re-encoded as JPEG is still found; ``data check``, ``train`` and ``retrain`` ask it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from inspection.core.errors import DatasetError, ImageDecodeError
from inspection.core.images import DEFAULT_SOURCE_BITS, read_image

THUMB_SIDE = 32
NEAR_LEVELS = 1.5
"""Mean absolute grey difference of two thumbnails at or below which they are one picture..."""
NEAR_SPREAD = 0.1
"""...and at most this share of the held-out thumbnail's std (flat images match closer)."""
NAMED = 5
"""Names one message lists before "and N more" (``listed``)."""


def pixel_print(image: np.ndarray) -> np.ndarray:
    """(THUMB_SIDE, THUMB_SIDE) float32 grey thumbnail of an (H, W, 3) uint8 RGB image."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    side = (THUMB_SIDE, THUMB_SIDE)
    return cv2.resize(grey, side, interpolation=cv2.INTER_AREA).astype(np.float32)


def held_out_copies(
    candidates: Mapping[Path, np.ndarray], held_out: Mapping[Path, np.ndarray]
) -> dict[Path, Path]:
    """Candidate -> the held-out image it copies, by ``pixel_print``s (each (32, 32))."""
    if not candidates or not held_out:
        return {}
    names = list(held_out)
    stack = np.stack([held_out[name] for name in names])  # (n, 32, 32)
    limit = np.minimum(NEAR_LEVELS, NEAR_SPREAD * stack.std(axis=(1, 2)))  # (n,)
    found = {}
    for path, print_ in candidates.items():
        distance = np.abs(stack - print_).mean(axis=(1, 2))
        near = np.flatnonzero(distance <= limit)
        if near.size:
            found[path] = names[int(near[distance[near].argmin()])]
    return found


def prints_of(paths: Sequence[Path], bits: int = DEFAULT_SOURCE_BITS) -> dict[Path, np.ndarray]:
    """``pixel_print`` of each readable file of ``paths`` decoded at ``bits`` (an unreadable
    one is left out: the caller's decode refuses it with its own message)."""
    prints = {}
    for path in paths:
        try:
            prints[Path(path)] = pixel_print(read_image(path, bits=bits))
        except ImageDecodeError:
            continue
    return prints


def refuse_held_out(
    paths: Sequence[Path], held_out: Sequence[Path], *, bits: int = DEFAULT_SOURCE_BITS
) -> None:
    """``DatasetError`` naming each of ``paths`` that is a copy of a ``held_out`` image."""
    copies = held_out_copies(prints_of(paths, bits), prints_of(held_out, bits))
    if copies:
        raise DatasetError(leak_message(copies))


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
