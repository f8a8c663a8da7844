"""A trained model version as the registry keeps it (``record.json``) and its typed parts."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from inspection.core.bundle import GlobalContextSpec, Preprocessing
from inspection.core.calibration import Calibration, Normalization
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError, RegistryError
from inspection.core.metrics import EvaluationMetrics
from inspection.core.roi import RoiTraining
from inspection.core.tiling import TilingSpec
from inspection.core.verdict import Segmentation

RECORD_FILE = "record.json"
T = TypeVar("T")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The items of ``data`` whose keys are fields of the dataclass ``cls``."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistryError(
            f"invalid {kind} name {name!r}: use letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (at most 64 characters)"
        )
    return name


@dataclass(frozen=True)
class VersionRef:
    """A model version by name, written ``<product>/<version>`` (e.g. ``brick/v0003``)."""

    product: str
    version: str

    def __post_init__(self) -> None:
        check_name("product", self.product)
        check_name("version", self.version)

    @classmethod
    def parse(cls, text: str) -> VersionRef:
        product, sep, version = str(text).partition("/")
        if not sep:
            raise RegistryError(f"model version {text!r} is not of the form <product>/<version>")
        return cls(product, version)

    def __str__(self) -> str:
        return f"{self.product}/{self.version}"


@dataclass(frozen=True)
class DataSplits:
    """Which images (paths relative to the dataset root) a version validated and tested on."""

    validation: tuple[str, ...] = ()
    test: tuple[str, ...] = ()


@dataclass(frozen=True)
class GoodScores:
    """Raw torch-model image scores a version keeps for calibrating its bundles, keyed by path
    under the dataset root: ``out_of_fold``, training images scored by a bank fitted without
    their fold; ``train_full_bank``, by the model itself. A bundle pairs the last two kinds with
    its own scores to carry ``out_of_fold`` into its score space (``fit_transfer``)."""

    out_of_fold: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    train_full_bank: dict[str, float] = field(default_factory=dict)
    folds: int = 0
    validation_calibrates: bool = True
    """False: the good validation scores fitted a fusion's standardisers; calibrate without."""
    roi_masked: bool = False
    """True: every score is of the training ROI (``core.roi.apply_roi``); False: whole images."""
    calibration: dict[str, float] = field(default_factory=dict)
    """Good calibration images (``calibration/good``) scored by the model itself: nothing of
    the model was fitted on them, so a bundle scores them again and calibrates on its own."""


ADDED_DIR = "added"
"""The folder of an incremental version holding a copy of each image it added, named by its
sha256 (a later retrain trains on them too)."""


@dataclass(frozen=True)
class Lineage:
    """How a version was derived from ``parent`` without a full refit: ``method``
    ``incremental`` (new good images' patches added to its bank); ``added_digests``: sha256
    of each added image, in order."""

    parent: str
    method: str
    added_images: int
    added_digests: tuple[str, ...]
    added_patches: int = 0
    bank_rows_before: int = 0
    bank_rows_after: int = 0

    def __post_init__(self) -> None:
        if self.added_images != len(self.added_digests):
            raise ValueError(
                f"lineage: added_images {self.added_images} but {len(self.added_digests)} digests"
            )


@dataclass(frozen=True)
class FitFigures:
    """What training records about the fit beside its metrics (None: not recorded)."""

    fit_seconds: float | None = None
    test_images: int | None = None
    train_tiles: int | None = None
    update_stage_seconds: dict[str, float] | None = None

    def to_mapping(self) -> dict[str, Any]:
        """The keys to merge into a version's metrics mapping (None fields left out)."""
        return {k: v for k, v in to_mapping(self).items() if v is not None}


@dataclass(frozen=True)
class BackboneWeights:
    """Where a version's pretrained backbone weights came from (``source``: bundled, file, hub
    or random) and the mean/std its input is normalised with (None: not recorded)."""

    backbone: str | None = None
    source: str | None = None
    detail: str | None = None
    sha256: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class DatasetRef:
    """The dataset folder a version was trained on and its fingerprint (None: not recorded)."""

    root: Path | None = None
    sha256: str | None = None
    count: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class ModelRecord:
    """One immutable trained model version."""

    product: str
    version: str
    model_kind: str
    created_at: str
    config: dict[str, Any]
    dataset: dict[str, Any]
    metrics: dict[str, Any]
    packages: dict[str, str]
    weights: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path = Path()
    _parsed: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Typed parts already parsed (a record is immutable: each is parsed once)."""

    def _once(self, key: str, parse: Callable[[], T]) -> T:
        """``parse()`` the first time ``key`` is asked for (a failure raises again)."""
        if key not in self._parsed:
            self._parsed[key] = parse()
        return self._parsed[key]

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.product, self.version)

    @property
    def model_version(self) -> str:
        return str(self.ref)

    def evaluation(self) -> EvaluationMetrics:
        """The version's metrics from training, typed (flat files of old versions read too)."""
        return self._once("metrics", self._evaluation)

    def _evaluation(self) -> EvaluationMetrics:
        try:
            return EvaluationMetrics.from_mapping(self.metrics)
        except ConfigError as exc:
            raise RegistryError(f"{self.model_version} metrics: {exc}") from exc

    def fit_figures(self) -> FitFigures:
        """Fit time, test-split size, tiles and update stages recorded with the metrics."""
        known = _known(FitFigures, self.metrics)
        return self._once("fit_figures", lambda: self._parse(FitFigures, known, "metrics"))

    def dataset_ref(self) -> DatasetRef:
        """Which dataset folder (``root``; ``path`` in the first release) and content."""
        known = {k: v for k, v in _known(DatasetRef, self.dataset).items() if v is not None}
        if "root" not in known and self.dataset.get("path"):
            known["root"] = self.dataset["path"]
        return self._once("dataset", lambda: self._parse(DatasetRef, known, "dataset"))

    def dataset_root(self) -> Path:
        """The dataset folder the version was trained on; ``RegistryError`` if not recorded."""
        root = self.dataset_ref().root
        if root is None:
            raise RegistryError(
                f"{self.model_version} does not record its dataset folder; pass --dataset PATH"
            )
        return root

    def calibration(self) -> Calibration:
        """The calibration the version's metrics were judged at (older versions: rebuilt)."""
        recorded = self.evaluation().calibration
        if recorded is not None:
            return recorded
        segmentation = self.segmentation() or Segmentation.global_threshold(0.5)
        return Calibration(self.normalization(), segmentation)

    def preprocessing(self) -> Preprocessing:
        """How the model's input was made in training (what a bundle must reproduce)."""
        return self._typed_extra("preprocessing", Preprocessing)

    def normalization(self) -> Normalization:
        """The trained model's raw thresholds and min-max statistics on its validation split."""
        return self._typed_extra("normalization", Normalization)

    def segmentation(self) -> Segmentation | None:
        """The segmentation selected on the validation split; ``None`` for older versions."""
        return self._recorded("segmentation", Segmentation)

    def global_context(self) -> GlobalContextSpec | None:
        """The fitted global-context component; ``None`` when none was kept."""
        spec = self._recorded("global_context", GlobalContextSpec, if_set=True)
        return spec if spec is not None and spec.components else None

    def lineage(self) -> Lineage | None:
        """The parent this version was derived from; ``None`` for a full training run."""
        return self._recorded("lineage", Lineage)

    def tiling(self) -> TilingSpec | None:
        """The version's tiling (``core.tiling``); None: trained on whole resized images."""
        return self._recorded("tiling", TilingSpec, if_set=True)

    def training_roi(self) -> RoiTraining | None:
        """How training used the product's ROI (``core.roi``); None: it saw every patch."""
        return self._recorded("training_roi", RoiTraining, if_set=True)

    def train_image_count(self) -> int | None:
        """How many images the version was trained on; ``None`` when it recorded no count."""
        count = self.extra.get("train_images")
        return None if count is None else int(count)

    def good_scores(self) -> GoodScores:
        """Scores kept for bundle calibration; empty for versions that recorded none."""
        return self._recorded("good_scores", GoodScores) or GoodScores()

    def splits(self) -> DataSplits:
        """The recorded validation/test split; empty for versions that recorded none."""
        return self._recorded("splits", DataSplits) or DataSplits()

    def _recorded(self, key: str, cls: type[T], *, if_set: bool = False) -> T | None:
        """``extra[key]`` as ``cls``; None when not recorded (``if_set``: or recorded empty)."""
        recorded = self.extra.get(key) if if_set else key in self.extra
        return self._typed_extra(key, cls) if recorded else None

    def _typed_extra(self, key: str, cls: type[T]) -> T:
        """``extra[key]`` validated as ``cls``; a missing or invalid entry names the version."""
        if key not in self.extra:
            raise RegistryError(
                f"{self.model_version} records no {key}; retrain it with this version of inspection"
            )
        return self._once(f"extra.{key}", lambda: self._parse(cls, self.extra[key], key))

    def _parse(self, cls: type[T], data: Any, what: str) -> T:
        """``data`` as ``cls``; a bad entry is a ``RegistryError`` naming the version."""
        try:
            return from_mapping(cls, data, where=f"{self.model_version} {what}")
        except ConfigError as exc:
            raise RegistryError(str(exc)) from exc

    def file(self, name: str) -> Path:
        if name not in self.files:
            raise RegistryError(f"{self.model_version} has no file {name!r}")
        return self.path / name
