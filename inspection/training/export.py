"""Export one bundle (FP32, FP16, BF16 or INT8): convert, quantise, calibrate, measure, gate.

Every bundle records its input domain, is calibrated on its OWN validation outputs and measured
through the station runtime on the test split; a non-FP32 one is refused (``GateRefusal``)
unless its figures stay within ``GateTolerances`` of an FP32 bundle calibrated the same way.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from inspection.core.bundle import (
    PRECISIONS,
    BundleMetadata,
    Precision,
    QuantizationSet,
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
from inspection.core.fingerprint import fingerprint_files, relative_name, shown_name
from inspection.core.global_context import FEATURES
from inspection.core.images import DEFAULT_SOURCE_BITS, read_image
from inspection.core.input_domain import (
    COLOUR_SAMPLE,
    DomainTolerance,
    InputDomain,
    evenly,
    measure_input_domain,
)
from inspection.core.metrics import EvaluationMetrics
from inspection.core.model_record import GoodScores, utc_now
from inspection.core.operating_point import OperatingPoint
from inspection.core.outputs import RawOutputs
from inspection.core.refinement import RefinementChoice
from inspection.core.types import Progress
from inspection.core.validation_scores import ValidationScores, write_validation_scores
from inspection.refine.config import RefineConfig
from inspection.refine.select import CHOICE_MAX_SIDE, choose_refiner
from inspection.runtime.golden import golden_sources, record_golden
from inspection.runtime.graph import fold_patch_distances, project_patch_distances
from inspection.runtime.hardware import cpu_info
from inspection.runtime.model import IN_FLIGHT, BundleModel
from inspection.runtime.preprocess import normalize_score, preprocess
from inspection.training.bundle_calibration import (
    Carried,
    calibrate_bundle,
    fused_out_of_fold,
    refusal_advice,
)
from inspection.training.bundle_runs import BundleRuns, SplitInputs
from inspection.training.convert import convert_torch_model, with_preprocessing
from inspection.training.global_context import ModelOutputs, batched_outputs, refit_on_outputs

log = logging.getLogger(__name__)
Measured = tuple[EvaluationMetrics, BundleFigures]
"""A calibrated bundle's (metrics, gate figures) on the test split."""

DEFAULT_CALIBRATION_SIZE = 64


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
    measured: Measured | None = None
    """The bundle's own figures on the test split (an FP32 bundle's gate a lower precision)."""

    @property
    def gate(self) -> GateRecord:
        """The export gate's record (every bundle exported by this module has one)."""
        gate = self.metadata.export_record().gate
        if gate is None:  # pragma: no cover - export_model always records it
            raise BundleError(f"{self.bundle_id} records no export gate")
        return gate


def _write_validation_scores(
    bundle_dir: Path, raw_scores: np.ndarray, samples: Sequence[LabelledSample], meta: Any
) -> None:
    scores = [normalize_score(float(raw), meta.normalization) for raw in raw_scores]
    labelled = ValidationScores(
        scores=tuple(round(score, 6) for score in scores),
        labels=tuple(int(s.label) for s in samples),
        split="test",
        defect_types=tuple(s.defect_type for s in samples),
        names=tuple(shown_name(Path(s.path).name) for s in samples),
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
    calibration: tuple[LabelledSample, ...] = ()
    """The version's good calibration images (``calibration/good``), which every bundle scores
    itself to set its threshold."""


@dataclass(frozen=True)
class ExportOptions:
    """How to export: precision, INT8 calibration, the gate."""

    precision: Precision = "fp32"
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    tolerances: GateTolerances = field(default_factory=GateTolerances)
    force: bool = False
    refine: RefineConfig = field(default_factory=RefineConfig)
    """The site's refine config, seeding the mask refiners compared on the validation split."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.calibration_size < 1:
            raise ValueError(f"calibration_size must be >= 1, got {self.calibration_size}")


def _calibrated_bundle(
    model: ov.Model,
    target: Path,
    meta: BundleMetadata,
    splits: ExportSplits,
    say: Progress,
    extra_files: Mapping[str, Path] | None = None,
    *,
    inputs: SplitInputs,
    refine: RefineConfig | None = None,
) -> tuple[BundleMetadata, RawOutputs, BundleRuns]:
    """Save ``model`` with its preprocessing in the graph (``with_preprocessing``), calibrate
    it on its own validation outputs (and choose its mask refiner with ``refine``), then run it
    on the test split; the bundle's runs, compiled once, fed the version's ``inputs``."""
    model = with_preprocessing(model, meta.preprocessing)
    meta = replace(meta, preprocessing=replace(meta.preprocessing, in_graph=True))
    target.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, target / meta.model_file, compress_to_fp16=meta.precision == "fp16")
    for name, source in (extra_files or {}).items():
        shutil.copyfile(source, target / name)
    write_bundle_metadata(target, meta)
    runs = BundleRuns(BundleModel.load(target), inputs)
    fused_good = None
    if meta.global_context is not None:
        say(f"fitting the global context on the {meta.precision} bundle's own outputs")
        fused_good = _refit_context(runs.model, meta, splits)
        runs.reread()
    aside = f" and {len(splits.calibration)} calibration" if splits.calibration else ""
    say(
        f"calibrating the {meta.precision} bundle on its {len(splits.validation)} validation"
        f"{aside} images"
    )
    calibration = calibrate_bundle(
        runs.outputs, splits.validation, splits.operating_point,
        splits.good_scores, splits.dataset_root, fused=meta.global_context is not None,
        fused_train_good=fused_good, roi=meta.roi is not None,
        make_sample=lambda path: LabelledSample(path, 0, "good"), held_aside=splits.calibration,
    )  # fmt: skip
    meta = meta.calibrated(calibration)
    write_bundle_metadata(target, meta)
    if refine is not None:
        runs.reread()
        meta = replace(meta, refinement=_refinement(runs, splits, say, refine))
        write_bundle_metadata(target, meta)
    say(f"measuring the {meta.precision} bundle on {len(splits.test)} test images")
    return meta, runs.outputs(splits.test), runs


def _refinement(
    runs: BundleRuns, splits: ExportSplits, say: Progress, refine: RefineConfig
) -> RefinementChoice:
    """The mask refiner that helps this calibrated bundle on the validation split (or none),
    judged on the outputs it already has (``BundleRuns.inspect``; tiled: run again)."""
    defective = sum(s.label == 1 and s.mask_path is not None for s in splits.validation)
    say(
        f"choosing the mask refiner on {defective} defective validation images "
        f"(longer side <= {CHOICE_MAX_SIDE} px)"
    )
    tiled = runs.model.metadata.tiling is not None
    source = runs.predictor() if tiled else runs  # tiled: whole images, run again
    prep = runs.model.metadata.preprocessing  # 16-bit, signed and float read as training did
    choice, _ = choose_refiner(
        source, splits.validation, config=refine, bits=prep.source_bits,
        value_range=prep.source_range,
    )  # fmt: skip
    say(f"mask refinement: {choice.describe()}")
    return choice


def _refit_context(
    model: BundleModel, meta: BundleMetadata, splits: ExportSplits
) -> Carried | None:
    """Re-fit the bundle's global context on its own graph's outputs and return the training
    images' out-of-fold fused scores in the bundle's space (None: none recorded)."""
    spec = meta.global_context
    if spec is None:
        return None
    target = model.bundle_dir
    context = model.context
    if context is None:  # pragma: no cover - from_bundle loads it when the spec is set
        raise BundleError(f"{target}: the global context did not load")
    good = splits.good_scores
    # an ROI bundle's local scores are of its ROI: whole-image torch scores are another statistic
    out_of_fold = good.out_of_fold if meta.roi is None or good.roi_masked else {}
    statistics = bool(out_of_fold) and any(name != FEATURES for name in context.components)
    train = None
    if spec.layers or out_of_fold:
        train = _outputs_of(model, splits.train_images, meta, images=statistics)
    goods = [s.path for s in splits.validation if s.label == 0]
    validation = _outputs_of(model, goods, meta)
    refitted = refit_on_outputs(
        context, train.pooled if spec.layers and train else None, validation.local_raw
    )
    refitted.save(target / spec.file)
    write_bundle_metadata(target, meta)
    if train is None or not out_of_fold:
        return None

    def names(paths: Sequence[Path]) -> list[str]:
        return [relative_name(path, splits.dataset_root) for path in paths]

    return fused_out_of_fold(
        refitted, train, names(splits.train_images),
        dict(zip(names(goods), validation.local_raw, strict=True)), good,
    )  # fmt: skip


def _outputs_of(
    model: BundleModel,
    paths: Sequence[Path],
    meta: BundleMetadata,
    batch_size: int = IN_FLIGHT,
    *,
    images: bool = False,
) -> ModelOutputs:
    """The bundle graph's outputs on ``paths`` (``ModelOutputs``; images only with ``images``),
    each image run alone (``BundleModel.run_each``)."""

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = model.run_each(batch)
        return outputs.scores, outputs.pooled

    return batched_outputs(run, paths, meta.preprocessing, batch_size, images=images)


@dataclass(frozen=True)
class Converted:
    """A version's FP32 OpenVINO model and what converting it measured, made once for all the
    precisions it is exported to (``convert_version``)."""

    model: ov.Model
    input_domain: InputDomain
    splits: ExportSplits
    """The splits it was converted with, which every bundle of it is exported on."""
    knn_head: dict[str, Any] | None = None
    """``low_rank_knn``'s record (None: exact kNN, or not PatchCore)."""
    inputs: SplitInputs = field(default_factory=SplitInputs, compare=False)
    """The split images as its bundles take them, made once for all of them."""

    def applied(self, base: BundleMetadata) -> tuple[ov.Model, BundleMetadata]:
        """A copy of the model to quantise or save, and ``base`` with what converting measured."""
        base = replace(base, input_domain=base.input_domain or self.input_domain)
        if self.knn_head is not None:
            base = replace(base, extra={**base.extra, "knn_head": self.knn_head})
        return self.model.clone(), base


def convert_version(
    torch_model: Any,
    base: BundleMetadata,
    splits: ExportSplits,
    *,
    knn_rank: int | None = None,
    domain_tolerance: DomainTolerance | None = None,
    progress: Progress | None = None,
) -> Converted:
    """Measure the version's input domain (unless ``base`` records one), convert the torch
    model to OpenVINO and, with ``knn_rank``, project its bank distances (``low_rank_knn``)."""
    say = progress or log.info
    domain = base.input_domain
    if domain is None:
        prep = base.preprocessing
        domain = input_domain_of(splits, domain_tolerance, prep.source_bits, prep.source_range)
        say(f"input domain: {domain.describe()}")
    say(f"converting {base.model_kind} to OpenVINO")
    pooled_layers = base.global_context.layers if base.global_context else ()
    model = convert_torch_model(torch_model, base.preprocessing.input_size, pooled_layers)
    knn_head = None if knn_rank is None else low_rank_knn(model, knn_rank, say)
    return Converted(model, domain, splits, knn_head)


def export_model(
    torch_model: Any,
    out_dir: str | Path,
    *,
    base: BundleMetadata,
    splits: ExportSplits,
    options: ExportOptions,
    progress: Progress | None = None,
    extra_files: Mapping[str, Path] | None = None,
    knn_rank: int | None = None,
    domain_tolerance: DomainTolerance | None = None,
    reference: Measured | None = None,
    converted: Converted | None = None,
) -> ExportResult:
    """Convert, (quantise), save, calibrate, measure and gate one bundle in ``out_dir``; a refused
    bundle is removed unless ``options.force``. ``extra_files`` ({name in bundle: source}) are
    copied in; ``knn_rank``: the kNN runs on the bank's top principal directions
    (``low_rank_knn``); ``reference``: the version's FP32 bundle already measured, else a
    non-FP32 export measures one itself; ``converted``: the version already converted
    (``convert_version``; ``torch_model``, ``knn_rank`` and ``domain_tolerance`` unused)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise BundleError(f"{out_dir} already exists; refusing to overwrite a bundle")
    say = progress or log.info
    if converted is None:
        converted = convert_version(
            torch_model, base, splits, knn_rank=knn_rank, domain_tolerance=domain_tolerance,
            progress=say,
        )  # fmt: skip
    fp32_model, base = converted.applied(base)
    if options.precision != "fp32" and reference is None:
        with tempfile.TemporaryDirectory(prefix="fp32-reference-") as scratch:
            ref_meta, scratch_dir = replace(base, precision="fp32"), Path(scratch) / "bundle"
            cal_meta, outputs, _ = _calibrated_bundle(
                fp32_model, scratch_dir, ref_meta, splits, say, extra_files,
                inputs=converted.inputs,
            )  # fmt: skip
            reference = outputs.measure(_own(cal_meta))
    model, meta = fp32_model, replace(base, precision=options.precision, created_at=utc_now())
    if options.precision == "bf16":
        meta = replace(meta, inference_precision=_bf16_here())  # type: ignore[arg-type]
    if options.precision == "int8":
        if base.tiling is not None:
            raise BundleError(
                "INT8 export of a tiled model is not supported (its calibration set would be "
                "whole resized images, not tiles); export fp32 or fp16"
            )
        model, meta = _quantised(fp32_model, meta, splits, options, say)
    meta, outputs, runs = _calibrated_bundle(
        model, out_dir, meta, splits, say, extra_files, inputs=converted.inputs,
        refine=options.refine,
    )  # fmt: skip
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
                f"{decision.message(what)}; not registering it. {refusal_advice(_own(meta))}"
            )
        log.warning("%s (registering: forced)", decision.message(what))
    gate = GateRecord.decided(
        decision, figures, ref_figures, options.tolerances, force=options.force
    )
    record = ExportRecord(gate=gate)
    if reference is not None:
        old, new = reference[0].image_auroc, metrics.image_auroc
        drop = None if old is None or new is None else old - new  # None: a good-only product
        record = ExportRecord(gate=gate, reference_fp32=reference[0], image_auroc_drop=drop)
    recorded = {**metrics.to_mapping(), **record.to_mapping()}
    meta = replace(meta, metrics=recorded)
    # golden images: the first validation images and those nearest the threshold
    labelled = [(Path(s.path), int(s.label)) for s in splits.validation]
    candidates = golden_sources(labelled, len(labelled))
    served = None  # a tiled bundle's golden images are whole images: scored there
    if meta.tiling is None:
        by_path = {Path(s.path): s for s in splits.validation}
        served = runs.outputs([by_path[path] for path in candidates]).scores
    meta = record_golden(out_dir, meta, candidates, model=runs.model, served=served)
    write_bundle_metadata(out_dir, meta)
    return ExportResult(meta.bundle_id, out_dir, meta, (metrics, figures))


def input_domain_of(
    splits: ExportSplits,
    tolerance: DomainTolerance | None = None,
    bits: int = DEFAULT_SOURCE_BITS,
    value_range: tuple[float, float] | None = None,
) -> InputDomain:
    """The version's input domain (``core.input_domain``): sizes of all images, colour of up to
    ``COLOUR_SAMPLE`` training images and every held-out one, intensities of those training ones."""
    held_out = list(dict.fromkeys(s.path for s in (*splits.validation, *splits.test)))
    sizes = list(dict.fromkeys([*splits.train_images, *held_out]))
    training = evenly(splits.train_images, COLOUR_SAMPLE)
    colour = list(dict.fromkeys([*training, *held_out]))
    return measure_input_domain(
        sizes, colour, tolerance, training=training, bits=bits, value_range=value_range
    )


def low_rank_knn(model: ov.Model, rank: int, say: Progress) -> dict[str, Any]:
    """Project ``model``'s bank distances to ``rank`` dimensions in place (``runtime.graph``);
    the record for the bundle's ``extra["knn_head"]``."""
    fold_patch_distances(model)
    notes = project_patch_distances(model, rank)
    if not notes:
        raise BundleError(
            f"knn_rank={rank}: the graph has no nearest-bank-row GEMM wider than {rank} "
            "dimensions to project; remove knn_rank from the model config or lower it"
        )
    for note in notes:
        say(f"kNN head: {note}")
    return {"rank": rank, "rewrite": notes}


def _bf16_here() -> str:
    """``"bf16"`` where it is native (elsewhere f32 numerics would be gated under its name)."""
    reason = cpu_info().unavailable("bf16")
    if reason:
        raise BundleError(f"cannot export a bf16 bundle: {reason}; export fp32, fp16 or int8")
    return "bf16"


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
    """INT8 model and metadata naming its calibration set and what it kept in FP32."""
    # NNCF (heavy) for INT8 only
    from inspection.training.quantize import STEM_DEPTH, describe_kept, kept_fp32, quantize_int8

    prep = meta.preprocessing
    calibration_paths = sorted(splits.train_images)[: options.calibration_size]
    reading = {"bits": prep.source_bits, "value_range": prep.source_range}
    # NNCF quantises the float graph, fed as before; the INT8 graph then gets the same
    # preprocessing in the graph as every bundle (``_calibrated_bundle``)
    calibration = [preprocess(read_image(p, **reading), prep) for p in calibration_paths]
    kept = kept_fp32(fp32_model, STEM_DEPTH)
    say(f"quantising to INT8 on {len(calibration)} good training images; kept in FP32: "
        + "; ".join(describe_kept(kept)))  # fmt: skip
    model = quantize_int8(fp32_model, calibration, stem_depth=STEM_DEPTH)
    fingerprint = fingerprint_files(calibration_paths, splits.dataset_root)
    quantization_set = QuantizationSet(
        split="train", label="good", size=fingerprint["count"], sha256=fingerprint["sha256"],
        files=tuple(sorted(fingerprint["files"])), head_fp32=True,
        seven_bit_weights=True,
        kept_fp32=describe_kept(kept),
    )  # fmt: skip
    return model, replace(meta, quantization_set=quantization_set)
