"""Decode untrusted image bytes into RGB uint8 arrays, with documented conversions.

Conversions (never silent failures):
- grayscale, palette and CMYK images are converted to RGB;
- RGBA / LA images drop their alpha channel (composited onto black);
- 16-bit and 32-bit images are scaled linearly to 8 bits (value >> 8, or full-range rescale
  for 32-bit integer/float data).
Errors: empty input, non-image bytes, truncated files, images above ``max_pixels`` or with a
side above ``max_side`` (decompression bombs, 100000x1 strips) and formats outside ``formats``
raise ``ImageDecodeError`` with a message that says which. Size limits are checked from the
header, before any pixel is decoded; formats outside the allow-list never reach their parser.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from inspection.core.errors import ImageDecodeError

DEFAULT_MAX_PIXELS = 40_000_000  # ~ 6300 x 6300
DEFAULT_MAX_SIDE = 16_384  # JPEG overlays cannot exceed 65535 px a side; no camera comes close
STATION_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "TIFF")
"""Pillow format names a station decodes by default (untrusted bytes reach no other parser)."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    formats: tuple[str, ...] | None = None,
    name: str = "image",
) -> np.ndarray:
    """Decode bytes into an (H, W, 3) uint8 RGB array.

    ``formats`` lists the Pillow format names to try (``None``: every format Pillow knows).
    """
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
            _check_size(image.size, max_pixels, max_side, name)
            image.load()
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        if formats is None:
            raise ImageDecodeError(f"{name}: not an image (unrecognised format)") from exc
        raise ImageDecodeError(
            f"{name}: not an image in an accepted format ({', '.join(formats)})"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"{name}: image too large: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{name}: truncated or corrupt image ({exc})") from exc
    return to_rgb_uint8(image)


def _check_size(size: tuple[int, int], max_pixels: int, max_side: int, name: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{name}: image is {width}x{height} = {width * height} pixels, "
            f"above the limit of {max_pixels}"
        )
    if max(width, height) > max_side or min(width, height) < 1:
        raise ImageDecodeError(
            f"{name}: image is {width}x{height} pixels; each side must be 1 to {max_side} pixels"
        )


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a file into an (H, W, 3) uint8 RGB array."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    return decode_image(data, max_pixels=max_pixels, name=str(path))


def read_mask(path: str | Path | None, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """A ground-truth mask as (H, W) bool: channel 0 above 127, nearest-resized to ``size``.

    ``size`` is (height, width); ``None`` keeps the file's own size. A ``None`` path gives an
    all-False mask when ``size`` is known (good images have no mask file), else ``None``.
    """
    if path is None:
        return None if size is None else np.zeros(size, dtype=bool)
    mask = read_image(path)[:, :, 0]
    if size is not None and mask.shape != tuple(size):
        mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 127


def to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """Convert any PIL image mode to (H, W, 3) uint8 RGB."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        array = np.asarray(image, dtype=np.uint16)
        gray = (array >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        gray = np.clip((array - low) * scale, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode != "RGB":
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:  # e.g. 48-bit RGB read as uint16
        array = (array.astype(np.uint32) >> 8).astype(np.uint8)
    return np.ascontiguousarray(array)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
