"""Validate a dataset file by file: counts, sizes, mask coverage and every problem found.
``check_dataset`` never raises on a bad file: each finding is a ``Problem``, an error (making
``CheckReport.ok`` false) or a warning naming what the product lacks."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from inspection.core.errors import ImageDecodeError
from inspection.core.fingerprint import shown_name
from inspection.core.images import (
    DECLARED_RANGE_KINDS,
    DEFAULT_SOURCE_BITS,
    IMAGE_SUFFIXES,
    READERS,
    UNMEASURED_RULE,
    DecodedImage,
    decode_reduced,
    defect_pixels,
    is_binary_mask,
    read_mask_levels,
)
from inspection.core.operating_point import (
    DEFAULT_BUDGET,
    DEFAULT_VAL_FRACTION,
    n_needed,
    validation_count,
)
from inspection.core.tiling import SmallerThanTile, TilingSpec
from inspection.data.dataset import (
    GOOD,
    LAYOUT_FOLDERS,
    MASK_LAYOUTS,
    MIN_TEST_GOOD,
    MVTEC_AD,
    NEEDS_TEST_GOOD,
    Dataset,
    Sample,
)
from inspection.data.decoded import KEPT
from inspection.data.leaks import held_out_copies, listed, pixel_print

Severity = Literal["error", "warning"]
NARROW_16_BIT = 4096
"""16-bit images whose values all stay below this (12 bits) lose their contrast at 8 bits."""
SMALLER_THAN_TILE = "smaller_than_tile"
BROKEN_LINK = "broken_link"
UNREADABLE = "unreadable"
REFUSE_TRAINING = (SMALLER_THAN_TILE, BROKEN_LINK, UNREADABLE)
"""Findings a training refuses to start with (the image would stop it, or is missing)."""


@dataclass(frozen=True)
class Problem:
    """One finding about one file (or the dataset root for dataset-wide findings)."""

    path: Path
    message: str
    code: str
    severity: Severity = "error"


@dataclass(frozen=True)
class Coverage:
    """Fraction of defect pixels in the masks of one defect type."""

    masks: int
    mean: float
    min: float
    max: float


@dataclass(frozen=True)
class CheckReport:
    """What ``check_dataset`` found. Sizes are (width, height) of readable images."""

    name: str
    root: Path
    counts: dict[str, dict[str, int]]
    sizes: dict[tuple[int, int], int]
    channels: dict[str, int]  # PIL mode of the files, e.g. {"RGB": 80, "L": 2}
    coverage: dict[str, Coverage]
    problems: tuple[Problem, ...] = field(default=())
    budget_note: str | None = None
    """Set when the good images are too few for the product's false-reject budget's guarantee."""
    layout: str = MVTEC_AD
    """The layout the dataset was read as (``Dataset.layout``)."""

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "root": shown_name(self.root),
            "layout": self.layout,
            "ok": self.ok,
            "counts": self.counts,
            "sizes": {f"{w}x{h}": n for (w, h), n in self.sizes.items()},
            "channels": self.channels,
            "coverage": {k: vars(v) for k, v in self.coverage.items()},
            "budget_note": self.budget_note,
            "problems": [{**vars(p), "path": shown_name(p.path)} for p in self.problems],
        }


@dataclass
class _Image:
    """What was learned from reading one file."""

    decoded: DecodedImage | None = None
    problem: str | None = None

    @property
    def array(self) -> np.ndarray | None:
        return None if self.decoded is None else self.decoded.image


def check_dataset(
    dataset: Dataset,
    *,
    on_file: Callable[[Path], None] | None = None,
    image_bits: int | None = None,
    image_range: tuple[float, float] | None = None,
    product_file: Path | None = None,
    budget: float = DEFAULT_BUDGET,
    keep_decoded: bool = False,
    tiling: TilingSpec | None = None,
) -> CheckReport:
    """Check every sample of ``dataset`` (``on_file`` after each image) against the product's
    declared ``image_bits`` (None: 16), ``image_range``, ``budget`` and ``tiling`` (an image
    smaller than one tile is an error); findings tell to edit ``product_file`` (default
    ``products/<name>.yaml``); ``keep_decoded``: for a training that follows."""
    bits = image_bits if image_bits is not None else DEFAULT_SOURCE_BITS
    problems: list[Problem] = []
    sizes: dict[Path, tuple[int, int]] = {}
    modes: Counter[str] = Counter()
    coverage: dict[str, list[float]] = defaultdict(list)
    used: dict[Path, int] = {}
    notes: dict[Path, _Notes] = {}
    prints: dict[str, dict[Path, np.ndarray]] = defaultdict(dict)  # split -> path -> print
    masks_expected = bool(dataset.unmatched_masks) or any(s.mask_path for s in dataset.samples)
    KEPT.clear()

    # decoding dominates and releases the GIL: files are read READERS at a time, in order
    with ThreadPoolExecutor(READERS) as pool:
        images = pool.map(lambda s: _read(s.path, "image", bits, image_range), dataset.samples)
        for sample, image in zip(dataset.samples, images, strict=True):
            if image.decoded is None:
                problems.append(Problem(sample.path, str(image.problem), UNREADABLE))
            else:
                read = image.decoded
                notes[sample.path] = _Notes.of(read)
                height, width = read.image.shape[:2]
                sizes[sample.path] = (width, height)
                modes[read.kind] += 1
                if read.peak is not None:
                    used[sample.path] = max(bits - 8, read.peak.bit_length())
                if keep_decoded:
                    KEPT.keep(sample.path, bits, read.image, image_range)
                prints[sample.split][sample.path] = pixel_print(read.image)
            if _mask_expected(sample, masks_expected):
                problems += _check_mask(sample, image, coverage)
            if on_file is not None:
                on_file(sample.path)

    problems += [
        Problem(p, "mask has no matching image", "extra_mask") for p in dataset.unmatched_masks
    ]
    problems += [
        Problem(p, f"symbolic link to {shown_name(os.readlink(p))}, which does not exist: "
                "restore its target, or remove the link", BROKEN_LINK)
        for p in dataset.broken_links
    ]  # fmt: skip
    problems += _duplicates(prints, dataset.root, (bits, image_range))
    small = _smaller_than_tile(sizes, tiling)
    problems += small
    problems += _mixed_sizes(
        {p: size for p, size in sizes.items() if p not in {s.path for s in small}}
    )
    target = product_file or Path("products") / f"{dataset.name}.yaml"
    problems += _bit_depth(used, bits, dataset.root, target)
    problems += _read_by_rule(notes, image_range, dataset.root, target)
    problems += _ignored(dataset)
    problems += _dataset_findings(dataset)
    return CheckReport(
        name=dataset.name,
        root=dataset.root,
        counts=dataset.counts(),
        sizes=dict(Counter(sizes.values()).most_common()),
        channels=dict(modes.most_common()),
        coverage={k: _coverage(v) for k, v in sorted(coverage.items())},
        problems=tuple(problems),
        budget_note=budget_note(dataset, budget, target),
        layout=dataset.layout,
    )


def _read(path: Path, what: str, bits: int, value_range: tuple[float, float] | None) -> _Image:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _Image(problem=f"{what}: cannot read file ({exc.strerror or exc})")
    try:
        return _Image(decode_reduced(data, name=what, bits=bits, value_range=value_range))
    except ImageDecodeError as exc:
        return _Image(problem=str(exc))
    except Exception as exc:  # a decoder bug must not stop the whole check
        return _Image(problem=f"{what}: cannot decode ({type(exc).__name__}: {exc})")


def _mask_expected(sample: Sample, masks_expected: bool) -> bool:
    """A test defect needs a mask where the dataset has masks; a labelled training defect's is
    optional (without one it is an image-level label), but checked when there."""
    if sample.label != 1:
        return False
    return sample.mask_path is not None if sample.split == "train" else masks_expected


def _check_mask(sample: Sample, image: _Image, coverage: dict[str, list[float]]) -> list[Problem]:
    if sample.mask_path is None:
        message = f"defective image has no mask ({MASK_LAYOUTS})"
        return [Problem(sample.path, message, "mask_missing")]
    path = sample.mask_path
    levels = _read_mask(path)
    if isinstance(levels, str):
        return [Problem(path, levels, UNREADABLE)]
    height, width = levels.shape
    problems = []
    if image.array is not None and image.array.shape[:2] != levels.shape:
        img_h, img_w = image.array.shape[:2]
        message = f"mask is {width}x{height} but its image is {img_w}x{img_h}"
        problems.append(Problem(path, message, "mask_size"))
    if not is_binary_mask(levels):
        problems.append(Problem(path, _not_binary(levels), "mask_not_binary"))
    fraction = float(np.count_nonzero(defect_pixels(levels))) / levels.size
    if fraction == 0.0:
        problems.append(Problem(path, "mask is empty (no defect pixels)", "mask_empty"))
    coverage[sample.defect_type].append(fraction)
    return problems


def _read_mask(path: Path) -> np.ndarray | str:
    """The mask's levels as training reads them (``read_mask_levels``: a file, or a folder's
    union), or why they cannot be."""
    try:
        return read_mask_levels(path, name="mask")
    except ImageDecodeError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug must not stop the whole check
        return f"mask: cannot decode ({type(exc).__name__}: {exc})"


def _not_binary(levels: np.ndarray) -> str:
    distinct = np.unique(levels)
    more = ", ..." if len(distinct) > 5 else ""
    shown = ", ".join(str(v) for v in distinct[:5].tolist()) + more
    return (
        f"mask is not binary: {len(distinct)} distinct values ({shown}); expected 0 for "
        "background and one value (e.g. 255) for defect (training reads values above half "
        "the highest as defect, so soft edges move the drawn outline)"
    )


def _duplicates(
    prints: Mapping[str, dict[Path, np.ndarray]],
    root: Path,
    reading: tuple[int, tuple[float, float] | None],
) -> list[Problem]:
    """Test images that copy a training image, and calibration images that copy a training or
    test image (``data.leaks``, decoded by ``reading``: bits, value range): each named with the
    file it repeats."""
    bits, value_range = reading
    train, test = prints.get("train", {}), prints.get("test", {})
    problems = [
        Problem(path, f"same image content as training image {_relative(match, root)}",
                "train_test_duplicate")
        for path, match in held_out_copies(test, train, bits=bits, value_range=value_range).items()
    ]  # fmt: skip
    calibration = prints.get("calibration", {})
    for seen, what in ((train, "training"), (test, "test")):
        for path, match in held_out_copies(
            calibration, seen, bits=bits, value_range=value_range
        ).items():
            message = (
                f"calibration image has the same content as {what} image "
                f"{_relative(match, root)}: a calibration image must be a good part "
                "the model never saw nor is measured on; remove it from calibration/"
            )
            problems.append(Problem(path, message, "calibration_duplicate"))
    return problems


def _smaller_than_tile(
    sizes: dict[Path, tuple[int, int]], tiling: TilingSpec | None
) -> list[Problem]:
    """An error per image smaller than one tile of ``tiling`` at its scale (None: not tiled)."""
    problems = []
    for path, (width, height) in sizes.items() if tiling is not None else ():
        try:
            tiling.working_size(height, width)
        except SmallerThanTile as exc:
            problems.append(Problem(path, str(exc), SMALLER_THAN_TILE))
    return problems


def _mixed_sizes(sizes: dict[Path, tuple[int, int]]) -> list[Problem]:
    counts = Counter(sizes.values())
    if len(counts) < 2:
        return []
    (common_w, common_h), _ = counts.most_common(1)[0]
    return [
        Problem(path, f"image is {w}x{h} but most images are {common_w}x{common_h}", "mixed_sizes")
        for path, (w, h) in sizes.items()
        if (w, h) != (common_w, common_h)
    ]


def _bit_depth(used: dict[Path, int], bits: int, root: Path, target: Path) -> list[Problem]:
    """One warning naming the 16-bit images read at ``bits`` wrongly for the bits they use: at
    16, those below 12 bits (nearly black); below 16, those above ``2**bits - 1`` (clipped),
    with the ``image_bits`` to set in ``target``."""
    if bits == DEFAULT_SOURCE_BITS:
        paths = [p for p, n in used.items() if 2**n <= NARROW_16_BIT]
        needed = max([8, *(used[p] for p in paths)])
        code, message = (
            "narrow_16_bit",
            (
                f"{len(paths)} 16-bit image(s) use fewer than 12 bits (all values below "
                f"{NARROW_16_BIT}, e.g. 12-bit camera data): "
                f"{listed([_relative(p, root) for p in paths])}. They are read at 8 bits by "
                "taking the high byte, which leaves at most 16 grey levels and loses almost all "
                f"contrast; set image_bits: {needed} (the camera's bit depth) in {target} "
                "so training and every station read them at full contrast, or export the camera "
                "images as 8-bit or as full-range 16-bit (scaled to 0..65535)"
            ),
        )
    else:
        paths = [p for p, n in used.items() if n > bits]
        needed = max([bits, *(used[p] for p in paths)])
        code, message = (
            "over_image_bits",
            (
                f"{len(paths)} 16-bit image(s) use more than the declared image_bits: {bits} (values "
                f"above {2**bits - 1}, up to {needed} bits): "
                f"{listed([_relative(p, root) for p in paths])}. Their brighter pixels clip "
                f"to 255; set image_bits: {needed} in {target} if the camera writes that many bits"
            ),
        )
    return [Problem(root, message, code, "warning")] if paths else []


@dataclass(frozen=True)
class _Notes:
    """What ``_read_by_rule`` needs of a decoded image (its pixels are not kept)."""

    alpha_ignored: bool
    unmeasured: int
    pixels: int
    outside_range: int

    @classmethod
    def of(cls, decoded: DecodedImage) -> _Notes:
        height, width = decoded.source_size
        outside = decoded.clipped_pixels if decoded.kind in DECLARED_RANGE_KINDS else 0
        return cls(decoded.alpha_ignored, decoded.unmeasured_pixels, height * width, outside)


def _read_by_rule(
    notes: Mapping[Path, _Notes],
    value_range: tuple[float, float] | None,
    root: Path,
    target: Path,
) -> list[Problem]:
    """Warnings naming the images read by a rule their owner should know of
    (``core.images``): an alpha channel 0 everywhere read as opaque, pixels without a
    measurement filled, values outside the declared ``image_range`` read as its ends."""
    alpha = [_relative(p, root) for p, n in notes.items() if n.alpha_ignored]
    unmeasured = [
        f"{_relative(p, root)} ({n.unmeasured} px, {n.unmeasured / n.pixels:.1%})"
        for p, n in notes.items()
        if n.unmeasured
    ]
    outside = [
        f"{_relative(p, root)} ({n.outside_range} px)" for p, n in notes.items() if n.outside_range
    ]
    problems = []
    if alpha:
        message = (
            f"{len(alpha)} image(s) have an alpha channel that is 0 everywhere (fully "
            f"transparent) over colour: {listed(alpha)}. They are read as opaque, the colour as "
            "it is (a camera's unused fourth byte), everywhere the product reads them; save "
            "them without alpha (or with alpha 255)"
        )
        problems.append(Problem(root, message, "alpha_ignored", "warning"))
    if unmeasured:
        message = (
            f"{len(unmeasured)} image(s) hold pixels without a measurement: "
            f"{listed(unmeasured)}. {UNMEASURED_RULE}, everywhere the product reads them; "
            "many such pixels mean the sensor's exposure or the part's position needs a look"
        )
        problems.append(Problem(root, message, "unmeasured_pixels", "warning"))
    if outside and value_range is not None:
        low, high = value_range
        message = (
            f"{len(outside)} image(s) have values outside image_range: [{low:g}, {high:g}] "
            f"of {target}: {listed(outside)}. They read as the range's nearest end (0 or "
            "255); widen image_range if the parts reach them"
        )
        problems.append(Problem(root, message, "outside_image_range", "warning"))
    return problems


def _ignored(dataset: Dataset) -> list[Problem]:
    """Warnings for folders without images, folders the layout does not read and images
    outside any split folder."""
    problems = []
    for folder in dataset.unread_dirs:
        message = (
            f"folder is not read ({dataset.layout} layout): its images are neither trained on "
            f"nor tested nor calibrate; move them into a folder the layout reads "
            f"({LAYOUT_FOLDERS}) or remove it"
        )
        problems.append(Problem(folder, message, "unread_folder", "warning"))
    for folder in dataset.empty_dirs:
        what = "good test images" if folder.name == GOOD else "this defect type"
        message = (f"folder has no images (looked for {', '.join(IMAGE_SUFFIXES)}): ignored, so "
                   f"{what} will not be evaluated")  # fmt: skip
        problems.append(Problem(folder, message, "empty_folder", "warning"))
    if dataset.loose_images:
        loose = dataset.loose_images
        names = listed([shown_name(p.name) for p in loose])
        message = (
            f"{len(loose)} image(s) directly in test/ are ignored: {names}; move them into "
            "test/good or test/<defect>"
        )
        problems.append(Problem(loose[0].parent, message, "loose_images", "warning"))
    return problems


def _dataset_findings(dataset: Dataset) -> list[Problem]:
    """Dataset-wide findings: too few good test images (an error, as in training), and
    warnings saying which figure the product lacks and why."""
    problems = []
    defective = [s for s in dataset.samples if s.label == 1]
    if defective and not any(s.mask_path for s in defective) and not dataset.unmatched_masks:
        message = (
            "no masks at all: only image-level metrics possible (pixel AUROC, AUPRO and "
            "region recall unknown)"
        )
        problems.append(Problem(dataset.root, message, "no_masks", "warning"))
    test_good = sum(s.label == 0 for s in dataset.test_samples)
    if test_good < MIN_TEST_GOOD:
        message = f"test/good has {test_good} image(s): {NEEDS_TEST_GOOD}"
        problems.append(Problem(dataset.root, message, "too_few_test_good"))
    if dataset.held_out_of_train:
        held = len(dataset.test_samples)
        message = (
            f"no test/ folder: {held} of {held + len(dataset.train_samples)} train/good images "
            "(picked by file name) are held out to set the threshold and count good parts "
            "rejected. Without defect images nothing shows what the model misses, and export's "
            "gate compares good parts only: add test/<defect>/ images to measure misses"
        )
        problems.append(Problem(dataset.root, message, "held_out_of_train", "warning"))
    elif not any(s.label == 1 for s in dataset.test_samples):
        message = (
            "test split has no defective images: a good-only product (threshold from the "
            "false-reject budget; miss rates per defect kind unknown)"
        )
        problems.append(Problem(dataset.root, message, "no_test_defects", "warning"))
    return problems


def budget_note(
    dataset: Dataset, budget: float = DEFAULT_BUDGET, product_file: Path | None = None
) -> str | None:
    """Too few good calibration images for the false-reject ``budget``'s guarantee (a note: the
    threshold is then above every good score); ``product_file``: where the budget is raised."""
    # PatchCore: every training image (out of fold) + the validation share of test/good +
    # every calibration image
    test_good = sum(s.label == 0 for s in dataset.test_samples)
    n_good = len(dataset.train_samples) + validation_count(test_good)
    n_good += len(dataset.calibration_samples)
    needed = n_needed(budget)
    if n_good >= needed:
        return None
    where = f"operating_point.budget in {product_file}" if product_file else "the budget"
    return (
        f"about {n_good} good calibration images (train/good + {DEFAULT_VAL_FRACTION:.0%} of "
        f"test/good + calibration/good): the {budget:.1%} false-reject budget needs {needed} for its "
        f"guarantee; the bound is then 1/{n_good + 1} (add good images to calibration/good, "
        f"or raise {where})"
    )


def _coverage(fractions: list[float]) -> Coverage:
    array = np.asarray(fractions, np.float64)
    return Coverage(len(array), float(array.mean()), float(array.min()), float(array.max()))


def _relative(path: Path, root: Path) -> str:
    try:
        return shown_name(path.relative_to(root).as_posix())
    except ValueError:
        return shown_name(path)
