"""The refinement summary names each product's refiner and its validation evidence."""

from __future__ import annotations

from inspection.refine.report import render_summary


def _method(f1: float) -> dict:
    return {
        "quality": {
            "defective_images": {"f1": f1, "iou": f1 / 2},
            "all_images": {"f1": f1},
            "mean_image_iou": f1 / 2,
            "aupro": None,
        },
        "latency": {"ng_images": 4, "mean_ms": 20.0, "p50_ms": 19.0, "p95_ms": 30.0},
        "mask_sources": {},
    }


def test_summary_lists_the_refiner_per_product_with_its_test_check() -> None:
    choice = {
        "method": "grabcut",
        "images": 8,
        "pixel_f1": {"raw": 0.4, "grabcut": 0.46},
        "reason": "grabcut: +0.060 over raw (needs >= 0.010)",
        "bundle_recorded": "grabcut",
    }
    products = {
        "brick": {"methods": {"raw": _method(0.40), "grabcut": _method(0.43)}, "choice": choice},
        "grass": {
            "methods": {"raw": _method(0.12), "grabcut": _method(0.10)},
            "choice": {**choice, "method": "none", "reason": "none: no refiner beat the raw"},
        },
    }
    summary = render_summary({"products": products})
    assert "## Refiner per product" in summary
    assert "| brick | **grabcut** | 8 | raw 0.400, grabcut 0.460 | +0.030 | grabcut |" in summary
    assert "| grass | **none** | 8 |" in summary and "| - | grabcut | none: no refiner" in summary
