"""Export a trained model version to a self-describing OpenVINO bundle (FP32, FP16 or INT8).

The raw torch model (``model.model``, eval mode) takes the normalised NCHW tensor and returns
``pred_score`` (N,) and ``anomaly_map`` (N, 1, h, w); it is converted with
``openvino.convert_model`` with a dynamic batch dimension, so batch 1 and batch N both run.
INT8 is NNCF post-training quantisation on the OpenVINO model, calibrated on good training
images preprocessed exactly as the station will. Every bundle is evaluated through the station
runtime on the labelled test split; an INT8 bundle whose image AUROC drops more than the
tolerance below FP32 is refused unless forced.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from inspection.core.bundle import (
    BUNDLE_SCHEMA_VERSION,
    VALIDATION_SCORES_FILE,
    BundleMetadata,
    Normalization,
    Precision,
    Preprocessing,
    write_bundle_metadata,
)
from inspection.core.config import from_mapping
from inspection.core.errors import BundleError, InspectionError
from inspection.core.fingerprint import fingerprint_files
from inspection.core.images import read_image, read_mask
from inspection.core.registry import ModelRecord, Registry, utc_now
from inspection.runtime.inspector import Inspector
from inspection.runtime.preprocess import normalize_score, preprocess

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
DEFAULT_CALIBRATION_SIZE = 64
SCORE_OUTPUT, MAP_OUTPUT, POOLED_OUTPUT = "pred_score", "anomaly_map", "pooled_features"
Progress = Callable[[str], None]


class AccuracyDropError(InspectionError):
    """An INT8 bundle lost more image AUROC than allowed; the message says how much."""


@dataclass(frozen=True)
class LabelledSample:
    """One test image with its label (0 good, 1 defective), defect type and optional mask."""

    path: Path
    label: int
    defect_type: str
    mask_path: Path | None = None


@dataclass(frozen=True)
class ExportResult:
    bundle_id: str
    bundle_dir: Path
    metadata: BundleMetadata
    reference_metrics: dict[str, Any] | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        return self.metadata.metrics


# ----------------------------------------------------------------- conversion
class _ScoreAndMap:
    """Factory for the wrapper module (built lazily so importing this file needs no torch)."""

    @staticmethod
    def wrap(torch_model: Any, pooled_layers: Sequence[str] = ()) -> Any:
        """(score (N,), map (N, 1, h, w)[, pooled (N, D)]): with ``pooled_layers`` a third
        output averages those backbone feature maps per channel, taken from the same forward
        pass by a hook on the feature extractor (no second backbone run)."""
        import torch

        class ScoreAndMap(torch.nn.Module):
            def __init__(self, model: torch.nn.Module) -> None:
                super().__init__()
                self.model = model
                self.layers = tuple(pooled_layers)
                self._features: dict[str, torch.Tensor] = {}

            def _keep(self, _module: Any, _inputs: Any, output: Any) -> None:
                self._features = dict(output)

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
                hook = None
                if self.layers:
                    hook = feature_extractor(self.model).register_forward_hook(self._keep)
                try:
                    out = self.model(x)
                finally:
                    if hook is not None:
                        hook.remove()
                amap = out.anomaly_map
                if amap.ndim == 3:
                    amap = amap.unsqueeze(1)
                score = out.pred_score
                if score is None:
                    score = torch.amax(amap, dim=(-3, -2, -1))
                if not self.layers:
                    return score.reshape(-1), amap
                pooled = torch.cat([self._features[k].mean(dim=(2, 3)) for k in self.layers], 1)
                return score.reshape(-1), amap, pooled

        return ScoreAndMap(torch_model).eval()


def feature_extractor(torch_model: Any) -> Any:
    """The backbone feature extractor ({layer: (N, C, h, w)}) of a PatchCore or STFPM model."""
    for path in ("feature_extractor", "teacher_model"):
        module = getattr(torch_model, path, None)
        if module is not None:
            return module
    raise BundleError(f"{type(torch_model).__name__} has no backbone feature extractor")


@contextlib.contextmanager
def _no_chunking() -> Iterator[None]:
    """PatchCore splits big nearest-neighbour searches into a Python loop; tracing would freeze
    the loop at the traced batch size, so export with one chunk (dynamic batch stays valid)."""
    try:
        from anomalib.models.image.patchcore import torch_model as patchcore
    except ImportError:  # pragma: no cover - anomalib is a training dependency
        yield
        return
    saved = patchcore.DEFAULT_CHUNK_SIZE
    patchcore.DEFAULT_CHUNK_SIZE = 1 << 40
    try:
        yield
    finally:
        patchcore.DEFAULT_CHUNK_SIZE = saved


def convert_torch_model(
    torch_model: Any, input_size: tuple[int, int], pooled_layers: Sequence[str] = ()
) -> ov.Model:
    """Convert the eval-mode torch model to OpenVINO with input (?, 3, h, w) and named outputs
    (``pooled_features`` too when ``pooled_layers`` are given)."""
    import torch

    height, width = input_size
    wrapper = _ScoreAndMap.wrap(torch_model.eval(), pooled_layers)
    with _no_chunking(), torch.no_grad():
        model = ov.convert_model(
            wrapper,
            example_input=torch.zeros(1, 3, height, width),
            input=[(-1, 3, height, width)],
        )
    expected = 3 if pooled_layers else 2
    if len(model.outputs) != expected:
        raise BundleError(f"converted model has {len(model.outputs)} outputs, expected {expected}")
    model.outputs[0].get_tensor().set_names({SCORE_OUTPUT})
    model.outputs[1].get_tensor().set_names({MAP_OUTPUT})
    if pooled_layers:
        model.outputs[2].get_tensor().set_names({POOLED_OUTPUT})
    model.inputs[0].get_tensor().set_names({"image"})
    return model


# ----------------------------------------------------------------- evaluation
def _read_mask(path: Path | None, size: tuple[int, int]) -> np.ndarray:
    return read_mask(path, size)


def evaluate_bundle(
    bundle_dir: str | Path,
    samples: Sequence[LabelledSample],
    *,
    batch_size: int = 8,
    write_scores: bool = False,
) -> dict[str, Any]:
    """Metrics of a bundle on labelled samples, run through the station's inference path.

    Computed like training's (``inspection.training.evaluate.compute_metrics``): raw scores
    and raw maps at the model input resolution, raw thresholds, ground-truth masks resized
    with nearest neighbour; so they compare directly with the version's own metrics.
    ``write_scores`` also writes each image's normalised score and label to the bundle's
    ``validation_scores.json`` (the dashboard's threshold trade-offs start from it).
    """
    from inspection.training.evaluate import compute_metrics

    if not samples:
        raise BundleError("cannot evaluate a bundle on an empty test split")
    inspector = Inspector.from_bundle(bundle_dir)
    meta = inspector.metadata
    scores, maps = [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = np.stack([preprocess(read_image(s.path), meta.preprocessing) for s in chunk])
        raw_scores, raw_maps = inspector.infer_raw(batch)
        scores.append(raw_scores)
        maps.append(raw_maps)
    size = meta.preprocessing.input_size
    if write_scores:
        _write_validation_scores(Path(bundle_dir), np.concatenate(scores), samples, meta)
    return compute_metrics(
        np.concatenate(scores),
        np.asarray([s.label for s in samples], dtype=np.int64),
        np.concatenate(maps),
        np.stack([_read_mask(s.mask_path, size) for s in samples]),
        [s.defect_type for s in samples],
        image_threshold=meta.normalization.image_threshold_raw,
        pixel_threshold=meta.normalization.pixel_threshold_raw,
        mask_known=np.asarray([s.label == 0 or s.mask_path is not None for s in samples]),
    )


def _write_validation_scores(
    bundle_dir: Path, raw_scores: np.ndarray, samples: Sequence[LabelledSample], meta: Any
) -> None:
    scores = [normalize_score(float(raw), meta.normalization) for raw in raw_scores]
    data = {
        "split": "test",
        "scores": [round(score, 6) for score in scores],
        "labels": [int(s.label) for s in samples],
        "defect_types": [s.defect_type for s in samples],
        "names": [Path(s.path).name for s in samples],
    }
    (bundle_dir / VALIDATION_SCORES_FILE).write_text(json.dumps(data), encoding="utf-8")


def image_auroc_of(metrics: dict[str, Any]) -> float:
    """The overall image AUROC of a metrics dict (flat or with an ``overall`` section)."""
    overall = metrics.get("overall", metrics)
    try:
        return float(overall["image_auroc"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"metrics carry no image_auroc: {sorted(overall)}") from exc


# --------------------------------------------------------------------- bundles
def _save_bundle(
    model: ov.Model,
    target: Path,
    metadata: BundleMetadata,
    compress: bool,
    extra_files: Mapping[str, Path] | None = None,
) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, target / metadata.model_file, compress_to_fp16=compress)
    for name, source in (extra_files or {}).items():
        shutil.copyfile(source, target / name)
    write_bundle_metadata(target, metadata)
    return target


def export_model(
    torch_model: Any,
    out_dir: str | Path,
    *,
    precision: Precision,
    base: BundleMetadata,
    train_images: Sequence[Path],
    test_samples: Sequence[LabelledSample],
    dataset_root: Path,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    accuracy_control: bool = False,
    max_drop: float = 0.01,
    tolerance: float = 0.01,
    force: bool = False,
    progress: Progress | None = None,
    extra_files: Mapping[str, Path] | None = None,
) -> ExportResult:
    """Convert, (quantise), save and evaluate one bundle in ``out_dir`` (must not exist).

    ``base`` carries the identity, preprocessing and normalisation; ``precision``, metrics,
    calibration and files are filled in here. ``extra_files`` ({name in bundle: source})
    are copied in (e.g. the global-context parameters) and checksummed like the model.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise BundleError(f"{out_dir} already exists; refusing to overwrite a bundle")
    say = progress or log.info
    say(f"converting {base.model_kind} to OpenVINO")
    pooled_layers = tuple((base.extra.get("global_context") or {}).get("layers", ()))
    fp32_model = convert_torch_model(torch_model, base.preprocessing.input_size, pooled_layers)
    if precision != "int8":
        meta = replace(base, precision=precision, created_at=utc_now())
        _save_bundle(fp32_model, out_dir, meta, precision == "fp16", extra_files)
        say(f"evaluating the {precision} bundle on {len(test_samples)} test images")
        metrics = evaluate_bundle(out_dir, test_samples, write_scores=True)
        return _finalise(out_dir, replace(meta, metrics=metrics), None)

    with tempfile.TemporaryDirectory(prefix="fp32-reference-") as scratch:
        reference_dir = Path(scratch) / "bundle"
        reference_meta = replace(base, precision="fp32")
        _save_bundle(fp32_model, reference_dir, reference_meta, False, extra_files)
        say(f"evaluating the FP32 reference on {len(test_samples)} test images")
        reference = evaluate_bundle(reference_dir, test_samples)

    calibration_paths = sorted(train_images)[: max(1, calibration_size)]
    calibration = [preprocess(read_image(p), base.preprocessing) for p in calibration_paths]
    validation = None
    if accuracy_control:
        validation = [
            (preprocess(read_image(s.path), base.preprocessing), s.label) for s in test_samples
        ]
    say(f"quantising to INT8 on {len(calibration)} good training images")
    from inspection.training.quantize import quantize_int8

    int8_model = quantize_int8(
        fp32_model, calibration, validation=validation, max_drop=max_drop, score_output=SCORE_OUTPUT
    )
    fingerprint = fingerprint_files(calibration_paths, dataset_root)
    meta = replace(
        base,
        precision="int8",
        created_at=utc_now(),
        calibration={
            "split": "train",
            "label": "good",
            "size": fingerprint["count"],
            "sha256": fingerprint["sha256"],
            "files": sorted(fingerprint["files"]),
            "accuracy_control": {"max_drop": max_drop} if accuracy_control else None,
        },
    )
    _save_bundle(int8_model, out_dir, meta, False, extra_files)
    say(f"evaluating the INT8 bundle on {len(test_samples)} test images")
    metrics = evaluate_bundle(out_dir, test_samples, write_scores=True)
    try:
        drop = check_int8_drop(
            image_auroc_of(reference), image_auroc_of(metrics), tolerance=tolerance, force=force
        )
    except AccuracyDropError:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    metrics = {**metrics, "reference_fp32": reference, "image_auroc_drop": drop}
    return _finalise(out_dir, replace(meta, metrics=metrics), reference)


def check_int8_drop(
    fp32_auroc: float, int8_auroc: float, *, tolerance: float, force: bool
) -> float:
    """The image-AUROC drop of INT8 vs FP32; raises ``AccuracyDropError`` above ``tolerance``.

    ``force`` registers anyway (the drop is still recorded in the bundle's metrics).
    """
    drop = float(fp32_auroc) - float(int8_auroc)
    if drop > tolerance + 1e-9:  # float noise at exactly the tolerance is not a drop
        if force:
            log.warning(
                "INT8 image AUROC drop %.4f exceeds %.4f; registering (forced)", drop, tolerance
            )
        else:
            raise AccuracyDropError(
                f"INT8 image AUROC {int8_auroc:.4f} is {drop:.4f} below FP32 ({fp32_auroc:.4f}), "
                f"more than the tolerance {tolerance}; not registering it. Try "
                "--accuracy-control, more calibration images (--calibration-size), FP16, or --force."
            )
    return drop


def _finalise(
    out_dir: Path, meta: BundleMetadata, reference: dict[str, Any] | None
) -> ExportResult:
    write_bundle_metadata(out_dir, meta)
    return ExportResult(meta.bundle_id, out_dir, meta, reference)


# ----------------------------------------------------------- registry versions
def base_metadata(
    record: ModelRecord, precision: Precision, *, resize: str = "area"
) -> BundleMetadata:
    """Identity, preprocessing and normalisation of a registered version, as bundle metadata."""
    extra = record.extra or {}
    if "preprocessing" not in extra or "normalization" not in extra:
        raise BundleError(
            f"{record.model_version} has no preprocessing/normalization in its record; "
            "retrain it with this version of inspection"
        )
    prep_data = {"resize": resize, **extra["preprocessing"]}
    where = f"{record.model_version} record"
    preprocessing = from_mapping(Preprocessing, prep_data, where=f"{where}.preprocessing")
    normalization = from_mapping(
        Normalization, extra["normalization"], where=f"{where}.normalization"
    )
    context = extra.get("global_context")
    outputs = {"score": SCORE_OUTPUT, "map": MAP_OUTPUT}
    if context:
        outputs["pooled"] = POOLED_OUTPUT
    return BundleMetadata(
        schema_version=BUNDLE_SCHEMA_VERSION,
        output_names=outputs,
        bundle_id=f"{record.version}-{precision}",
        product=record.product,
        model_kind=record.model_kind,
        model_version=record.model_version,
        precision=precision,
        preprocessing=preprocessing,
        normalization=normalization,
        source_dataset={k: v for k, v in record.dataset.items() if k != "files"},
        extra={
            "inference_precision": "f32",
            "exporter": {"openvino": ov.get_version(), "converter": "openvino.convert_model"},
            **({"global_context": context} if context else {}),
        },
    )


def export_bundle(
    registry: Registry,
    product: str,
    *,
    precision: Precision,
    version: str | None = None,
    dataset_path: str | Path | None = None,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    accuracy_control: bool = False,
    max_drop: float = 0.01,
    tolerance: float = 0.01,
    force: bool = False,
    promote: bool = False,
    actor: str = "export",
    progress: Progress | None = None,
) -> ExportResult:
    """Export a registered version (default: latest) and add the bundle to the registry."""
    from inspection.data.dataset import load_dataset
    from inspection.training.train import load_trained_model

    record = registry.version(product, version) if version else registry.latest_version(product)
    base = base_metadata(record, precision)
    if base.bundle_id in registry.bundle_ids(product):
        raise BundleError(
            f"bundle {product}/{base.bundle_id} already exists; bundles are immutable"
        )
    dataset = load_dataset(dataset_path or _dataset_path(record))
    train_images = [s.path for s in dataset.train_samples]
    test_samples = held_out_test_samples(record, dataset)
    model = load_trained_model(record)
    with tempfile.TemporaryDirectory(prefix=f"export-{product}-") as scratch:
        result = export_model(
            model.model,
            Path(scratch) / base.bundle_id,
            precision=precision,
            base=base,
            train_images=train_images,
            test_samples=test_samples,
            dataset_root=dataset.root,
            calibration_size=calibration_size,
            accuracy_control=accuracy_control,
            max_drop=max_drop,
            tolerance=tolerance,
            force=force,
            progress=progress,
            extra_files=_context_files(record),
        )
        target = registry.add_bundle(product, result.bundle_dir, result.bundle_id)
    if promote:
        registry.promote(product, result.bundle_id, actor=actor, reason=f"exported {precision}")
    return replace(result, bundle_dir=target)


def _context_files(record: ModelRecord) -> dict[str, Path]:
    """The global-context parameter file of a version (none without a global component)."""
    context = (record.extra or {}).get("global_context")
    if not context:
        return {}
    return {context["file"]: record.file(context["file"])}


def held_out_test_samples(record: ModelRecord, dataset: Any) -> list[LabelledSample]:
    """The version's held-out test split (not the validation images that set its thresholds).

    Falls back to the whole test split when the record lists no split.
    """
    chosen = set((record.extra.get("splits") or {}).get("test") or [])
    samples = []
    for s in dataset.test_samples:
        rel = Path(s.path).resolve().relative_to(dataset.root).as_posix()
        if not chosen or rel in chosen:
            samples.append(LabelledSample(Path(s.path), s.label, s.defect_type, s.mask_path))
    if not samples:
        raise BundleError(
            f"none of the test images recorded for {record.model_version} are in {dataset.root}"
        )
    return samples


def _dataset_path(record: ModelRecord) -> Path:
    for key in ("root", "path"):
        if record.dataset.get(key):
            return Path(record.dataset[key])
    raise BundleError(
        f"{record.model_version} does not record its dataset folder; pass --dataset PATH"
    )
