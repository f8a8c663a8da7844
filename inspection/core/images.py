"""Decode untrusted image bytes into RGB uint8 arrays, with documented conversions: grey,
palette and CMYK become RGB, alpha is composited onto black, 16-bit grey is narrowed at the
camera's ``bits`` (``narrow_to_8_bits``), 32-bit images are rescaled over their own range.
Masks are read apart (``defect_pixels``). Bad or oversized input raises ``ImageDecodeError``.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from inspection.core.errors import ImageDecodeError, ImageTooLarge

DEFAULT_MAX_PIXELS = 40_000_000  # ~ 6300 x 6300
DEFAULT_MAX_SIDE = 16_384  # JPEG overlays cannot exceed 65535 px a side; no camera comes close
STATION_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "TIFF")
"""Pillow format names a station decodes by default (untrusted bytes reach no other parser)."""
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")  # 16-bit grey: ``narrow_to_8_bits``
DEFAULT_SOURCE_BITS = 16  # significant bits of a 16-bit image: the high byte
SOURCE_BITS_RANGE = (8, 16)

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    formats: tuple[str, ...] | None = None,
    name: str = "image",
    bits: int = DEFAULT_SOURCE_BITS,
) -> np.ndarray:
    """Decode bytes into an (H, W, 3) uint8 RGB array (``decode_reduced`` at full size)."""
    return decode_reduced(
        data, max_pixels=max_pixels, max_side=max_side, formats=formats, name=name, bits=bits
    ).image


def check_source_bits(bits: object, key: str = "bits") -> int:
    """``bits`` if it is an int in ``SOURCE_BITS_RANGE``, else ``ValueError`` naming ``key``."""
    low, high = SOURCE_BITS_RANGE
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= high:
        raise ValueError(
            f"{key}: significant bits of a 16-bit image must be an integer from {low} to "
            f"{high} (12 for a 12-bit camera saving 0..4095), got {bits!r}"
        )
    return bits


def narrow_to_8_bits(values: np.ndarray, bits: int = DEFAULT_SOURCE_BITS) -> tuple[np.ndarray, int]:
    """The bit-depth rule: unsigned values holding ``bits`` significant bits -> (same shape
    uint8 ``min(value >> (bits - 8), 255)``, count of values above ``2**bits - 1``). The shift
    keeps the top 8 bits, as a camera's 8-bit mode does; ``bits=16`` is the high byte."""
    check_source_bits(bits)
    shift = bits - 8
    clipped = int(np.count_nonzero(values >> bits)) if bits < 16 else 0
    narrowed = np.minimum(values >> shift, 255).astype(np.uint8)
    return narrowed, clipped


_SEEN: Counter[str] = Counter()
"""16-bit images decoded in this process ``clipped`` above their declared bits or reading
``dark`` below them: the first of each is logged, the rest counted."""


def _seen(kind: str, message: str, *args: object) -> None:
    """Count one more ``kind`` image; log ``message`` for the first one only."""
    _SEEN[kind] += 1
    if _SEEN[kind] == 1:
        log.warning(message, *args)


def clipped_images() -> int:
    """Images decoded in this process with values above their declared bits (clipped)."""
    return _SEEN["clipped"]


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image, possibly reduced: ``image`` (h, w, 3) uint8 RGB, the encoded (H, W)
    ``source_size``, ``clipped_pixels`` (values above the declared bits, read as 255) and
    ``peak``, the highest raw value of a 16-bit grey file (None: other modes)."""

    image: np.ndarray
    source_size: tuple[int, int]
    clipped_pixels: int = 0
    peak: int | None = None

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
    bits: int = DEFAULT_SOURCE_BITS,
) -> DecodedImage:
    """Decode bytes, reduced to a longer side of at most ``work_side`` (None: full size): JPEG
    at a DCT scale keeping at least ``work_side`` (draft mode), then one antialiased resize.
    Size limits are checked from the header; ``formats``: Pillow format names (None: any)."""
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    if work_side is not None and work_side < 1:
        raise ValueError(f"work_side must be >= 1 (or None), got {work_side}")
    check_source_bits(bits)
    with _decoding(name, formats):
        image = Image.open(io.BytesIO(data), formats=formats)
        _check_size(image.size, max_pixels, max_side, name)
        _check_colour_depth(image, bits, name)
        source = (image.size[1], image.size[0])
        target = _target_size(image.size, work_side)
        if target is not None and image.format == "JPEG":
            image.draft("RGB", target)  # DCT-domain reduction; keeps >= target
        image.load()
    if image.mode in ("RGB", "L") and target is not None and image.size != target:
        image.thumbnail(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
        return DecodedImage(_to_rgb_8(image), source)
    rgb, clipped, peak = _to_rgb(image, bits, name)
    if clipped:
        _seen("clipped", "%s: %d pixels above %d (the %d-bit maximum) clipped to 255; the camera "
              "writes more bits than declared (image_bits / source_bits). Later clipped images "
              "are counted, not logged (core.images.clipped_images)",
              name, clipped, 2**bits - 1, bits)  # fmt: skip
    if target is None or image.size == target:
        return DecodedImage(rgb, source, clipped, peak)
    reduced = Image.fromarray(rgb)  # narrowed to 8 bits first, then resized
    reduced.thumbnail(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return DecodedImage(_to_rgb_8(reduced), source, clipped, peak)


def _check_colour_depth(image: Image.Image, bits: int, name: str) -> None:
    """Refuse a 16-bit colour file when ``bits`` < 16: Pillow keeps only its high byte."""
    if bits == DEFAULT_SOURCE_BITS or image.mode in SIXTEEN_BIT_MODES:
        return
    if any(";16" in str(tile.args) for tile in image.tile):
        raise ImageDecodeError(
            f"{name}: a 16-bit colour image cannot be read at {bits} significant bits "
            "(only 16-bit grey images can); save the camera's frames as 16-bit grey or 8-bit"
        )


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
        raise ImageTooLarge(
            f"{name}: image is {width}x{height} = {width * height} pixels, "
            f"above the limit of {max_pixels}",
            "max_pixels",
        )
    if max(width, height) > max_side or min(width, height) < 1:
        raise ImageTooLarge(
            f"{name}: image is {width}x{height} pixels; each side must be 1 to {max_side} pixels",
            "max_side",
        )


def read_image(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, bits: int = DEFAULT_SOURCE_BITS
) -> np.ndarray:
    """Read a file into an (H, W, 3) uint8 RGB array (``bits``: see ``narrow_to_8_bits``)."""
    return read_reduced(path, max_pixels=max_pixels, bits=bits).image


def read_reduced(
    path: str | Path,
    *,
    work_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    bits: int = DEFAULT_SOURCE_BITS,
) -> DecodedImage:
    """Read a file, reduced at decode to a longer side of ``work_side`` (``decode_reduced``)."""
    data = _read_bytes(path)
    return decode_reduced(
        data, work_side=work_side, max_pixels=max_pixels, name=str(path), bits=bits
    )


def _read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def probe_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the file's header, no pixels decoded (errors: ``decode_reduced``'s)."""
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
    """A ground-truth mask as (H, W) bool, nearest-resized to ``size`` (h, w; None: its own); a
    None path (a good image): all False at ``size`` (None without a size)."""
    if path is None:
        return None if size is None else np.zeros(size, dtype=bool)
    mask = defect_pixels(mask_levels(_read_bytes(path), name=str(path))).astype(np.uint8)
    if size is not None and mask.shape != tuple(size):
        mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 0


def mask_levels(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "mask"
) -> np.ndarray:
    """The (H, W) levels of a mask file in its own dtype: the maximum over colour channels
    (palettes looked up), fully transparent pixels 0. Limits and errors: ``decode_reduced``'s."""
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


MASK_MODES = ("1", "L", "LA", "RGB", "RGBA", "I", *SIXTEEN_BIT_MODES, "F")  # read as they are


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


def _to_rgb(image: Image.Image, bits: int, name: str) -> tuple[np.ndarray, int, int | None]:
    """(H, W, 3) uint8 RGB, the number of clipped values and the highest raw value (16-bit
    grey only: 0 and None otherwise)."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.uint16)
        gray, clipped = narrow_to_8_bits(values, bits)
        peak = int(values.max())
        if not gray.any() and 0 < peak < 1 << (bits - 8):
            _seen("dark", "%s: a 16-bit image whose values all lie below %d (highest %d) reads "
                  "as black at %d bits: its camera writes fewer significant bits than declared; "
                  "set image_bits in the product's config (products/<product>.yaml). Later ones "
                  "are not logged", name, 1 << (bits - 8), peak, bits)  # fmt: skip
        return np.repeat(gray[:, :, None], 3, axis=2), clipped, peak
    return _to_rgb_8(image), 0, None


def _to_rgb_8(image: Image.Image) -> np.ndarray:
    """Any PIL mode but 16-bit grey -> (H, W, 3) uint8 RGB."""
    mode = image.mode
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
    decodes to RGB (``_to_rgb`` replicates it): a grey image is returned unchanged."""
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
