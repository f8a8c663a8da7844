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
    lines += _choice_lines(products)
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
    sam_rows = [(p, d["sam_latency"]) for p, d in products.items() if d.get("sam_latency")]
    if sam_rows:
        lines += [
            "",
            "## SAM on the station runtime (OpenVINO CPU, median of repeats on one NG image)",
            "",
            "| product | image | regions | encoder ms | decoder + guards ms | total ms | "
            "load avg |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for product, lat in sam_rows:
            size = "x".join(str(v) for v in lat["image_size"])
            lines.append(
                f"| {product} | {size} px | {lat['regions']} | {lat['encoder_ms']:.0f} | "
                f"{lat['decoder_ms']:.0f} | {lat['total_ms']:.0f} | {lat['load_average_1min']:.1f} |"
            )
    notes = results.get("notes", [])
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _choice_lines(products: dict[str, Any]) -> list[str]:
    """Which refiner each product's station runs, its validation evidence and the test check."""
    rows = [(p, d) for p, d in products.items() if d.get("choice")]
    if not rows:
        return []
    lines = [
        "",
        "## Refiner per product (chosen on the validation split, checked on test)",
        "",
        "| product | station runs | validation defective images | validation pixel F1 | "
        "test Δ F1 of the choice | bundle records | why |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for product, data in rows:
        choice = data["choice"]
        figures = ", ".join(f"{k} {v:.3f}" for k, v in choice["pixel_f1"].items()) or "-"
        test_delta = "-"
        if choice["method"] != "none" and choice["method"] in data["methods"]:
            raw = data["methods"]["raw"]["quality"]["defective_images"]["f1"]
            chosen = data["methods"][choice["method"]]["quality"]
            if chosen is not None:
                test_delta = _delta(chosen["defective_images"]["f1"], raw)
        lines.append(
            f"| {product} | **{choice['method']}** | {choice['images']} | {figures} | "
            f"{test_delta} | {choice.get('bundle_recorded') or '-'} | {choice['reason']} |"
        )
    return lines


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _delta(value: float | None, base: float | None) -> str:
    return "-" if value is None or base is None else f"{value - base:+.3f}"
