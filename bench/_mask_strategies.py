"""Pixel operating points for ``bench/masks.py``: chosen on validation, judged on held-out test.

Every strategy sets the raw pixel threshold (the map level normalised to 0.5) and a
``Segmentation`` from the VALIDATION split; the image threshold and image normalisation are
the bundle's own, so every strategy judges the same verdicts (checked per product).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _guided import MapGuidance, guide_of, guided_map
from _report import cpu_description, load_average, save_report

from inspection.core.calibration import Normalization, normalize_maps, normalize_scores
from inspection.core.operating_point import f1_adaptive_threshold, good_map_threshold
from inspection.core.regions import extract_regions, region_hits
from inspection.core.segmentation import select_segmentation
from inspection.core.verdict import Segmentation, judge

BUDGET = 0.01
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

    def take(self, keep: np.ndarray) -> Split:
        return Split(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))

    def guided(self, guidance: MapGuidance | None) -> Split:
        if guidance is None:
            return self
        size = self.maps.shape[1:]
        maps = np.stack(
            [guided_map(m, guide_of(im, size), guidance) for m, im in zip(self.maps, self.images, strict=True)]
        )  # fmt: skip
        return Split(
            self.scores, maps, self.labels, self.masks, self.known, self.types, self.images
        )


def load(work: Path, product: str) -> tuple[Split, Split, Normalization, Segmentation]:
    data = np.load(work / f"{product}.npz")

    def split(name: str) -> Split:
        return Split(*(data[f"{name}_{k}"] for k in ("scores", "maps", "labels", "masks", "known", "types", "images")))  # fmt: skip

    n = data["normalization"]
    s = data["segmentation"]
    seg = Segmentation("adaptive" if s[0] else "global", float(s[1]), float(s[2]), float(s[3]), float(s[4]))  # fmt: skip
    return split("validation"), split("test"), Normalization(*map(float, n)), seg


# --------------------------------------------------------------- strategies
def _norm(base: Normalization, maps: np.ndarray, pixel_threshold: float) -> Normalization:
    return Normalization(
        base.image_threshold_raw, pixel_threshold, base.image_min, base.image_max,
        float(min(maps.min(), pixel_threshold)), float(max(maps.max(), pixel_threshold)),
    )  # fmt: skip


def _good_level(val: Split) -> float:
    good = val.maps[val.labels == 0]
    return good_map_threshold(good.reshape(len(good), -1).max(axis=1), BUDGET)


def _selected(val: Split, norm: Normalization) -> Segmentation:
    normed = normalize_maps(val.maps, norm)
    bad = (val.labels == 1) & val.known
    if not bad.any():
        return Segmentation.global_threshold(0.5)
    return select_segmentation(
        normed[bad], val.masks[bad], list(val.types[bad]), normed[val.labels == 0]
    )


def f1_selected(val: Split, base: Normalization) -> tuple[Normalization, Segmentation]:
    """Current rule: pooled-F1 pixel threshold, segmentation selected on the defects."""
    known = val.known
    t, _ = f1_adaptive_threshold(val.maps[known], val.masks[known])
    norm = _norm(base, val.maps, t)
    return norm, _selected(val, norm)


def good_selected(val: Split, base: Normalization) -> tuple[Normalization, Segmentation]:
    """Pixel threshold from good maps at the budget, segmentation selected on the defects."""
    norm = _norm(base, val.maps, _good_level(val))
    return norm, _selected(val, norm)


def capped_selected(val: Split, base: Normalization) -> tuple[Normalization, Segmentation]:
    """min(F1 threshold, good level): never above the level good parts reach."""
    t = min(f1_adaptive_threshold(val.maps[val.known], val.masks[val.known])[0], _good_level(val))
    norm = _norm(base, val.maps, t)
    return norm, _selected(val, norm)


def kind_balanced_threshold(val: Split, levels: int = 256) -> float:
    """The raw level maximising the MEAN over defect kinds of each kind's pixel F1 (its
    defective images with the good ones): a large kind cannot outvote a thin one."""
    known = val.known
    values = val.maps[known]
    grid = np.unique(np.quantile(values[val.masks[known]], np.linspace(0.0, 0.999, levels)))
    good = val.labels[known] == 0
    good_pred = np.stack([(val.maps[known][good] >= t).sum() for t in grid]) if good.any() else 0
    curves = []
    for kind in sorted(set(val.types[(val.labels == 1) & known].tolist())):
        mine = (val.types[known] == kind) & ~good
        maps, masks = val.maps[known][mine], val.masks[known][mine]
        pos, neg = maps[masks], maps[~masks]
        tp = len(pos) - np.searchsorted(np.sort(pos), grid)
        fp = len(neg) - np.searchsorted(np.sort(neg), grid) + good_pred
        curves.append(2 * tp / np.maximum(2 * tp + fp + (len(pos) - tp), 1))
    return float(grid[int(np.argmax(np.mean(curves, axis=0)))])


def kind_balanced_selected(val: Split, base: Normalization) -> tuple[Normalization, Segmentation]:
    """Kind-balanced F1 pixel threshold, segmentation selected on the defects."""
    norm = _norm(base, val.maps, kind_balanced_threshold(val))
    return norm, _selected(val, norm)


def good_hysteresis(quantile: float, relative: float) -> Callable:
    """Good statistics only: seed at the good level (0.5), grow to the good pixels' quantile."""

    def strategy(val: Split, base: Normalization) -> tuple[Normalization, Segmentation]:
        norm = _norm(base, val.maps, _good_level(val))
        good = normalize_maps(val.maps[val.labels == 0], norm)
        floor = float(np.clip(np.quantile(good[:, ::2, ::2], quantile), 0.001, 0.5))
        return norm, Segmentation("adaptive", 0.5, floor, relative)

    strategy.__doc__ = f"good level seeds, grow to good-pixel q{quantile}, relative {relative}"
    return strategy


STRATEGIES: dict[str, Callable] = {
    "f1 + selected (current)": f1_selected,
    "good level + selected": good_selected,
    "min(f1, good) + selected": capped_selected,
    "kind-balanced f1 + selected": kind_balanced_selected,
    **{
        f"good hysteresis q0.999 rel{r}": good_hysteresis(0.999, r)
        for r in (0.25, 0.5, 0.6, 0.7, 0.8)
    },
    **{f"good hysteresis q0.99 rel{r}": good_hysteresis(0.99, r) for r in (0.5, 0.7)},
}


# --------------------------------------------------------------- per-image figures
def per_image(split: Split, norm: Normalization, seg: Segmentation) -> dict[str, np.ndarray]:
    """Per image: verdict, tp / predicted / true pixels, regions found / total, regions, and
    the longest predicted and true region lengths (``core.regions``, pixels)."""
    scores = normalize_scores(split.scores, norm)
    maps = normalize_maps(split.maps, norm)
    rows, lengths = [], []
    for score, amap, truth in zip(scores, maps, split.masks, strict=True):
        j = judge(float(score), 0.5, amap, seg)
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


def loko_score(val: Split, base: Normalization, strategy: Callable) -> float:
    """Mean over defect kinds of pixel F1 on that kind when the kind was left out of the choice."""
    kinds = sorted(set(val.types[val.labels == 1].tolist()))
    scores = []
    for kind in kinds:
        held = val.types == kind
        norm, seg = strategy(val.take(~held), base)
        f = per_image(val, norm, seg)
        scores.append(figures(f, held | (val.labels == 0), val.labels)["pixel_f1"])
    return float(np.mean(scores))


# --------------------------------------------------------------- phases
GUIDANCES: tuple[MapGuidance | None, ...] = (
    None,
    MapGuidance(4, 1e-3),
    MapGuidance(8, 1e-3),
    MapGuidance(8, 1e-2),
)


def _label(name: str, guidance: MapGuidance | None) -> str:
    return name if guidance is None else f"{name} + guided r{guidance.radius} eps{guidance.eps:g}"


def choose(data: dict, demo: tuple[str, ...]) -> tuple[dict, str, str, MapGuidance | None]:
    """LOKO validation pixel F1 of every (strategy, guidance) on the demo products."""
    rows, best = {}, None
    for guidance in GUIDANCES:
        guided = {p: data[p][0].guided(guidance) for p in demo if p in data}
        for name, strategy in STRATEGIES.items():
            vals = {p: loko_score(guided[p], data[p][2], strategy) for p in guided}
            label = _label(name, guidance)
            rows[label] = {"per_product": vals, "mean": float(np.mean(list(vals.values())))}
            print(f"{label:60s} {rows[label]['mean']:.3f} {vals}", flush=True)
            if best is None or rows[label]["mean"] > rows[best[0]]["mean"]:
                best = (label, name, guidance)
    return rows, *best


def test_figures(
    val: Split,
    test: Split,
    base: Normalization,
    seg: Segmentation,
    strategy: Callable | None,
    guidance: MapGuidance | None,
) -> dict:
    """Per-image figures on test: the bundle's own point (``strategy`` None) or a strategy's."""
    if strategy is None:
        return per_image(test, base, seg)
    norm, chosen = strategy(val.guided(guidance), base)
    return {**per_image(test.guided(guidance), norm, chosen), "_segmentation": chosen.describe(),
            "_pixel_threshold_raw": norm.pixel_threshold_raw}  # fmt: skip


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
    data = {p: load(work, p) for p in products}
    rows, label, name, guidance = choose(data, DEMO)
    report["validation_loko"] = rows
    report["chosen"] = {"label": label, "strategy": name,
                        "guidance": None if guidance is None else [guidance.radius, guidance.eps]}  # fmt: skip
    save_report(out, "evaluation", report, default=float)  # the choice, kept if a later step fails
    alternatives = {"chosen": (STRATEGIES[name], guidance)}
    if guidance is not None:
        alternatives["chosen, no guidance"] = (STRATEGIES[name], None)
    for product, (val, test, base, seg) in data.items():
        before = test_figures(val, test, base, seg, None, None)
        entry = {
            "before_segmentation": seg.describe(),
            "pixel_threshold_raw": base.pixel_threshold_raw,
            "images": {
                split: {"good": int((d.labels == 0).sum()), "defective": int((d.labels == 1).sum())}
                for split, d in (("validation", val), ("test", test))
            },
        }
        for alt, (strategy, g) in alternatives.items():
            after = test_figures(val, test, base, seg, strategy, g)
            meta = {k: after.pop(k) for k in [k for k in after if k.startswith("_")]}
            entry[alt] = {"verdicts_unchanged": bool((after["ng"] == before["ng"]).all()), **meta,
                          "subsets": {}}  # fmt: skip
            for subset, select in _subsets(test).items():
                b = figures(before, select, test.labels)
                a = figures(after, select, test.labels)
                entry[alt]["subsets"][subset] = {"before": b, "after": a,
                    "intervals": bootstrap(before, after, select, test.labels)}  # fmt: skip
        report["products"][product] = entry
        print(
            product,
            {alt: entry[alt]["subsets"]["all"]["after"]["pixel_f1"] for alt in alternatives},
            flush=True,
        )
    report["test_of_every_candidate"] = {
        _label(name, g): {p: figures(test_figures(*data[p], STRATEGIES[name], g), data[p][1].known, data[p][1].labels)["pixel_f1"]
                          for p in data}
        for g in (None, MapGuidance(8, 1e-3))
        for name in STRATEGIES
    }  # fmt: skip
    report["load_after"] = load_average()
    save_report(out, "evaluation", report, markdown(report, DEMO, EVALUATION), default=float)


def _p50(run: Callable[[], object], repeats: int = 300) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(1e3 * (time.perf_counter() - start))
    kept = times[repeats // 6 :]  # the first runs warm caches
    return {"p50_ms": float(np.median(kept)), "p95_ms": float(np.percentile(kept, 95))}


def rewrite(products: list[str], work: Path, out: Path) -> None:
    """``evaluation.md`` again from ``evaluation.json`` (no computation)."""
    import json

    from masks import DEMO, EVALUATION

    report = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    (out / "evaluation.md").write_text(markdown(report, DEMO, EVALUATION), encoding="utf-8")


def cost(products: list[str], work: Path, out: Path) -> None:
    """Station cost (one thread, 256 px maps): the guided filter, and the regions' length and
    width (``core.regions._extent``) inside ``judge`` on the held-out NG images."""
    import inspection.core.regions as regions_module

    _, test, base, seg = load(work, products[0])
    amap, image = test.maps[0], test.images[0]
    rows: dict[str, dict[str, float]] = {}
    for g in (MapGuidance(4, 1e-3), MapGuidance(8, 1e-3)):
        rows[f"guided filter r{g.radius}"] = _p50(
            lambda g=g: guided_map(amap, guide_of(image, amap.shape), g)
        )
    scores, maps = normalize_scores(test.scores, base), normalize_maps(test.maps, base)
    ng = [(float(sc), m) for sc, m in zip(scores, maps, strict=True) if sc >= 0.5]

    def judge_all() -> None:
        for score, m in ng:
            judge(score, 0.5, m, seg)

    rows["judge, NG images, with length/width"] = _p50(judge_all, 60)
    measured = regions_module._extent
    regions_module._extent = lambda xs, ys: (None, None)
    try:
        rows["judge, NG images, without length/width"] = _p50(judge_all, 60)
    finally:
        regions_module._extent = measured
    report = {"cpu": cpu_description(), "load": load_average(), "product": products[0],
              "map": list(amap.shape), "ng_images": len(ng), "rows": rows}  # fmt: skip
    lines = [f"# Station cost of the mask changes ({products[0]}, {amap.shape[0]} px maps)", "",
             f"CPU: {report['cpu']}; load {report['load']}; `heavy --alone`.", "",
             "| step | p50 ms | p95 ms |", "| --- | --- | --- |"]  # fmt: skip
    lines += [f"| {k} | {v['p50_ms']:.3f} | {v['p95_ms']:.3f} |" for k, v in rows.items()]
    lines.append(f"\n`judge` rows: all {len(ng)} NG held-out images in one loop.")
    save_report(out, "cost", report, "\n".join(lines) + "\n")
    print("\n".join(lines))


# --------------------------------------------------------------- report
FIGURES = (
    "pixel_f1", "pixel_iou", "region_recall", "false_regions_per_good", "area_error", "length_error"
)  # fmt: skip


def _cell(entry: dict, key: str) -> str:
    if key not in entry["after"]:
        return "-"  # a report written before this figure existed
    b, a = entry["before"][key], entry["after"][key]
    low, high = entry["intervals"][key]
    dlow, dhigh = entry["intervals"][f"delta_{key}"]
    return f"{b:.3f} -> {a:.3f} [{low:.3f}, {high:.3f}] (Δ [{dlow:+.3f}, {dhigh:+.3f}])"


def markdown(report: dict, demo: tuple[str, ...], evaluation: tuple[str, ...]) -> str:
    chosen = report["chosen"]["label"]
    lines = [
        "# Masks you can measure with: the pixel operating point on held-out data",
        "",
        "Produced by `bench/masks.py` (`prepare`, `evaluate`, `cost`). Each product: the demo "
        "data at the CLI defaults (seed 0, 256 px, 60 train images), PatchCore at the project's "
        "defaults, its FP32 bundle run through the station inference path on the version's "
        "validation and held-out test splits. **Only validation chooses**: every strategy is "
        "scored by leave-one-kind-out pixel F1 inside the validation split of the demo products "
        "(brick, grass, gravel; the kind scored played no part in that fold's threshold); the "
        "evaluation family (part, tissue, weave) is never used to choose. The image threshold "
        "is each bundle's own in every row, so image verdicts cannot move (checked: "
        "`verdicts_unchanged` in `evaluation.json`).",
        "",
        f"CPU: {report['cpu']}; load {report['load_before']} -> {report['load_after']}.",
        "",
        "Cells: before (the bundle's own pixel threshold and segmentation) -> after "
        "[bootstrap 95 % of after] (Δ: paired bootstrap 95 % of after - before; 1000 "
        "resamples of images, good and defective separately). Pixel F1/IoU pooled over the "
        "subset's images (good ones included, as `core.metrics`); area error: median over "
        "detected (NG) defective images of |predicted - true| / true defect area (a missed "
        "defect has no region to measure; its miss shows in region recall); length error: the "
        "same for the longest region's length (minimum-area rotated rectangle, `core.regions`).",
        "",
        "## Choice on validation (leave-one-kind-out pixel F1, demo products)",
        "",
        "| strategy | " + " | ".join(demo) + " | mean |",
        "| --- | " + " | ".join("---" for _ in demo) + " | --- |",
    ]
    for label, row in sorted(report["validation_loko"].items(), key=lambda kv: -kv[1]["mean"]):
        mark = " **(chosen)**" if label == chosen else ""
        cells = " | ".join(f"{row['per_product'].get(p, float('nan')):.3f}" for p in demo)
        lines.append(f"| {label}{mark} | {cells} | {row['mean']:.3f} |")
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
            if product not in report["products"]:
                continue
            entry = report["products"][product]["chosen"]
            for subset, figs in entry["subsets"].items():
                cells = " | ".join(_cell(figs, k) for k in FIGURES)
                lines.append(f"| {product} | {subset} | {cells} |")
    lines += ["", "## Overall pixel F1 per product (all held-out images)", "",
              "| product | family | validation good/defective | test good/defective | before | after "
              "| after, no guidance | verdicts unchanged | after: segmentation |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for product, entry in report["products"].items():
        figs = entry["chosen"]["subsets"]["all"]
        family = "demo" if product in demo else "evaluation"
        counts = entry.get("images", {})
        val, test = (counts.get(k, {}) for k in ("validation", "test"))
        plain = entry.get("chosen, no guidance", entry["chosen"])["subsets"]["all"]["after"]
        lines.append(
            f"| {product} | {family} | {val.get('good', '?')}/{val.get('defective', '?')} "
            f"| {test.get('good', '?')}/{test.get('defective', '?')} "
            f"| {figs['before']['pixel_f1']:.3f} | {figs['after']['pixel_f1']:.3f} | {plain['pixel_f1']:.3f} "
            f"| {entry['chosen']['verdicts_unchanged']} | {entry['chosen'].get('_segmentation', '')} |"
        )
    products = list(report["products"])
    lines += ["", "## Diagnostic only (never used to choose): held-out pixel F1 of every candidate", "",
              "| candidate | " + " | ".join(products) + " |", "| --- |" + " --- |" * len(products)]  # fmt: skip
    lines += [f"| {label} | " + " | ".join(f"{row[p]:.3f}" for p in products) + " |"
              for label, row in report["test_of_every_candidate"].items()]  # fmt: skip
    for name, family in (("demo", demo), ("evaluation", evaluation)):
        present = [p for p in family if p in report["products"]]
        if present:
            b = np.mean(
                [
                    report["products"][p]["chosen"]["subsets"]["all"]["before"]["pixel_f1"]
                    for p in present
                ]
            )
            a = np.mean(
                [
                    report["products"][p]["chosen"]["subsets"]["all"]["after"]["pixel_f1"]
                    for p in present
                ]
            )
            lines.append(f"\nMean over the {name} family's products: pixel F1 {b:.3f} -> {a:.3f}.")
    return "\n".join(lines + _findings(report, evaluation)) + "\n"


def _findings(report: dict, evaluation: tuple[str, ...]) -> list[str]:
    """What the figures say, for the decision: is the validation choice adopted?"""
    current = "f1 + selected (current)"
    loko = report["validation_loko"]
    lines = ["", "## Findings", ""]
    lines.append(
        f"- Validation (leave-one-kind-out) chose **{report['chosen']['label']}**: mean "
        f"{loko[report['chosen']['label']]['mean']:.3f} vs the current rule's {loko[current]['mean']:.3f}."
    )
    for alt in ("chosen", "chosen, no guidance"):
        worse = []
        for product, entry in report["products"].items():
            if alt not in entry:
                continue
            delta = entry[alt]["subsets"]["all"]["intervals"]["delta_pixel_f1"]
            figs = entry[alt]["subsets"]["all"]
            if figs["after"]["pixel_f1"] < figs["before"]["pixel_f1"]:
                worse.append(
                    f"{product} {figs['before']['pixel_f1']:.3f} -> {figs['after']['pixel_f1']:.3f}"
                    f" (Δ [{delta[0]:+.3f}, {delta[1]:+.3f}])"
                )
        verdict = (
            "products below their current figure: " + "; ".join(worse)
            if worse
            else "no product below its current figure"
        )
        lines.append(f"- Held-out test, {alt}: {verdict}.")
    present = [p for p in evaluation if p in report["products"]]
    before = np.mean(
        [report["products"][p]["chosen"]["subsets"]["all"]["before"]["pixel_f1"] for p in present]
    )
    lines.append(
        f"- Evaluation family (never tuned on) pixel F1 at the current rule: {before:.3f} "
        f"(mean over {', '.join(present)}); target 0.75 {'met' if before >= 0.75 else 'NOT met'}."
    )
    adopted = not any(
        e["chosen"]["subsets"]["all"]["after"]["pixel_f1"]
        < e["chosen"]["subsets"]["all"]["before"]["pixel_f1"]
        for e in report["products"].values()
    )
    lines.append(
        "- Decision: the validation choice replaces the product's rule only if no product falls "
        "below its current figure on held-out test: "
        + (
            "**adopted**."
            if adopted
            else "**not adopted**; the station keeps the pooled-F1 "
            "pixel threshold with the segmentation selected per product (`core.calibration`)."
        )
    )
    thin = {
        p: e["chosen"]["subsets"]["thin kinds"]["before"]
        for p, e in report["products"].items()
        if "thin kinds" in e["chosen"]["subsets"]
    }
    if all("length_error" in f for f in thin.values()):
        lines.append(
            "- Sizes of thin kinds at the current rule (median relative error over detected "
            "defects, area / length): "
            + "; ".join(
                f"{p} {f['area_error']:.2f} / {f['length_error']:.2f}" for p, f in thin.items()
            )
            + "."
        )
    unchanged = all(
        e[a]["verdicts_unchanged"]
        for e in report["products"].values()
        for a in ("chosen", "chosen, no guidance")
        if a in e
    )
    lines.append(f"- Image verdicts identical in every row: {unchanged}.")
    return lines
