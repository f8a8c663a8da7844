"""Decode untrusted image bytes into RGB uint8 arrays by what the file means, the same in every
Pillow version the product allows. ``decode_reduced`` is the one reader every stage uses:

- EXIF orientation is applied (``ImageOps.exif_transpose``): pixels stored turned read upright,
  as viewers and annotation tools show them;
- grey, palette and CMYK become RGB; an alpha channel is composited onto black, except one that
  is 0 everywhere (a camera's unused fourth byte): then the colour is read as it is and the
  decode says so (``DecodedImage.alpha_ignored``);
- 16-bit grey is narrowed at the product's significant ``bits`` (``narrow_to_8_bits``), read
  through numpy whichever mode Pillow opens it in (``I;16`` or ``I``); 16-bit colour is refused
  below 16 bits;
- signed, 32-bit and floating-point images (height maps, depth) map over the product's declared
  ``value_range`` (``map_declared_range``), never each image's own range; without one they are
  refused by name. Their pixels without a measurement are filled (``UNMEASURED_RULE``).

Masks are read apart (``defect_pixels``). Bad or oversized input raises ``ImageDecodeError``.
"""

from __future__ import annotations

import io
import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from inspection.core.errors import ImageDecodeError, ImageTooLarge

DEFAULT_MAX_PIXELS = 40_000_000  # ~ 6300 x 6300
DEFAULT_MAX_SIDE = 16_384  # JPEG overlays cannot exceed 65535 px a side; no camera comes close
STATION_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "TIFF")
"""Pillow format names a station decodes by default (untrusted bytes reach no other parser)."""
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")  # 16-bit grey: ``narrow_to_8_bits``
SIXTEEN_BIT_GREY = "I;16"
"""``DecodedImage.kind`` of an unsigned 16-bit grey file, whichever mode Pillow opened it in."""
DECLARED_RANGE_KINDS = {
    "I;16S": "signed 16-bit",
    "I;32S": "signed 32-bit",
    "I;32": "unsigned 32-bit",
    "F": "floating-point",
}
"""Kinds read over the declared ``value_range`` (height maps, depth), with their names."""
DROPOUT = {"I;16S": -(2**15), "I;32S": -(2**31)}
"""The value a signed integer image marks a pixel without a measurement with (3D sensors'
dropout code: the type's lowest value)."""
UNMEASURED_RULE = (
    "NaN or infinite values of a floating-point image and the lowest value of a signed integer "
    "image (-32768 at 16 bits, 3D sensors' dropout code) carry no measurement: they are filled "
    "from their neighbours (OpenCV's Telea inpainting, radius 3 px, of the 8-bit image)"
)
DEFAULT_SOURCE_BITS = 16  # significant bits of a 16-bit image: the high byte
SOURCE_BITS_RANGE = (8, 16)
ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 upright, 2..8 stored mirrored and/or turned

log = logging.getLogger(__name__)
READERS = min(4, os.cpu_count() or 1)
"""Image files a reader pool decodes at once (Pillow and OpenCV release the GIL decoding)."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    formats: tuple[str, ...] | None = None,
    name: str = "image",
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Decode bytes into an (H, W, 3) uint8 RGB array (``decode_reduced`` at full size)."""
    return decode_reduced(
        data, max_pixels=max_pixels, max_side=max_side, formats=formats, name=name, bits=bits,
        value_range=value_range,
    ).image  # fmt: skip


def check_source_bits(bits: object, key: str = "bits") -> int:
    """``bits`` if it is an int in ``SOURCE_BITS_RANGE``, else ``ValueError`` naming ``key``."""
    low, high = SOURCE_BITS_RANGE
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= high:
        raise ValueError(
            f"{key}: significant bits of a 16-bit image must be an integer from {low} to "
            f"{high} (12 for a 12-bit camera saving 0..4095), got {bits!r}"
        )
    return bits


def check_value_range(value: object, key: str = "value_range") -> tuple[float, float] | None:
    """``value`` as (low, high) floats, None for None; ``ValueError`` naming ``key`` unless it
    is two finite numbers with low < high."""
    if value is None:
        return None
    pair = tuple(value) if isinstance(value, (list, tuple)) else ()
    numbers = len(pair) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in pair
    )
    if not numbers or pair[0] >= pair[1]:
        raise ValueError(
            f"{key}: the range a height map, depth or float image's values are read over must "
            f"be [low, high] with low < high, in the file's units (e.g. [-2000, 2000] for "
            f"heights in µm), got {value!r}"
        )
    return float(pair[0]), float(pair[1])


def map_declared_range(
    values: np.ndarray, value_range: tuple[float, float], dropout: float | None = None
) -> tuple[np.ndarray, int, int]:
    """The declared-range rule: (H, W) numbers -> (same shape uint8, values outside the range
    (clipped), pixels without a measurement (filled)). ``low`` reads 0, ``high`` 255, linearly
    and rounded, the same for every image; unmeasured pixels (``UNMEASURED_RULE``: non-finite,
    or equal to ``dropout``) are filled from their neighbours. ``ValueError`` when none is
    measured."""
    low, high = value_range
    values = values.astype(np.float64)
    unmeasured = ~np.isfinite(values)
    if dropout is not None:
        unmeasured |= values == dropout
    if unmeasured.all():
        raise ValueError("no pixel holds a measurement")
    measured = np.where(unmeasured, low, values)
    clipped = int(np.count_nonzero((measured < low) | (measured > high)))
    scaled = np.rint((np.clip(measured, low, high) - low) * (255.0 / (high - low)))
    grey = scaled.astype(np.uint8)
    count = int(np.count_nonzero(unmeasured))
    if count:
        grey = cv2.inpaint(grey, unmeasured.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return grey, clipped, count


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
    ``source_size`` (upright), ``clipped_pixels`` (values above the declared bits or outside
    the declared range, read as 255 or 0), ``peak``, the highest raw value of a 16-bit grey
    file (None: other kinds), ``kind`` (the file's PIL mode, ``SIXTEEN_BIT_GREY`` for 16-bit
    grey in any Pillow version, or a key of ``DECLARED_RANGE_KINDS``), ``alpha_ignored`` (an
    alpha channel 0 everywhere, read as opaque) and ``unmeasured_pixels`` (filled)."""

    image: np.ndarray
    source_size: tuple[int, int]
    clipped_pixels: int = 0
    peak: int | None = None
    kind: str = "RGB"
    alpha_ignored: bool = False
    unmeasured_pixels: int = 0

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
    value_range: tuple[float, float] | None = None,
) -> DecodedImage:
    """Decode bytes upright (EXIF orientation applied), reduced to a longer side of at most
    ``work_side`` (None: full size): JPEG at a DCT scale keeping at least ``work_side`` (draft
    mode), then one antialiased resize. Size limits are checked from the header; ``formats``:
    Pillow format names (None: any); ``bits``: see ``narrow_to_8_bits``; ``value_range``: the
    declared range of signed, 32-bit and float images (``map_declared_range``)."""
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    if work_side is not None and work_side < 1:
        raise ValueError(f"work_side must be >= 1 (or None), got {work_side}")
    check_source_bits(bits)
    with _decoding(name, formats):
        image = Image.open(io.BytesIO(data), formats=formats)
        _check_opened(image, max_pixels, max_side, name)
        kind = _kind(image)
        _check_depth(image, data, kind, bits, value_range, name)
        stored = image.size
        target = _target_size(stored, work_side)
        if target is not None and image.format == "JPEG":
            image.draft("RGB", target)  # DCT-domain reduction; keeps >= target
        image.load()
        turned = _orientation(image) in TURNED
        image = _upright(image)
    width, height = stored[::-1] if turned else stored
    source, target = (height, width), _target_size((width, height), work_side)
    if image.mode in EIGHT_BIT_MODES:
        return _eight_bit(image, source, target)
    pixels = _pixels(image, kind, bits, value_range, name)
    rgb = pixels.image
    if target is not None and image.size != target:
        reduced = Image.fromarray(rgb)  # narrowed to 8 bits first, then resized
        reduced.thumbnail(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
        rgb = _to_rgb_8(reduced)[0]
    return DecodedImage(rgb, source, pixels.clipped, pixels.peak, kind, pixels.alpha_ignored,
                        pixels.unmeasured)  # fmt: skip


EIGHT_BIT_MODES = ("L", "RGB")
"""PIL modes read as they are (8-bit grey and RGB): ``decode_reduced`` and ``adopt_pixels``."""


def adopt_pixels(
    pixels: np.ndarray,
    *,
    work_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    name: str = "image",
) -> DecodedImage:
    """Pixels already in memory (a camera's frame: (H, W) uint8 grey or (H, W, 3) uint8 RGB,
    upright) -> the ``DecodedImage`` ``decode_reduced`` gives for their lossless encoding (PNG):
    the same size limits (``ImageTooLarge``), reduction to ``work_side`` and grey -> RGB, ``kind``
    ``L`` or ``RGB``. ``ValueError`` for another shape or dtype. ``pixels`` is not modified."""
    grey = pixels.ndim == 2
    if pixels.dtype != np.uint8 or not (grey or (pixels.ndim == 3 and pixels.shape[2] == 3)):
        raise ValueError(
            f"{name}: captured pixels must be (H, W) or (H, W, 3) uint8, got "
            f"{pixels.shape} {pixels.dtype}"
        )
    height, width = pixels.shape[:2]
    _check_size((width, height), max_pixels, max_side, name)
    image = Image.fromarray(pixels)  # L or RGB, from the shape
    return _eight_bit(image, (height, width), _target_size((width, height), work_side))


def _eight_bit(
    image: Image.Image, source: tuple[int, int], target: tuple[int, int] | None
) -> DecodedImage:
    """An upright ``EIGHT_BIT_MODES`` image -> its ``DecodedImage`` of ``source`` (h, w),
    reduced to ``target`` (w, h; None: as it is) by one antialiased resize."""
    if target is not None and image.size != target:
        image.thumbnail(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return DecodedImage(_to_rgb_8(image)[0], source, kind=image.mode)


TURNED = (5, 6, 7, 8)
"""EXIF orientations whose stored width is the upright height."""


def _orientation(image: Image.Image) -> int:
    """The EXIF Orientation of ``image`` (1: upright, also for a missing or invalid tag), from
    what Pillow has read (``getexif`` would load a PNG's pixels to look after them)."""
    if image.format != "TIFF" and "exif" not in image.info:
        return 1
    value = image.getexif().get(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF Orientation says (``ImageOps.exif_transpose``); as it is
    when upright (no copy)."""
    return image if _orientation(image) == 1 else ImageOps.exif_transpose(image)


def _kind(image: Image.Image) -> str:
    """What the pixels of an opened file are: its PIL mode, ``SIXTEEN_BIT_GREY`` for unsigned
    16-bit grey (Pillow before 10.3 opens a 16-bit grey PNG as ``I``), or a key of
    ``DECLARED_RANGE_KINDS`` (TIFF sample format and bits; other ``I`` files: signed 32-bit)."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        return SIXTEEN_BIT_GREY
    if mode != "I":
        return mode
    if image.format in ("PNG", "PPM"):  # unsigned, at most 16 bits per sample by their specs
        return SIXTEEN_BIT_GREY
    if image.format != "TIFF":
        return "I;32S"
    signed = _tiff_tag(image, 339, 1) == 2  # SampleFormat: 1 unsigned, 2 signed, 3 float
    if _tiff_tag(image, 258, 32) == 16:  # BitsPerSample
        return "I;16S" if signed else SIXTEEN_BIT_GREY
    return "I;32S" if signed else "I;32"


def _tiff_tag(image: Image.Image, tag: int, default: int) -> int:
    """A TIFF tag's largest value (per-sample tags hold a tuple), ``default`` without it."""
    value = image.tag_v2.get(tag, default)  # type: ignore[attr-defined]
    return max(value) if isinstance(value, tuple) else int(value)


def _bits_per_sample(image: Image.Image, data: bytes) -> int:
    """Bits per sample the file declares: PNG's IHDR bit depth, TIFF's BitsPerSample, else 8."""
    if image.format == "PNG" and data[12:16] == b"IHDR":
        return data[24]
    if image.format == "TIFF":
        return _tiff_tag(image, 258, 8)
    return 8


def _check_depth(
    image: Image.Image,
    data: bytes,
    kind: str,
    bits: int,
    value_range: tuple[float, float] | None,
    name: str,
) -> None:
    """Refuse a file the rules cannot read by its meaning: a 16-bit colour file when ``bits``
    < 16 (Pillow keeps only its high byte), a ``DECLARED_RANGE_KINDS`` file without a
    ``value_range``."""
    if kind in DECLARED_RANGE_KINDS and value_range is None:
        raise ImageDecodeError(
            f"{name}: a {DECLARED_RANGE_KINDS[kind]} image (a height map, depth or float "
            "image) is read over the range its values mean, and none is declared; set "
            "image_range: [low, high] (in the file's units) in the product's config "
            "(products/<product>.yaml)"
        )
    colour = kind in ("RGB", "RGBA")
    if bits != DEFAULT_SOURCE_BITS and colour and _bits_per_sample(image, data) > 8:
        raise ImageDecodeError(
            f"{name}: a 16-bit colour image cannot be read at {bits} significant bits "
            "(only 16-bit grey images can); save the camera's frames as 16-bit grey or 8-bit"
        )


@dataclass(frozen=True)
class _Pixels:
    """(H, W, 3) uint8 RGB of a loaded image with what reading it found (``DecodedImage``)."""

    image: np.ndarray
    clipped: int = 0
    peak: int | None = None
    alpha_ignored: bool = False
    unmeasured: int = 0


def _pixels(
    image: Image.Image,
    kind: str,
    bits: int,
    value_range: tuple[float, float] | None,
    name: str,
) -> _Pixels:
    """Read a loaded, upright image by its ``kind``'s rule (module docstring); logs the first
    clipped, unmeasured and alpha-ignored image of the process, counts the rest."""
    if kind == SIXTEEN_BIT_GREY:
        values = np.asarray(image).astype(np.uint16)  # I;16 or I (Pillow < 10.3): same values
        grey, clipped = narrow_to_8_bits(values, bits)
        peak = int(values.max())
        if not grey.any() and 0 < peak < 1 << (bits - 8):
            _seen("dark", "%s: a 16-bit image whose values all lie below %d (highest %d) reads "
                  "as black at %d bits: its camera writes fewer significant bits than declared; "
                  "set image_bits in the product's config (products/<product>.yaml). Later ones "
                  "are not logged", name, 1 << (bits - 8), peak, bits)  # fmt: skip
        if clipped:
            _seen("clipped", "%s: %d pixels above %d (the %d-bit maximum) clipped to 255; the "
                  "camera writes more bits than declared (image_bits / source_bits). Later "
                  "clipped images are counted, not logged (core.images.clipped_images)",
                  name, clipped, 2**bits - 1, bits)  # fmt: skip
        return _Pixels(_grey_to_rgb(grey), clipped, peak)
    if kind in DECLARED_RANGE_KINDS and value_range is not None:  # else refused: _check_depth
        return _declared_range_pixels(np.asarray(image), kind, value_range, name)
    rgb, alpha_ignored = _to_rgb_8(image)
    if alpha_ignored:
        _seen("alpha", "%s: its alpha channel is 0 everywhere (fully transparent) but its colour "
              "is not: read as opaque, the colour as it is. Save the frames without alpha (or "
              "with alpha 255) to silence this. Later ones are counted, not logged", name)  # fmt: skip
    return _Pixels(rgb, alpha_ignored=alpha_ignored)


def _declared_range_pixels(
    values: np.ndarray, kind: str, value_range: tuple[float, float], name: str
) -> _Pixels:
    """A ``DECLARED_RANGE_KINDS`` image read over ``value_range`` (``map_declared_range``)."""
    try:
        grey, clipped, unmeasured = map_declared_range(values, value_range, DROPOUT.get(kind))
    except ValueError as exc:
        raise ImageDecodeError(
            f"{name}: {exc} (every value is NaN, infinite or the dropout value "
            f"{DROPOUT.get(kind, 'NaN')}); check the sensor's exposure and the part's position"
        ) from exc
    low, high = value_range
    if clipped:
        _seen("clipped", "%s: %d values outside the declared image_range [%g, %g] read as its "
              "nearest end; widen image_range if the parts reach them. Later ones are counted, "
              "not logged (core.images.clipped_images)", name, clipped, low, high)  # fmt: skip
    if unmeasured:
        _seen("unmeasured", "%s: %d pixels without a measurement filled from their neighbours "
              "(%s). Later ones are counted, not logged", name, unmeasured, UNMEASURED_RULE)  # fmt: skip
    return _Pixels(_grey_to_rgb(grey), clipped, unmeasured=unmeasured)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8, the grey level in every channel."""
    return np.repeat(grey[:, :, None], 3, axis=2)


@contextmanager
def _decoding(name: str, formats: tuple[str, ...] | None) -> Iterator[None]:
    """Turn Pillow's exceptions into ``ImageDecodeError``. Its decompression-bomb warning is
    not relied on (``_check_opened`` refuses what it warns of): warnings filters are one per
    process, so a thread leaving ``warnings.catch_warnings`` can drop another thread's filter.
    Where the warning is an error (``-W error``), it is refused here as one."""
    try:
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


def _check_opened(image: Image.Image, max_pixels: int, max_side: int, name: str) -> None:
    """``_check_size`` of a file Pillow opened (its header read, no pixels), first refused
    above Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) whatever ``max_pixels``
    (``ImageDecodeError``): what Pillow only warns of, never left to a warnings filter."""
    width, height = image.size
    bomb = Image.MAX_IMAGE_PIXELS
    if bomb is not None and width * height > bomb:
        raise ImageDecodeError(
            f"{name}: image too large: {width}x{height} = {width * height} pixels, above "
            f"Pillow's decompression-bomb limit of {bomb}"
        )
    _check_size(image.size, max_pixels, max_side, name)


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
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Read a file into an (H, W, 3) uint8 RGB array (``decode_reduced`` at full size)."""
    return read_reduced(path, max_pixels=max_pixels, bits=bits, value_range=value_range).image


def read_reduced(
    path: str | Path,
    *,
    work_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> DecodedImage:
    """Read a file, reduced at decode to a longer side of ``work_side`` (``decode_reduced``)."""
    data = _read_bytes(path)
    return decode_reduced(
        data, work_side=work_side, max_pixels=max_pixels, name=str(path), bits=bits,
        value_range=value_range,
    )  # fmt: skip


def _read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def probe_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Upright (width, height) from the file's header (EXIF orientation applied), no pixels
    decoded (errors: ``decode_reduced``'s)."""
    name = str(path)
    try:
        if Path(path).stat().st_size == 0:
            raise ImageDecodeError(f"{name}: empty file (0 bytes)")
        with Image.open(path) as image:
            _check_opened(image, max_pixels, DEFAULT_MAX_SIDE, name)
            return image.size[::-1] if _orientation(image) in TURNED else image.size
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name}: not an image (unrecognised format)") from exc
    except OSError as exc:
        raise ImageDecodeError(f"{name}: cannot read file ({exc.strerror or exc})") from exc


def read_mask(path: str | Path | None, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """A ground-truth mask (a file, or a folder of masks: ``read_mask_levels``) as (H, W) bool,
    nearest-resized to ``size`` (h, w; None: its own); a None path (a good image): all False at
    ``size`` (None without a size)."""
    if path is None:
        return None if size is None else np.zeros(size, dtype=bool)
    mask = defect_pixels(read_mask_levels(path)).astype(np.uint8)
    if size is not None and mask.shape != tuple(size):
        mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 0


def mask_files(path: Path) -> list[Path]:
    """The files of a mask: ``path`` itself, or the images in a mask folder (MVTec LOCO's
    ``ground_truth/<defect>/<stem>/000.png, 001.png ...``, one a region)."""
    return list_images(path) if path.is_dir() else [path]


def read_mask_levels(path: str | Path, name: str | None = None) -> np.ndarray:
    """The (H, W) levels of a mask file (``mask_levels``); of a mask folder, the union of its
    masks: uint8 255 where any of them has a defect pixel (``defect_pixels``), else 0. A folder
    without images or of masks of different sizes raises ``ImageDecodeError`` naming it (as
    ``name``, default the path)."""
    path, name = Path(path), name or str(path)
    if not path.is_dir():
        return mask_levels(_read_bytes(path), name=name)
    files = mask_files(path)
    if not files:
        raise ImageDecodeError(
            f"{name}: mask folder has no images (looked for {', '.join(IMAGE_SUFFIXES)}); "
            "add the image's masks or remove the folder"
        )
    masks = [defect_pixels(mask_levels(_read_bytes(f), name=f"{name}/{f.name}")) for f in files]
    sizes = sorted({m.shape for m in masks})
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for h, w in sizes)
        raise ImageDecodeError(
            f"{name}: the masks of this folder differ in size ({shown}); each must be as "
            "large as its image"
        )
    return np.logical_or.reduce(masks).astype(np.uint8) * np.uint8(255)


def mask_levels(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "mask"
) -> np.ndarray:
    """The (H, W) levels of a mask file in its own dtype, upright (EXIF orientation applied):
    the maximum over colour channels (palettes looked up), fully transparent pixels 0 (unless
    every pixel is: an alpha 0 everywhere is ignored, as in ``decode_reduced``). Limits and
    errors: ``decode_reduced``'s."""
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    with _decoding(name, None):
        image = Image.open(io.BytesIO(data))
        _check_opened(image, max_pixels, DEFAULT_MAX_SIDE, name)
        image.load()
        image = _upright(image)
    image = _mask_mode(image)
    array = np.asarray(image)
    if image.mode == "1":
        return array.astype(np.uint8)
    if array.ndim == 2:
        return array
    if image.mode in ("LA", "RGBA"):
        levels = array[:, :, :-1].max(axis=2)
        alpha = array[:, :, -1]
        return np.where(alpha > 0, levels, 0).astype(levels.dtype) if alpha.any() else levels
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


def _to_rgb_8(image: Image.Image) -> tuple[np.ndarray, bool]:
    """An 8-bit (or 16-bit colour) image -> ((H, W, 3) uint8 RGB, whether its alpha channel
    was 0 everywhere and so ignored). Other alpha is composited onto black."""
    mode = image.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3] == (0, 0):  # a camera's unused fourth byte, not coverage
            return np.asarray(rgba.convert("RGB")), True
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB")), False
    if mode != "RGB":
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:  # e.g. 48-bit RGB read as uint16
        array = (array.astype(np.uint32) >> 8).astype(np.uint8)
    return np.ascontiguousarray(array), False


def grey_replicated(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 with every channel the image's luma, exactly as
    a colour file decodes to grey (Pillow's ``convert("L")``, ITU-R 601-2) and as a grey file
    decodes to RGB (``_grey_to_rgb`` replicates it): a grey image is returned unchanged."""
    luma = np.asarray(Image.fromarray(np.ascontiguousarray(image), "RGB").convert("L"))
    return _grey_to_rgb(luma)


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
