"""Decode untrusted image bytes into RGB uint8 arrays, with documented conversions.

Conversions (never silent failures):
- grayscale, palette and CMYK images are converted to RGB;
- RGBA / LA images drop their alpha channel (composited onto black);
- 16-bit and 32-bit images are scaled linearly to 8 bits (value >> 8, or full-range rescale
  for 32-bit integer/float data).
Masks are read apart (``mask_levels``): their own levels, maximum over colour channels;
a level above half the mask's highest is defect (``defect_pixels``), whatever the bit depth
or colour: 0/1 and 0/255 masks read as drawn, and JPEG noise near 0 stays background.
Errors: empty input, non-image bytes, truncated files, images above ``max_pixels`` or with a
side above ``max_side`` (decompression bombs, 100000x1 strips) and formats outside ``formats``
raise ``ImageDecodeError`` with a message that says which. Size limits are checked from the
header, before any pixel is decoded; formats outside the allow-list never reach their parser.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from inspection.core.errors import ImageDecodeError

DEFAULT_MAX_PIXELS = 40_000_000  # ~ 6300 x 6300
DEFAULT_MAX_SIDE = 16_384  # JPEG overlays cannot exceed 65535 px a side; no camera comes close
STATION_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "TIFF")
"""Pillow format names a station decodes by default (untrusted bytes reach no other parser)."""
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
"""Pillow modes of 16-bit grey images: read at 8 bits as their high byte (``value >> 8``)."""
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
    return decode_reduced(
        data, max_pixels=max_pixels, max_side=max_side, formats=formats, name=name
    ).image


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image, possibly reduced: ``image`` (h, w, 3) uint8 RGB and the (H, W) size
    of the encoded image (``source_size``); ``reduced`` is True when (h, w) != (H, W)."""

    image: np.ndarray
    source_size: tuple[int, int]

    @property
    def reduced(self) -> bool:
        return self.image.shape[:2] != self.source_size


def decode_reduced(
    data: bytes,
    *,
    work_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    formats: tuple[str, ...] | None = None,
    name: str = "image",
) -> DecodedImage:
    """Decode bytes, reduced at decode to a longer side of at most ``work_side`` (None: full).

    JPEG is decoded at a DCT scale (1/2, 1/4, 1/8) that keeps at least ``work_side`` (Pillow's
    draft mode), other formats decode fully; then one antialiased resize (Pillow's
    ``thumbnail``: integer ``reduce`` then bilinear) to the longer side ``work_side``.
    The limits and errors are those of ``decode_image``; ``max_pixels`` applies to the
    encoded size, checked from the header before any pixel is decoded.
    """
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    if work_side is not None and work_side < 1:
        raise ValueError(f"work_side must be >= 1 (or None), got {work_side}")
    with _decoding(name, formats):
        image = Image.open(io.BytesIO(data), formats=formats)
        _check_size(image.size, max_pixels, max_side, name)
        source = (image.size[1], image.size[0])
        target = _target_size(image.size, work_side)
        if target is not None and image.format == "JPEG":
            image.draft("RGB", target)  # DCT-domain reduction; keeps >= target
        image.load()
    if target is None or image.size == target:
        return DecodedImage(to_rgb_uint8(image), source)
    if image.mode not in ("RGB", "L"):
        image = Image.fromarray(to_rgb_uint8(image))
    image.thumbnail(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return DecodedImage(to_rgb_uint8(image), source)


@contextmanager
def _decoding(name: str, formats: tuple[str, ...] | None) -> Iterator[None]:
    """Turn Pillow's exceptions (and its decompression-bomb warning) into ``ImageDecodeError``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
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


def _target_size(size: tuple[int, int], work_side: int | None) -> tuple[int, int] | None:
    """(width, height) of ``size`` shrunk to a longer side of ``work_side``; None: no shrink."""
    width, height = size
    if work_side is None or max(width, height) <= work_side:
        return None
    scale = work_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


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
    return read_reduced(path, max_pixels=max_pixels).image


def read_reduced(
    path: str | Path, *, work_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Read a file, reduced at decode to a longer side of ``work_side`` (``decode_reduced``)."""
    data = _read_bytes(path)
    return decode_reduced(data, work_side=work_side, max_pixels=max_pixels, name=str(path))


def _read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def probe_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the file's header, no pixels decoded: ``ImageDecodeError`` for a
    file that is not an image, empty, unreadable or over the size limits (a truncated body
    shows only when decoded)."""
    name = str(path)
    try:
        if Path(path).stat().st_size == 0:
            raise ImageDecodeError(f"{name}: empty file (0 bytes)")
        with Image.open(path) as image:
            _check_size(image.size, max_pixels, DEFAULT_MAX_SIDE, name)
            return image.size
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name}: not an image (unrecognised format)") from exc
    except OSError as exc:
        raise ImageDecodeError(f"{name}: cannot read file ({exc.strerror or exc})") from exc


def read_mask(path: str | Path | None, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """A ground-truth mask as (H, W) bool (``defect_pixels`` of ``mask_levels``),
    nearest-resized to ``size``.

    ``size`` is (height, width); ``None`` keeps the file's own size. A ``None`` path gives an
    all-False mask when ``size`` is known (good images have no mask file), else ``None``.
    """
    if path is None:
        return None if size is None else np.zeros(size, dtype=bool)
    mask = defect_pixels(mask_levels(_read_bytes(path), name=str(path))).astype(np.uint8)
    if size is not None and mask.shape != tuple(size):
        mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 0


def mask_levels(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "mask"
) -> np.ndarray:
    """The (H, W) levels of a mask file, in the file's own dtype (uint8, uint16, ...): the
    maximum over colour channels (a palette is looked up first); fully transparent pixels
    are 0. 0/1, 0/255, 16-bit 0/65535 and a green-on-black RGB mask all decode alike.
    The limits and errors are those of ``decode_image``.
    """
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    with _decoding(name, None):
        image = Image.open(io.BytesIO(data))
        _check_size(image.size, max_pixels, DEFAULT_MAX_SIDE, name)
        image.load()
    image = _mask_mode(image)
    array = np.asarray(image)
    if image.mode == "1":
        return array.astype(np.uint8)
    if array.ndim == 2:
        return array
    if image.mode in ("LA", "RGBA"):
        levels = array[:, :, :-1].max(axis=2)
        return np.where(array[:, :, -1] > 0, levels, 0).astype(levels.dtype)
    return array.max(axis=2)


MASK_MODES = ("1", "L", "LA", "RGB", "RGBA", "I", *SIXTEEN_BIT_MODES, "F")
"""Pillow modes whose pixel values ``mask_levels`` reads as they are."""


def _mask_mode(image: Image.Image) -> Image.Image:
    """A palette looked up (to RGBA when it has transparency); CMYK, YCbCr etc. to RGB."""
    if image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    return image if image.mode in MASK_MODES else image.convert("RGB")


def defect_pixels(levels: np.ndarray) -> np.ndarray:
    """The mask rule: (H, W) bool, True where the level of ``mask_levels`` is above half the
    highest level (so any level of a binary mask; an all-zero mask has none)."""
    peak = float(levels.max()) if levels.size else 0.0
    return levels > peak / 2 if peak > 0 else np.zeros(levels.shape, dtype=bool)


def is_binary_mask(levels: np.ndarray) -> bool:
    """True when ``levels`` hold at most one defect level beside 0 (background), so that
    ``defect_pixels`` reads them as drawn; many levels mean anti-aliased or JPEG edges."""
    distinct = np.unique(levels)
    return bool(len(distinct) == 1 or (len(distinct) == 2 and distinct[0] == 0))


def to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """Convert any PIL image mode to (H, W, 3) uint8 RGB."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
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


def grey_replicated(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 with every channel the image's luma, exactly as
    a colour file decodes to grey (Pillow's ``convert("L")``, ITU-R 601-2) and as a grey file
    decodes to RGB (``to_rgb_uint8`` replicates it): a grey image is returned unchanged."""
    luma = np.asarray(Image.fromarray(np.ascontiguousarray(image), "RGB").convert("L"))
    return cv2.cvtColor(luma, cv2.COLOR_GRAY2RGB)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name: any letter case of an image
    suffix; hidden files (``.*``, e.g. macOS ``._x.png`` AppleDouble companions) skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
