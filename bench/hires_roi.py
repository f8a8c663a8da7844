"""Must-show of the ROI: NG verdicts on good ``plate`` parts with and without the ROI.

    python bench/hires_roi.py [--data datasets] [--extra-good 20] [--out reports/hires]

Trains one PatchCore (the product config's downscaled 256 px model) on ``datasets/plate``
(``inspection data hires``), exports it as an FP32 bundle with the product's part setup (ROI,
alignment, units: ``configs/products/plate.yaml``) and a sibling bundle without it (the same IR,
recalibrated on the same validation split by the same code, so each has its own thresholds).
Both judge the same good parts: the held-out good test images plus ``--extra-good`` freshly
rendered good plates (new seeds, each with its own fixture clutter and pose). An NG without the
ROI is attributed to the background when its map peak lies outside the ROI. Defect recall on
the held-out defective images is reported beside it. Writes ``roi.json`` and ``roi.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import save_report

from inspection.core.bundle import read_bundle_metadata, write_bundle_metadata
from inspection.core.images import read_image
from inspection.core.product_config import load_model_config, load_product_config
from inspection.core.registry import Registry
from inspection.data.dataset import load_dataset
from inspection.data.hires import render_plate
from inspection.runtime.inspector import Inspector
from inspection.training.export import ExportOptions, run_bundle
from inspection.training.registry_export import RegistryExport, export_bundle, export_splits
from inspection.training.train import train

PRODUCT = "plate"


def _without_part_setup(bundle: Path, target: Path, splits) -> Path:
    """A copy of ``bundle`` without ROI/alignment/units, calibrated on the same validation split."""
    shutil.copytree(bundle, target)
    (target / "reference.png").unlink(missing_ok=True)
    (target / "signature.json").unlink(missing_ok=True)
    meta = dataclasses.replace(
        read_bundle_metadata(target), roi=None, alignment=None, units=None, output_calibration=None
    )
    write_bundle_metadata(target, meta)
    calibration = run_bundle(target, splits.validation).calibrate()
    meta = dataclasses.replace(
        meta,
        normalization=calibration.normalization,
        segmentation=calibration.segmentation,
        output_calibration=calibration,
    )
    write_bundle_metadata(target, meta)
    return target


def _judge(inspector: Inspector, images: list[tuple[str, np.ndarray]], roi_mask) -> dict:
    rows = []
    for name, image in images:
        start = time.perf_counter()
        try:
            result = inspector.inspect(image)
        except Exception as exc:  # an alignment error is an error, never OK: count it
            rows.append({"image": name, "verdict": "ERROR", "error": str(exc)})
            continue
        peak = np.unravel_index(int(np.argmax(result.anomaly_map)), result.anomaly_map.shape)
        inside = bool(roi_mask[int(peak[0] * roi_mask.shape[0] / result.anomaly_map.shape[0]),
                               int(peak[1] * roi_mask.shape[1] / result.anomaly_map.shape[1])])  # fmt: skip
        rows.append(
            {
                "image": name,
                "verdict": result.verdict,
                "score": round(result.score, 4),
                "peak_inside_roi": inside,
                "ms": round((time.perf_counter() - start) * 1e3, 1),
            }
        )
    return {
        "images": len(rows),
        "ng": sum(r["verdict"] == "NG" for r in rows),
        "ng_peak_outside_roi": sum(r["verdict"] == "NG" and not r["peak_inside_roi"] for r in rows),
        "errors": sum(r["verdict"] == "ERROR" for r in rows),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("datasets"))
    parser.add_argument("--extra-good", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("reports/hires"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("lightning", "lightning_fabric", "nncf", "anomalib"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dataset = load_dataset(args.data / PRODUCT)
    product = load_product_config(PRODUCT)
    roi = product.roi
    if roi is None:
        raise SystemExit("configs/products/plate.yaml has no roi")
    with tempfile.TemporaryDirectory(prefix="hires-roi-") as scratch:
        registry = Registry(Path(scratch) / "registry")
        started = time.perf_counter()
        config = load_model_config("patchcore", product=PRODUCT)
        record = train(config, dataset, product=PRODUCT, registry=registry, progress=False)
        train_s = time.perf_counter() - started
        with_roi = export_bundle(
            registry, PRODUCT, ExportOptions(precision="fp32", force=True),
            RegistryExport(version=record.version, dataset_path=args.data / PRODUCT),
        ).bundle_dir  # fmt: skip
        splits = export_splits(record, dataset)
        without = _without_part_setup(with_roi, Path(scratch) / "no-roi", splits)
        test = splits.test
        good = [(Path(s.path).name, read_image(s.path)) for s in test if s.label == 0]
        size = good[0][1].shape[0]
        for index in range(args.extra_good):
            image, _ = render_plate(size, (7, 97, 0, 0, index), None)
            good.append((f"extra-{index:03d}", image))
        defects = [
            (f"{s.defect_type}/{Path(s.path).name}", read_image(s.path))
            for s in test
            if s.label == 1
        ]
        mask = roi.mask(size, size)
        report = {"product": PRODUCT, "image_size": size, "model": config.kind,
                  "model_input": list(config.image_size), "train_s": round(train_s, 1),
                  "cpu": platform.processor() or platform.machine(), "variants": {}}  # fmt: skip
        for name, bundle in (("with_roi", with_roi), ("without_roi", without)):
            inspector = Inspector.from_bundle(bundle)
            good_rows = _judge(inspector, good, mask)
            defect_rows = _judge(inspector, defects, mask)
            report["variants"][name] = {
                "good": good_rows,
                "defective": {k: v for k, v in defect_rows.items() if k != "ng_peak_outside_roi"},
                "image_threshold": inspector.threshold,
            }
    text = _markdown(report)
    save_report(args.out, "roi", report, text)
    print(text)


def _markdown(report: dict) -> str:
    lines = [
        "# ROI on the high-resolution plate: NG verdicts on good parts",
        "",
        f"Written by `python bench/hires_roi.py`. {report['model']} at "
        f"{report['model_input'][0]} px on {report['image_size']} px images (trained in "
        f"{report['train_s']} s), FP32 bundle with the product's ROI + alignment vs the same "
        "model recalibrated without them. Good parts: held-out good test images + freshly "
        "rendered good plates (own fixture clutter and pose).",
        "",
        "| variant | good parts | NG | NG with peak outside ROI | errors | defective | caught (NG) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, v in report["variants"].items():
        g, d = v["good"], v["defective"]
        lines.append(
            f"| {name} | {g['images']} | {g['ng']} | {g['ng_peak_outside_roi']} | {g['errors']} "
            f"| {d['images']} | {d['ng']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
