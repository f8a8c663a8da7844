"""Write refinement evaluation results: ``results.json`` and a short ``summary.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(out_dir: str | Path, results: dict[str, Any]) -> Path:
    """Write ``results.json`` and ``summary.md`` under ``out_dir``; returns the summary path.

    ``results`` holds ``{"products": {name: evaluate_refiners(...) output}, ...}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    summary = out_dir / "summary.md"
    summary.write_text(render_summary(results), encoding="utf-8")
    return summary


def render_summary(results: dict[str, Any]) -> str:
    """Markdown tables: quality per product and method, then added latency per NG image."""
    lines = ["# Mask refinement: raw vs classical vs SAM", ""]
    setup = results.get("setup", {})
    for key, value in setup.items():
        lines.append(f"- {key}: {value}")
    lines += [
        "",
        "## Quality on labelled defective images (pooled pixels)",
        "",
        "| product | method | pixel F1 | IoU | Δ F1 vs raw | Δ IoU vs raw | mean image IoU | "
        "AUPRO | all-image F1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    products = results.get("products", {})
    for product, data in products.items():
        raw = data["methods"]["raw"]["quality"]["defective_images"]
        for method, entry in data["methods"].items():
            quality = entry["quality"]
            if quality is None:
                lines.append(
                    f"| {product} | {method} | {entry.get('note', '-')} |  |  |  |  |  |  |"
                )
                continue
            scores = quality["defective_images"]
            lines.append(
                f"| {product} | {method} | {_f(scores['f1'])} | {_f(scores['iou'])} | "
                f"{_delta(scores['f1'], raw['f1'])} | {_delta(scores['iou'], raw['iou'])} | "
                f"{_f(quality['mean_image_iou'])} | {_f(quality['aupro'])} | "
                f"{_f(quality['all_images']['f1'])} |"
            )
    lines += [
        "",
        "## Added latency per defective (NG) image on the station",
        "",
        "| product | method | NG images | mean ms | p50 ms | p95 ms | SAM encoder ms | mask sources |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for product, data in products.items():
        for method, entry in data["methods"].items():
            if method == "raw":
                continue
            lat = entry["latency"]
            sources = ", ".join(f"{k}: {v}" for k, v in sorted(entry["mask_sources"].items()))
            lines.append(
                f"| {product} | {method} | {lat['ng_images']} | {_f(lat.get('mean_ms'), 1)} | "
                f"{_f(lat.get('p50_ms'), 1)} | {_f(lat.get('p95_ms'), 1)} | "
                f"{_f(lat.get('encoder_mean_ms'), 1)} | {sources} |"
            )
    return "\n".join(lines) + "\n"


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _delta(value: float | None, base: float | None) -> str:
    return "-" if value is None or base is None else f"{value - base:+.3f}"
