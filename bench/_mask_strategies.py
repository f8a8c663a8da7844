"""Masks on held-out data for ``bench/masks.py``: the segmentation and refiner a bundle keeps.

Every row judges with the bundle's own normalisation and image threshold (``core.verdict.judge``),
so image verdicts cannot move; the segmentation and a refiner only redraw the regions of NG
results, as on the line. *Before*: the bundle's segmentation as exported (faint NG images get
the peak's half-maximum region) and the refiner the export's rule keeps on VALIDATION
(``core.refinement.choose_method``: pooled pixel F1 over the defective images up by
``min_gain``, mean image IoU not lower). *After*: the segmentation that calibration selects now
on the same validation outputs (``core.calibration``: ``peak_level`` chosen per bundle from
``core.segmentation.PEAK_LEVELS``), and the refiner chosen again on validation on top of it.

Pixel-threshold rules (good-map level, kind-balanced F1, good-statistics hysteresis, the
guided filter before calibration) were measured here before and not adopted: the figures are
in the git history of ``reports/masks/evaluation.md`` (commit 60a98f9) and ``docs/masks.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _report import cpu_description, load_average, save_report

from inspection.core.calibration import (
    Normalization,
    calibrated_segmentation,
    normalize_maps,
    normalize_scores,
)
from inspection.core.refinement import DEFAULT_MIN_GAIN, choose_method
from inspection.core.regions import extract_regions, region_hits
from inspection.core.types import InspectionResult
from inspection.core.verdict import Segmentation, judge
from inspection.refine.base import MaskRefiner
from inspection.refine.factory import build_refiner

DEMO = ("brick", "grass", "gravel")
EVALUATION = ("part", "tissue", "weave")  # untuned: no choice of the masks was made on these
REFINERS = ("grabcut", "random_walker", "guided")
"""The refiners an export can keep (besides none)."""
THIN = ("crack", "scratch", "cut", "thread", "burr", "line")
"""Defect kinds reported separately as thin (name contains one of these)."""
RESAMPLES = 1000


@dataclass(frozen=True)
class Split:
    scores: np.ndarray
    maps: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    known: np.ndarray
    types: np.ndarray
    images: np.ndarray


def load(work: Path, product: str) -> tuple[Split, Split, Normalization, Segmentation]:
    data = np.load(work / f"{product}.npz")

    def split(name: str) -> Split:
        return Split(*(data[f"{name}_{k}"] for k in ("scores", "maps", "labels", "masks", "known", "types", "images")))  # fmt: skip

    n = data["normalization"]
    s = data["segmentation"]
    seg = Segmentation("adaptive" if s[0] else "global", float(s[1]), float(s[2]), float(s[3]), float(s[4]))  # fmt: skip
    return split("validation"), split("test"), Normalization(*map(float, n)), seg


# --------------------------------------------------------------- per-image figures
def _refined(image: np.ndarray, score: float, amap: np.ndarray, judged, refiner: MaskRefiner):
    result = InspectionResult(score=score, threshold=0.5, verdict=judged.verdict,
                              anomaly_map=amap, mask=judged.mask, regions=judged.regions,
                              latency_ms=0.0, model_version="bench")  # fmt: skip
    return refiner.refine_result(image, result)


def per_image(
    split: Split, norm: Normalization, seg: Segmentation, refiner: MaskRefiner | None = None
) -> dict[str, np.ndarray]:
    """Per image: verdict, tp / predicted / true pixels, regions found / total, regions, and
    the longest predicted and true region lengths (``core.regions``, pixels); ``refiner``
    redraws NG results' regions."""
    scores = normalize_scores(split.scores, norm)
    maps = normalize_maps(split.maps, norm)
    rows, lengths = [], []
    for score, amap, truth, image in zip(scores, maps, split.masks, split.images, strict=True):
        j = judge(float(score), 0.5, amap, seg)
        if refiner is not None and j.verdict == "NG":
            j = _refined(image, float(score), amap, j, refiner)
        found, total = region_hits(j.mask, truth)
        rows.append((j.verdict == "NG", int((j.mask & truth).sum()), int(j.mask.sum()),
                     int(truth.sum()), found, total, len(j.regions)))  # fmt: skip
        true_regions = extract_regions(truth.astype(np.float32), truth) if truth.any() else ()
        lengths.append((max((r.length for r in j.regions), default=0.0),
                        max((r.length for r in true_regions), default=0.0)))  # fmt: skip
    a = np.asarray(rows, dtype=np.int64)
    keys = ("ng", "tp", "pred", "true", "found", "total", "regions")
    out = {k: a[:, i] for i, k in enumerate(keys)}
    lengths_array = np.asarray(lengths, dtype=np.float64)
    return out | {"pred_length": lengths_array[:, 0], "true_length": lengths_array[:, 1]}


def figures(f: dict[str, np.ndarray], select: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pooled pixel F1 / IoU, region recall, false regions per good, median area error."""
    tp, pred, true = (f[k][select].sum() for k in ("tp", "pred", "true"))
    bad = select & (labels == 1)
    good = select & (labels == 0)
    sized = bad & (f["ng"] == 1)  # a missed defect has no region to measure
    area = np.abs(f["pred"][sized] - f["true"][sized]) / np.maximum(f["true"][sized], 1)
    length = np.abs(f["pred_length"][sized] - f["true_length"][sized]) / np.maximum(
        f["true_length"][sized], 1
    )
    return {
        "pixel_f1": 2 * tp / max(pred + true, 1),
        "pixel_iou": tp / max(pred + true - tp, 1),
        "region_recall": f["found"][bad].sum() / max(f["total"][bad].sum(), 1),
        "false_regions_per_good": float(f["regions"][good].mean()) if good.any() else 0.0,
        "area_error": float(np.median(area)) if sized.any() else float("nan"),
        "length_error": float(np.median(length)) if sized.any() else float("nan"),
    }


def bootstrap(
    before: dict, after: dict, select: np.ndarray, labels: np.ndarray, seed: int = 0
) -> dict[str, list[float]]:
    """95 % percentile intervals of each figure after, and of after - before (paired: the same
    resampled images for both); good and defective images resampled separately."""
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(select)
    strata = [idx[labels[idx] == c] for c in (0, 1) if (labels[idx] == c).any()]
    draws: dict[str, list[float]] = {}
    for _ in range(RESAMPLES):
        pick = np.concatenate([rng.choice(s, len(s)) for s in strata])
        everything = np.ones(len(pick), bool)
        b = figures({k: v[pick] for k, v in before.items()}, everything, labels[pick])
        a = figures({k: v[pick] for k, v in after.items()}, everything, labels[pick])
        for k in a:
            draws.setdefault(k, []).append(a[k])
            draws.setdefault(f"delta_{k}", []).append(a[k] - b[k])
    return {k: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))] for k, v in draws.items()}  # fmt: skip


# --------------------------------------------------------------- the choice
def validation_figures(f: dict[str, np.ndarray], split: Split) -> tuple[float, float]:
    """(pooled pixel F1, mean image IoU) over the defective images with masks, as
    ``refine.select.choose_refiner`` measures them."""
    bad = (split.labels == 1) & split.known
    tp, pred, true = (f[k][bad] for k in ("tp", "pred", "true"))
    f1 = 2 * tp.sum() / max(pred.sum() + true.sum(), 1)
    return float(f1), float(np.mean(tp / np.maximum(pred + true - tp, 1)))


def choose(val: Split, figures_of: dict[str, dict]) -> dict[str, str | dict]:
    """The refiner kept on validation (``figures_of``: per-image validation figures per
    method, "raw" included), with the figures it was chosen on."""
    measured = {name: validation_figures(f, val) for name, f in figures_of.items()}
    f1 = {name: round(m[0], 4) for name, m in measured.items()}
    iou = {name: round(m[1], 4) for name, m in measured.items()}
    kept = choose_method(f1, min_gain=DEFAULT_MIN_GAIN, region_iou=iou)
    return {"kept": kept, "pixel_f1": f1, "mean_image_iou": iou}


def ceiling(split: Split, norm: Normalization) -> dict[str, float]:
    """What no pixel rule can pass at the bundle's verdicts, pooled over ``split``'s images with
    known masks: pixel F1 with perfect masks on NG images (OK images carry no region), and with
    the one global map level that is best on these very images (over NG images)."""
    keep = split.known
    ng = (normalize_scores(split.scores, norm) >= 0.5)[keep]
    maps, truth = normalize_maps(split.maps, norm)[keep], split.masks[keep]
    total = int(truth.sum())
    seen = int(truth[ng].sum())
    best = 0.0
    for level in np.linspace(0.05, 0.95, 91):
        pred = maps[ng] >= level
        best = max(best, 2 * int((pred & truth[ng]).sum()) / max(int(pred.sum()) + total, 1))
    return {"perfect_ng_masks": 2 * seen / max(seen + total, 1), "best_global_level": best}


def _subsets(test: Split) -> dict[str, np.ndarray]:
    good = test.labels == 0
    kinds = sorted(set(test.types[test.labels == 1].tolist()))
    subsets = {"all": test.known.copy()}
    subsets |= {k: (good | (test.types == k)) & test.known for k in kinds}
    thin = [k for k in kinds if any(t in k for t in THIN)]
    if thin:
        subsets["thin kinds"] = (good | np.isin(test.types, thin)) & test.known
    return subsets


def selected(val: Split, norm: Normalization) -> Segmentation:
    """The segmentation calibration selects on these validation outputs now."""
    return calibrated_segmentation(
        norm, val.scores, val.maps, val.masks, val.labels, list(val.types), val.known
    )


def _refiners() -> dict[str, MaskRefiner]:
    return {name: build_refiner(None, name) for name in REFINERS}


def _runs(on: dict[str, Split], norm: Normalization, seg: Segmentation, refiners: dict) -> dict:
    return {
        split: {"raw": per_image(data, norm, seg)}
        | {name: per_image(data, norm, seg, refiner) for name, refiner in refiners.items()}
        for split, data in on.items()
    }


def evaluate(products: list[str], work: Path, out: Path) -> None:
    report: dict = {"cpu": cpu_description(), "load_before": load_average(), "work": str(work),
                    "products": {}}  # fmt: skip
    refiners = _refiners()
    for product in products:
        val, test, norm, seg = load(work, product)
        on = {"validation": val, "test": test}
        now = selected(val, norm)
        runs = {"before": _runs(on, norm, seg, refiners)}
        runs["after"] = runs["before"] if now == seg else _runs(on, norm, now, refiners)
        choice = {when: choose(val, r["validation"]) for when, r in runs.items()}
        picked = {w: runs[w]["test"][c["kept"] if c["kept"] != "none" else "raw"] for w, c in choice.items()}  # fmt: skip
        before, after = picked["before"], picked["after"]
        entry = {
            "segmentation": {"before": seg.describe(), "after": now.describe()},
            "pixel_threshold_raw": norm.pixel_threshold_raw,
            "images": {
                s: {"good": int((d.labels == 0).sum()), "defective": int((d.labels == 1).sum())}
                for s, d in on.items()
            },
            "choice": choice,
            "verdicts_unchanged": bool((after["ng"] == before["ng"]).all()),
            "test_pixel_f1": {
                w: {
                    m: figures(f, test.known, test.labels)["pixel_f1"] for m, f in r["test"].items()
                }
                for w, r in runs.items()
            },
            "ceiling": {"validation": ceiling(val, norm), "test": ceiling(test, norm)},
            "subsets": {},
        }
        for subset, select in _subsets(test).items():
            entry["subsets"][subset] = {
                "before": figures(before, select, test.labels),
                "after": figures(after, select, test.labels),
                "intervals": bootstrap(before, after, select, test.labels),
            }
        report["products"][product] = entry
        print(product, entry["segmentation"], {w: c["kept"] for w, c in choice.items()}, flush=True)
        save_report(out, "evaluation", report, default=float)  # kept if a later product fails
    report["load_after"] = load_average()
    save_report(out, "evaluation", report, markdown(report, DEMO, EVALUATION), default=float)


def rewrite(products: list[str], work: Path, out: Path) -> None:
    """``evaluation.md`` again from ``evaluation.json`` (no computation)."""
    import json

    report = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    (out / "evaluation.md").write_text(markdown(report, DEMO, EVALUATION), encoding="utf-8")


# --------------------------------------------------------------- cost
def _p50(run: Callable[[], object], repeats: int = 300) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(1e3 * (time.perf_counter() - start))
    kept = times[repeats // 6 :]  # the first runs warm caches
    return {"p50_ms": float(np.median(kept)), "p95_ms": float(np.percentile(kept, 95))}


def cost(products: list[str], work: Path, out: Path) -> None:
    """Station cost (one thread, 256 px maps) per NG held-out image: judge with the bundle's
    segmentation and with the one selected now, the refiner kept after on top, the regions'
    length and width (``core.regions._extent``) inside judge; and the export-time selection
    of the segmentation (once per bundle) on the validation split."""
    import inspection.core.regions as regions_module
    import inspection.core.segmentation as segmentation_module

    val, test, norm, seg = load(work, products[0])
    now = selected(val, norm)
    scores, maps = normalize_scores(test.scores, norm), normalize_maps(test.maps, norm)
    ng = [(float(s), m, im) for s, m, im in zip(scores, maps, test.images, strict=True) if s >= 0.5]

    def judge_all(segmentation: Segmentation) -> Callable[[], None]:
        return lambda: [judge(score, 0.5, m, segmentation) for score, m, _ in ng]

    rows = {}
    for when, segmentation in (("bundle's segmentation", seg), ("selected now", now)):
        rows[f"judge, {when} ({segmentation.describe()})"] = _p50(judge_all(segmentation), 60)
        runs = _runs({"validation": val}, norm, segmentation, _refiners())["validation"]
        kept = choose(val, runs)["kept"]
        if kept != "none":
            refiner = build_refiner(None, kept)
            pairs = [(item, judge(item[0], 0.5, item[1], segmentation)) for item in ng]
            rows[f"{kept} refiner kept with the {when} (on top of judge)"] = _p50(
                lambda r=refiner, p=pairs: [_refined(im, s, m, j, r) for (s, m, im), j in p], 20
            )
    measured = regions_module._extent
    regions_module._extent = lambda xs, ys: (None, None)
    try:
        rows["judge, selected now, without length/width"] = _p50(judge_all(now), 60)
    finally:
        regions_module._extent = measured
    rows = {k: {s: v / len(ng) for s, v in r.items()} for k, r in rows.items()}

    def select() -> Segmentation:
        return selected(val, norm)

    levels = segmentation_module.PEAK_LEVELS
    segmentation_module.PEAK_LEVELS = (0.5,)
    try:
        selection = {"before (half-maximum only)": _p50(select, 6)}
    finally:
        segmentation_module.PEAK_LEVELS = levels
    selection["after (faint-peak level chosen)"] = _p50(select, 6)
    report = {"cpu": cpu_description(), "load": load_average(), "product": products[0],
              "map": list(maps.shape[1:]), "ng_images": len(ng), "rows": rows,
              "selection_at_export": selection}  # fmt: skip
    lines = [f"# Station cost of the mask steps ({products[0]}, {maps.shape[1]} px maps)", "",
             f"CPU: {report['cpu']}; load {report['load']}; `heavy --alone`.", "",
             "| step, per NG image | p50 ms | p95 ms |", "| --- | --- | --- |"]  # fmt: skip
    lines += [f"| {k} | {v['p50_ms']:.3f} | {v['p95_ms']:.3f} |" for k, v in rows.items()]
    lines.append(f"\nEach row: all {len(ng)} NG held-out images in one loop, divided by {len(ng)}.")
    lines.append(
        f"\nAt export, once per bundle, selecting the segmentation on the {len(val.labels)} "
        "validation images: " + "; ".join(f"{k} p50 {v['p50_ms']:.0f} ms" for k, v in selection.items()) + "."
    )  # fmt: skip
    save_report(out, "cost", report, "\n".join(lines) + "\n")
    print("\n".join(lines))


# --------------------------------------------------------------- report
FIGURES = (
    "pixel_f1", "pixel_iou", "region_recall", "false_regions_per_good", "area_error", "length_error"
)  # fmt: skip


def _cell(entry: dict, key: str) -> str:
    b, a = entry["before"][key], entry["after"][key]
    low, high = entry["intervals"][key]
    dlow, dhigh = entry["intervals"][f"delta_{key}"]
    return f"{b:.3f} -> {a:.3f} [{low:.3f}, {high:.3f}] (Δ [{dlow:+.3f}, {dhigh:+.3f}])"


def _family_mean(report: dict, family: tuple[str, ...], when: str) -> float:
    present = [p for p in family if p in report["products"]]
    return float(np.mean([report["products"][p]["subsets"]["all"][when]["pixel_f1"] for p in present]))  # fmt: skip


def markdown(report: dict, demo: tuple[str, ...], evaluation: tuple[str, ...]) -> str:
    lines = [
        "# Masks you can measure with: held-out figures, the segmentation and refiner each bundle keeps",
        "",
        "Produced by `bench/masks.py` (`prepare`, `evaluate`, `cost`). Each product: the demo "
        f"data at the CLI defaults (256 px, 60 train images; cache `{report.get('work', 'var/bench-masks')}`: "
        "seed 0, or the `--seed` it was prepared with), PatchCore at the project's "
        "defaults, its FP32 bundle run through the station inference path on the version's "
        "validation and held-out test splits. Every row judges with the bundle's own "
        "normalisation and image threshold, so image verdicts cannot move (checked: "
        "`verdicts_unchanged`). **Before**: the bundle's segmentation as exported (an NG image "
        "whose map stays below the segmentation floor gets its peak's half-maximum region) and "
        "the refiner kept on validation by the export's rule (pooled pixel F1 over the defective "
        "images up by >= 0.01, mean image IoU not lower; none, GrabCut, random walker, guided). "
        "**After**: the segmentation calibration selects now on the same validation outputs "
        "(`core.segmentation`: with the segmentation chosen, the faint peak's region level "
        "`peak_level` in 0.3-0.9 by the same kind-balanced objective over the validation "
        "defects judged NG whose map stays below the floor; none: 0.5), and the refiner chosen "
        "again on validation on top of it. **Only each bundle's validation split chooses**; "
        "nothing was set on held-out test. The evaluation family (part, tissue, weave) sets no "
        "shared constant, but note: the peak-level grid was added after seeing part's faint NG "
        "regions cost it pixel F1 (its own validation split then picks the level).",
        "",
        f"CPU: {report['cpu']}; load {report['load_before']} -> {report.get('load_after', '?')}.",
        "",
        "Cells: before -> after [bootstrap 95 % of after] (Δ: paired bootstrap 95 % of after - "
        "before; 1000 resamples of images, good and defective separately). Pixel F1/IoU pooled "
        "over the subset's images (good ones included, as `core.metrics`); area error: median "
        "over detected (NG) defective images of |predicted - true| / true defect area (a missed "
        "defect has no region to measure; its miss shows in region recall); length error: the "
        "same for the longest region's length (minimum-area rotated rectangle, `core.regions`).",
        "",
        "## The choice on validation, and what held-out test shows",
        "",
        "Ceiling (held-out test, at the bundle's verdicts; no pixel rule can pass it): pixel F1 "
        "with perfect masks on NG images (an OK image carries no region), and with the single "
        "global map level that is best on the test images themselves.",
        "",
        "| product | family | validation good/defective | test good/defective | segmentation before -> after "
        "| refiner kept before -> after | test pixel F1 raw / grabcut / random walker / guided, before -> after "
        "| ceiling: perfect NG masks / best global level | verdicts unchanged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    methods = ("raw", *REFINERS)
    for product, e in report["products"].items():
        family = "demo" if product in demo else "evaluation"
        val, test = e["images"]["validation"], e["images"]["test"]
        tf1 = " -> ".join(" / ".join(f"{e['test_pixel_f1'][w][m]:.3f}" for m in methods) for w in ("before", "after"))  # fmt: skip
        seg, kept, top = e["segmentation"], e["choice"], e["ceiling"]["test"]
        segs = seg["before"] + (
            " (unchanged)" if seg["after"] == seg["before"] else f" -> {seg['after']}"
        )
        lines.append(
            f"| {product} | {family} | {val['good']}/{val['defective']} | {test['good']}/{test['defective']} "
            f"| {segs} | {kept['before']['kept']} -> {kept['after']['kept']} "
            f"| {tf1} | {top['perfect_ng_masks']:.3f} / {top['best_global_level']:.3f} | {e['verdicts_unchanged']} |"
        )  # fmt: skip
    for title, family in (
        ("Demo products (tuned family)", demo),
        ("Evaluation family (never tuned on)", evaluation),
    ):
        lines += ["", f"## {title}: held-out test, before -> after", ""]
        lines += [
            "| product | subset | " + " | ".join(FIGURES) + " |",
            "| --- | --- |" + " --- |" * len(FIGURES),
        ]
        for product in family:
            for subset, figs in report["products"].get(product, {}).get("subsets", {}).items():
                cells = " | ".join(_cell(figs, k) for k in FIGURES)
                lines.append(f"| {product} | {subset} | {cells} |")
        if any(p in report["products"] for p in family):
            lines.append(
                f"\nMean pixel F1 over the family's products: {_family_mean(report, family, 'before'):.3f}"
                f" -> {_family_mean(report, family, 'after'):.3f}."
            )  # fmt: skip
    return "\n".join(lines + _findings(report, evaluation)) + "\n"


def _findings(report: dict, evaluation: tuple[str, ...]) -> list[str]:
    lines = ["", "## Findings", ""]
    worse, changed = [], []
    for product, e in report["products"].items():
        figs, delta = e["subsets"]["all"], e["subsets"]["all"]["intervals"]["delta_pixel_f1"]
        b, a = figs["before"]["pixel_f1"], figs["after"]["pixel_f1"]
        seg, kept = e["segmentation"], e["choice"]
        if seg["before"] != seg["after"] or kept["before"]["kept"] != kept["after"]["kept"]:
            changed.append(f"{product} ({seg['after']}, refiner {kept['after']['kept']}: "
                           f"{b:.3f} -> {a:.3f}, Δ [{delta[0]:+.3f}, {delta[1]:+.3f}])")  # fmt: skip
        if a < b:
            worse.append(f"{product} {b:.3f} -> {a:.3f}")
    lines.append("- Bundles whose validation choice changes: "
                 + ("; ".join(changed) if changed else "none") + ".")  # fmt: skip
    lines.append("- Held-out pixel F1 below the current figure: "
                 + ("; ".join(worse) if worse else "no product") + ".")  # fmt: skip
    mean = _family_mean(report, evaluation, "after")
    present = [p for p in evaluation if p in report["products"]]
    top = float(np.mean([report["products"][p]["ceiling"]["test"]["perfect_ng_masks"] for p in present]))  # fmt: skip
    lines.append(
        f"- Evaluation family (never tuned on): mean pixel F1 {_family_mean(report, evaluation, 'before'):.3f}"
        f" -> {mean:.3f}; target 0.75 {'met' if mean >= 0.75 else f'NOT met (short by {0.75 - mean:.3f})'}; "
        f"its ceiling with perfect masks on the NG images at today's verdicts: {top:.3f}."
    )  # fmt: skip
    thin = {p: e["subsets"]["thin kinds"] for p, e in report["products"].items()
            if "thin kinds" in e["subsets"]}  # fmt: skip
    lines.append(
        "- Thin kinds, pixel F1 before -> after: "
        + "; ".join(f"{p} {f['before']['pixel_f1']:.3f} -> {f['after']['pixel_f1']:.3f}" for p, f in thin.items()) + "."
    )  # fmt: skip
    lines.append(
        "- Sizes of thin kinds after (median relative error over detected defects, area / "
        "length): " + "; ".join(f"{p} {f['after']['area_error']:.2f} / {f['after']['length_error']:.2f}" for p, f in thin.items()) + "."
    )  # fmt: skip
    unchanged = all(e["verdicts_unchanged"] for e in report["products"].values())
    lines.append(f"- Image verdicts identical in every row: {unchanged}.")
    return lines
