"""Write refinement evaluation results: ``results.json`` and a short ``summary.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QUALITY = ("product", "method", "pixel F1", "IoU", "Δ F1 vs raw", "Δ IoU vs raw",
           "mean image IoU", "AUPRO", "all-image F1")  # fmt: skip
LATENCY = ("product", "method", "NG images", "mean ms", "p50 ms", "p95 ms", "SAM encoder ms",
           "mask sources")  # fmt: skip


def write_report(out_dir: str | Path, results: dict[str, Any]) -> Path:
    """Write ``results.json`` and ``summary.md`` under ``out_dir``; returns the summary path.
    ``results`` holds ``{"products": {name: evaluate_refiners(...) output}, ...}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    summary = out_dir / "summary.md"
    summary.write_text(render_summary(results), encoding="utf-8")
    return summary


def render_summary(results: dict[str, Any]) -> str:
    """Markdown tables: quality per product and method, then added latency per NG image."""
    lines = ["# Mask refinement: raw vs classical vs SAM", ""]
    lines += [f"- {key}: {value}" for key, value in results.get("setup", {}).items()]
    lines += ["", "## Quality on labelled defective images (pooled pixels)", "", *_header(QUALITY)]
    products = results.get("products", {})
    for product, data in products.items():
        raw = data["methods"]["raw"]["quality"]["defective_images"]
        for method, entry in data["methods"].items():
            quality = entry["quality"]
            if quality is None:
                lines.append(_row(product, method, entry.get("note", "-"), *[""] * 6))
                continue
            scores = quality["defective_images"]
            lines.append(_row(
                product, method, _f(scores["f1"]), _f(scores["iou"]),
                _delta(scores["f1"], raw["f1"]), _delta(scores["iou"], raw["iou"]),
                _f(quality["mean_image_iou"]), _f(quality["aupro"]),
                _f(quality["all_images"]["f1"]),
            ))  # fmt: skip
    lines += ["", "## Added latency per defective (NG) image on the station", ""]
    lines += _header(LATENCY)
    for product, data in products.items():
        for method, entry in data["methods"].items():
            if method == "raw":
                continue
            lat = entry["latency"]
            sources = ", ".join(f"{k}: {v}" for k, v in sorted(entry["mask_sources"].items()))
            times = (_f(lat.get(key), 1) for key in ("mean_ms", "p50_ms", "p95_ms"))
            encoder = _f(lat.get("encoder_mean_ms"), 1)
            lines.append(_row(product, method, lat["ng_images"], *times, encoder, sources))
    return "\n".join(lines) + "\n"


def _header(names: tuple[str, ...]) -> list[str]:
    return [_row(*names), _row(*["---"] * len(names))]


def _row(*cells: object) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _delta(value: float | None, base: float | None) -> str:
    return "-" if value is None or base is None else f"{value - base:+.3f}"
