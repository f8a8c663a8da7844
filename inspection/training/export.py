"""Export a trained model version to a self-describing OpenVINO bundle (FP32, FP16 or INT8).

The raw torch model (``model.model``, eval mode) takes the normalised NCHW tensor and returns
``pred_score`` (N,) and ``anomaly_map`` (N, 1, h, w); it is converted with
``openvino.convert_model`` with a dynamic batch dimension, so batch 1 and batch N both run.
INT8 is NNCF post-training quantisation on the OpenVINO model, calibrated on good training
images preprocessed exactly as the station will, with the distance/map head kept in FP32.

Every bundle (FP32, FP16, INT8) is then calibrated on its OWN outputs on the version's
validation split (``inspection.core.calibration``: normalisation, thresholds, segmentation)
and measured through the station runtime on the held-out test split at those thresholds. A
non-FP32 bundle is refused (``GateRefusal``) unless false-reject and miss rates, image and
pixel AUROC, AUPRO and region recall stay within ``GateTolerances`` of an FP32 bundle
calibrated the same way, and no NG verdict lacks a region.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import openvino as ov

from inspection.core.bundle import (
    BUNDLE_SCHEMA_VERSION,
    BundleMetadata,
    OutputNames,
    Precision,
    write_bundle_metadata,
)
from inspection.core.calibration import Calibration
from inspection.core.errors import BundleError
from inspection.core.export_gate import (
    BundleFigures,
    ExportRecord,
    GateRecord,
    GateRefusal,
    GateTolerances,
    check_gate,
    with_budget,
)
from inspection.core.fingerprint import fingerprint_files
from inspection.core.images import read_image
from inspection.core.metrics import EvaluationMetrics
from inspection.core.operating_point import OperatingPoint
from inspection.core.outputs import RawOutputs
from inspection.core.refinement import RefinementChoice
from inspection.core.registry import GoodScores, ModelRecord, Registry, utc_now
from inspection.core.validation_scores import ValidationScores, write_validation_scores
from inspection.runtime.inspector import Inspector
from inspection.runtime.preprocess import normalize_score, preprocess
from inspection.runtime.tiled import TiledInspector, tiled_outputs
from inspection.training.bundle_calibration import calibrate_bundle, record_operating_point
from inspection.training.config import load_product_config

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
DEFAULT_CALIBRATION_SIZE = 64
SCORE_OUTPUT, MAP_OUTPUT, POOLED_OUTPUT = "pred_score", "anomaly_map", "pooled_features"
Progress = Callable[[str], None]


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

    @property
    def metrics(self) -> dict[str, Any]:
        return self.metadata.metrics

    @property
    def gate(self) -> GateRecord:
        """The export gate's record (every bundle exported by this module has one)."""
        gate = self.metadata.export_record().gate
        if gate is None:  # pragma: no cover - export_model always records it
            raise BundleError(f"{self.bundle_id} records no export gate")
        return gate


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
def run_bundle(
    bundle_dir: str | Path, samples: Sequence[LabelledSample], *, batch_size: int = 8
) -> RawOutputs:
    """Run the exported model through the station's inference path on ``samples``."""
    if not samples:
        raise BundleError("cannot run a bundle on an empty labelled split")
    inspector = Inspector.from_bundle(bundle_dir)
    if inspector.metadata.tiling is not None:
        return _run_tiled(TiledInspector(inspector), samples)
    prep = inspector.metadata.preprocessing
    scores, maps = [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = np.stack([preprocess(inspector.align(read_image(s.path)), prep) for s in chunk])
        raw_scores, raw_maps = inspector.infer_raw(batch)
        scores.append(raw_scores)
        maps.append(raw_maps)
    return RawOutputs.of_samples(samples, np.concatenate(scores), np.concatenate(maps))


def _run_tiled(tiled: TiledInspector, samples: Sequence[LabelledSample]) -> RawOutputs:
    """Tiled bundles: stitched raw maps and masks at ``evaluation_size`` of the first image."""
    scores, maps, _ = tiled_outputs(tiled, [s.path for s in samples])
    return RawOutputs.of_samples(samples, scores, maps)


def _write_validation_scores(
    bundle_dir: Path, raw_scores: np.ndarray, samples: Sequence[LabelledSample], meta: Any
) -> None:
    scores = [normalize_score(float(raw), meta.normalization) for raw in raw_scores]
    labelled = ValidationScores(
        scores=tuple(round(score, 6) for score in scores),
        labels=tuple(int(s.label) for s in samples),
        split="test",
        defect_types=tuple(s.defect_type for s in samples),
        names=tuple(Path(s.path).name for s in samples),
    )
    write_validation_scores(bundle_dir, labelled)


# --------------------------------------------------------------------- bundles
@dataclass(frozen=True)
class ExportSplits:
    """The labelled data an export uses: good training images quantise INT8, the validation
    split calibrates every bundle, the held-out test split measures and gates it."""

    train_images: tuple[Path, ...]
    validation: tuple[LabelledSample, ...]
    test: tuple[LabelledSample, ...]
    dataset_root: Path
    operating_point: OperatingPoint = field(default_factory=OperatingPoint)
    good_scores: GoodScores = field(default_factory=GoodScores)
    """The version's out-of-fold training scores (``training.bundle_calibration``)."""


@dataclass(frozen=True)
class ExportOptions:
    """How to export: precision, INT8 calibration and accuracy control, the gate."""

    precision: Precision = "fp32"
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    accuracy_control: bool = False
    tolerances: GateTolerances = field(default_factory=GateTolerances)
    force: bool = False
    keep_head_fp32: bool = True
    """INT8: keep the distance/map head in FP32 (False only to measure what quantising it costs)."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.calibration_size < 1:
            raise ValueError(f"calibration_size must be >= 1, got {self.calibration_size}")


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


def _calibrated_bundle(
    model: ov.Model,
    target: Path,
    meta: BundleMetadata,
    splits: ExportSplits,
    say: Progress,
    extra_files: Mapping[str, Path] | None = None,
    *,
    choose_refiner: bool = True,
) -> tuple[BundleMetadata, RawOutputs]:
    """Save ``model`` (with ``extra_files``), calibrate it on its own validation outputs (and,
    with ``choose_refiner``, pick its mask refiner there), run it on the test split."""
    _save_bundle(model, target, meta, meta.precision == "fp16", extra_files)
    if meta.global_context is not None:
        say(f"fitting the global context on the {meta.precision} bundle's own outputs")
        _refit_context(target, meta, splits)
    say(
        f"calibrating the {meta.precision} bundle on its {len(splits.validation)} validation images"
    )
    calibration = calibrate_bundle(
        lambda samples: run_bundle(target, samples), splits.validation, splits.operating_point,
        splits.good_scores, splits.dataset_root, fused=meta.global_context is not None,
        make_sample=lambda path: LabelledSample(path, 0, "good"),
    )  # fmt: skip
    meta = replace(
        meta,
        normalization=calibration.normalization,
        segmentation=calibration.segmentation,
        image_threshold=0.5,
        pixel_threshold=0.5,
        output_calibration=calibration,
    )
    write_bundle_metadata(target, meta)
    if choose_refiner:
        meta = replace(meta, refinement=_refinement(target, splits, say))
        write_bundle_metadata(target, meta)
    say(f"measuring the {meta.precision} bundle on {len(splits.test)} test images")
    return meta, run_bundle(target, splits.test)


def _refinement(bundle_dir: Path, splits: ExportSplits, say: Progress) -> RefinementChoice:
    """The mask refiner that helps this calibrated bundle on the validation split (or none)."""
    from inspection.refine.config import load_refine_config
    from inspection.refine.select import CHOICE_MAX_SIDE, choose_refiner

    inspector = Inspector.from_bundle(bundle_dir)
    source = TiledInspector(inspector) if inspector.metadata.tiling is not None else inspector
    defective = sum(s.label == 1 and s.mask_path is not None for s in splits.validation)
    say(
        f"choosing the mask refiner on {defective} defective validation images "
        f"(longer side <= {CHOICE_MAX_SIDE} px)"
    )
    choice, _ = choose_refiner(source, splits.validation, config=load_refine_config())
    say(f"mask refinement: {choice.describe()}")
    return choice


def _refit_context(target: Path, meta: BundleMetadata, splits: ExportSplits) -> None:
    """Re-fit the bundle's global context on its own graph's outputs (``refit_on_outputs``)
    and re-write the metadata so the file's checksum is the new one's."""
    from inspection.training.global_context import refit_on_outputs

    spec = meta.global_context
    if spec is None:
        return
    inspector = Inspector.from_bundle(target)
    train_pooled = _outputs_of(inspector, splits.train_images, meta)[1] if spec.layers else None
    goods = [s.path for s in splits.validation if s.label == 0]
    local = _outputs_of(inspector, goods, meta)[0]
    context = inspector._context
    if context is None:  # pragma: no cover - from_bundle loads it when the spec is set
        raise BundleError(f"{target}: the global context did not load")
    refit_on_outputs(context, train_pooled, local).save(target / spec.file)
    write_bundle_metadata(target, meta)


def _outputs_of(
    inspector: Inspector, paths: Sequence[Path], meta: BundleMetadata, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray | None]:
    """Local raw scores (N,) and pooled features (N, D) of the bundle graph on ``paths``."""
    scores, pooled = [], []
    for start in range(0, len(paths), batch_size):
        batch = np.stack(
            [
                preprocess(read_image(p), meta.preprocessing)
                for p in paths[start : start + batch_size]
            ]
        )
        chunk_scores, chunk_pooled = inspector.local_outputs(batch)
        scores.append(chunk_scores.astype(np.float64))
        if chunk_pooled is not None:
            pooled.append(chunk_pooled.astype(np.float64))
    return np.concatenate(scores), (np.concatenate(pooled) if pooled else None)


def export_model(
    torch_model: Any,
    out_dir: str | Path,
    *,
    base: BundleMetadata,
    splits: ExportSplits,
    options: ExportOptions,
    progress: Progress | None = None,
    extra_files: Mapping[str, Path] | None = None,
) -> ExportResult:
    """Convert, (quantise), save, calibrate, measure and gate one bundle in ``out_dir``.

    ``base`` carries the identity and preprocessing; normalisation, thresholds and
    segmentation are the bundle's own (``Calibration``). A non-FP32 bundle is measured
    against an FP32 bundle calibrated the same way and refused (``GateRefusal``, the bundle
    is removed) unless every gated figure is within ``options.tolerances``, or ``force``.
    ``extra_files`` ({name in bundle: source}) are copied in (the global-context
    parameters) and checksummed like the model.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise BundleError(f"{out_dir} already exists; refusing to overwrite a bundle")
    say = progress or log.info
    say(f"converting {base.model_kind} to OpenVINO")
    pooled_layers = base.global_context.layers if base.global_context else ()
    fp32_model = convert_torch_model(torch_model, base.preprocessing.input_size, pooled_layers)
    reference: tuple[EvaluationMetrics, BundleFigures] | None = None
    if options.precision != "fp32":
        with tempfile.TemporaryDirectory(prefix="fp32-reference-") as scratch:
            ref_meta = replace(base, precision="fp32")
            cal_meta, outputs = _calibrated_bundle(
                fp32_model,
                Path(scratch) / "bundle",
                ref_meta,
                splits,
                say,
                extra_files,
                choose_refiner=False,
            )
            reference = outputs.measure(_own(cal_meta))
    model, meta = fp32_model, replace(base, precision=options.precision, created_at=utc_now())
    if options.precision == "int8":
        if base.tiling is not None:
            raise BundleError(
                "INT8 export of a tiled model is not supported (its calibration set would be "
                "whole resized images, not tiles); export fp32 or fp16"
            )
        model, meta = _quantised(fp32_model, meta, splits, options, say)
    meta, outputs = _calibrated_bundle(model, out_dir, meta, splits, say, extra_files)
    _write_validation_scores(out_dir, outputs.scores, splits.test, meta)
    metrics, figures = outputs.measure(_own(meta))
    ref_figures = reference[1] if reference else figures
    decision = with_budget(
        check_gate(figures, ref_figures, options.tolerances), figures, _own(meta)
    )
    what = f"{meta.product}/{meta.bundle_id}"
    if not decision.passed:
        if not options.force:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise GateRefusal(
                decision.message(what) + "; not registering it. Try --accuracy-control, more "
                "calibration images (--calibration-size), FP16, or --force."
            )
        log.warning("%s (registering: forced)", decision.message(what))
    gate = GateRecord.decided(
        decision, figures, ref_figures, options.tolerances, force=options.force
    )
    record = ExportRecord(gate=gate)
    if reference is not None:
        drop = _image_auroc_drop(reference[0], metrics)
        record = ExportRecord(gate=gate, reference_fp32=reference[0], image_auroc_drop=drop)
    recorded = {**metrics.to_mapping(), **record.to_mapping()}
    meta = replace(meta, metrics=recorded)
    write_bundle_metadata(out_dir, meta)
    return ExportResult(meta.bundle_id, out_dir, meta)


def _image_auroc_drop(reference: EvaluationMetrics, metrics: EvaluationMetrics) -> float | None:
    """None for a good-only product (no image AUROC without defects)."""
    if reference.image_auroc is None or metrics.image_auroc is None:
        return None
    return reference.image_auroc - metrics.image_auroc


def _own(meta: BundleMetadata) -> Calibration:
    if meta.output_calibration is None:  # pragma: no cover - set by _calibrated_bundle
        raise BundleError(f"{meta.bundle_id} was not calibrated on its own outputs")
    return meta.output_calibration


def _quantised(
    fp32_model: ov.Model,
    meta: BundleMetadata,
    splits: ExportSplits,
    options: ExportOptions,
    say: Progress,
) -> tuple[ov.Model, BundleMetadata]:
    """INT8 model (distance head kept in FP32) and metadata naming its calibration set."""
    from inspection.training.quantize import quantize_int8

    prep = meta.preprocessing
    calibration_paths = sorted(splits.train_images)[: options.calibration_size]
    calibration = [preprocess(read_image(p), prep) for p in calibration_paths]
    validation = None
    if options.accuracy_control:
        validation = [(preprocess(read_image(s.path), prep), s.label) for s in splits.validation]
    say(f"quantising to INT8 on {len(calibration)} good training images")
    model = quantize_int8(
        fp32_model,
        calibration,
        validation=validation,
        max_drop=options.tolerances.image_auroc,
        score_output=SCORE_OUTPUT,
        keep_head_fp32=options.keep_head_fp32,
    )
    fingerprint = fingerprint_files(calibration_paths, splits.dataset_root)
    control = {"max_image_auroc_drop": options.tolerances.image_auroc, "split": "validation"}
    return model, replace(
        meta,
        calibration={
            "split": "train",
            "label": "good",
            "size": fingerprint["count"],
            "sha256": fingerprint["sha256"],
            "files": sorted(fingerprint["files"]),
            "accuracy_control": control if options.accuracy_control else None,
            "head_fp32": options.keep_head_fp32,
        },
    )


# ----------------------------------------------------------- registry versions
def base_metadata(record: ModelRecord, precision: Precision) -> BundleMetadata:
    """Identity, preprocessing and normalisation of a registered version, as bundle metadata."""
    preprocessing = record.preprocessing()
    normalization = record.normalization()
    context = record.global_context()
    pooled = POOLED_OUTPUT if context and context.layers else None
    outputs = OutputNames(score=SCORE_OUTPUT, map=MAP_OUTPUT, pooled=pooled)
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
        inference_precision="f32",
        global_context=context,
        tiling=record.tiling(),
        training_roi=record.training_roi(),
        extra={"exporter": {"openvino": ov.get_version(), "converter": "openvino.convert_model"}},
    )


@dataclass(frozen=True)
class RegistryExport:
    """Which registered version to export (default: the latest), from which dataset folder
    (default: the one it was trained on), and whether the new bundle goes live."""

    version: str | None = None
    dataset_path: Path | None = None
    promote: bool = False
    actor: str = "export"
    """Who promotes it, as recorded in the registry's history."""


def export_bundle(
    registry: Registry,
    product: str,
    options: ExportOptions,
    source: RegistryExport | None = None,
    *,
    progress: Progress | None = None,
) -> ExportResult:
    """Export a registered version and add the bundle to the registry.

    ``options`` set the precision, INT8 calibration and the gate (``options.tolerances``
    against FP32; with ``accuracy_control`` NNCF's image-AUROC budget is
    ``tolerances.image_auroc``); ``source`` picks the version and whether to promote it.
    """
    from inspection.data.dataset import load_dataset
    from inspection.training.train import load_trained_model

    source = source or RegistryExport()
    record = (
        registry.version(product, source.version)
        if source.version
        else registry.latest_version(product)
    )
    base, part_files = with_part_setup(base_metadata(record, options.precision))
    if base.bundle_id in registry.bundle_ids(product):
        raise BundleError(
            f"bundle {product}/{base.bundle_id} already exists; bundles are immutable"
        )
    dataset = load_dataset(source.dataset_path or record.dataset_root())
    model = load_trained_model(record)
    with tempfile.TemporaryDirectory(prefix=f"export-{product}-") as scratch:
        result = export_model(
            model.model,
            Path(scratch) / base.bundle_id,
            base=base,
            splits=export_splits(record, dataset),
            options=options,
            progress=progress,
            extra_files=_context_files(record) | part_files,
        )
        target = registry.add_bundle(product, result.bundle_dir, result.bundle_id)
    if source.promote:
        reason = f"exported {options.precision}"
        registry.promote(product, result.bundle_id, actor=source.actor, reason=reason)
    return replace(result, bundle_dir=target)


def export_splits(record: ModelRecord, dataset: Any) -> ExportSplits:
    """The splits ``record`` recorded, as images of ``dataset`` (a loaded dataset folder)."""
    return ExportSplits(
        train_images=tuple(s.path for s in dataset.train_samples),
        validation=tuple(split_samples(record, dataset, "validation")),
        test=tuple(held_out_test_samples(record, dataset)),
        dataset_root=dataset.root,
        operating_point=record_operating_point(record),
        good_scores=record.good_scores(),
    )


def with_part_setup(
    base: BundleMetadata, config_dir: Path | None = None
) -> tuple[BundleMetadata, dict[str, Path]]:
    """``base`` with its product's ROI, alignment and units (``configs/products``), and the
    files they need in the bundle (the alignment reference image, checksummed like any file)."""
    config = load_product_config(base.product, config_dir)
    trained = base.training_roi
    if trained is not None and trained.roi != config.roi:
        raise BundleError(
            f"{base.model_version} was trained with a different ROI than products/"
            f"{base.product}.yaml has now (patches outside the training ROI are not in the "
            "model): retrain the product, or restore the ROI it was trained with"
        )
    meta = replace(base, roi=config.roi, alignment=config.alignment, units=config.units)
    if config.alignment is None or config.reference is None:
        return meta, {}
    if not config.reference.is_file():
        raise BundleError(
            f"products/{base.product}.yaml: reference image {config.reference} not found "
            "(alignment needs it; generate the dataset or fix the path)"
        )
    return meta, {config.alignment.file: config.reference}


def _context_files(record: ModelRecord) -> dict[str, Path]:
    """The global-context parameter file of a version (none without a global component)."""
    context = record.global_context()
    if context is None:
        return {}
    return {context.file: record.file(context.file)}


def held_out_test_samples(record: ModelRecord, dataset: Any) -> list[LabelledSample]:
    """The version's held-out test split (not the validation images that set its thresholds).

    Falls back to the whole test split when the record lists no split.
    """
    return split_samples(record, dataset, "test")


def split_samples(
    record: ModelRecord, dataset: Any, split: Literal["validation", "test"]
) -> list[LabelledSample]:
    """The labelled images of the version's recorded ``split`` ("validation" or "test").

    A record without splits (older versions) falls back to the whole test split.
    """
    chosen = set(getattr(record.splits(), split))
    if not chosen:
        log.warning(
            "%s records no %s split: using the whole test split", record.model_version, split
        )
    samples = []
    for s in dataset.test_samples:
        rel = Path(s.path).resolve().relative_to(dataset.root).as_posix()
        if not chosen or rel in chosen:
            samples.append(LabelledSample(Path(s.path), s.label, s.defect_type, s.mask_path))
    if not samples:
        raise BundleError(
            f"none of the {split} images recorded for {record.model_version} are in {dataset.root}"
        )
    return samples
