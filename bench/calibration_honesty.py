"""Calibration is honest: the certified false-reject bound against the rate realised on new good parts.

    /work/tools/alone .venv/bin/python bench/calibration_honesty.py [--registry var/registry]
        [--products brick,grass,gravel] [--images 3000] [--draws 200]

For each product's live bundle (``make demo`` leaves them), renders ``--images`` good parts with
the demo's generator on a seed no demo file uses (``SEED``, its calibration stream: never a
training or test image), and scores each once with the bundle (station path, raw scores).
Then, per draw, splits them at random: n of them (``SIZES``) set a 1 % threshold
split-conformally (``choose_threshold``, marginal and at 95 % confidence where n allows), the
others (at least 2,000) measure its false-reject rate. The marginal promise is that the mean
over draws stays at or below the bound; the 95 % one that at most 5 % of draws exceed the
budget. The live bundle's own threshold (set on the demo's calibration set: out-of-fold,
validation and calibration scores) is measured on all the new parts too. Writes
``reports/statistics/calibration_honesty.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _report import recorded, save_report, table  # noqa: E402

SIZES = (50, 100, 200, 500, 1000)
BUDGET = 0.01
CONFIDENCE = 0.95
SEED = 1000
"""The generator seed of the bench's good parts (the demo's files are seed 0)."""
CALIBRATION_STREAM = 3
"""The demo generator's calibration split id (``data.demo.SPLIT_IDS``)."""


def good_parts(product: str, count: int, size: int = 256) -> list[np.ndarray]:
    """``count`` good (size, size, 3) uint8 parts of ``product`` from the demo's generator."""
    from inspection.data import demo

    render = demo._renderer(product, size)
    stream = demo.ALL_PRODUCTS.index(product)
    seeds = [(SEED, stream, CALIBRATION_STREAM, 0, i) for i in range(count)]
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda seed: render(seed, None)[0], seeds))


def live_scores(registry: Path, product: str, images: list[np.ndarray]) -> tuple[Any, np.ndarray]:
    """(the live bundle's metadata, (N,) raw scores of ``images`` through the station path)."""
    from inspection.core.registry import Registry
    from inspection.runtime.inspector import Inspector
    from inspection.runtime.preprocess import model_batch

    bundle = Registry(registry).journal.live_bundle_dir(product)
    model = Inspector.from_bundle(bundle).model
    prep = model.metadata.preprocessing
    scores = []
    for start in range(0, len(images), 8):
        chunk = images[start : start + 8]
        batch = model_batch([model.align(image)[0] for image in chunk], prep)
        scores.append(model.infer(batch).scores)
    return model.metadata, np.concatenate(scores).astype(np.float64)


def draws(scores: np.ndarray, n: int, count: int, seed: int) -> dict[str, Any]:
    """``count`` random splits of ``scores``: n calibrate, the rest measure (see the module)."""
    from inspection.core.operating_point import OperatingPoint, choose_threshold

    point = OperatingPoint(budget=BUDGET)
    rng = np.random.default_rng(seed)
    marginal, confident, bound, confident_bound = [], [], None, None
    for _ in range(count):
        order = rng.permutation(scores.size)
        calibration, held = scores[order[:n]], scores[order[n:]]
        choice = choose_threshold(calibration, point)
        marginal.append(float((held >= choice.threshold).mean()))
        bound = choice.false_reject_bound
        sure = choose_threshold(calibration, point, confidence=CONFIDENCE)
        if sure.sufficient:
            confident.append(float((held >= sure.threshold).mean()))
            confident_bound = sure.false_reject_bound
    rates = np.asarray(marginal)
    row = {
        "n": n, "held_out": int(scores.size - n), "draws": count, "bound": bound,
        "below_largest": n >= 199, "mean": float(rates.mean()),
        "mean_se": float(rates.std(ddof=1) / np.sqrt(count)),
        "p05": float(np.quantile(rates, 0.05)), "p95": float(np.quantile(rates, 0.95)),
        "max": float(rates.max()), "over_budget": float((rates > BUDGET).mean()),
    }  # fmt: skip
    if confident:
        sure_rates = np.asarray(confident)
        row["confident"] = {
            "bound": confident_bound, "mean": float(sure_rates.mean()),
            "over_budget": float((sure_rates > BUDGET).mean()),
        }  # fmt: skip
    return row


def product_rows(registry: Path, product: str, images: int, count: int) -> dict[str, Any]:
    """The live bundle's own threshold on every new part and the draws at each n."""
    meta, scores = live_scores(registry, product, good_parts(product, images))
    operating = meta.output_calibration.operating
    threshold = meta.normalization.image_threshold_raw
    live = {
        "bundle": meta.bundle_id, "precision": meta.precision, "n_good": operating.n_good,
        "sources": operating.good_sources, "bound": operating.false_reject_bound,
        "realised": float((scores >= threshold).mean()), "parts": int(scores.size),
    }  # fmt: skip
    rows = [draws(scores, n, count, seed=n) for n in SIZES if scores.size - n >= 2000]
    return {"live": live, "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    env, products = report["env"], report["products"]
    live = [[product, f"{d['live']['bundle']} ({d['live']['precision']})", _sources(d["live"]),
             f"{d['live']['bound']:.2%}", f"{d['live']['realised']:.2%} of {d['live']['parts']}"]
            for product, d in products.items()]  # fmt: skip
    draws = [[product, r["n"], r["held_out"], r["draws"], f"{r['bound']:.2%}",
              f"{r['mean']:.2%} ± {r['mean_se']:.2%}", f"{r['p05']:.2%}-{r['p95']:.2%}",
              f"{r['max']:.2%}", f"{r['over_budget']:.0%}", _confident(r.get("confident"))]
             for product, d in products.items() for r in d["rows"]]  # fmt: skip
    lines = [
        "# Calibration is honest: certified bound vs realised false-reject rate",
        "",
        f"`{env['command']}` at {env['commit']}; {env['cpu']}; load {env['load_before']} -> "
        f"{env['load_after']}. Budget {BUDGET:.0%}. Good parts: the demo generator at seed "
        f"{SEED} (calibration stream), never a demo file; scored once by each live bundle.",
        "",
        "## The live bundle's own threshold on new good parts",
        "",
        *table(["product", "bundle", "calibration set", "certified bound",
                "realised on new parts"], live),
        "",
        "## Random splits: n calibrate, the rest (>= 2,000) measure",
        "",
        "Marginal promise: mean realised <= bound. At 95 % confidence (n >= 299): at most 5 % of "
        "draws above the budget.",
        "",
        *table(["product", "n", "held out", "draws", "bound", "mean realised (± s.e.)",
                "5-95 % of draws", "max", "draws > 1 %", "95 %: bound, mean, draws > 1 %"], draws),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _sources(live: dict[str, Any]) -> str:
    sources = ", ".join(f"{k} {v}" for k, v in (live["sources"] or {}).items())
    return f"n={live['n_good']} ({sources})"


def _confident(sure: dict[str, float] | None) -> str:
    if not sure:
        return "n too small"
    return f"{sure['bound']:.2%}, {sure['mean']:.2%}, {sure['over_budget']:.0%}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", type=Path, default=ROOT / "var" / "registry")
    parser.add_argument("--products", default="brick,grass,gravel")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "statistics")
    args = parser.parse_args(argv)
    products = [p for p in args.products.split(",") if p]
    with recorded(argv) as env:
        results = {p: product_rows(args.registry, p, args.images, args.draws) for p in products}
    report = {"env": env, "budget": BUDGET, "seed": SEED, "products": results}
    path = save_report(args.out, "calibration_honesty", report, markdown(report))
    print(path.with_suffix(".md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
