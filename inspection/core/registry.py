"""Model registry on disk: immutable versions, exported bundles, live pointer, thresholds.

Layout under the registry root, one folder per product::

    <product>/versions/<version>/record.json   immutable model version (+ checkpoint files)
    <product>/bundles/<bundle_id>/              immutable exported bundle (see core.bundle)
    <product>/live.json                         which bundle the stations serve
    <product>/thresholds.jsonl                  append-only threshold versions
    <product>/events.jsonl                      append-only audit log (promote, rollback, ...)

Every write goes through a per-product file lock and an atomic rename, so a crash
leaves either the old state or the new one, never half of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from filelock import FileLock

from inspection.core.bundle import (
    GlobalContextSpec,
    Preprocessing,
    read_bundle_metadata,
    verify_bundle,
)
from inspection.core.calibration import Calibration, Normalization
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError, RegistryError
from inspection.core.fingerprint import sha256_file
from inspection.core.metrics import EvaluationMetrics
from inspection.core.operating_point import MAX_BUDGET
from inspection.core.roi import RoiTraining
from inspection.core.signing import bundle_digest
from inspection.core.threshold import check_threshold
from inspection.core.tiling import TilingSpec
from inspection.core.verdict import Segmentation

RECORD_FILE = "record.json"
_VERSION_RE = re.compile(r"^v(\d{4,})$")
T = TypeVar("T")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    """Raw torch-model image scores a version keeps for calibrating its bundles
    (``extra["good_scores"]``; keys are paths relative to the dataset root).

    ``out_of_fold``: each training image scored by a bank fitted without its fold (``folds``
    of them; empty when not computed); ``validation``: the validation images;
    ``train_full_bank``: some training images scored by the trained model itself. A bundle
    pairs the last two with its own scores of the same images to carry ``out_of_fold`` into
    its own score space (``core.operating_point.transfer_scores``).
    """

    out_of_fold: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    train_full_bank: dict[str, float] = field(default_factory=dict)
    folds: int = 0


@dataclass(frozen=True)
class Lineage:
    """How a version was derived from a parent version without a full refit.

    ``method``: ``incremental`` (new good images' patches added to the parent's memory bank).
    ``added_digests``: sha256 of each added image, in the order added.
    """

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
    """What training records about the fit beside its metrics (in ``ModelRecord.metrics``).

    ``fit_seconds``: wall time of the fit (an incremental update: of the whole update);
    ``test_images``: the held-out split measured; ``train_tiles``: tiles fitted (tiled models);
    ``update_stage_seconds``: an incremental update's stages. None: not recorded.
    """

    fit_seconds: float | None = None
    test_images: int | None = None
    train_tiles: int | None = None
    update_stage_seconds: dict[str, float] | None = None

    def to_mapping(self) -> dict[str, Any]:
        """The keys to merge into a version's metrics mapping (None fields left out)."""
        return {k: v for k, v in to_mapping(self).items() if v is not None}

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any], where: str = "metrics") -> FitFigures:
        """Read these keys of a version's metrics; the figures are ``EvaluationMetrics``'."""
        names = {f.name for f in fields(cls)}
        return from_mapping(cls, {k: v for k, v in metrics.items() if k in names}, where)


@dataclass(frozen=True)
class BackboneWeights:
    """Where a version's pretrained backbone weights came from (``training.backbones``):
    ``source`` (``bundled``, ``file``, ``hub`` or ``random``) with a ``detail`` and the sha256,
    and the ImageNet mean/std its input is normalised with. None: not recorded."""

    backbone: str | None = None
    source: str | None = None
    detail: str | None = None
    sha256: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class DatasetRef:
    """The dataset folder a version was trained on and its content fingerprint
    (``data.Dataset.fingerprint``: name, sha256 over all files, file count). None: not
    recorded."""

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
        """``parse()`` the first time ``key`` is asked for, the same object afterwards; a
        failure is not kept (it raises again, naming the version)."""
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
        return self._once("fit_figures", self._fit_figures)

    def _fit_figures(self) -> FitFigures:
        try:
            return FitFigures.from_metrics(self.metrics, f"{self.model_version} metrics")
        except ConfigError as exc:
            raise RegistryError(str(exc)) from exc

    def backbone_weights(self) -> BackboneWeights:
        """The pretrained weights the version started from (empty for the first release)."""
        return self._once("weights", lambda: self._parse(BackboneWeights, self.weights, "weights"))

    def dataset_ref(self) -> DatasetRef:
        """Which dataset folder (``root``; ``path`` in the first release) and content."""
        names = {f.name for f in fields(DatasetRef)}
        known = {k: v for k, v in self.dataset.items() if k in names and v is not None}
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
        """The normalisation and segmentation the version's metrics were judged at (older
        versions: from its normalisation, with the global threshold when it records no
        segmentation)."""
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
        if "segmentation" not in self.extra:
            return None
        return self._typed_extra("segmentation", Segmentation)

    def global_context(self) -> GlobalContextSpec | None:
        """The fitted global-context component; ``None`` when the model has none (also when
        every candidate was dropped on validation: see ``global_context_search``)."""
        spec = self.global_context_search()
        return spec if spec is not None and spec.components else None

    def global_context_search(self) -> GlobalContextSpec | None:
        """The recorded global-context choice, kept components or not; ``None``: not tried."""
        if not self.extra.get("global_context"):
            return None
        return self._typed_extra("global_context", GlobalContextSpec)

    def lineage(self) -> Lineage | None:
        """The parent this version was derived from; ``None`` for a full training run."""
        if "lineage" not in self.extra:
            return None
        return self._typed_extra("lineage", Lineage)

    def tiling(self) -> TilingSpec | None:
        """The version's tiling (``core.tiling``); None: trained on whole resized images."""
        if not self.extra.get("tiling"):
            return None
        return self._typed_extra("tiling", TilingSpec)

    def training_roi(self) -> RoiTraining | None:
        """How training used the product's ROI (``core.roi``); None: it saw every patch."""
        if not self.extra.get("training_roi"):
            return None
        return self._typed_extra("training_roi", RoiTraining)

    def train_image_count(self) -> int | None:
        """How many images the version was trained on; ``None`` when it recorded no count."""
        count = self.extra.get("train_images")
        return None if count is None else int(count)

    def good_scores(self) -> GoodScores:
        """Scores kept for bundle calibration; empty for versions that recorded none."""
        if "good_scores" not in self.extra:
            return GoodScores()
        return self._typed_extra("good_scores", GoodScores)

    def splits(self) -> DataSplits:
        """The recorded validation/test split; empty for versions that recorded none."""
        if "splits" not in self.extra:
            return DataSplits()
        return self._typed_extra("splits", DataSplits)

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


@dataclass(frozen=True)
class ThresholdVersion:
    """One threshold version: ``value`` normalised, in (0, 1), for ``bundle_id`` (None: any).

    ``budget``: the false-reject budget the value was chosen for (the dashboard's budget
    control), in (0, ``MAX_BUDGET``]; a station that re-calibrates the bundle re-derives the
    threshold at it (``core.golden.carry_threshold``). None: set by value (older versions too).
    """

    product: str
    number: int
    value: float
    actor: str
    reason: str
    created_at: str
    bundle_id: str | None = None
    budget: float | None = None

    def __post_init__(self) -> None:
        if self.budget is not None and not 0.0 < self.budget <= MAX_BUDGET:
            raise ConfigError(
                f"threshold v{self.number}: the false-reject budget must be in "
                f"(0, {MAX_BUDGET}], got {self.budget}"
            )


@dataclass(frozen=True)
class LiveState:
    product: str
    bundle_id: str
    since: str
    actor: str
    reason: str
    digest: str | None = None
    """sha256 of the bundle manifest at promotion (``inspection.core.signing.bundle_digest``)."""


class Registry:
    """Reads and writes the registry folder. Cheap to construct; holds no state."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ----------------------------------------------------------------- products
    def products(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def _product_dir(self, product: str) -> Path:
        return self.root / check_name("product", product)

    def _lock(self, product: str) -> FileLock:
        directory = self._product_dir(product)
        directory.mkdir(parents=True, exist_ok=True)
        return FileLock(str(directory / ".lock"), timeout=60)

    # ----------------------------------------------------------------- versions
    def create_version(
        self,
        product: str,
        *,
        model_kind: str,
        config: Mapping[str, Any],
        dataset: Mapping[str, Any],
        metrics: Mapping[str, Any],
        packages: Mapping[str, str],
        write_files: Callable[[Path], None] | None = None,
        weights: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        """Create the next immutable version; ``write_files(dir)`` puts artefacts in it."""
        with self._lock(product):
            versions_dir = self._product_dir(product) / "versions"
            versions_dir.mkdir(parents=True, exist_ok=True)
            version = f"v{self._next_number(versions_dir):04d}"
            staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=versions_dir))
            try:
                if write_files is not None:
                    write_files(staging)
                files = {
                    p.relative_to(staging).as_posix(): sha256_file(p)
                    for p in sorted(staging.rglob("*"))
                    if p.is_file()
                }
                record = {
                    "product": product,
                    "version": version,
                    "model_kind": model_kind,
                    "created_at": utc_now(),
                    "config": dict(config),
                    "dataset": dict(dataset),
                    "metrics": dict(metrics),
                    "packages": dict(packages),
                    "weights": dict(weights or {}),
                    "files": files,
                    "extra": dict(extra or {}),
                }
                _write_json(staging / RECORD_FILE, record)
                os.rename(staging, versions_dir / version)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return self.version(product, version)

    def versions(self, product: str) -> list[ModelRecord]:
        versions_dir = self._product_dir(product) / "versions"
        if not versions_dir.is_dir():
            return []
        names = sorted(p.name for p in versions_dir.iterdir() if _VERSION_RE.match(p.name))
        return [self.version(product, name) for name in names]

    def version(self, product: str, version: str) -> ModelRecord:
        path = self._product_dir(product) / "versions" / version
        record_file = path / RECORD_FILE
        if not record_file.is_file():
            known = [r.name for r in (path.parent.iterdir() if path.parent.is_dir() else [])]
            raise RegistryError(
                f"no model version {product}/{version}; known: {', '.join(sorted(known)) or 'none'}"
            )
        data = json.loads(record_file.read_text(encoding="utf-8"))
        return from_mapping(ModelRecord, {**data, "path": path}, str(record_file))

    def latest_version(self, product: str) -> ModelRecord:
        records = self.versions(product)
        if not records:
            raise RegistryError(f"product {product!r} has no trained model versions yet")
        return records[-1]

    @staticmethod
    def _next_number(versions_dir: Path) -> int:
        numbers = [
            int(m.group(1)) for p in versions_dir.iterdir() if (m := _VERSION_RE.match(p.name))
        ]
        return max(numbers, default=0) + 1

    # ------------------------------------------------------------------ bundles
    def add_bundle(self, product: str, source_dir: str | Path, bundle_id: str) -> Path:
        """Copy a verified bundle folder into the registry; an existing id is never overwritten."""
        check_name("bundle", bundle_id)
        verify_bundle(source_dir)
        with self._lock(product):
            bundles_dir = self._product_dir(product) / "bundles"
            bundles_dir.mkdir(parents=True, exist_ok=True)
            target = bundles_dir / bundle_id
            if target.exists():
                raise RegistryError(
                    f"bundle {product}/{bundle_id} already exists; bundles are immutable"
                )
            staging = Path(tempfile.mkdtemp(prefix=f".{bundle_id}-", dir=bundles_dir))
            try:
                shutil.copytree(source_dir, staging, dirs_exist_ok=True)
                os.rename(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return target

    def bundle_ids(self, product: str) -> list[str]:
        bundles_dir = self._product_dir(product) / "bundles"
        if not bundles_dir.is_dir():
            return []
        return sorted(
            p.name for p in bundles_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def bundle_dir(self, product: str, bundle_id: str) -> Path:
        path = self._product_dir(product) / "bundles" / check_name("bundle", bundle_id)
        if not path.is_dir():
            known = ", ".join(self.bundle_ids(product)) or "none"
            raise RegistryError(f"no bundle {product}/{bundle_id}; known: {known}")
        return path

    def bundle_record(self, product: str, bundle_id: str) -> ModelRecord:
        """The model version a bundle was exported from (named in its metadata)."""
        ref = VersionRef.parse(
            read_bundle_metadata(self.bundle_dir(product, bundle_id)).model_version
        )
        if ref.product != product:
            raise RegistryError(
                f"bundle {product}/{bundle_id} was exported from {ref}, another product"
            )
        return self.version(product, ref.version)

    # --------------------------------------------------------- live + audit log
    def live(self, product: str) -> LiveState | None:
        path = self._product_dir(product) / "live.json"
        if not path.is_file():
            return None
        return from_mapping(LiveState, json.loads(path.read_text(encoding="utf-8")), str(path))

    def live_bundle_dir(self, product: str) -> Path:
        state = self.live(product)
        if state is None:
            raise RegistryError(f"product {product!r} has no live bundle; promote one first")
        return self.bundle_dir(product, state.bundle_id)

    def promote(self, product: str, bundle_id: str, *, actor: str, reason: str) -> LiveState:
        """Make ``bundle_id`` the live bundle (after checking its files) and log who and why."""
        bundle_dir = self.bundle_dir(product, bundle_id)
        verify_bundle(bundle_dir)
        digest = bundle_digest(bundle_dir)
        with self._lock(product):
            previous = self.live(product)
            state = LiveState(product, bundle_id, utc_now(), actor, reason, digest)
            self._append_event(
                product,
                "promote",
                actor=actor,
                reason=reason,
                bundle_id=bundle_id,
                bundle_digest=digest,
                previous=previous.bundle_id if previous else None,
            )
            _write_json(self._product_dir(product) / "live.json", asdict(state))
        return state

    def rollback(self, product: str, *, actor: str, reason: str) -> LiveState:
        """Go back to the bundle that was live before the current one."""
        with self._lock(product):
            current = self.live(product)
            if current is None:
                raise RegistryError(f"product {product!r} has no live bundle to roll back")
            history = [e for e in self.events(product) if e["action"] in ("promote", "rollback")]
            # From the event that made the *live* bundle live, not the newest event: a crash
            # between an event and live.json leaves an event for a bundle that never went live.
            previous = _bundle_before(history, current.bundle_id)
            if not previous:
                raise RegistryError(
                    f"product {product!r} has no earlier live bundle to roll back to"
                )
            previous_dir = self.bundle_dir(product, previous)
            verify_bundle(previous_dir)
            digest = bundle_digest(previous_dir)
            state = LiveState(product, previous, utc_now(), actor, reason, digest)
            earlier = _bundle_before(history, previous)
            self._append_event(
                product,
                "rollback",
                actor=actor,
                reason=reason,
                bundle_id=previous,
                previous=earlier,
                rolled_back=current.bundle_id,
                bundle_digest=digest,
            )
            _write_json(self._product_dir(product) / "live.json", asdict(state))
        return state

    def record_event(
        self, product: str, action: str, *, actor: str, reason: str, **details: Any
    ) -> None:
        """Append an audit event (e.g. a retrain decision) under the product lock."""
        with self._lock(product):
            self._append_event(product, action, actor=actor, reason=reason, **details)

    def events(self, product: str) -> list[dict[str, Any]]:
        return _read_jsonl(self._product_dir(product) / "events.jsonl")

    def _append_event(self, product: str, action: str, **details: Any) -> None:
        event = {"at": utc_now(), "product": product, "action": action, **details}
        _append_jsonl(self._product_dir(product) / "events.jsonl", event)

    # --------------------------------------------------------------- thresholds
    def set_threshold(
        self,
        product: str,
        value: float,
        *,
        actor: str,
        reason: str,
        bundle_id: str | None = None,
        budget: float | None = None,
    ) -> ThresholdVersion:
        """Append a new threshold version (normalised score space, 0 < value < 1); ``budget``:
        the false-reject budget it was chosen for, when it was (``ThresholdVersion``)."""
        try:
            value = check_threshold(value)
        except ValueError as exc:
            raise RegistryError(str(exc)) from exc
        if not actor.strip() or not reason.strip():
            raise RegistryError("a threshold change needs who (actor) and why (reason)")
        with self._lock(product):
            number = len(self.threshold_history(product)) + 1
            try:
                version = ThresholdVersion(
                    product, number, float(value), actor, reason, utc_now(), bundle_id,
                    None if budget is None else float(budget),
                )  # fmt: skip
            except ConfigError as exc:
                raise RegistryError(str(exc)) from exc
            row = asdict(version)
            if version.budget is None:  # unset: a line an earlier release still reads
                del row["budget"]
            _append_jsonl(self._product_dir(product) / "thresholds.jsonl", row)
            self._append_event(
                product, "threshold", actor=actor, reason=reason, value=float(value),
                budget=version.budget,
            )  # fmt: skip
        return version

    def threshold_history(self, product: str) -> list[ThresholdVersion]:
        rows = _read_jsonl(self._product_dir(product) / "thresholds.jsonl")
        where = f"{product}/thresholds.jsonl"
        return [from_mapping(ThresholdVersion, row, where) for row in rows]

    def current_threshold(self, product: str) -> ThresholdVersion | None:
        history = self.threshold_history(product)
        return history[-1] if history else None


def _bundle_before(history: list[dict[str, Any]], bundle_id: str) -> str | None:
    """The bundle that was live just before ``bundle_id`` last became live."""
    for event in reversed(history):
        if event.get("bundle_id") == bundle_id:
            return event.get("previous")
    return None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _append_jsonl(path: Path, row: Mapping[str, Any]) -> None:
    """Append one line; after a torn last line (a crash mid-append) it starts a new line, so
    the torn line alone is lost (``_read_jsonl`` skips it), never the row written now."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        torn = handle.tell() > 0 and _last_byte(handle) != b"\n"
        line = json.dumps(row, sort_keys=True, default=str) + "\n"
        handle.write((("\n" if torn else "") + line).encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def _last_byte(handle: BinaryIO) -> bytes:
    handle.seek(-1, os.SEEK_END)
    return handle.read(1)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line after a crash; earlier rows stay valid
    return rows
