"""Encode what the station stores next to each result: mask, anomaly map, overlay JPEG."""

from __future__ import annotations

import cv2
import numpy as np

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


def image_extension(data: bytes) -> str:
    """File extension for image bytes by their magic number (``.bin`` when unknown)."""
    for signature, ext in _SIGNATURES:
        if data.startswith(signature):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".bin"


def encode_mask(mask: np.ndarray) -> bytes:
    """(H, W) bool -> single-channel PNG with 0 / 255."""
    return _encode(".png", mask.astype(np.uint8) * 255)


def encode_map(anomaly_map: np.ndarray) -> bytes:
    """(H, W) float32 in [0, 1] -> 8-bit grayscale PNG (value * 255)."""
    return _encode(".png", np.clip(anomaly_map * 255.0 + 0.5, 0, 255).astype(np.uint8))


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes (overlays for operators)."""
    return _encode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])


def _encode(ext: str, array: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(ext, np.ascontiguousarray(array), params or [])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {array.shape} {array.dtype} array as {ext}")
    return buffer.tobytes()
