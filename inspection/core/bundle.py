"""Self-describing model bundles, the contract between export and the line station: OpenVINO
IR files and a ``metadata.json`` carrying all the station needs (it never guesses)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from inspection.core.alignment import AlignmentSpec
from inspection.core.calibration import Calibration, Normalization
from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import BundleError, ConfigError, UnknownKeyError
from inspection.core.export_gate import ExportRecord
from inspection.core.fingerprint import sha256_file
from inspection.core.golden import GoldenOutputs
from inspection.core.images import DEFAULT_SOURCE_BITS, check_source_bits, check_value_range
from inspection.core.input_domain import InputDomain
from inspection.core.metrics import EvaluationMetrics
from inspection.core.refinement import RefinementChoice
from inspection.core.roi import RoiSpec, RoiTraining
from inspection.core.tiling import TilingSpec
from inspection.core.units import PhysicalUnits
from inspection.core.verdict import Segmentation

BUNDLE_SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"
SIGNATURE_FILE = "signature.json"  # not checksummed: it signs the checksums (core.signing)
VALIDATION_SCORES_FILE = "validation_scores.json"  # core.validation_scores
Precision = Literal["fp32", "fp16", "bf16", "int8"]
"""Bundle and SAM refiner precisions; ``bf16``: the FP32 graph at bf16 inference precision."""
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

T = TypeVar("T")


@dataclass(frozen=True)
class Preprocessing:
    """Decoded RGB uint8 image -> model input: ((resize(image, input_size (h, w)) * pixel_scale)
    - mean) / std, NCHW; ``source_bits``: see ``core.images.narrow_to_8_bits``;
    ``source_range``: the declared range of signed and float images (``map_declared_range``;
    None: refused). ``in_graph``: the scale, mean/std, colour order and NCHW layout are the
    graph's first ops (OpenVINO's PrePostProcessor at export, ``training.convert.
    with_preprocessing``): it takes (N, h, w, 3) uint8 RGB, resized first; False (bundles
    exported before): (N, 3, h, w) float32 made by ``runtime.preprocess.preprocess``."""

    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color_order: Literal["RGB", "BGR"] = "RGB"
    pixel_scale: float = 1.0 / 255.0
    resize: Literal["bilinear", "area"] = "bilinear"
    layout: Literal["NCHW"] = "NCHW"
    source_bits: int = DEFAULT_SOURCE_BITS
    source_range: tuple[float, float] | None = None
    in_graph: bool = False

    def __post_init__(self) -> None:
        check_source_bits(self.source_bits, "source_bits")
        check_value_range(self.source_range, "source_range")


@dataclass(frozen=True)
class OutputNames:
    """The model's output tensors: score (N,), map (N, 1, h, w), pooled (N, D) (global context)."""

    score: str = "pred_score"
    map: str = "anomaly_map"
    pooled: str | None = None


@dataclass(frozen=True)
class GlobalContextSpec:
    """A model's global-context component (``core.global_context``): the ``components`` kept
    of the ``candidates`` tried and the validation AUROC that chose them."""

    components: tuple[str, ...]
    layers: tuple[str, ...]
    file: str
    fusion: str
    validation_auroc: dict[str, float] = field(default_factory=dict)
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccuracyControl:
    """NNCF accuracy-controlled quantisation, read from bundles exported while the export
    offered it (new bundles carry None)."""

    max_image_auroc_drop: float | None = None
    split: str = "validation"
    share_of_tolerance: float | None = None


@dataclass(frozen=True)
class QuantizationSet:
    """The good training images an INT8 bundle was quantised on (NNCF)."""

    split: str
    label: str
    size: int
    sha256: str
    files: tuple[str, ...] = ()
    accuracy_control: AccuracyControl | None = None
    head_fp32: bool | None = None
    """The distance/map head kept in FP32."""
    seven_bit_weights: bool | None = None
    """7-bit weights in every layer (no u8 x s8 saturation without VNNI), else the first only."""
    kept_fp32: tuple[str, ...] = ()
    """What quantisation left in FP32 and why, one line a part."""


@dataclass(frozen=True)
class BundleMetadata:
    schema_version: int
    bundle_id: str
    product: str
    model_kind: str
    model_version: str
    precision: Precision
    preprocessing: Preprocessing
    normalization: Normalization
    model_file: str = "model.xml"
    weights_file: str = "model.bin"
    output_names: OutputNames = field(default_factory=OutputNames)
    image_threshold: float = 0.5
    pixel_threshold: float = 0.5
    inference_precision: Literal["f32", "f16", "bf16"] | None = None
    """OpenVINO CPU ``INFERENCE_PRECISION_HINT`` (``f32`` keeps the gated numerics on bf16 CPUs)."""
    global_context: GlobalContextSpec | None = None
    """The fused image-level component; ``None``: the score is the local one alone."""
    tiling: TilingSpec | None = None
    """Tiled inspection (``core.tiling``); None: the whole image resized to the input size."""
    segmentation: Segmentation | None = None
    """How the station draws regions; None: global ``pixel_threshold``."""
    roi: RoiSpec | None = None
    """Where the part is inspected (``core.roi``): outputs outside are masked; None: everywhere."""
    training_roi: RoiTraining | None = None
    alignment: AlignmentSpec | None = None
    """Register each image to the bundle's reference file first (``runtime.alignment``)."""
    units: PhysicalUnits | None = None
    refinement: RefinementChoice | None = None
    """The mask refiner run on NG results, chosen on this bundle's outputs; None: none."""
    quantization_set: QuantizationSet | None = None
    output_calibration: Calibration | None = None
    """Fitted on this bundle's own validation outputs; ``normalization`` and ``segmentation``
    are then its values."""
    golden: GoldenOutputs | None = None
    """Checked on the station's CPU at load (``core.golden``); None: unchecked."""
    input_domain: InputDomain | None = None
    """Checked against every image (``core.input_domain``); None: unchecked."""
    metrics: dict[str, Any] = field(default_factory=dict)
    source_dataset: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    files: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tiling = self.tiling
        if tiling is not None and tuple(tiling.tile_size) != tuple(self.preprocessing.input_size):
            raise ValueError(
                f"tiling.tile_size {tuple(tiling.tile_size)} must equal the model input size "
                f"{tuple(self.preprocessing.input_size)}"
            )
        own = self.output_calibration
        if own is None:
            return
        if own.normalization != self.normalization or own.segmentation != self.segmentation:
            raise ValueError(
                "normalization/segmentation differ from the bundle's output_calibration: "
                "the bundle does not apply what it was calibrated with"
            )

    def evaluation(self) -> EvaluationMetrics:
        """The bundle's own metrics on the held-out test split, typed (any schema so far)."""
        try:
            return EvaluationMetrics.from_mapping(self.metrics)
        except ConfigError as exc:
            raise BundleError(f"bundle {self.product}/{self.bundle_id}: {exc}") from exc

    def export_record(self) -> ExportRecord:
        """What the export recorded beside the metrics: the gate and the FP32 comparison."""
        try:
            return ExportRecord.from_metrics(self.metrics)
        except ConfigError as exc:
            raise BundleError(f"bundle {self.product}/{self.bundle_id}: {exc}") from exc

    def calibrated(self, calibration: Calibration) -> BundleMetadata:
        """This bundle set to ``calibration`` (thresholds at 0.5, its operating point)."""
        return dataclasses.replace(
            self,
            normalization=calibration.normalization,
            segmentation=calibration.segmentation,
            image_threshold=0.5,
            pixel_threshold=0.5,
            output_calibration=calibration,
        )

    @property
    def segmentation_rule(self) -> Segmentation:
        """The bundle's segmentation, or plain thresholding at ``pixel_threshold``."""
        if self.segmentation is not None:
            return self.segmentation
        return Segmentation.global_threshold(self.pixel_threshold)


def write_metadata_json(bundle_dir: str | Path, metadata: Any) -> Path:
    """Write a metadata dataclass as ``metadata.json`` with the sha256 of every other file."""
    bundle_dir = Path(bundle_dir)
    files = {
        path.relative_to(bundle_dir).as_posix(): sha256_file(path)
        for path in sorted(bundle_dir.rglob("*"))
        if path.is_file() and path.name not in (METADATA_FILE, SIGNATURE_FILE)
    }
    data = to_mapping(metadata)
    data["files"] = files
    target = bundle_dir / METADATA_FILE
    target.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    return target


def read_metadata_json(bundle_dir: str | Path, what: str = "model bundle") -> dict[str, Any]:
    """The parsed ``metadata.json`` mapping of a bundle folder; ``BundleError`` if unusable."""
    path = Path(bundle_dir) / METADATA_FILE
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: not a {what} (no {METADATA_FILE})")
    return metadata_object(path.read_bytes(), path)


def metadata_object(raw: bytes, path: Path) -> dict[str, Any]:
    """The bytes of ``metadata.json`` at ``path`` parsed; ``BundleError`` unless a JSON object."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: unreadable metadata: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path}: metadata is not a JSON object")
    return data


def read_versioned_metadata(
    bundle_dir: str | Path, cls: type[T], schema_version: int, what: str
) -> T:
    """``metadata.json`` as ``cls``, at exactly ``schema_version`` (else ``BundleError``)."""
    data = read_metadata_json(bundle_dir, what=what)
    return parse_versioned_metadata(
        data, Path(bundle_dir) / METADATA_FILE, cls, schema_version, what
    )


def parse_versioned_metadata(
    data: dict[str, Any], path: str | Path, cls: type[T], schema_version: int, what: str
) -> T:
    """An already-read ``metadata.json`` mapping as ``cls`` (``read_versioned_metadata``)."""
    version = data.get("schema_version")
    if version != schema_version:
        raise BundleError(
            f"{path}: {what} schema version {version!r} is not supported "
            f"(this station reads version {schema_version})"
        )
    try:
        return from_mapping(cls, _upgrade_legacy_keys(cls, data), where=str(path))
    except UnknownKeyError as exc:
        raise BundleError(f"{exc}. {NEWER_RELEASE}") from exc
    except ConfigError as exc:
        raise BundleError(str(exc)) from exc


NEWER_RELEASE = (
    "Likely exported by a newer release of inspection, which records fields this one does "
    "not know: upgrade this station before its exporting host (docs/deployment.md, "
    "'Upgrading a plant')"
)


_FIELDS_ONCE_IN_EXTRA = ("inference_precision", "global_context")


def _upgrade_legacy_keys(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Schema-1 bundles written before these were fields kept them in ``extra``; the INT8
    quantisation set was called ``calibration`` before it was typed."""
    if cls is not BundleMetadata:
        return data
    data = dict(data)
    if "calibration" in data:
        data.setdefault("quantization_set", data.pop("calibration"))
    extra = data.get("extra")
    if not isinstance(extra, dict):
        return data
    extra = dict(extra)
    data["extra"] = extra
    for key in _FIELDS_ONCE_IN_EXTRA:
        if key in extra:
            data.setdefault(key, extra.pop(key))
    return data


def verify_checksums(
    bundle_dir: str | Path, files: dict[str, str], required: Sequence[str], what: str = "bundle"
) -> None:
    """Check that ``required`` files are listed and every listed file matches its sha256."""
    bundle_dir = Path(bundle_dir)
    require_listed(bundle_dir, files, required)
    for rel, expected in files.items():
        if not (bundle_dir / rel).is_file():
            raise BundleError(f"{bundle_dir}: file {rel} is missing")
        check_digest(bundle_dir, rel, expected, sha256_file(bundle_dir / rel), what)


def require_listed(bundle_dir: Path, files: Mapping[str, object], names: Iterable[str]) -> None:
    """``BundleError`` unless every one of ``names`` has a checksum in ``files``."""
    for name in names:
        if name not in files:
            raise BundleError(f"{bundle_dir}: metadata lists no checksum for {name}")


def check_digest(bundle_dir: Path, name: str, expected: str, actual: str, what: str) -> None:
    """``BundleError`` when file ``name``'s ``actual`` sha256 is not the listed ``expected``."""
    if actual != expected:
        raise BundleError(
            f"{bundle_dir}: checksum mismatch for {name} (expected {str(expected)[:12]}…, "
            f"got {actual[:12]}…): the {what} is corrupt"
        )


write_bundle_metadata = write_metadata_json


def read_bundle_metadata(bundle_dir: str | Path) -> BundleMetadata:
    """Parse and validate ``metadata.json``; anything wrong raises ``BundleError``."""
    return read_versioned_metadata(
        bundle_dir, BundleMetadata, BUNDLE_SCHEMA_VERSION, "model bundle"
    )


def verify_bundle(bundle_dir: str | Path) -> BundleMetadata:
    """Read the metadata and check every listed file's sha256 before anything loads it."""
    metadata = read_bundle_metadata(bundle_dir)
    golden = metadata.golden.files if metadata.golden is not None else ()
    required = (metadata.model_file, metadata.weights_file, *golden)
    verify_checksums(bundle_dir, metadata.files, required)
    return metadata
