"""Masks you can measure with: the segmentation and refiner each bundle keeps, on held-out data.

    heavy .venv/bin/python bench/masks.py prepare [--products brick,grass,...] [--seed 0 --work ...]
    heavy .venv/bin/python bench/masks.py evaluate
    .venv/bin/python bench/masks.py report          # evaluation.md again from evaluation.json

``prepare``: per product, the demo data at the CLI defaults, a PatchCore version at the
project's defaults and its FP32 bundle, then the bundle's raw outputs on the version's
validation and held-out test splits (the station's path, ``training.export.run_bundle``) and the
test images at the map size, cached in ``var/bench-masks/<product>.npz``.

``evaluate`` writes ``reports/masks/evaluation.{json,md}``: every row judges with the bundle's
own normalisation and image threshold (``core.verdict.judge``), so image verdicts cannot move;
the bundle's segmentation as exported, and the refiner the export's rule keeps on VALIDATION
(``core.refinement.choose_method``), redraw the regions of NG results, as on the line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _report import cpu_description, load_average, save_report, table

from inspection.core.calibration import Normalization, normalize_maps, normalize_scores
from inspection.core.metrics import JudgedSet, MaskCounts, mask_counts, mask_figures
from inspection.core.refinement import DEFAULT_MIN_GAIN, choose_method
from inspection.core.segmentation import candidates, families, held_out_score, kind_scores
from inspection.core.types import InspectionResult
from inspection.core.verdict import Segmentation, judge
from inspection.refine.base import MaskRefiner
from inspection.refine.factory import build_refiner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORK = Path("var/bench-masks")
log = logging.getLogger("bench.masks")
DEMO = ("brick", "grass", "gravel")
EVALUATION = ("part", "tissue", "weave")  # untuned: no choice of the masks was made on these
REFINERS = ("grabcut", "random_walker")
"""The refiners an export can keep (besides none)."""
THIN = ("crack", "scratch", "cut", "thread", "burr", "line")
"""Defect kinds reported separately as thin (name contains one of these)."""
RESAMPLES = 1000
LEVELS = np.round(np.linspace(0.05, 0.95, 91), 3)


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
    """The cached outputs, the bundle's normalisation and its segmentation as exported."""
    from inspection.core.bundle import read_bundle_metadata

    data = np.load(work / f"{product}.npz")

    def split(name: str) -> Split:
        return Split(*(data[f"{name}_{k}"] for k in ("scores", "maps", "labels", "masks", "known", "types", "images")))  # fmt: skip

    meta = read_bundle_metadata(Path(str(data["bundle"])))
    return (
        split("validation"),
        split("test"),
        Normalization(*map(float, data["normalization"])),
        meta.segmentation,
    )


# --------------------------------------------------------------- per-image figures
def _refined(image: np.ndarray, score: float, amap: np.ndarray, judged, refiner: MaskRefiner):
    result = InspectionResult(score=score, threshold=0.5, verdict=judged.verdict,
                              anomaly_map=amap, mask=judged.mask, regions=judged.regions,
                              latency_ms=0.0, model_version="bench")  # fmt: skip
    return refiner.refine_result(image, result)


def per_image(
    split: Split, norm: Normalization, seg: Segmentation, refiner: MaskRefiner | None = None
) -> dict[str, np.ndarray]:
    """Per image, ``core.metrics.MaskCounts`` of the judged masks as a dict of (N,) arrays;
    ``refiner`` redraws NG results' regions."""
    scores = normalize_scores(split.scores, norm)
    maps = normalize_maps(split.maps, norm)
    judged = []
    for score, amap, image in zip(scores, maps, split.images, strict=True):
        j = judge(float(score), 0.5, amap, seg)
        if refiner is not None and j.verdict == "NG":
            j = _refined(image, float(score), amap, j, refiner)
        judged.append(j)
    judged_set = JudgedSet(
        np.array([j.verdict == "NG" for j in judged]),
        np.stack([j.mask for j in judged]),
        np.array([len(j.regions) for j in judged]),
    )
    return dataclasses.asdict(mask_counts(judged_set, split.masks))


def figures(f: dict[str, np.ndarray], select: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``core.metrics.mask_figures`` of the images ``select`` picks (nan: undefined)."""
    counts = MaskCounts(**{k: v[select] for k, v in f.items()})
    out = {k: np.nan if v is None else v for k, v in mask_figures(counts, labels[select]).items()}
    bad = labels[select] == 1
    return out | {"judged_ng": int(counts.ng[bad].sum()), "defective": int(bad.sum())}


def bootstrap(
    judged: dict, select: np.ndarray, labels: np.ndarray, seed: int = 0
) -> dict[str, list[float]]:
    """95 % percentile intervals of each figure; good and defective images resampled
    separately."""
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(select)
    strata = [idx[labels[idx] == c] for c in (0, 1) if (labels[idx] == c).any()]
    draws: dict[str, list[float]] = {}
    for _ in range(RESAMPLES):
        pick = np.concatenate([rng.choice(s, len(s)) for s in strata])
        everything = np.ones(len(pick), bool)
        drawn = figures({k: v[pick] for k, v in judged.items()}, everything, labels[pick])
        for k, value in drawn.items():
            draws.setdefault(k, []).append(value)
    return {k: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))] for k, v in draws.items()}  # fmt: skip


# --------------------------------------------------------------- the choice
def validation_figures(f: dict[str, np.ndarray], split: Split) -> tuple[float, float]:
    """(pooled pixel F1, mean image IoU) over the defective images with masks, as
    ``refine.select.choose_refiner`` measures them."""
    bad = (split.labels == 1) & split.known
    tp, pred, true = (f[k][bad] for k in ("tp", "predicted", "true"))
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


def best_levels(split: Split, norm: Normalization) -> dict[str, dict[str, float]]:
    """Hindsight, not a rule: per defect kind (and "all"), the one global map level that gives
    the best pixel F1 over ``split``'s defective images judged NG, with that F1."""
    right = split.known & (split.labels == 1) & (normalize_scores(split.scores, norm) >= 0.5)
    maps, truth, types = (
        normalize_maps(split.maps, norm)[right],
        split.masks[right],
        split.types[right],
    )
    out = {}
    for kind in ["all", *sorted(set(types.tolist()))]:
        pick = np.ones(len(types), bool) if kind == "all" else types == kind
        f1 = [2 * int(((maps[pick] >= t) & truth[pick]).sum()) / max(int((maps[pick] >= t).sum() + truth[pick].sum()), 1)
              for t in LEVELS]  # fmt: skip
        out[kind] = {"level": float(LEVELS[int(np.argmax(f1))]), "ng_pixel_f1": float(max(f1))}
    return out


def held_out(val: Split, norm: Normalization) -> dict[str, float]:
    """Validation's leave-one-kind-out score of each candidate family (``core.segmentation``)."""
    bad = val.known & (val.labels == 1)
    maps = normalize_maps(val.maps, norm)
    good = maps[val.labels == 0]
    grid = candidates(good, fallback=maps[bad][~val.masks[bad]])
    scores, penalty = kind_scores(maps[bad], val.masks[bad], list(val.types[bad]), good, grid)
    return {name: held_out_score(scores[f], penalty[f]) for name, f in families(grid).items()}


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
    report: dict = {"cpu": cpu_description(), "load_before": load_average(), "work": str(work),
                    "products": {}}  # fmt: skip
    refiners = {"raw": None} | {name: build_refiner(None, name) for name in REFINERS}
    for product in products:
        val, test, norm, seg = load(work, product)
        on = {"validation": val, "test": test}
        runs = {split: {name: per_image(data, norm, seg, r) for name, r in refiners.items()}
                for split, data in on.items()}  # fmt: skip
        choice = choose(val, runs["validation"])
        kept = runs["test"][choice["kept"] if choice["kept"] != "none" else "raw"]
        entry = {
            "segmentation": seg.describe(),
            "level": seg.floor,
            "held_out": held_out(val, norm),
            "pixel_threshold_raw": norm.pixel_threshold_raw,
            "images": {
                s: {"good": int((d.labels == 0).sum()), "defective": int((d.labels == 1).sum())}
                for s, d in on.items()
            },
            "choice": choice,
            "test_ng_pixel_f1": {
                m: figures(f, test.known, test.labels)["ng_pixel_f1"]
                for m, f in runs["test"].items()
            },
            "best_levels": {"validation": best_levels(val, norm), "test": best_levels(test, norm)},
            "subsets": {
                subset: {
                    "figures": figures(kept, select, test.labels),
                    "intervals": bootstrap(kept, select, test.labels),
                }
                for subset, select in _subsets(test).items()
            },
        }
        report["products"][product] = entry
        print(product, entry["segmentation"], choice["kept"], flush=True)
        save_report(out, "evaluation", report, default=float)  # kept if a later product fails
    report["load_after"] = load_average()
    report["notes"] = notes(out)
    save_report(out, "evaluation", report, markdown(report), default=float)


def rewrite(products: list[str], work: Path, out: Path) -> None:
    """``evaluation.md`` again from ``evaluation.json`` (no computation)."""
    report = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    report["notes"] = notes(out)
    (out / "evaluation.md").write_text(markdown(report), encoding="utf-8")


def notes(out: Path) -> str:
    """The measured findings written by hand (``evaluation_notes.md``), put under the levels."""
    path = out / "evaluation_notes.md"
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""


# --------------------------------------------------------------- report
FIGURES = {
    "ng_pixel_f1": "pixel F1, judged-NG parts",
    "pixel_f1": "pixel F1, all images",
    "ng_region_iou": "region IoU, judged-NG parts",
    "false_regions_per_good_image": "false regions per good part",
    "ng_area_error": "area error, judged-NG parts",
    "region_recall": "region recall, all",
}
TARGET, THIN_TARGET = 0.75, 0.5


def _cell(entry: dict, key: str) -> str:
    value = entry["figures"][key]
    if np.isnan(value):  # no defective part judged NG
        return "-"
    low, high = entry["intervals"][key]
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _family(product: str) -> str:
    return "demo" if product in DEMO else "evaluation"


def _family_mean(report: dict, family: tuple[str, ...], key: str = "ng_pixel_f1") -> float:
    present = [p for p in family if p in report["products"]]
    return float(np.nanmean([report["products"][p]["subsets"]["all"]["figures"][key] for p in present]))  # fmt: skip


def markdown(report: dict) -> str:
    chosen = [[product, _family(product), "{good}/{defective}".format(**e["images"]["validation"]),
               "{good}/{defective}".format(**e["images"]["test"]), e["segmentation"],
               e["choice"]["kept"],
               " / ".join(f"{e['test_ng_pixel_f1'][m]:.3f}" for m in ("raw", *REFINERS)),
               "{level:.2f} ({ng_pixel_f1:.3f})".format(**e["best_levels"]["test"]["all"]),
               " / ".join(f"{v:.3f}" for v in e["held_out"].values())]
              for product, e in report["products"].items()]  # fmt: skip
    lines = [
        "# Masks judged where detection is right: held-out figures per product and kind",
        "",
        "Produced by `bench/masks.py` (`prepare`, `evaluate`, `report`). Each product: the demo "
        f"data at the CLI defaults (256 px, 60 train images; cache `{report.get('work', WORK)}`, "
        "seed 0), PatchCore at the project's defaults, its FP32 bundle run through the station "
        "inference path on the version's validation and held-out test splits. Every row judges "
        "with the bundle's own normalisation and image threshold, so image verdicts cannot move. "
        "Figures: `core.metrics.mask_figures`, the rule training metrics use. **Pixel F1, region "
        "IoU and area error over the judged-NG parts** count only the defective images the "
        "station judged NG (pooled pixel F1; mean of each part's IoU; median |predicted - true| / "
        "true area), so a missed part, which carries no region, no longer caps the mask figure; "
        "**all images**: pooled over good and defective images (a missed part adds its defect "
        "pixels as misses). Segmentation: the bundle's as exported. Only each bundle's "
        "validation split chooses anything; held-out test chooses nothing. The demo family "
        "(brick, grass, gravel) is the one the mask rules were tuned on; the evaluation family "
        "(part, tissue, weave) sets nothing.",
        "",
        f"CPU: {report['cpu']}; load {report['load_before']} -> {report.get('load_after', '?')}.",
        "",
        "Cells: figure [bootstrap 95 %], 1000 resamples of images, good and defective "
        "separately. Thin kinds: crack, scratch, cut, thread, burr, line.",
        "",
        "## What each bundle chose on validation",
        "",
        "Best level: hindsight on the held-out judged-NG parts, the one global map level with the "
        "best pixel F1 (no rule can know it).",
        "",
        *table(["product", "family", "validation good/defective", "test good/defective",
                "segmentation", "refiner kept",
                "test judged-NG pixel F1 raw / grabcut / random walker",
                "best level (F1)", "held-out score: global 0.5 / global / grid"], chosen),
        *_levels(report),
    ]  # fmt: skip
    for title, family in (
        ("Demo family (the mask rules were tuned on it)", DEMO),
        ("Evaluation family (never tuned on)", EVALUATION),
    ):
        present = {p: report["products"][p] for p in family if p in report["products"]}
        rows = [[product, subset, "{judged_ng}/{defective}".format(**figs["figures"]),
                 *(_cell(figs, k) for k in FIGURES)]
                for product, e in present.items()
                for subset, figs in e["subsets"].items()]  # fmt: skip
        lines += ["", f"## {title}: held-out test", ""]
        lines += table(["product", "subset", "defective parts judged NG", *FIGURES.values()], rows)
        if present:
            lines.append(
                f"\nMean over the family's products: judged-NG pixel F1 {_family_mean(report, family):.3f}; "
                f"all-image pixel F1 {_family_mean(report, family, 'pixel_f1'):.3f}."
            )  # fmt: skip
    return "\n".join(lines + _findings(report)) + "\n"


def _levels(report: dict) -> list[str]:
    """Per product and kind: the level chosen (the floor regions grow to) against the best
    global level in hindsight on judged-NG parts, validation and test."""

    def best(top: dict | None) -> str:
        return "-" if top is None else f"{top['level']:.2f} ({top['ng_pixel_f1']:.3f})"

    def f1(entry: dict, kind: str) -> str:
        value = entry["subsets"].get(kind, {}).get("figures", {}).get("ng_pixel_f1", np.nan)
        return "-" if np.isnan(value) else f"{value:.3f}"

    rows = [[product, _family(product), kind, f"{e['level']:.3f}",
             best(e["best_levels"]["validation"].get(kind)), best(top), f1(e, kind)]
            for product, e in report["products"].items()
            for kind, top in e["best_levels"]["test"].items()]  # fmt: skip
    return [
        "", "## The level chosen against the best level per kind (hindsight)", "",
        report.get("notes", ""), "",
        *table(["product", "family", "kind", "level", "best level, validation (F1)",
                "best level, test (F1)", "test judged-NG pixel F1"], rows),
    ]  # fmt: skip


def _findings(report: dict) -> list[str]:
    products = report["products"]
    mean = _family_mean(report, EVALUATION)
    thin = {p: e["subsets"]["thin kinds"]["figures"]["ng_pixel_f1"] for p, e in products.items() if "thin kinds" in e["subsets"]}  # fmt: skip
    short = [p for p, v in thin.items() if not v >= THIN_TARGET]
    return [
        "", "## Targets", "",
        f"- Judged-NG pixel F1 on the evaluation family (mean of part, tissue, weave): {mean:.3f}; "
        f"target {TARGET}: {'met' if mean >= TARGET else f'NOT met (short by {TARGET - mean:.3f})'}.",
        f"- Thin kinds, judged-NG pixel F1 (target {THIN_TARGET}; - where none is judged NG): "
        + "; ".join(f"{p} {v:.3f}" for p, v in thin.items()).replace("nan", "-")
        + (f"; below target: {', '.join(short)}." if short else "; all met."),
    ]  # fmt: skip


# --------------------------------------------------------------- prepare
def prepare(product: str, work: Path, seed: int = 0) -> Path:
    """Train, export and run ``product``; returns the cache file (kept if present)."""
    from inspection.core.bundle import read_bundle_metadata
    from inspection.core.images import read_image
    from inspection.core.product_config import load_model_config
    from inspection.core.registry import Registry
    from inspection.data.dataset import load_dataset
    from inspection.data.demo import demo_test_counts, write_demo_product
    from inspection.training.bundle_runs import run_bundle
    from inspection.training.export import ExportOptions
    from inspection.training.registry_export import export_bundle, split_samples
    from inspection.training.train import train

    cache = work / f"{product}.npz"
    if cache.is_file():
        return cache
    data_root = work / "datasets"
    if not (data_root / product).is_dir():
        good, per_defect = demo_test_counts(product)
        write_demo_product(data_root, product, seed=seed, n_train=60, n_test_good=good,
                           n_test_per_defect=per_defect, size=256)  # fmt: skip
    dataset = load_dataset(data_root / product)
    registry = Registry(work / "registry")
    if product not in registry.bundles.products() or not registry.bundles.versions(product):
        train(load_model_config("patchcore", product=product), dataset, product=product,
              registry=registry, progress=False)  # fmt: skip
    record = registry.bundles.version(product)
    bundles = [b for b in registry.bundles.bundle_ids(product) if b.endswith("fp32")]
    if not bundles:
        bundles = [export_bundle(registry, product, ExportOptions(precision="fp32")).bundle_id]
    bundle = registry.bundles.bundle_dir(product, bundles[-1])
    meta = read_bundle_metadata(bundle)
    arrays: dict[str, np.ndarray] = {}
    for split in ("validation", "test"):
        samples = split_samples(record, dataset, split)
        raw = run_bundle(bundle, samples)
        h, w = raw.maps.shape[1:]
        arrays |= {
            f"{split}_scores": raw.scores,
            f"{split}_maps": raw.maps,
            f"{split}_labels": raw.labels,
            f"{split}_masks": raw.masks,
            f"{split}_known": raw.mask_known,
            f"{split}_types": np.asarray(raw.defect_types),
            f"{split}_images": np.stack([_resized(read_image(s.path), (h, w)) for s in samples]),
        }
    arrays["normalization"] = np.asarray(dataclasses.astuple(meta.normalization))
    arrays["bundle"] = np.asarray(str(bundle))
    work.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **arrays)
    return cache


def _resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if image.shape[:2] == size:
        return image
    return cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["prepare", "evaluate", "report"])
    parser.add_argument("--products", default=",".join(DEMO + EVALUATION))
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--out", type=Path, default=Path("reports/masks"))
    parser.add_argument("--seed", type=int, default=0, help="prepare: the demo data's seed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    products = [p for p in args.products.split(",") if p]
    if args.phase == "prepare":
        for product in products:
            log.info("%s -> %s", product, prepare(product, args.work, args.seed))
        return
    phases = {"evaluate": evaluate, "report": rewrite}
    phases[args.phase](products, args.work, args.out)


if __name__ == "__main__":
    sys.exit(main())
