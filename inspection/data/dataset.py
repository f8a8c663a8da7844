"""Dataset model and readers: the MVTec AD and MVTec LOCO layouts and custom folders described
in YAML.

A ``Dataset`` is a frozen list of ``Sample`` records. Readers are strict about folders (a
missing one raises ``DatasetError`` naming it) and lenient about files: missing or unmatched
masks, empty folders and loose images are recorded, so ``data.check`` reports all at once.

MVTec AD layout (``load_mvtec``)::

    <product>/train/good/*.png
    <product>/test/good/*.png                            optional: without test/, a fifth of
                                                         train/good is held out (``hold_out_good``)
    <product>/test/<defect>/*.png
    <product>/ground_truth/<defect>/<stem>_mask.png
    <product>/train/<defect>/*.png                       optional: labelled defects that teach
    <product>/ground_truth/train/<defect>/<stem>_mask.png  optional: their masks (none: image-level)
    <product>/calibration/good/*.png                     optional: good images that only calibrate

Labelled defects in ``train/<defect>/`` teach a mixed model; ``calibration/good/`` images never
enter the model, only set the threshold. Names match in any letter case; hidden files are skipped.

MVTec LOCO layout (read by ``load_mvtec`` too; ``Dataset.layout`` names which)::

    <product>/ground_truth/<defect>/<stem>/000.png, 001.png ...   a folder of masks per image,
                                                         one a region: read as their union
                                                         (``core.images.read_mask_levels``)
    <product>/validation/good/*.png                      good images that only calibrate, as
                                                         calibration/good/ (never trained on,
                                                         never measured)

Every other folder (``calibration/<not good>``, ``train/good/<sub>``, ``<product>/<other>`` ...)
is not read, and ``Dataset.unread_dirs`` names it for ``data check``.

Custom folders (``load_folder_spec``), paths relative to the YAML file::

    name: widget
    normal_dir: images/good            # normal images (train, and test unless below)
    abnormal_dirs: {scratch: images/scratch, dent: images/dent}
    mask_dir: masks                    # optional: masks/<defect>/<stem>[_mask].png or masks/<stem>[_mask].png
    normal_test_dir: images/good_test  # optional: held-out normal images
    calibration_dir: images/calibration  # optional: good images that only calibrate
    test_split_ratio: 0.2              # share of normal_dir moved to test when no normal_test_dir
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from inspection.core.config import from_mapping, read_yaml
from inspection.core.errors import ConfigError, DatasetError, ImageDecodeError
from inspection.core.fingerprint import fingerprint_files
from inspection.core.images import IMAGE_SUFFIXES, list_images, mask_files, probe_image

Split = Literal["train", "test", "calibration"]
SPLITS: tuple[str, ...] = ("train", "test", "calibration")
GOOD = "good"
MASK_SUFFIX = "_mask"
MIN_TEST_GOOD = 2
HELD_OUT_SHARE = 0.2
"""Without a ``test/`` folder, the share of ``train/good`` held out as good test images."""
NEEDS_TEST_GOOD = (
    f"training needs at least {MIN_TEST_GOOD} held-out good parts in test/good to set and check "
    "its threshold; move a fifth of train/good there, or remove test/ and training holds them "
    "out itself (test/<defect>/ is optional)"
)
"""Good test images training needs to calibrate and measure (``data check`` says so too)."""
MVTEC_LAYOUT = "MVTec layout: train/good, test/<defect>, ground_truth/<defect>/<stem>_mask.png"
CALIBRATION_DIR = "calibration/good"
"""Good images that only calibrate the threshold (never trained on, never measured)."""
VALIDATION_DIR = "validation/good"
"""MVTec LOCO's good validation images: read as ``CALIBRATION_DIR`` images."""
MVTEC_AD, MVTEC_LOCO, FOLDER_SPEC = "MVTec AD", "MVTec LOCO", "folder spec"
"""``Dataset.layout`` names."""
LAYOUT_FOLDERS = (
    "train/good, train/<defect>, test/good, test/<defect>, ground_truth/, calibration/good, "
    "validation/good; a folder spec's named folders"
)
"""The folders a dataset's images are read from (``data check`` names them)."""
MASK_LAYOUTS = (
    "looked for <stem>_mask.<ext> or <stem>.<ext> in the defect's mask folder (MVTec AD: "
    "ground_truth/<defect>/), or a folder <stem>/ of masks there (MVTec LOCO)"
)
"""Where a defective image's mask is looked for (``data check`` names it when none is)."""
LABELLED_MASKS = "train"
"""``ground_truth/train/<defect>/``: the masks of labelled defective training images."""


@dataclass(frozen=True)
class Sample:
    """One image: ``label`` is 0 for good and 1 for defective; ``defect_type`` is "good" for 0.
    A ``train`` sample with label 1 is a labelled defect that teaches (its mask optional)."""

    path: Path
    split: Split
    label: int
    defect_type: str
    mask_path: Path | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.split == "calibration" and self.label != 0:
            raise ValueError("a calibration sample must be good (label 0)")
        if self.label not in (0, 1):
            raise ValueError(f"label must be 0 (good) or 1 (defective), got {self.label!r}")
        if (self.label == 0) != (self.defect_type == GOOD):
            raise ValueError(
                f"label {self.label} does not match defect_type {self.defect_type!r} "
                f"(label 0 if and only if defect_type is {GOOD!r})"
            )


@dataclass(frozen=True)
class Dataset:
    """A named set of samples under ``root``, with what the check reports: ``unmatched_masks``
    (no image found for them), ``empty_dirs``, ``loose_images`` (directly in ``test/``) and
    ``broken_links``, ``unread_dirs`` (folders the ``layout`` does not read);
    ``held_out_of_train``: see ``hold_out_good``. Folders and files that are symbolic links are
    followed and keep their names inside the dataset folder. A sample's ``mask_path`` may be a
    folder of masks (MVTec LOCO)."""

    name: str
    root: Path
    samples: tuple[Sample, ...]
    unmatched_masks: tuple[Path, ...] = field(default=())
    empty_dirs: tuple[Path, ...] = field(default=())
    loose_images: tuple[Path, ...] = field(default=())
    held_out_of_train: bool = False
    """No ``test/`` folder: the good test images are ``train/good`` images held out."""
    broken_links: tuple[Path, ...] = field(default=())
    """Symbolic links in the dataset's folders whose target does not exist."""
    layout: str = MVTEC_AD
    unread_dirs: tuple[Path, ...] = field(default=())

    @property
    def train_samples(self) -> tuple[Sample, ...]:
        """The good training images (``train/good``)."""
        return tuple(s for s in self.samples if s.split == "train" and s.label == 0)

    @property
    def labelled_samples(self) -> tuple[Sample, ...]:
        """The labelled defective training images (``train/<defect>``), masked or image-level."""
        return tuple(s for s in self.samples if s.split == "train" and s.label == 1)

    @property
    def test_samples(self) -> tuple[Sample, ...]:
        return tuple(s for s in self.samples if s.split == "test")

    @property
    def calibration_samples(self) -> tuple[Sample, ...]:
        """The good calibration images (``calibration/good``): scored, never trained on."""
        return tuple(s for s in self.samples if s.split == "calibration")

    @property
    def defect_types(self) -> tuple[str, ...]:
        """Sorted defect types present in the test split, without "good"."""
        return tuple(sorted({s.defect_type for s in self.test_samples if s.label == 1}))

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {defect_type: n}}``, e.g. ``{"train": {"good": 60}, "test": {...}}``
        (``calibration`` only where the dataset has calibration images)."""
        counts: dict[str, Counter[str]] = {"train": Counter(), "test": Counter()}
        for sample in self.samples:
            counts.setdefault(sample.split, Counter())[sample.defect_type] += 1
        return {split: dict(sorted(c.items())) for split, c in counts.items()}

    def files(self) -> list[Path]:
        """Every image and mask file the samples refer to (a mask folder's files)."""
        files = [s.path for s in self.samples]
        files += [
            m for s in self.samples if s.mask_path is not None for m in mask_files(s.mask_path)
        ]
        return files

    def check_readable(self) -> None:
        """``DatasetError`` listing every image or mask file whose header does not read as an
        image (``probe_image``): all of them at once, before any training starts."""
        files, problems = self.files(), []
        for path in files:
            try:
                probe_image(path)
            except ImageDecodeError as exc:
                problems.append(str(exc))
        if problems:
            shown = "\n  ".join(problems[:MAX_LISTED])
            hidden = len(problems) - MAX_LISTED
            more = f"\n  ... and {hidden} more" if hidden > 0 else ""
            raise DatasetError(
                f"dataset {self.name!r}: {len(problems)} of {len(files)} files are not "
                f"readable images; fix or remove them:\n  {shown}{more}"
            )

    def fingerprint(self) -> dict:
        """Content fingerprint over all image and mask files, paths relative to ``root``:
        ``{"name", "sha256", "count", "files": {rel_path: sha256}}``."""
        try:
            result = fingerprint_files(self.files(), self.root)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot fingerprint dataset {self.name!r}: {exc}") from exc
        return {"name": self.name, **result}


MAX_LISTED = 10
"""Unreadable files named in one ``check_readable`` error."""


# --- MVTec AD ----------------------------------------------------------------------------------


def load_mvtec(root: str | Path) -> Dataset:
    """Read one MVTec AD or MVTec LOCO category folder (``<product>/train/good``, ``test/*``,
    ``ground_truth``; module docstring)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}{_nearest(root)}")
    train_dir = root / "train" / GOOD
    if not train_dir.is_dir() and (loose := list_images(root)):
        raise DatasetError(
            f"{root}: {len(loose)} loose image(s) and no train/good folder: move the good ones "
            f"to train/good ({MVTEC_LAYOUT}), or describe the folder as it is in a YAML file "
            "(name, normal_dir: ., abnormal_dirs; datasets/README.md, 'Layout: your own "
            "folders') and pass that .yaml instead of the folder"
        )
    _require_dir(train_dir, f"train/good folder not found ({MVTEC_LAYOUT})")
    test_dir = root / "test"
    gt_dir = root / "ground_truth"

    train, held_out = _images_or_raise(train_dir), []
    if not test_dir.is_dir():
        train, held_out = hold_out_good(train)
    samples = [Sample(p, "train", 0, GOOD) for p in train]
    samples += [Sample(p, "test", 0, GOOD) for p in held_out]
    found = _Found()
    labelled = [f for f in _subfolders(root / "train") if f.name != GOOD]
    for folder in labelled:
        samples += found.defects(
            folder, "train", folder.name, [gt_dir / LABELLED_MASKS / folder.name]
        )
    for defect_dir in _subfolders(test_dir) if test_dir.is_dir() else ():
        defect = defect_dir.name
        if defect == LABELLED_MASKS:
            raise DatasetError(
                f"{defect_dir}: a test defect type may not be named {LABELLED_MASKS!r} "
                f"(ground_truth/{LABELLED_MASKS}/ holds the labelled training masks); rename it"
            )
        if defect == GOOD:
            samples += found.good(defect_dir, "test")
        else:
            samples += found.defects(defect_dir, "test", defect, [gt_dir / defect])
    calibration = [root / d for d in (CALIBRATION_DIR, VALIDATION_DIR) if (root / d).is_dir()]
    for folder in calibration:
        samples += found.good(folder, "calibration")
    unmatched = [] if not gt_dir.is_dir() else _unused_images(gt_dir, found.used)
    loose = tuple(list_images(test_dir)) if test_dir.is_dir() else ()
    rest = (tuple(unmatched), tuple(found.empty), loose, bool(held_out), _dangling_links(root))
    loco = (root / VALIDATION_DIR).is_dir() or any(m.is_dir() for m in found.used)
    read = {train_dir, *labelled, *calibration}
    read |= set(_subfolders(test_dir)) if test_dir.is_dir() else set()
    unread = _unread_dirs(root, read, gt_dir)
    layout = MVTEC_LOCO if loco else MVTEC_AD
    return Dataset(root.name, root, tuple(samples), *rest, layout=layout, unread_dirs=unread)


def hold_out_good(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, held out) of a product's good images without a ``test/`` folder: the
    ``held_out_count`` whose file names' sha256 rank lowest (the same names for the same
    folder, whatever order the files are listed in)."""
    if len(paths) <= MIN_TEST_GOOD:
        raise DatasetError(
            f"train/good has {len(paths)} image(s) and there is no test/ folder: training "
            f"holds {MIN_TEST_GOOD} good images out to set and check its threshold, so it needs "
            f"at least {MIN_TEST_GOOD + 1}"
        )
    held = set(sorted(paths, key=_name_hash)[: held_out_count(len(paths))])
    return [p for p in paths if p not in held], [p for p in paths if p in held]


def held_out_count(n: int) -> int:
    """Good images held out of ``n`` without a ``test/`` folder: ``HELD_OUT_SHARE`` of them,
    rounded, at least ``MIN_TEST_GOOD`` (20 -> 4, 61 -> 12)."""
    return max(MIN_TEST_GOOD, round(n * HELD_OUT_SHARE))


def _name_hash(path: Path) -> int:
    """The sha256 of the file name's bytes as the file system holds them (any encoding)."""
    return int(hashlib.sha256(os.fsencode(path.name)).hexdigest(), 16)


@dataclass
class _Found:
    """What reading a dataset's folders found beside its samples: ``empty`` folders and the
    masks ``used``, with a per-folder index of mask names (``_find_mask``)."""

    empty: list[Path] = field(default_factory=list)
    used: set[Path] = field(default_factory=set)
    index: dict[Path, dict[str, Path]] = field(default_factory=dict)

    def good(self, folder: Path, split: Split) -> list[Sample]:
        return [Sample(path, split, 0, GOOD) for path in self._images(folder)]

    def defects(
        self, folder: Path, split: Split, defect: str, mask_folders: list[Path]
    ) -> list[Sample]:
        """The ``defect`` images of ``folder``, each with its mask from ``mask_folders``."""
        samples = []
        for path in self._images(folder):
            mask = _find_mask(path.stem, mask_folders, self.index)
            if mask is not None:
                self.used.add(mask)
            samples.append(Sample(path, split, 1, defect, mask))
        return samples

    def _images(self, folder: Path) -> list[Path]:
        images = list_images(folder)
        if not images:
            self.empty.append(folder)
        return images


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _unread_dirs(root: Path, read: set[Path], scanned: Path) -> tuple[Path, ...]:
    """The top-most folders under ``root`` whose images the layout does not read: neither a
    ``read`` folder (whose own subfolders are not read either: images are listed one level
    deep), nor inside ``scanned`` (ground_truth: its leftover masks are reported one by one),
    nor on the way to one of them."""
    unread: list[Path] = []
    ways = {parent for folder in read for parent in folder.parents} | set(scanned.parents)
    pending = [root]
    while pending:
        for sub in _subfolders(pending.pop()):
            if sub == scanned or sub in read:
                unread += [s for s in _subfolders(sub) if s not in read] if sub in read else []
            elif sub in ways:
                pending.append(sub)
            else:
                unread.append(sub)
    return tuple(sorted(unread))


# --- custom folders ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderSpec:
    """The YAML description of a custom dataset; paths are relative to the YAML file."""

    name: str
    normal_dir: Path
    abnormal_dirs: dict[str, Path] = field(default_factory=dict)
    mask_dir: Path | None = None
    normal_test_dir: Path | None = None
    test_split_ratio: float = 0.2
    calibration_dir: Path | None = None


def load_folder_spec(yaml_path: str | Path) -> Dataset:
    """Read a custom dataset described by a YAML ``FolderSpec``."""
    yaml_path = Path(yaml_path)
    spec = from_mapping(FolderSpec, read_yaml(yaml_path), where=str(yaml_path))
    if not 0.0 <= spec.test_split_ratio < 1.0:
        raise ConfigError(
            f"{yaml_path}: test_split_ratio must be in [0, 1), got {spec.test_split_ratio}"
        )
    if GOOD in spec.abnormal_dirs:
        raise ConfigError(f"{yaml_path}: abnormal_dirs may not use the name {GOOD!r}")
    base = yaml_path.resolve().parent
    normal_dir = _spec_dir(yaml_path, spec.normal_dir, "normal_dir")
    normals = _images_or_raise(normal_dir)
    read = {normal_dir}
    if spec.normal_test_dir is not None:
        test_dir = _spec_dir(yaml_path, spec.normal_test_dir, "normal_test_dir")
        train, test = normals, list_images(test_dir)
        read.add(test_dir)
    else:
        train, test = _split_normals(normals, spec.test_split_ratio)
    samples = [Sample(p, "train", 0, GOOD) for p in train]
    samples += [Sample(p, "test", 0, GOOD) for p in test]
    found = _Found()
    if spec.calibration_dir is not None:
        folder = _spec_dir(yaml_path, spec.calibration_dir, "calibration_dir")
        samples += found.good(folder, "calibration")
        read.add(folder)

    mask_dir = None if spec.mask_dir is None else _spec_dir(yaml_path, spec.mask_dir, "mask_dir")
    for defect, rel in sorted(spec.abnormal_dirs.items()):
        folder = _spec_dir(yaml_path, rel, f"abnormal_dirs.{defect}")
        mask_folders = [] if mask_dir is None else [mask_dir / defect, mask_dir]
        samples += found.defects(folder, "test", defect, mask_folders)
        read.add(folder)
    unmatched = [] if mask_dir is None else _unused_images(mask_dir, found.used)
    dirs = [base, *(s.path.parent for s in samples), *([mask_dir] if mask_dir else [])]
    root = Path(os.path.commonpath([str(d) for d in dirs]))
    spec_dirs = {s.path.parent for s in samples} | ({mask_dir} if mask_dir else set())
    broken = tuple(sorted({p for d in spec_dirs for p in _dangling_links(d)}))
    scanned = [mask_dir] if mask_dir is not None else []
    unread = sorted(  # the named folders' subfolders: images are listed one level deep
        sub for folder in read for sub in _subfolders(folder) if sub not in read | set(scanned)
    )
    rest = (tuple(unmatched), tuple(found.empty), (), False, broken, FOLDER_SPEC, tuple(unread))
    return Dataset(spec.name, root, tuple(samples), *rest)


def load_dataset(path: str | Path) -> Dataset:
    """A folder is read as MVTec AD; a ``.yaml``/``.yml`` file as a custom folder spec."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            raise DatasetError(f"dataset spec not found: {path}")
        return load_folder_spec(path)
    if path.is_file():
        raise DatasetError(
            f"{path}: expected an MVTec-style folder or a .yaml folder spec, got a file"
        )
    return load_mvtec(path)


# --- helpers -----------------------------------------------------------------------------------


def _nearest(missing: Path) -> str:
    """Where a missing folder's path stops existing, or its look-alike siblings, as a hint."""
    existing = next(p for p in missing.parents if p.is_dir())
    if existing != missing.parent:
        return (
            f" (there is no {existing / missing.relative_to(existing).parts[0]}: unpack the "
            "data set there, or pass the folder where it is)"
        )
    siblings = {p.name.lower(): p.name for p in existing.iterdir() if p.is_dir()}  # any case
    near = difflib.get_close_matches(missing.name.lower(), siblings, n=3)
    return f" (in {existing}: {', '.join(siblings[n] for n in near)}?)" if near else ""


def _require_dir(path: Path, message: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{message}: {path}")


def _spec_dir(yaml_path: Path, rel: object, key: str) -> Path:
    """The folder ``rel`` (relative to the spec file) of ``key``; it must exist."""
    if not isinstance(rel, (str, Path)) or not str(rel).strip():
        raise ConfigError(
            f"{yaml_path}: {key} of the dataset spec needs a folder path, got {rel!r}"
        )
    path = Path(os.path.normpath(yaml_path.resolve().parent / rel))  # links keep their names
    if not path.is_dir():
        raise DatasetError(f"{key} of the dataset spec: folder not found: {path}{_nearest(path)}")
    return path


def _images_or_raise(folder: Path) -> list[Path]:
    images = list_images(folder)
    if not images:
        raise DatasetError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return images


def _find_mask(stem: str, folders: list[Path], index: dict[Path, dict[str, Path]]) -> Path | None:
    """First of ``<folder>/<stem>_mask.<ext>``, ``<folder>/<stem>.<ext>`` or, in the first
    folder (the defect's own), a mask folder ``<folder>/<stem>/`` (MVTec LOCO) that exists, in
    any letter case (``000_mask.PNG``), as ``list_images`` accepts any case."""
    for number, folder in enumerate(folders):
        names = index.get(folder)
        if names is None:
            names = index[folder] = _lower_names(folder)
        for name in (stem + MASK_SUFFIX, stem):
            for suffix in IMAGE_SUFFIXES:
                found = names.get(f"{name}{suffix}".lower())
                if found is not None:
                    return found
        found = names.get(f"{stem}/".lower()) if number == 0 else None
        if found is not None:
            return found
    return None


def _lower_names(folder: Path) -> dict[str, Path]:
    """Lower-cased image file name (a subfolder's with a trailing ``/``) -> path (as laid out:
    links not resolved); of names that differ only in case the first in sorted order wins,
    written last (the others stay unmatched masks)."""
    names = {path.name.lower(): path for path in reversed(list_images(folder))}
    if folder.is_dir():
        names |= {f"{p.name.lower()}/": p for p in reversed(_subfolders(folder))}
    return names


def _unused_images(folder: Path, used: set[Path]) -> list[Path]:
    """Images in ``folder`` and its subfolders (linked ones followed) that are not in ``used``
    nor in a ``used`` mask folder."""
    folders = [folder, *sorted(p for p in _walk(folder) if p.is_dir())]
    return [p for f in folders if f not in used for p in list_images(f) if p not in used]


def _walk(folder: Path) -> list[Path]:
    """Everything under ``folder``, folders that are symbolic links followed (a shared
    ``ground_truth/`` linked in; each real folder once), named by their path inside ``folder``."""
    found, seen, stack = [], set(), [folder]
    while stack:
        top = stack.pop()
        if top.resolve() in seen:
            continue
        seen.add(top.resolve())
        for entry in sorted(top.iterdir()):
            found.append(entry)
            if entry.is_dir():
                stack.append(entry)
    return found


def _dangling_links(root: Path) -> tuple[Path, ...]:
    """Symbolic links under ``root`` whose target does not exist."""
    return tuple(sorted(p for p in _walk(root) if p.is_symlink() and not p.exists()))


def _split_normals(paths: list[Path], ratio: float) -> tuple[list[Path], list[Path]]:
    """Deterministic split by a hash of the file name: stable when images are added."""
    ranked = sorted(paths, key=_name_hash)
    n_test = round(len(paths) * ratio)
    test = set(ranked[:n_test])
    return [p for p in paths if p not in test], [p for p in paths if p in test]
