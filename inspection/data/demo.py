"""Deterministic demo datasets in MVTec AD layout, from the texture photos bundled in scikit-image.

A texture product (``brick``, ``grass``, ``gravel``) sample is a random crop of a tinted 512 px
photo with flips, jitter and noise; defects (``scratch``, ``crack``, ``hole``, ``stain``) are
alpha-blended in, their mask exactly the pixels altered (weights below ``ALPHA_CUTOFF`` zeroed).
``weave`` has global defects; ``tissue`` and ``part`` are evaluation products nothing is tuned
on. Every file is seeded by (seed, product, split, kind, index), so output is byte-identical,
labelled and calibration images are streams of their own, and larger splits only add files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from inspection.core.errors import DatasetError
from inspection.data.dataset import LABELLED_MASKS
from inspection.data.demo_part import PART_DEFECT_KINDS, render_part_sample
from inspection.data.demo_shapes import draw_polyline, irregular_blob, smooth_curve
from inspection.data.demo_tissue import TISSUE_DEFECT_KINDS, TISSUE_DEFECTS
from inspection.data.demo_weave import WEAVE_DEFECT_KINDS, render_weave_sample
from inspection.data.leaks import listed

log = logging.getLogger(__name__)

DEFECT_KINDS: tuple[str, ...] = ("crack", "hole", "scratch", "stain")
ALPHA_CUTOFF = 0.12
MARKER = ".inspection-demo.json"  # written into each demo product folder, with its parameters
SPLIT_FOLDERS = ("train", "test", "ground_truth", "calibration")  # where it writes images
DefectFn = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
"""(image (H, W, 3) float32, rng) -> (alpha (H, W) float32 in [0, 1], target (H, W, 3))."""


@dataclass(frozen=True)
class TextureSpec:
    """How a product's texture is turned into samples."""

    source: str  # name of the skimage.data function
    tint: tuple[float, float, float]  # RGB multipliers on the grayscale photo
    crop: tuple[float, float]  # crop side as a fraction of the 512 px photo
    rot90: bool  # rotations keep the texture's look (isotropic textures only)


PRODUCTS: dict[str, TextureSpec] = {
    "brick": TextureSpec("brick", (1.08, 0.86, 0.74), (0.42, 0.50), rot90=False),
    "grass": TextureSpec("grass", (0.80, 1.02, 0.62), (0.40, 0.50), rot90=True),
    "gravel": TextureSpec("gravel", (1.00, 0.97, 0.90), (0.40, 0.50), rot90=True),
}
GLOBAL_PRODUCTS: dict[str, tuple[str, ...]] = {"weave": WEAVE_DEFECT_KINDS}
"""Procedural products with global defects, and their defect kinds."""
EVAL_PRODUCTS: dict[str, TextureSpec] = {
    "tissue": TextureSpec("immunohistochemistry", (1.0, 1.0, 1.0), (0.40, 0.50), rot90=True),
}
"""Evaluation products (``demo_tissue``): textures and defect kinds nothing is tuned on."""
ALIGNED_PRODUCTS: dict[str, tuple[str, ...]] = {"part": PART_DEFECT_KINDS}
"""Evaluation products of aligned parts (``demo_part``), and their defect kinds."""
ALL_PRODUCTS: tuple[str, ...] = (
    *sorted(PRODUCTS), *GLOBAL_PRODUCTS, *EVAL_PRODUCTS, *ALIGNED_PRODUCTS
)  # fmt: skip
DEFAULT_TEST_COUNTS = (10, 6)
"""(good, per defect type) test images of a product without its own entry below."""
HELD_OUT_PER_DEFECT = 52
"""Test images per defect type where a kind's miss bound must be shown: 52 leave 36 held out
(``val_fraction`` 0.3; 51 would too), and 36 is the fewest whose exact 95 % bound is <= 10 %
with none missed."""
TEST_COUNTS: dict[str, tuple[int, int]] = {
    name: (60, HELD_OUT_PER_DEFECT) for name in ("weave", "brick", "grass", "gravel")
}
"""Larger test splits where a kind's miss bound must mean something."""
CALIBRATION_COUNTS: dict[str, int] = {"brick": 200, "grass": 200, "gravel": 200}
"""Good calibration images ``make demo`` writes: at least ``fewest_below_largest`` at 1 %, so
they set the threshold on their own (``pools_out_of_fold``)."""
LABELLED_COUNTS: dict[str, int] = {"grass": 20, "gravel": 20}
"""Labelled defective training images per defect type, where PatchCore alone misses."""
SPLIT_IDS = ("train", "test", "labelled", "calibration")
"""A split's id in each image's seed: its index here."""
UNLIKE_SCALE, UNLIKE_CONTRAST = 1.5, 0.6
"""``unlike`` labelled defects: size factor about their centre, factor on their blend weight."""
WRITE_WORKERS = 2
"""Threads rendering and writing images: numpy, OpenCV and zlib release the GIL, so two halve
the time on two cores; each image is seeded alone, so the bytes do not depend on the count."""
PNG_LEVEL = 1
"""zlib level of the written PNGs (lossless at every level): a noisy 256 px demo image took
~22 ms at Pillow's default 6, more than its rendering (~13 ms), and ~6 ms at 1, for files ~16 %
larger (measured on the brick, reports/tests/suite_time.md)."""


def demo_test_counts(
    product: str, n_test_good: int | None = None, n_test_per_defect: int | None = None
) -> tuple[int, int]:
    """(good, per defect type) test images of ``product``; ``None`` takes its default."""
    good, per_defect = TEST_COUNTS.get(product, DEFAULT_TEST_COUNTS)
    return (
        good if n_test_good is None else n_test_good,
        per_defect if n_test_per_defect is None else n_test_per_defect,
    )


def defect_kinds(product: str) -> tuple[str, ...]:
    """The defect types the demo writes for ``product``."""
    _check_product(product)
    if product in EVAL_PRODUCTS:
        return TISSUE_DEFECT_KINDS
    if product in ALIGNED_PRODUCTS:
        return ALIGNED_PRODUCTS[product]
    return GLOBAL_PRODUCTS.get(product, DEFECT_KINDS)


def write_demo(
    root: str | Path,
    products: Sequence[str] = ("brick", "grass", "gravel"),
    *,
    seed: int = 0,
    size: int = 256,
    n_train: int = 60,
    n_test_good: int | None = None,
    n_test_per_defect: int | None = None,
    n_labelled: int | None = None,
    n_calibration: int | None = None,
    on_image: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write one MVTec-style folder per product under ``root``; returns the product folders.
    Counts left ``None`` take each product's default (``_counts``)."""
    roots = []
    for product in products:
        good, per_defect, labelled, calibration = _counts(
            product, n_test_good, n_test_per_defect, n_labelled, n_calibration
        )
        roots.append(write_demo_product(
            root, product, seed=seed, n_train=n_train, n_test_good=good,
            n_test_per_defect=per_defect, size=size, n_labelled=labelled,
            n_calibration=calibration, on_image=on_image,
        ))  # fmt: skip
    return roots


def demo_image_count(
    products: Sequence[str],
    n_train: int,
    n_test_good: int | None = None,
    n_test_per_defect: int | None = None,
    n_labelled: int | None = None,
    n_calibration: int | None = None,
) -> int:
    """How many images ``write_demo`` writes (for progress bars)."""
    total = 0
    for product in products:
        good, per_defect, labelled, calibration = _counts(
            product, n_test_good, n_test_per_defect, n_labelled, n_calibration
        )
        total += n_train + good + (per_defect + labelled) * len(defect_kinds(product)) + calibration
    return total


def _counts(
    product: str,
    n_test_good: int | None,
    n_test_per_defect: int | None,
    n_labelled: int | None,
    n_calibration: int | None,
) -> tuple[int, int, int, int]:
    """(test good, test per defect, labelled per defect, calibration) images of ``product``;
    a count left ``None`` takes the product's default."""
    good, per_defect = demo_test_counts(product, n_test_good, n_test_per_defect)
    labelled = LABELLED_COUNTS.get(product, 0) if n_labelled is None else n_labelled
    calibration = CALIBRATION_COUNTS.get(product, 0) if n_calibration is None else n_calibration
    return good, per_defect, labelled, calibration


def write_demo_product(
    root: str | Path,
    product: str,
    *,
    seed: int,
    n_train: int,
    n_test_good: int,
    n_test_per_defect: int,
    size: int,
    n_labelled: int = 0,
    n_calibration: int = 0,
    unlike: bool = False,
    on_image: Callable[[Path], None] | None = None,
    only_kinds: Sequence[str] | None = None,
) -> Path:
    """Write ``root/product`` in MVTec AD layout and return it (``prepare_folder`` replaces an
    earlier run's images); ``unlike``: labelled defects unlike the test's (``unlike_defects``);
    ``only_kinds``: of the product's defect kinds, write these only (default all), each image
    byte-identical to a full write's. ``DatasetError`` names a kind the product does not have."""
    kinds = defect_kinds(product)
    unknown = sorted(set(only_kinds or ()) - set(kinds))
    if unknown:
        raise DatasetError(
            f"demo product {product!r} has no defect kind {', '.join(unknown)}; "
            f"its kinds: {', '.join(kinds)}"
        )
    if size < 32:
        raise DatasetError(f"demo image size must be at least 32 px, got {size}")
    if seed < 0:
        raise DatasetError(f"demo seed must be zero or positive, got {seed}")
    out = Path(root) / product
    params = {"product": product, "seed": seed, "size": size, "n_train": n_train}
    params |= {"n_test_good": n_test_good, "n_test_per_defect": n_test_per_defect}
    if n_labelled:
        params |= {"n_labelled": n_labelled, "unlike": unlike}
    if n_calibration:
        params |= {"n_calibration": n_calibration}
    if only_kinds is not None:
        params |= {"only_kinds": sorted(only_kinds)}
    prepare_folder(out, params, kinds)
    render = _renderer(product, size)
    labelled = _renderer(product, size, unlike=True) if unlike else render
    stream = ALL_PRODUCTS.index(product)
    count = write_samples(
        out, params, kinds, render, stream=stream, on_image=on_image, render_labelled=labelled,
        only_kinds=only_kinds,
    )  # fmt: skip
    log.info("wrote demo product %s (%d images) to %s", product, count, out)
    return out


Renderer = Callable[[Sequence[int], str | None], tuple[np.ndarray, np.ndarray | None]]


def write_samples(
    out: Path,
    params: Mapping[str, Any],
    kinds: Sequence[str],
    render: Renderer,
    *,
    stream: int,
    workers: int = WRITE_WORKERS,
    compression: int = PNG_LEVEL,
    on_image: Callable[[Path], None] | None = None,
    render_labelled: Renderer | None = None,
    only_kinds: Sequence[str] | None = None,
) -> int:
    """Write ``params``' counts (``n_train``, ``n_test_good``, ``n_test_per_defect``, optional
    ``n_labelled`` and ``n_calibration``) of ``render(seed, kind)`` images and masks into
    ``out`` on ``workers`` threads, each seeded (``params["seed"]``, ``stream``, split, kind,
    index), labelled ones by ``render_labelled``; PNGs at zlib level ``compression``; defects
    of ``only_kinds`` only when given (seeded by their place in ``kinds`` all the same).
    Returns how many images."""
    written = [kind for kind in kinds if only_kinds is None or kind in only_kinds]
    jobs = [("train", "good", i) for i in range(params["n_train"])]
    jobs += [("test", "good", i) for i in range(params["n_test_good"])]
    jobs += [("test", kind, i) for kind in written for i in range(params["n_test_per_defect"])]
    jobs += [("labelled", kind, i) for kind in written for i in range(params.get("n_labelled", 0))]
    jobs += [("calibration", "good", i) for i in range(params.get("n_calibration", 0))]

    def run(job: tuple[str, str, int]) -> Path:
        split, kind, index = job
        split_id = SPLIT_IDS.index(split)
        kind_id = ("good", *kinds).index(kind)
        draw = (render_labelled or render) if split == "labelled" else render
        image, mask = draw(
            (params["seed"], stream, split_id, kind_id, index), None if kind == "good" else kind
        )
        path = out / _image_name(split, kind, index)
        _write_png(path, image, compression)
        if mask is not None:
            _write_png(out / _mask_name(split, kind, index), mask, compression)
        return path

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path in pool.map(run, jobs):
            if on_image is not None:
                on_image(path)
    return len(jobs)


def _image_name(split: str, kind: str, index: int) -> str:
    """Where the generator writes an image of ``split`` (one of ``SPLIT_IDS``)."""
    folder = "train" if split == "labelled" else split
    return f"{folder}/{kind}/{index:03d}.png"


def _mask_name(split: str, kind: str, index: int) -> str:
    """Where the generator writes the mask of a defective image of ``split``."""
    folder = f"ground_truth/{LABELLED_MASKS}" if split == "labelled" else "ground_truth"
    return f"{folder}/{kind}/{index:03d}_mask.png"


def _renderer(product: str, size: int, *, unlike: bool = False) -> Renderer:
    """``(seed, kind) -> (image, mask)`` for ``product``; ``unlike``: defects drawn unlike the
    test's (``unlike_defects``; texture products only, ``DatasetError`` for the others)."""
    if unlike and (product in GLOBAL_PRODUCTS or product in ALIGNED_PRODUCTS):
        raise DatasetError(f"unlike labelled defects: texture products only, not {product!r}")
    if product in GLOBAL_PRODUCTS or product in ALIGNED_PRODUCTS:
        procedural = render_weave_sample if product in GLOBAL_PRODUCTS else render_part_sample

        def render_global(seed: Sequence[int], kind: str | None) -> tuple[np.ndarray, Any]:
            image, mask, level = procedural(size, seed, kind)
            finish_rng = np.random.default_rng(np.random.SeedSequence(list(seed)).spawn(4)[3])
            return _finish(image, level, finish_rng), mask

        return render_global
    spec = PRODUCTS.get(product) or EVAL_PRODUCTS[product]  # checked by defect_kinds
    texture = load_texture(spec)
    defects = TISSUE_DEFECTS if product in EVAL_PRODUCTS else DEFECTS
    if unlike:
        defects = unlike_defects(defects)
    return lambda seed, kind: render_sample(texture, spec, size, seed, kind, defects)


def unlike_defects(defects: Mapping[str, DefectFn]) -> dict[str, DefectFn]:
    """``defects`` drawn ``UNLIKE_SCALE`` times larger about their centre, their blend weight
    times ``UNLIKE_CONTRAST``: labelled defects that differ from the tested ones."""

    def unlike(draw: DefectFn) -> DefectFn:
        def defect(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            alpha, target = draw(image, rng)
            ys, xs = np.nonzero(alpha)
            centre = (float(xs.mean()), float(ys.mean())) if len(xs) else (0.0, 0.0)
            warp = cv2.getRotationMatrix2D(centre, 0.0, UNLIKE_SCALE)
            height, width = alpha.shape
            grown = cv2.warpAffine(alpha, warp, (width, height), flags=cv2.INTER_LINEAR)
            return (grown * UNLIKE_CONTRAST).astype(np.float32), target

        return defect

    return {kind: unlike(draw) for kind, draw in defects.items()}


def load_texture(spec: TextureSpec) -> np.ndarray:
    """The product's photo as (512, 512, 3) float32 RGB in [0, 255]."""
    # deferred: skimage
    from skimage import data  # local: keeps `import inspection.data` light

    photo = getattr(data, spec.source)().astype(np.float32)
    if photo.ndim == 2:
        photo = photo[:, :, None]
    return np.clip(photo * np.asarray(spec.tint, np.float32), 0, 255)


def render_sample(
    texture: np.ndarray,
    spec: TextureSpec,
    size: int,
    seed: Sequence[int],
    kind: str | None,
    defects: Mapping[str, DefectFn] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One sample: (size, size, 3) uint8 RGB and, for a defect, its (size, size) uint8 0/255
    mask; ``kind=None`` with the same seed gives the same image without the defect."""
    base_rng, defect_rng, finish_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(list(seed)).spawn(3)
    )
    image = _base_crop(texture, spec, size, base_rng)
    level = float(image.mean())  # photometric jitter pivots on the clean image: no global change
    mask = None
    if kind is not None:
        alpha, target = (DEFECTS if defects is None else defects)[kind](image, defect_rng)
        alpha = np.where(alpha >= ALPHA_CUTOFF, alpha, 0.0).astype(np.float32)
        image = image * (1.0 - alpha[:, :, None]) + target * alpha[:, :, None]
        mask = np.where(alpha > 0, 255, 0).astype(np.uint8)
    return _finish(image, level, finish_rng), mask


# --- base texture ------------------------------------------------------------------------------


def _base_crop(
    texture: np.ndarray, spec: TextureSpec, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Random crop with rescale, flips and (optionally) rot90: (size, size, 3) float32."""
    full = texture.shape[0]
    side = round(full * rng.uniform(*spec.crop))
    y, x = rng.integers(0, full - side + 1, size=2)
    crop = texture[y : y + side, x : x + side]
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1, :]
    if spec.rot90:
        crop = np.rot90(crop, int(rng.integers(0, 4)))
    return np.ascontiguousarray(crop, dtype=np.float32)


def _finish(image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Light/contrast jitter, a soft illumination gradient and sensor noise; to uint8."""
    size = image.shape[0]
    gain = rng.uniform(0.9, 1.1)
    contrast = rng.uniform(0.9, 1.1)
    offset = rng.uniform(-8, 8)
    image = (image - level) * contrast + level * gain + offset
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    ramp = 1.0 + rng.uniform(0, 0.08) * (np.cos(angle) * xx + np.sin(angle) * yy)
    image = image * ramp[:, :, None]
    image = image + rng.normal(0, 2.0, image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# --- defects -----------------------------------------------------------------------------------
# Each returns (alpha, target): alpha (H, W) float32 in [0, 1], target (H, W, 3) float32; the
# image becomes image * (1 - alpha) + target * alpha.


def _scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    points = smooth_curve(rng, size, rng.uniform(0.25, 0.55) * size)
    width = rng.uniform(1.1, 1.8) * size / 256
    fade = np.sin(np.linspace(0.15, np.pi - 0.15, len(points) - 1)) ** 0.5
    line = draw_polyline(image.shape[:2], points, np.full(len(points) - 1, width))
    # strength fades towards the ends of the scratch
    strength = _along_curve(image.shape[:2], points, fade)
    alpha = np.clip(cv2.GaussianBlur(line, (0, 0), 0.6) * strength * rng.uniform(0.8, 0.95), 0, 1)
    # bright: exposed lighter material; dark: a groove (lost in busy textures, so only on calm ones)
    bright = rng.random() < 0.7 or float(image.std()) > 0.35 * float(image.mean())
    target = image * 0.4 + np.float32(rng.uniform(160, 200)) if bright else image * 0.25
    return alpha, target.astype(np.float32)


def _along_curve(shape: tuple[int, int], points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A (H, W) map giving each pixel the value of the nearest curve segment (1 far away)."""
    out = np.ones(shape, np.float32)
    radius = 4
    for (x, y), v in zip(points[:-1], values, strict=True):
        x0, y0 = int(x) - radius, int(y) - radius
        ys, xs = slice(max(0, y0), y0 + 2 * radius), slice(max(0, x0), x0 + 2 * radius)
        out[ys, xs] = np.minimum(out[ys, xs], v)
    return out


def _crack(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    shape = image.shape[:2]
    core = np.zeros(shape, np.float32)
    step = max(2.0, size / 32)
    total = rng.uniform(0.3, 0.5) * size
    branches = [(rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0, 2 * np.pi), 1.0, 0)]
    while branches:
        start, angle, width, depth = branches.pop()
        points = [start]
        drift = angle
        for _ in range(int(total * 0.45**depth / step)):
            drift += rng.normal(0, 0.08)  # the crack's course bends slowly ...
            heading = drift + rng.normal(0, 0.45)  # ... and zigzags segment by segment
            nxt = points[-1] + step * rng.uniform(0.6, 1.4) * np.array(
                [np.cos(heading), np.sin(heading)]
            )
            if not (2 <= nxt[0] < size - 2 and 2 <= nxt[1] < size - 2):
                break
            points.append(nxt)
            if depth == 0 and rng.random() < 0.06:
                side = rng.choice([-1, 1])
                branches.append((nxt, drift + side * rng.uniform(0.4, 0.9), width * 0.6, 1))
        if len(points) < 2:
            continue
        pts = np.asarray(points, np.float32)
        taper = np.linspace(2.0, 0.6, len(pts) - 1) * rng.uniform(0.7, 1.3, len(pts) - 1)
        w = width * size / 256 * taper
        core = np.maximum(core, draw_polyline(shape, pts, w))
    alpha = np.clip(cv2.GaussianBlur(core, (0, 0), 0.5) * rng.uniform(0.85, 0.95), 0, 1)
    return alpha.astype(np.float32), (image * 0.2 + 6).astype(np.float32)


def _hole(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A pit: dark floor keeping faint texture, a lit inner wall, a shadowed one, a bright rim."""
    size = image.shape[0]
    radius = rng.uniform(0.03, 0.06) * size
    blob = irregular_blob(rng, size, radius)
    angle = rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(angle), np.sin(angle)], np.float32)
    # inward normals of the wall from the gradient of a smoothed blob
    soft = cv2.GaussianBlur(blob, (0, 0), max(1.0, radius * 0.35))
    gy, gx = np.gradient(soft)
    norm = np.sqrt(gx**2 + gy**2) + 1e-6
    facing = (gx * light[0] + gy * light[1]) / norm  # +1: wall faces the light
    wall = np.clip(
        norm / max(float(norm.max()), 1e-6) * 1.5, 0, 1
    )  # 1 near the edge, 0 deep inside
    floor = image * 0.28 + 10
    inside = floor * (1 + wall * np.clip(facing, 0, 1) * 1.4)[:, :, None]
    inside = inside * (1 - 0.5 * wall * np.clip(-facing, 0, 1))[:, :, None]
    # rim: broken material around the pit, lit on the side away from the light
    ring_sigma = max(0.8, size / 220)
    ring = np.clip(cv2.GaussianBlur(blob, (0, 0), ring_sigma) * 2.2 - blob * 2.2, 0, 1)
    rim_light = np.clip(0.3 - 0.7 * facing, 0, 1)
    rim = image * 0.8 + 60
    rim_alpha = ring * rim_light * rng.uniform(0.5, 0.7)
    alpha = np.maximum(blob, rim_alpha)
    target = np.where((blob >= rim_alpha)[:, :, None], inside, rim)
    return alpha.astype(np.float32), target.astype(np.float32)


def _stain(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    blob = irregular_blob(rng, size, rng.uniform(0.06, 0.11) * size)
    # a mottled interior: low-frequency noise modulates the stain's strength
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), size / 40)
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    soft = cv2.GaussianBlur(blob, (0, 0), size / 70)
    if rng.random() < 0.5:  # brown rust / dirt
        tint, strength = np.array([0.78, 0.55, 0.32], np.float32), rng.uniform(0.6, 0.8)
    else:  # dark oil with a slight blue sheen
        tint, strength = np.array([0.40, 0.43, 0.50], np.float32), rng.uniform(0.7, 0.85)
    alpha = np.clip(soft * (0.55 + 0.45 * noise) * strength, 0, 1)
    target = image * tint
    return alpha.astype(np.float32), target.astype(np.float32)


DEFECTS: dict[str, DefectFn] = {
    "crack": _crack,
    "hole": _hole,
    "scratch": _scratch,
    "stain": _stain,
}


# --- files -------------------------------------------------------------------------------------


def _check_product(product: str) -> None:
    if product not in ALL_PRODUCTS:
        raise DatasetError(
            f"unknown demo product {product!r}; valid products: {', '.join(ALL_PRODUCTS)}"
        )


def prepare_folder(out: Path, params: dict, kinds: Sequence[str] | None = None) -> None:
    """Remove a previous demo's images (only the files its ``MARKER`` names: other content
    raises ``DatasetError``, nothing deleted) and record ``params`` there; ``kinds`` default: a
    demo product's, else the folders present."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise DatasetError(
                f"{out} exists and was not written by the demo generator; "
                "choose another output folder or remove it"
            )
        _remove_generated(out, kinds)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n", encoding="utf-8")


def _remove_generated(out: Path, kinds: Sequence[str] | None) -> None:
    """Delete the files the previous run wrote; refuse (deleting nothing) if there are others."""
    present = sorted(
        path.relative_to(out).as_posix()
        for split in SPLIT_FOLDERS
        for path in (out / split).rglob("*")
        if path.is_symlink() or not path.is_dir()
    )
    generated = _previous_names(out, kinds)
    foreign = [name for name in present if name not in generated]
    if foreign:
        raise DatasetError(
            f"{out} holds files the demo generator did not write: {listed(foreign, 3)}; "
            "move them out of the folder or choose another output folder"
        )
    for name in present:
        (out / name).unlink()
    for split in SPLIT_FOLDERS:  # the emptied folders, deepest first
        for folder in sorted((out / split).rglob("*"), key=lambda p: len(p.parts), reverse=True):
            folder.rmdir()
        if (out / split).is_dir():
            (out / split).rmdir()


def _previous_names(out: Path, kinds: Sequence[str] | None) -> set[str]:
    """The files (relative POSIX paths) of the run recorded in ``out``'s ``MARKER``."""
    try:
        params = json.loads((out / MARKER).read_text(encoding="utf-8"))
        n_train, n_good, n_defect = (
            int(params[key]) for key in ("n_train", "n_test_good", "n_test_per_defect")
        )
        n_labelled = int(params.get("n_labelled", 0))
        n_calibration = int(params.get("n_calibration", 0))
    except (OSError, ValueError, TypeError, KeyError):
        return set()  # an unreadable marker vouches for no file
    if kinds is None:
        product = params.get("product")
        present = (p.name for p in (out / "test").glob("*") if p.name != "good")
        kinds = defect_kinds(product) if product in ALL_PRODUCTS else sorted(present)
    names = {f"train/good/{i:03d}.png" for i in range(n_train)}
    names |= {f"test/good/{i:03d}.png" for i in range(n_good)}
    names |= {_image_name("calibration", "good", i) for i in range(n_calibration)}
    for kind in kinds:
        for split, count in (("test", n_defect), ("labelled", n_labelled)):
            names |= {_image_name(split, kind, i) for i in range(count)}
            names |= {_mask_name(split, kind, i) for i in range(count)}
    return names


def _write_png(path: Path, array: np.ndarray, compression: int = PNG_LEVEL) -> None:
    """Write a PNG deterministically (no timestamps or other metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", compress_level=compression)
