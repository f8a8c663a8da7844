"""Masks on held-out data for ``bench/masks.py``: the refiner a bundle keeps, chosen on validation.

Every row judges with the bundle's own normalisation, pixel threshold and segmentation
(``core.verdict.judge``), so image verdicts cannot move; a refiner only redraws the regions of
NG results, as on the line. The refiner is chosen on the VALIDATION split by the export's own
rule (``core.refinement.choose_method``: pooled pixel F1 over the defective images up by
``min_gain`` and mean image IoU not lower). *Before* is the choice among the refiners a bundle
could keep until now, *after* the choice with the guided refiner among them.

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

from inspection.core.calibration import Normalization, normalize_maps, normalize_scores
from inspection.core.refinement import DEFAULT_MIN_GAIN, choose_method
from inspection.core.regions import extract_regions, region_hits
from inspection.core.types import InspectionResult
from inspection.core.verdict import Segmentation, judge
from inspection.refine.base import MaskRefiner
from inspection.refine.factory import build_refiner

BEFORE = ("grabcut", "random_walker")
"""The refiners an export could keep before this change."""
AFTER = (*BEFORE, "guided")
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


def choose(
    val: Split, norm: Normalization, seg: Segmentation, figures_of: dict[str, dict]
) -> dict[str, str | dict]:
    """The refiner kept among ``BEFORE`` and among ``AFTER`` on validation (``figures_of``:
    per-image validation figures per method, "raw" included)."""
    measured = {name: validation_figures(f, val) for name, f in figures_of.items()}
    f1 = {name: round(m[0], 4) for name, m in measured.items()}
    iou = {name: round(m[1], 4) for name, m in measured.items()}

    def pick(names: tuple[str, ...]) -> str:
        keep = ("raw", *names)
        return choose_method({n: f1[n] for n in keep}, min_gain=DEFAULT_MIN_GAIN,
                             region_iou={n: iou[n] for n in keep})  # fmt: skip

    return {"before": pick(BEFORE), "after": pick(AFTER), "pixel_f1": f1, "mean_image_iou": iou}


def _subsets(test: Split) -> dict[str, np.ndarray]:
    good = test.labels == 0
    kinds = sorted(set(test.types[test.labels == 1].tolist()))
    subsets = {"all": test.known.copy()}
    subsets |= {k: (good | (test.types == k)) & test.known for k in kinds}
    thin = [k for k in kinds if any(t in k for t in THIN)]
    if thin:
        subsets["thin kinds"] = (good | np.isin(test.types, thin)) & test.known
    return subsets


def evaluate(products: list[str], work: Path, out: Path) -> None:
    from masks import DEMO, EVALUATION

    report: dict = {"cpu": cpu_description(), "load_before": load_average(), "products": {}}
    refiners = {name: build_refiner(None, name) for name in AFTER}
    for product in products:
        val, test, norm, seg = load(work, product)
        on = {"validation": val, "test": test}
        runs = {
            split: {"raw": per_image(data, norm, seg)}
            | {name: per_image(data, norm, seg, refiner) for name, refiner in refiners.items()}
            for split, data in on.items()
        }
        choice = choose(val, norm, seg, runs["validation"])
        before, after = (runs["test"][m if m != "none" else "raw"] for m in (choice["before"], choice["after"]))  # fmt: skip
        entry = {
            "segmentation": seg.describe(),
            "pixel_threshold_raw": norm.pixel_threshold_raw,
            "images": {
                s: {"good": int((d.labels == 0).sum()), "defective": int((d.labels == 1).sum())}
                for s, d in on.items()
            },
            "choice": choice,
            "verdicts_unchanged": bool((after["ng"] == runs["test"]["raw"]["ng"]).all()),
            "test_pixel_f1": {
                m: figures(f, test.known, test.labels)["pixel_f1"] for m, f in runs["test"].items()
            },
            "subsets": {},
        }
        for subset, select in _subsets(test).items():
            entry["subsets"][subset] = {
                "before": figures(before, select, test.labels),
                "after": figures(after, select, test.labels),
                "intervals": bootstrap(before, after, select, test.labels),
            }
        report["products"][product] = entry
        print(product, choice["before"], "->", choice["after"], entry["test_pixel_f1"], flush=True)
        save_report(out, "evaluation", report, default=float)  # kept if a later product fails
    report["load_after"] = load_average()
    save_report(out, "evaluation", report, markdown(report, DEMO, EVALUATION), default=float)


def rewrite(products: list[str], work: Path, out: Path) -> None:
    """``evaluation.md`` again from ``evaluation.json`` (no computation)."""
    import json

    from masks import DEMO, EVALUATION

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
    """Station cost (one thread, 256 px maps) per NG held-out image: judge, the guided
    refiner on top, and the regions' length and width (``core.regions._extent``) inside judge."""
    import inspection.core.regions as regions_module

    _, test, norm, seg = load(work, products[0])
    scores, maps = normalize_scores(test.scores, norm), normalize_maps(test.maps, norm)
    ng = [(float(s), m, im) for s, m, im in zip(scores, maps, test.images, strict=True) if s >= 0.5]
    judged = [judge(s, 0.5, m, seg) for s, m, _ in ng]
    guided = build_refiner(None, "guided")

    def judge_all() -> None:
        for score, m, _ in ng:
            judge(score, 0.5, m, seg)

    def refine_all() -> None:
        for (score, m, image), j in zip(ng, judged, strict=True):
            _refined(image, score, m, j, guided)

    rows = {"judge": _p50(judge_all, 60), "guided refiner (after judge)": _p50(refine_all, 60)}
    measured = regions_module._extent
    regions_module._extent = lambda xs, ys: (None, None)
    try:
        rows["judge without length/width"] = _p50(judge_all, 60)
    finally:
        regions_module._extent = measured
    rows = {k: {s: v / len(ng) for s, v in r.items()} for k, r in rows.items()}
    report = {"cpu": cpu_description(), "load": load_average(), "product": products[0],
              "map": list(maps.shape[1:]), "ng_images": len(ng), "rows": rows}  # fmt: skip
    lines = [f"# Station cost of the mask steps ({products[0]}, {maps.shape[1]} px maps)", "",
             f"CPU: {report['cpu']}; load {report['load']}; `heavy --alone`.", "",
             "| step, per NG image | p50 ms | p95 ms |", "| --- | --- | --- |"]  # fmt: skip
    lines += [f"| {k} | {v['p50_ms']:.3f} | {v['p95_ms']:.3f} |" for k, v in rows.items()]
    lines.append(f"\nEach row: all {len(ng)} NG held-out images in one loop, divided by {len(ng)}.")
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
        "# Masks you can measure with: held-out figures, and the refiner each bundle keeps",
        "",
        "Produced by `bench/masks.py` (`prepare`, `evaluate`, `cost`). Each product: the demo "
        "data at the CLI defaults (seed 0, 256 px, 60 train images), PatchCore at the project's "
        "defaults, its FP32 bundle run through the station inference path on the version's "
        "validation and held-out test splits. Every row judges with the bundle's own "
        "normalisation, pixel threshold and segmentation, so image verdicts cannot move "
        "(checked: `verdicts_unchanged`). A refiner redraws NG results' regions, as on the line; "
        "**only validation chooses it**, by the export's rule (pooled pixel F1 over the "
        "defective images up by >= 0.01 and mean image IoU not lower). **Before**: the choice "
        "among GrabCut and random walker (what a bundle kept until now); **after**: the choice "
        "with the guided refiner (`refine.guided`) among them. The evaluation family (part, "
        "tissue, weave) is never used to choose or to set anything.",
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
        "## The choice on validation, and the held-out pixel F1 of every method",
        "",
        "| product | family | validation good/defective | test good/defective | kept before | kept after "
        "| validation pixel F1 raw / grabcut / random walker / guided | test pixel F1 raw / grabcut / random walker / guided "
        "| verdicts unchanged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    methods = ("raw", *AFTER)
    for product, e in report["products"].items():
        family = "demo" if product in demo else "evaluation"
        val, test = e["images"]["validation"], e["images"]["test"]
        vf1 = " / ".join(f"{e['choice']['pixel_f1'][m]:.3f}" for m in methods)
        tf1 = " / ".join(f"{e['test_pixel_f1'][m]:.3f}" for m in methods)
        lines.append(
            f"| {product} | {family} | {val['good']}/{val['defective']} | {test['good']}/{test['defective']} "
            f"| {e['choice']['before']} | {e['choice']['after']} | {vf1} | {tf1} | {e['verdicts_unchanged']} |"
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
        if e["choice"]["before"] != e["choice"]["after"]:
            changed.append(f"{product} ({e['choice']['before']} -> {e['choice']['after']}: "
                           f"{b:.3f} -> {a:.3f}, Δ [{delta[0]:+.3f}, {delta[1]:+.3f}])")  # fmt: skip
        if a < b:
            worse.append(f"{product} {b:.3f} -> {a:.3f}")
    lines.append("- Bundles whose validation choice changes with the guided refiner: "
                 + ("; ".join(changed) if changed else "none") + ".")  # fmt: skip
    lines.append("- Held-out pixel F1 below the current figure: "
                 + ("; ".join(worse) if worse else "no product") + ".")  # fmt: skip
    mean = _family_mean(report, evaluation, "after")
    lines.append(
        f"- Evaluation family (never tuned on): mean pixel F1 {_family_mean(report, evaluation, 'before'):.3f}"
        f" -> {mean:.3f}; target 0.75 {'met' if mean >= 0.75 else 'NOT met'}."
    )  # fmt: skip
    thin = {p: e["subsets"]["thin kinds"]["after"] for p, e in report["products"].items()
            if "thin kinds" in e["subsets"]}  # fmt: skip
    lines.append(
        "- Sizes of thin kinds after (median relative error over detected defects, area / "
        "length): " + "; ".join(f"{p} {f['area_error']:.2f} / {f['length_error']:.2f}" for p, f in thin.items()) + "."
    )  # fmt: skip
    unchanged = all(e["verdicts_unchanged"] for e in report["products"].values())
    lines.append(f"- Image verdicts identical in every row: {unchanged}.")
    return lines
