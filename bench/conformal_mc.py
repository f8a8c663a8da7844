"""Monte Carlo: realised false-reject rate of the conformal threshold vs the bound it states.

    python bench/conformal_mc.py [--repeats 4000] [--out reports/statistics]

The threshold rule is the product's (``core.operating_point.choose_threshold``, policy
false_reject_budget) on n good calibration scores, at n = 30, 99, 300 and budgets 0.5-5 %.
Scores are synthetic with known distributions, so each repetition's realised false-reject rate
P(new good score >= threshold) is computed exactly from the distribution functions (no test
draws); the table gives its mean over repetitions (the marginal rate the bound promises) with
its standard error. Score models:

- ``plain``: one part, Gamma(2, 1) (a PatchCore image score).
- ``fused, same data``: two parts, Gamma(2, 1) and Gamma(8, 0.25), each standardised by the
  product's local-statistics rule ((score - median) / (largest - median),
  ``training.local_stats._location_scale``) fitted on the *same* n good scores the threshold
  is then set on, fused by their max (as ``local_statistics: true`` does today).
- ``fused, disjoint``: the same, with the standardisers fitted on another n good scores.

Realised <= bound within simulation error: mean - 2 SE <= bound. Writes
``<out>/conformal_mc.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _report import cpu_description, load_average, save_report
from scipy.stats import gamma

from inspection.core.operating_point import OperatingPoint, choose_threshold
from inspection.training.local_stats import _location_scale

SIZES = (30, 99, 300)
BUDGETS = (0.005, 0.01, 0.02, 0.05)
PARTS = (gamma(2.0, scale=1.0), gamma(8.0, scale=0.25))
MODELS = ("plain", "fused, same data", "fused, disjoint")


def realised(model: str, n: int, budget: float, rng: np.random.Generator) -> tuple[float, float]:
    """(realised false-reject rate, stated bound) of one calibration draw of n good parts."""
    point = OperatingPoint(budget=budget)
    if model == "plain":
        good = PARTS[0].rvs(n, random_state=rng)
        choice = choose_threshold(good, point)
        return float(PARTS[0].sf(choice.threshold)), float(choice.false_reject_bound)
    calibration = np.stack([p.rvs(n, random_state=rng) for p in PARTS])  # (2, n)
    scaling = (
        calibration
        if model == "fused, same data"
        else np.stack([p.rvs(n, random_state=rng) for p in PARTS])
    )
    scales = [_location_scale(part) for part in scaling]
    fused = np.max(
        [(c - loc) / sc for c, (loc, sc) in zip(calibration, scales, strict=True)], axis=0
    )
    choice = choose_threshold(fused, point)
    # a new part passes when both standardised parts stay below the threshold
    passes = np.prod(
        [p.cdf(loc + choice.threshold * sc) for p, (loc, sc) in zip(PARTS, scales, strict=True)]
    )
    return float(1.0 - passes), float(choice.false_reject_bound)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path("reports/statistics"))
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for model in MODELS:
        for n in SIZES:
            for budget in BUDGETS:
                rng = np.random.default_rng([n, int(budget * 1000), MODELS.index(model)])
                draws = np.array([realised(model, n, budget, rng) for _ in range(args.repeats)])
                mean, se = float(draws[:, 0].mean()), float(draws[:, 0].std() / args.repeats**0.5)
                bound = float(draws[0, 1])
                rows.append({
                    "model": model, "n": n, "budget": budget, "bound": bound,
                    "realised": round(mean, 6), "se": round(se, 6),
                    "within": bool(mean - 2 * se <= bound),
                })  # fmt: skip
                print(f"{model:18s} n={n:3d} budget={budget:.1%}: {mean:.3%} ± {se:.3%} "
                      f"vs bound {bound:.3%}")  # fmt: skip
    report = {
        "repeats": args.repeats,
        "rows": rows,
        "cpu": cpu_description(),
        "load": load_average(),
        "seconds": round(time.perf_counter() - started, 1),
        "command": f"python bench/conformal_mc.py --repeats {args.repeats}",
    }
    save_report(args.out, "conformal_mc", report, markdown(report))


def markdown(report: dict) -> str:
    lines = [
        "# Conformal threshold: realised false-reject rate vs the stated bound",
        "",
        "Product rule `core.operating_point.choose_threshold` (false_reject_budget) on n good",
        "calibration scores; realised rate computed exactly from the known score",
        f"distributions, mean over {report['repeats']} calibration draws ± its standard error",
        "(see the bench's docstring for the score models). `ok`: mean - 2 SE <= bound.",
        "",
        "| model | n | budget | stated bound | realised | ok |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {r['n']} | {r['budget']:.1%} | {r['bound']:.2%} | "
            f"{r['realised']:.2%} ± {r['se']:.2%} | {'yes' if r['within'] else '**no**'} |"
        )
    lines += [
        "",
        f"CPU {report['cpu']}, load {report['load']}, {report['seconds']} s (not a timing).",
        f"Reproduce: `{report['command']}`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
