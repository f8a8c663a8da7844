"""Tiled inspection at native resolution vs the whole image downscaled, on the hi-res product.

    python bench/hires.py [--data datasets/plate] [--out reports/hires]
                          [--tile 256] [--stride 192] [--scale 0.5] [--latency-images 12]

One run, one throw-away registry, the same model kind (PatchCore, the product's backbone):

1. **downscaled**: the whole image resized to 256 px (today's default), FP32 bundle;
2. **tiled**: ``tile`` px tiles every ``stride`` px of the image at ``scale``, one model over all
   training tiles, FP32 bundle carrying its ``TilingSpec``.

Both bundles are calibrated on their own validation outputs at export and measured here on the
same held-out test images, at each bundle's own thresholds (FRR, miss rate) and
threshold-free (image AUROC, pixel AUROC, AUPRO), with region recall from the one verdict rule.
Pixel figures are computed for both at one evaluation resolution (long side 512: the tiled
stitched map area-averaged down, the downscaled map bilinearly up, ground truth nearest).

Station latency per full-resolution image (decode excluded; preprocess, all tiles, stitch,
full-resolution map, verdict and regions) p50/p95 for the tiled bundle with all tiles in one
batch and spread over OpenVINO's AsyncInferQueue, and for the downscaled bundle, with parts per
minute. Writes ``<out>/hires.json`` and ``<out>/hires.md``. Run through ``/work/bin/bench``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _report import load_average, save_report

from inspection.core.bundle import verify_bundle
from inspection.core.config import to_mapping
from inspection.core.images import read_image
from inspection.core.outputs import RawOutputs
from inspection.core.product_config import load_model_config
from inspection.core.registry import Registry
from inspection.core.tiling import TilingSpec
from inspection.data.dataset import load_dataset
from inspection.runtime.inspector import Inspector
from inspection.runtime.preprocess import preprocess
from inspection.runtime.tiled import TiledInspector, evaluation_size, tiled_outputs
from inspection.training.export import ExportOptions, LabelledSample
from inspection.training.registry_export import (
    RegistryExport,
    export_bundle,
    held_out_test_samples,
)
from inspection.training.tiled import train_tiled
from inspection.training.train import train

log = logging.getLogger("bench.hires")
EVAL_SIDE = 512
FP32 = ExportOptions(precision="fp32")


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def downscaled_outputs(
    bundle: Path, samples: list[LabelledSample], size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores (N,) and raw maps (N, *size) of the downscaled bundle (maps upsampled)."""
    inspector = Inspector.from_bundle(bundle)
    scores, maps = [], []
    for sample in samples:
        image, _ = inspector.model.align(read_image(sample.path))
        tensor = preprocess(image, inspector.metadata.preprocessing)
        raw = inspector.model.infer(tensor[None])
        scores.append(float(raw.scores[0]))
        maps.append(cv2.resize(raw.maps[0], (size[1], size[0]), interpolation=cv2.INTER_LINEAR))
    return np.asarray(scores), np.stack(maps).astype(np.float32)


def figures(
    bundle: Path, samples: list[LabelledSample], scores: np.ndarray, maps: np.ndarray
) -> dict[str, Any]:
    """Metrics at the bundle's own calibration (``RawOutputs.measure``)."""
    meta = verify_bundle(bundle)
    if meta.output_calibration is None:
        raise SystemExit(f"{bundle}: not calibrated on its own outputs; re-export it")
    outputs = RawOutputs.of_samples(samples, scores, maps)
    metrics, gate = outputs.measure(meta.output_calibration)
    return {"figures": to_mapping(gate), "metrics": metrics.to_mapping()}


def latency(inspect: Any, images: list[np.ndarray]) -> dict[str, Any]:
    """p50/p95 of ``inspect(image)`` wall time (ms) after one warm-up, and parts per minute."""
    inspect(images[0])
    times, verdicts = [], []
    for image in images:
        start = time.perf_counter()
        result = inspect(image)
        times.append((time.perf_counter() - start) * 1e3)
        verdicts.append(result.verdict)
    p50, p95 = np.percentile(times, [50, 95])
    return {
        "images": len(images),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "mean_ms": round(float(np.mean(times)), 1),
        "parts_per_minute": round(60000.0 / float(np.mean(times)), 1),
        "ng": verdicts.count("NG"),
        "timings_ms_last": {k: round(v, 1) for k, v in result.timings_ms.items()},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    dataset = load_dataset(args.data)
    product = dataset.name
    tiling = TilingSpec((args.tile, args.tile), (args.stride, args.stride), args.scale, "mean")
    height, width = read_image(dataset.test_samples[0].path).shape[:2]
    grid = tiling.grid(height, width)
    _say(
        f"{product}: {width}x{height} px, {len(grid)} tiles of {args.tile} px at scale {args.scale}"
    )
    registry = Registry(Path(tempfile.mkdtemp(prefix="bench-hires-")))
    base = load_model_config("patchcore", product=product, overrides=["image_size=[256, 256]"])
    tiled_config = load_model_config(
        "patchcore", product=product, overrides=[f"image_size=[{args.tile}, {args.tile}]"]
    )
    started = time.perf_counter()
    record = train(base, dataset, product=product, registry=registry, progress=False)
    down_fit = time.perf_counter() - started
    down = export_bundle(registry, product, FP32, RegistryExport(version=record.version))
    _say(f"downscaled trained and exported in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    tiled_record = train_tiled(
        tiled_config, tiling, dataset, product=product, registry=registry, progress=False,
        evaluate=False,
    )  # fmt: skip
    tiled_fit = time.perf_counter() - started
    tiled = export_bundle(registry, product, FP32, RegistryExport(version=tiled_record.version))
    _say(f"tiled trained and exported in {time.perf_counter() - started:.0f} s")

    test = held_out_test_samples(tiled_record, dataset)
    size = evaluation_size((height, width), EVAL_SIDE)
    down_scores, down_maps = downscaled_outputs(down.bundle_dir, test, size)
    tiled_inspector = TiledInspector.from_bundle(tiled.bundle_dir)
    tiled_scores, tiled_maps, _ = tiled_outputs(tiled_inspector, [s.path for s in test], EVAL_SIDE)
    models = {
        "downscaled": {
            "input": "whole image resized to 256x256",
            "fit_seconds": round(down_fit, 1),
            "memory_bank": None,
            **figures(down.bundle_dir, test, down_scores, down_maps),
        },
        "tiled": {
            "input": f"{len(grid)} tiles of {args.tile} px, stride {args.stride}, scale {args.scale}",
            "fit_seconds": round(tiled_fit, 1),
            "train_tiles": tiled_record.fit_figures().train_tiles,
            **figures(tiled.bundle_dir, test, tiled_scores, tiled_maps),
        },
    }
    _say("measured both bundles; timing the station")
    images = [read_image(s.path) for s in test[: args.latency_images]]
    asynchronous = TiledInspector.from_bundle(tiled.bundle_dir, mode="async")
    whole = Inspector.from_bundle(down.bundle_dir)
    timing = {
        "tiled_batch": latency(tiled_inspector.inspect, images),
        "tiled_async": latency(asynchronous.inspect, images),
        "downscaled": latency(whole.inspect, images),
    }
    return {
        "product": product,
        "image_size": [height, width],
        "tiling": to_mapping(tiling),
        "tiles_per_image": len(grid),
        "evaluation_size": list(size),
        "test_images": len(test),
        "test_defective": sum(s.label for s in test),
        "models": models,
        "latency": timing,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_end": [round(x, 2) for x in os.getloadavg()],
        },
    }


def _row(name: str, model: dict[str, Any]) -> str:
    f = model["figures"]

    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return (
        f"| {name} | {model['input']} | {fmt(f['image_auroc'])} | {fmt(f['pixel_auroc'])} | "
        f"{fmt(f['aupro'])} | {fmt(f['region_recall'])} | {fmt(f['false_reject_rate'])} | "
        f"{fmt(f['miss_rate'])} | {model['fit_seconds']} |"
    )


def markdown(report: dict[str, Any], load_before: str) -> str:
    h, w = report["image_size"]
    lines = [
        f"# Tiled vs downscaled inspection: {report['product']} ({w}x{h} px)",
        "",
        f"Tiling {report['tiling']} ({report['tiles_per_image']} tiles per image). "
        f"Held-out test split: {report['test_images']} images, {report['test_defective']} "
        f"defective. Pixel figures at {report['evaluation_size'][1]}x"
        f"{report['evaluation_size'][0]} for both; FRR and miss rate at each bundle's own "
        "thresholds (FP32, calibrated on its own validation outputs).",
        "",
        "| model | input | image AUROC | pixel AUROC | AUPRO | region recall | FRR | miss | "
        "fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, model in report["models"].items():
        lines.append(_row(name, model))
    lines += [
        "",
        "Station latency per full-resolution image (preprocess + inference + stitch + "
        "full-resolution map, verdict and regions; decode excluded), this machine "
        f"({report['machine']['cores']} cores), load before {load_before}, after "
        f"{report['machine']['load_end']}:",
        "",
        "| path | images | p50 ms | p95 ms | parts/min |",
        "|---|---|---|---|---|",
    ]
    for name, row in report["latency"].items():
        lines.append(
            f"| {name} | {row['images']} | {row['p50_ms']} | {row['p95_ms']} | "
            f"{row['parts_per_minute']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("datasets/plate"))
    parser.add_argument("--out", type=Path, default=Path("reports/hires"))
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--stride", type=int, default=192)
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--latency-images", type=int, default=12)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_before = load_average()
    started = time.perf_counter()
    report = run(args)
    report["bench_seconds"] = round(time.perf_counter() - started, 1)
    report["machine"]["load_start"] = load_before
    text = markdown(report, load_before)
    save_report(args.out, "hires", report, text)
    print(text)


if __name__ == "__main__":
    main()
