"""Export a registered model version (``training.export.export_model``) and add the bundle,
signed with the site key when the site has one, to the registry.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import openvino as ov

from inspection.core.bundle import BUNDLE_SCHEMA_VERSION, BundleMetadata, OutputNames, Precision
from inspection.core.errors import BundleError, RegistryError
from inspection.core.export_gate import GateRefusal
from inspection.core.fingerprint import relative_name, sha256_file
from inspection.core.images import mask_files
from inspection.core.model_record import ModelRecord
from inspection.core.product_config import (
    load_product_config,
    model_config_from_mapping,
    product_config_path,
)
from inspection.core.registry import Registry
from inspection.core.signing import bundle_digest, sign_bundle, site_signing_key
from inspection.data.dataset import load_dataset
from inspection.data.leaks import listed
from inspection.training.bundle_calibration import record_operating_point
from inspection.training.convert import MAP_OUTPUT, POOLED_OUTPUT, SCORE_OUTPUT
from inspection.training.export import (
    Converted,
    ExportOptions,
    ExportResult,
    ExportSplits,
    LabelledSample,
    Measured,
    Progress,
    convert_version,
    export_model,
)
from inspection.training.models import model_kind
from inspection.training.train import load_trained_model

log = logging.getLogger(__name__)


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
    """Which version to export (default: latest), from which dataset, and whether it goes live."""

    version: str | None = None
    dataset_path: Path | None = None
    promote: bool = False
    actor: str = "export"
    """Who promotes it, as recorded in the registry's history."""
    configs_dir: Path | None = None
    """The site's configs folder (``SiteConfig.configs``), whose ``products/<product>.yaml``
    gives the bundle its ROI, alignment, units and input-domain tolerance; None:
    ``core.config.default_configs_dir()``."""


def export_bundle(
    registry: Registry,
    product: str,
    options: ExportOptions,
    source: RegistryExport | None = None,
    *,
    progress: Progress | None = None,
    reference: Measured | None = None,
    converted: Converted | None = None,
) -> ExportResult:
    """Export a registered version and add the bundle to the registry, signed when the site holds
    its key. ``reference``: the same version's FP32 export's ``measured``; ``converted``: the
    same version already converted (``convert_registered``), on its splits."""
    signing_key = site_signing_key(registry.root)
    source = source or RegistryExport()
    record = registry.bundles.version(product, source.version)
    base, part_files = with_part_setup(base_metadata(record, options.precision), source.configs_dir)
    if base.bundle_id in registry.bundles.bundle_ids(product):
        raise BundleError(
            f"bundle {product}/{base.bundle_id} already exists (bundles never change): make "
            f"it live with `inspection promote {product} {base.bundle_id}`, or export "
            f"another version with --version (latest: {registry.bundles.version(product).version})"
        )
    if converted is None:
        splits = export_splits(record, _export_dataset(record, source.dataset_path))
        torch_model = load_trained_model(record).model
    else:  # its files were checked against the record when it was converted
        splits, torch_model = converted.splits, None
    with tempfile.TemporaryDirectory(prefix=f"export-{product}-") as scratch:
        result = export_model(
            torch_model, Path(scratch) / base.bundle_id, base=base,
            splits=splits, options=options, progress=progress,
            extra_files=context_files(record) | part_files, knn_rank=_knn_rank(record),
            domain_tolerance=load_product_config(product, source.configs_dir).input_domain,
            reference=reference, converted=converted,
        )  # fmt: skip
        if signing_key is not None:
            sign_bundle(result.bundle_dir, signing_key)
        target = registry.bundles.add_bundle(product, result.bundle_dir, result.bundle_id)
    if source.promote:
        if signing_key is None:
            log.warning("%s/%s is promoted unsigned (this site has no signing key): stations "
                        "that pin a key refuse it; run 'inspection keys init'",
                        product, result.bundle_id)  # fmt: skip
        reason = f"exported {options.precision}"
        registry.journal.promote(product, result.bundle_id, actor=source.actor, reason=reason)
    return replace(result, bundle_dir=target)


def convert_registered(
    registry: Registry, product: str, source: RegistryExport, *, progress: Progress | None = None
) -> Converted:
    """A registered version converted once (``training.export.convert_version``), for
    ``export_bundle`` to export to each precision without converting it again."""
    record = registry.bundles.version(product, source.version)
    base, _ = with_part_setup(base_metadata(record, "fp32"), source.configs_dir)
    splits = export_splits(record, _export_dataset(record, source.dataset_path))
    return convert_version(
        load_trained_model(record).model, base, splits, knn_rank=_knn_rank(record),
        domain_tolerance=load_product_config(product, source.configs_dir).input_domain,
        progress=progress,
    )  # fmt: skip


@dataclass(frozen=True)
class GatedExports:
    """What ``export_gated`` registered (FP32 first) and why each other precision was not."""

    results: tuple[ExportResult, ...]
    refused: dict[str, str]
    """precision -> why its bundle was not registered (its export gate's refusal, mostly)."""

    def preferred(self, precisions: Sequence[str]) -> ExportResult | None:
        """The registered bundle of the first of ``precisions`` that has one, else None."""
        by_precision = {r.metadata.precision: r for r in self.results}
        return next((by_precision[p] for p in precisions if p in by_precision), None)


def export_gated(
    registry: Registry,
    product: str,
    precisions: Sequence[Precision],
    source: RegistryExport,
    options: ExportOptions,
    *,
    progress: Progress | None = None,
) -> GatedExports:
    """Export ``source``'s version to each of ``precisions``, never forced, FP32 first (the others'
    gate reference); a refused bundle is not registered and the others go on."""
    say = progress or log.info
    results: list[ExportResult] = []
    refused: dict[str, str] = {}
    fp32 = None  # the FP32 bundle's figures, the others' gate reference
    try:
        converted = convert_registered(registry, product, source, progress=say)
    except (BundleError, RegistryError) as exc:  # every precision refused alike
        return GatedExports((), {precision: str(exc) for precision in precisions})
    for precision in sorted(dict.fromkeys(precisions), key=lambda p: p != "fp32"):
        say(f"exporting {source.version or 'the latest version'} ({precision})")
        try:
            result = export_bundle(
                registry, product, replace(options, precision=precision, force=False), source,
                progress=say, reference=fp32, converted=converted,
            )  # fmt: skip
        except (GateRefusal, BundleError, RegistryError) as exc:
            refused[precision] = str(exc)
            continue
        results.append(result)
        fp32 = result.measured if precision == "fp32" else fp32
    return GatedExports(tuple(results), refused)


def record_force(
    registry: Registry, result: ExportResult, *, actor: str, reason: str, promote: bool
) -> bool:
    """Record a signed ``force`` decision naming a gate-refused bundle's digest (stations serve
    it only with one), then promote it when asked; returns whether the gate had refused it."""
    product, bundle_id = result.metadata.product, result.bundle_id
    refused = not result.gate.passed
    if refused:
        registry.journal.record_decision(
            product, "force",
            {"digest": bundle_digest(result.bundle_dir), "refusal": result.gate.refusal()},
            actor=actor, reason=reason, bundle_id=bundle_id,
        )  # fmt: skip
    if promote:
        registry.journal.promote(
            product, bundle_id, actor=actor, reason=f"exported, forced: {reason}"
        )
    return refused


def roi_decided(registry: Registry, result: ExportResult) -> bool:
    """Whether a signed ROI decision carries the bundle's ROI (or it has none): stations
    pinning the site key refuse it until an admin saves that ROI on the dashboard."""
    roi = result.metadata.roi
    decided = [d.value for d in registry.journal.decisions(result.metadata.product, "roi")]
    return roi is None or roi.to_mapping() in decided


def _export_dataset(record: ModelRecord, path: Path | None) -> Any:
    """The dataset to calibrate on: ``path``, else the folder ``record`` was trained on."""
    root = path or record.dataset_root()
    if path is None and not Path(root).is_dir():
        raise BundleError(
            f"{record.model_version} was trained on {root}, which is no longer there: pass "
            "--dataset with the folder's new place (its files are checked against the record)"
        )
    return load_dataset(root)


def _knn_rank(record: ModelRecord) -> int | None:
    """The PatchCore ``knn_rank`` of the version's config (None: exact kNN, or not PatchCore)."""
    if not model_kind(record.model_kind).memory_bank:
        return None
    where = f"{record.model_version} config"
    return model_config_from_mapping(record.config, where=where).knn_rank


def export_splits(record: ModelRecord, dataset: Any) -> ExportSplits:
    """The splits ``record`` recorded, as images of ``dataset`` (a loaded dataset folder)."""
    return ExportSplits(
        train_images=tuple(s.path for s in dataset.train_samples),
        validation=tuple(split_samples(record, dataset, "validation")),
        test=tuple(held_out_test_samples(record, dataset)),
        dataset_root=dataset.root,
        operating_point=record_operating_point(record),
        good_scores=record.good_scores(),
        calibration=tuple(calibration_samples(record, dataset)),
    )


def with_part_setup(
    base: BundleMetadata, config_dir: Path | None = None
) -> tuple[BundleMetadata, dict[str, Path]]:
    """``base`` with its product's ROI, alignment and units (``products/<product>.yaml`` in
    ``config_dir``), and the files they need in the bundle (the alignment reference image)."""
    config = load_product_config(base.product, config_dir)
    path = product_config_path(base.product, config_dir)
    trained = base.training_roi
    if trained is not None and trained.roi != config.roi:
        raise BundleError(
            f"{base.model_version} was trained with a different ROI than {path} has now "
            "(patches outside the training ROI are not in the model): retrain the product, or "
            "restore the ROI it was trained with"
        )
    meta = replace(base, roi=config.roi, alignment=config.alignment, units=config.units)
    if config.alignment is None or config.reference is None:
        return meta, {}
    if not config.reference.is_file():
        raise BundleError(
            f"{path}: reference image {config.reference} not found "
            "(alignment needs it; generate the dataset or fix the path)"
        )
    return meta, {config.alignment.file: config.reference}


def context_files(record: ModelRecord) -> dict[str, Path]:
    """The global-context parameter file of a version (none without a global component)."""
    context = record.global_context()
    return {} if context is None else {context.file: record.file(context.file)}


def calibration_samples(record: ModelRecord, dataset: Any) -> list[LabelledSample]:
    """The good calibration images the version scored (``BundleError`` if missing or changed)."""
    chosen = set(record.good_scores().calibration)
    if not chosen:
        return []
    samples, names = [], []
    for s in dataset.calibration_samples:
        rel = relative_name(s.path, dataset.root)
        if rel in chosen:
            samples.append(LabelledSample(Path(s.path), 0, s.defect_type))
            names.append(rel)
    _require_recorded_content(record, dataset.root, "calibration", samples, names, chosen)
    return samples


def held_out_test_samples(record: ModelRecord, dataset: Any) -> list[LabelledSample]:
    """The version's held-out test split (not the validation images that set its thresholds)."""
    return split_samples(record, dataset, "test")


def split_samples(
    record: ModelRecord, dataset: Any, split: Literal["validation", "test"]
) -> list[LabelledSample]:
    """The labelled images of the version's recorded ``split`` (none recorded: the test split)."""
    chosen = set(getattr(record.splits(), split))
    if not chosen:
        log.warning(
            "%s records no %s split: using the whole test split", record.model_version, split
        )
    samples, names = [], []
    for s in dataset.test_samples:
        rel = relative_name(s.path, dataset.root)
        if not chosen or rel in chosen:
            samples.append(LabelledSample(Path(s.path), s.label, s.defect_type, s.mask_path))
            names.append(rel)
    if not samples:
        raise BundleError(
            f"none of the {split} images recorded for {record.model_version} are in {dataset.root}"
        )
    _require_recorded_content(record, dataset.root, split, samples, names, chosen)
    return samples


def _require_recorded_content(
    record: ModelRecord,
    root: Path,
    split: str,
    samples: list[LabelledSample],
    names: list[str],
    chosen: set[str],
) -> None:
    """``BundleError`` when the ``split`` images (or masks) in ``root`` are not the ones the
    version recorded (its thresholds would be set on images nobody evaluated)."""
    recorded: dict[str, str] = record.dataset.get("files") or {}
    if not recorded:
        return
    changed = sorted(chosen - set(names))  # recorded, now missing
    for sample, rel in zip(samples, names, strict=True):
        files = {rel: sample.path}
        if sample.mask_path is not None:  # a file, or a folder of masks (MVTec LOCO)
            files |= {relative_name(m, root): m for m in mask_files(sample.mask_path)}
        changed += [r for r, path in files.items() if recorded.get(r) != sha256_file(path)]
    if changed:
        raise BundleError(
            f"{len(changed)} {split} file(s) in {root} are missing or differ from what "
            f"{record.model_version} was trained and measured on ({listed(changed)}): export from the "
            "dataset as it was, or train a new version on this one"
        )
