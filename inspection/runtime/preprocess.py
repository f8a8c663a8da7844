"""Numpy/OpenCV pre- and post-processing driven only by the bundle metadata.

Nothing here guesses: the pixel scale, colour order, mean/std, resize method and the
score normalisation all come from ``metadata.json`` (see ``inspection.core.bundle``). A bundle
exported with its preprocessing in the graph (``Preprocessing.in_graph``) takes the decoded
image resized to its input size (``model_input``); ``preprocess`` serves bundles exported
before.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from inspection.core.bundle import Normalization, Preprocessing
from inspection.core.calibration import normalize


def check_image(image: object) -> np.ndarray:
    """Reject anything that is not an (H, W, 3) uint8 array, with expected vs got."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}; "
            "decode files with inspection.core.images.read_image"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must not be empty, got shape {image.shape}")
    return image


def model_input(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """One image as the bundle's graph takes it: the (h, w, 3) uint8 RGB image at the input
    size when the graph preprocesses (``prep.in_graph``), else ``preprocess``'s (3, h, w)
    float32."""
    image = check_image(image)
    return at_input_size(image, prep) if prep.in_graph else preprocess(image, prep)


def model_batch(images: Sequence[np.ndarray], prep: Preprocessing) -> np.ndarray:
    """N images as one input ((N, h, w, 3) uint8 or (N, 3, h, w) float32, ``model_input``)."""
    return np.stack([model_input(image, prep) for image in images])


def preprocess(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, h, w) float32 model input, ``(x * scale - mean) / std``."""
    image = at_input_size(check_image(image), prep)
    # one exact table lookup per pixel instead of four float passes, straight into CHW
    table = _value_table(prep.pixel_scale, prep.mean, prep.std, prep.color_order)
    chw = np.empty((3, *image.shape[:2]), dtype=np.float32)
    for channel, plane in enumerate(cv2.split(np.ascontiguousarray(image))):
        model_channel = 2 - channel if prep.color_order == "BGR" else channel
        cv2.LUT(plane, table[channel], dst=chw[model_channel])
    return chw


def at_input_size(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """``image`` at the model input size (area averaging only when shrinking both sides)."""
    height, width = prep.input_size
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] >= height and image.shape[1] >= width
    interpolation = cv2.INTER_AREA if prep.resize == "area" and shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


@lru_cache(maxsize=32)
def _value_table(
    scale: float, mean: tuple[float, ...], std: tuple[float, ...], color_order: str
) -> np.ndarray:
    """(3, 256) float32: the model input value of each uint8 value per input (RGB) channel."""
    values = np.arange(256, dtype=np.float32) * np.float32(scale)
    order = (2, 1, 0) if color_order == "BGR" else (0, 1, 2)
    rows = [(values - np.float32(mean[model_c])) / np.float32(std[model_c]) for model_c in order]
    return np.ascontiguousarray(np.stack(rows))


def normalize_score(raw: float, stats: Normalization) -> float:
    return float(normalize(raw, stats.image_threshold_raw, stats.image_min, stats.image_max))


def normalize_map(raw_map: np.ndarray, stats: Normalization) -> np.ndarray:
    return normalize(raw_map, stats.pixel_threshold_raw, stats.pixel_min, stats.pixel_max)


def resize_map(anomaly_map: np.ndarray, height: int, width: int) -> np.ndarray:
    if anomaly_map.shape == (height, width):
        return np.ascontiguousarray(anomaly_map, dtype=np.float32)
    resized = cv2.resize(anomaly_map, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, 1.0).astype(np.float32)
