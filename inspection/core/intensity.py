"""Per-image intensity stretch (``ModelConfig.intensity_percentiles``, the bundle's
``Preprocessing.intensity_percentiles``): each image's own low and high percentiles of grey
level become 0 and 255, before the model's mean/std normalisation. Training (``training.models.
common.IntensityStretch``) and the station (``runtime.preprocess.model_input``) call
``stretch_intensity``, so both make the same pixels.
"""

from __future__ import annotations

import numpy as np


def check_percentiles(value: object, key: str = "intensity_percentiles") -> None:
    """``ValueError`` naming ``key`` unless ``value`` is None or [low, high], 0 <= low < high <= 100."""
    if value is None:
        return
    pair = tuple(value) if isinstance(value, list | tuple) else ()
    numbers = len(pair) == 2 and all(isinstance(v, int | float) for v in pair)
    if not numbers or not 0 <= pair[0] < pair[1] <= 100:
        raise ValueError(
            f"{key}: expected [low, high] percentiles with 0 <= low < high <= 100, or null "
            f"(no stretch), got {value!r}"
        )


def stretch_intensity(image: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """(H, W, C) uint8 -> (H, W, C) uint8: ``(x - lo) * 255 / (hi - lo)``, rounded and clipped,
    one affine for every channel, ``lo``, ``hi`` the image's own ``percentiles`` of all its
    values (numpy's ``inverted_cdf``: values the image holds). A flat image (lo == hi) is
    returned unchanged. ``ValueError`` for another dtype."""
    if image.dtype != np.uint8:
        raise ValueError(f"stretch_intensity: expected a uint8 image, got {image.dtype}")
    low, high = np.percentile(image, percentiles, method="inverted_cdf")
    if high <= low:
        return image
    values = np.arange(256, dtype=np.float32) - np.float32(low)
    table = np.clip(np.rint(values * np.float32(255.0 / (high - low))), 0, 255)
    return table.astype(np.uint8)[image]
