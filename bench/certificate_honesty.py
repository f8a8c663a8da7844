"""A signed certificate against the false-reject rate it lets the line realise, case by case.

    python bench/certificate_honesty.py [--reps 1500] [--seed 93]

Simulated, numpy and scipy only: good parts score ~ Beta(2.2, 7) (``GOOD``; the seeded
dashboard's law), so the realised false-reject rate of a threshold t is exact, P(score >= t).
Each case of issue #93 is run ``--reps`` times at a 1 % budget through the product's own
functions, BEFORE (the rule as the product applied it up to #93, called here with the inputs it
took then) and NOW (``core.certificate`` as it is): the stated bound, the realised rate (mean
over repetitions, with its standard error) and how often the product signed "certified" or
refused. The marginal promise is that the mean realised rate stays at or below the mean stated
bound among the certified repetitions; the 95 % one (Thresholds page) that at most 5 % of the
repetitions realise more than the budget. Writes ``reports/statistics/certificate_honesty.md``
and ``.json``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _report import recorded, save_report, table  # noqa: E402

from inspection.core.certificate import (  # noqa: E402
    AUDITED,
    AuditedPart,
    Certificate,
    certified_choice,
    select_audited,
)
from inspection.core.operating_point import (  # noqa: E402
    OUT_OF_FOLD,
    OperatingPoint,
    choose_threshold,
    fewest_below_largest,
    pools_out_of_fold,
)

BUDGET = 0.01
POINT = OperatingPoint(budget=BUDGET)
GOOD = stats.beta(2.2, 7.0)
"""Good parts' scores on the bundle's signed scale."""
LIGHTER = 0.9
"""Out-of-fold training scores: a good part's score times this (a lighter upper tail)."""
RECALIBRATED_SHIFT = -0.06
"""A re-calibrated station's stored scores: the signed scale's plus this."""
CAMERA_B = 1.15
"""The second station's camera: its good parts score this many times the first's."""


@dataclass(frozen=True)
class Rep:
    """One repetition: the stated bound (None: refused), the realised rate(s), certified or not."""

    stated: float | None
    realised: float
    certified: bool
    refused: str = ""
    station_realised: float | None = None
    threshold: float = float("nan")
    station_stated: float | None = None


def realised(threshold: float, scale: float = 1.0) -> float:
    """P(a new good part scores >= ``threshold``) when its score is ``GOOD`` times ``scale``."""
    return float(GOOD.sf(threshold / scale))


def goods(rng: np.random.Generator, n: int) -> np.ndarray:
    return GOOD.rvs(size=n, random_state=rng)


def before_certificate(own: np.ndarray, sources: dict[str, int], audited: np.ndarray) -> Rep:
    """``certify`` as it was: the bundle's scores and every confirmed-good audit part pooled,
    split-conformal at the budget, "certified" the bound alone (``ThresholdChoice.sufficient``)."""
    choice = choose_threshold(
        np.r_[own, audited], POINT, good_sources={**sources, AUDITED: audited.size}
    )
    cert = Certificate.of(BUNDLE, choice)
    return Rep(
        cert.false_reject_bound, realised(choice.threshold), choice.sufficient,
        threshold=choice.threshold,
    )  # fmt: skip


BUNDLE, SCALE = "b", "signed"
"""The simulated bundle and its signed normalisation's fingerprint."""


def parts(
    scores: np.ndarray,
    *,
    station: str = "A",
    labels: np.ndarray | None = None,
    verdicts: np.ndarray | None = None,
    rate: int = 500,
    scale: str = SCALE,
) -> list[AuditedPart]:
    """Audit parts of ``scores`` (oldest first) as the store returns them."""
    n = scores.size
    labels = np.full(n, "good", dtype=object) if labels is None else labels
    verdicts = np.full(n, "OK", dtype=object) if verdicts is None else verdicts
    return [
        AuditedPart(f"{station}{i}", BUNDLE, float(scores[i]), station, str(verdicts[i]),
                    labels[i], rate, scale)
        for i in range(n)
    ]  # fmt: skip


def now_certificate(
    own: np.ndarray, sources: list[str], audit: list[AuditedPart], *, line: bool = False
) -> tuple[Rep, Certificate]:
    """``certify`` as it is (``select_audited`` then ``certified_choice``; no gate: no
    defects here). Stated: the pooled bound, or with ``line`` the audited parts' own (for the
    line) and certified only ``certified_for_line``."""
    selection = select_audited(audit, BUNDLE, SCALE)
    if (refusal := selection.refusal()) is not None:
        return Rep(None, float("nan"), False, refusal.split(":")[0] + ": refused"), None
    choice, cert = certified_choice(own, np.ones(own.size), sources, selection.good, POINT,
                                    BUNDLE)  # fmt: skip
    left = "; ".join(f"{n} left out: {why}" for why, n in selection.left_out.items())
    if not cert.certified:
        why = "not exchangeable" if not cert.exchangeable else "too few"
        return Rep(None, realised(choice.threshold), False, f"NOT certified ({why})"), cert
    stated = cert.line_bound if line else cert.false_reject_bound
    certified = cert.certified_for_line if line else cert.certified
    refused = "" if certified else "not certified for the line"
    return Rep(stated, realised(choice.threshold), certified, left or refused,
               threshold=choice.threshold), cert  # fmt: skip


# ----------------------------------------------------------------------------- the cases
def verdict_review(confirm_ng: float) -> Callable[[np.random.Generator, str], Rep]:
    """200 bundle goods, 400 audited goods; reviewers confirm every OK-verdict audit part and
    ``confirm_ng`` of the NG-verdict ones (the rest left unreviewed)."""

    def rep(rng: np.random.Generator, mode: str) -> Rep:
        own, audit = goods(rng, 200), goods(rng, 400)
        served = choose_threshold(own, POINT).threshold
        ng = audit >= served
        reviewed = ~ng | (rng.random(audit.size) < confirm_ng)
        if mode == "before":
            return before_certificate(own, {"calibration": 200}, audit[reviewed])
        labels = np.where(reviewed, "good", None)
        verdicts = np.where(ng, "NG", "OK")
        audited = parts(audit, labels=labels, verdicts=verdicts)
        return now_certificate(own, ["calibration"] * 200, audited)[0]

    return rep


def recalibrated_station(rng: np.random.Generator, mode: str) -> Rep:
    """200 bundle goods; 200 audited at station A (signed scale) and 200 at station R, whose
    golden check re-fitted the normalisation (its stored scores shifted); realised at A."""
    own, at_a = goods(rng, 200), goods(rng, 200)
    at_r = goods(rng, 200) + RECALIBRATED_SHIFT
    if mode == "before":
        return before_certificate(own, {"calibration": 200}, np.r_[at_a, at_r])
    audited = parts(at_a) + parts(at_r, station="R", scale="re-calibrated")
    rep, _ = now_certificate(own, ["calibration"] * 200, audited)
    return Rep(rep.stated, rep.realised, rep.certified, rep.refused.split(" under")[0])


def day_one(n_never_trained: int) -> Callable[[np.random.Generator, str], Rep]:
    """``n_never_trained`` calibration goods and 240 lighter out-of-fold training scores."""

    def rep(rng: np.random.Generator, mode: str) -> Rep:
        never, oof = goods(rng, n_never_trained), goods(rng, 240) * LIGHTER
        if mode == "before":  # pools_out_of_fold as it was: below fewest_below_largest
            pooled = n_never_trained < fewest_below_largest(BUDGET)
            own = np.r_[oof, never] if pooled else never
            sources = {"calibration": n_never_trained, **({OUT_OF_FOLD: 240} if pooled else {})}
            return before_certificate(own, sources, np.empty(0))
        pooled = pools_out_of_fold(BUDGET, n_never_trained)
        own = np.r_[oof, never] if pooled else never
        sources = [OUT_OF_FOLD] * (240 if pooled else 0) + ["calibration"] * n_never_trained
        return now_certificate(own, sources, [])[0]

    return rep


def lighter_plus_audited(n_oof: int, n_audited: int) -> Callable[[np.random.Generator, str], Rep]:
    """A bundle certified on ``n_oof`` lighter out-of-fold scores, then ``n_audited`` audited."""

    def rep(rng: np.random.Generator, mode: str) -> Rep:
        oof, audit = goods(rng, n_oof) * LIGHTER, goods(rng, n_audited)
        if mode == "before":
            return before_certificate(oof, {OUT_OF_FOLD: n_oof}, audit)
        return now_certificate(oof, [OUT_OF_FOLD] * n_oof, parts(audit), line=True)[0]

    return rep


STATIONS = {"A": (400_000, 2000, 1.0), "B": (40_000, 200, CAMERA_B)}
"""Station: (parts made in the audit window, audit rate 1 in N, camera scale)."""


def two_stations(rng: np.random.Generator, mode: str) -> Rep:
    """200 bundle goods (camera A); each station audits at its own rate; B's camera x1.15.
    Realised: production's mixture (by volume) and station B alone."""
    own = goods(rng, 200)
    audited, drawn = [], []
    for name, (volume, rate, scale) in STATIONS.items():
        scores = goods(rng, rng.binomial(volume, 1.0 / rate)) * scale
        audited.append(scores)
        drawn += parts(scores, station=name, rate=rate)
    scores = np.concatenate(audited)
    total = sum(volume for volume, _, _ in STATIONS.values())

    def production(threshold: float) -> float:
        return sum(v / total * realised(threshold, s) for v, _, s in STATIONS.values())

    if mode == "before":
        rep = before_certificate(own, {"calibration": 200}, scores)
        return Rep(rep.stated, production(rep.threshold), rep.certified, "",
                   realised(rep.threshold, CAMERA_B))  # fmt: skip
    rng.shuffle(drawn)  # the stations' parts interleave in time
    rep, cert = now_certificate(own, ["calibration"] * 200, drawn, line=True)
    over = [s for s, b in cert.stations.items() if b > BUDGET]
    refused = f"not certified at station {', '.join(over)}" if over else rep.refused
    return Rep(rep.stated, production(rep.threshold), rep.certified, refused,
               realised(rep.threshold, CAMERA_B), rep.threshold, cert.stations.get("B"))  # fmt: skip


def judged_split(fixed: np.ndarray | None) -> Callable[[np.random.Generator, str], Rep]:
    """The Thresholds page: a budget threshold at 95 % confidence on the bundle's held-out split
    (60 goods; ``fixed``: the same 60 every repetition) + 300 audited goods, then model health
    judging LINE-READY on that same split. Stated: the page's in-sample 95 % interval's upper
    end; certified: health's budget check passes."""
    from inspection.core.operating_point import within_budget
    from inspection.dashboard.thresholds import (
        LabelledScores,
        reject_interval,
        suggest_for_budget,
    )

    def rep(rng: np.random.Generator, mode: str) -> Rep:
        split = goods(rng, 60) if fixed is None else fixed
        audit = goods(rng, 300)
        if mode == "before":
            scores = np.r_[split, audit]
            sample = LabelledScores(scores, np.zeros(scores.size, np.int8), "split + audit")
            suggestion, _ = suggest_for_budget(sample, BUDGET)
            t = suggestion.threshold
            stated = reject_interval(sample, t).high
            judged = within_budget(int((split >= t).sum()), split.size, BUDGET)
            return Rep(stated, realised(t), judged)
        sample = LabelledScores(audit, np.zeros(audit.size, np.int8), "audit sample")
        suggestion, choice = suggest_for_budget(sample, BUDGET)
        t = suggestion.threshold
        judged = within_budget(int((split >= t).sum()), split.size, BUDGET)
        return Rep(choice.false_reject_bound, realised(t), judged)

    return rep


def seeded_split() -> np.ndarray:
    """The 60 good held-out scores ``scripts/seed_dashboard.py`` gives bundle v0002 (seed 1)
    in every site it seeds: the split ``reports/statistics/thresholds_holdout.md`` reused."""
    rng = np.random.default_rng(1)
    good, _ = rng.beta(2.2, 7.0, 100), rng.beta(7.0, 2.6, 100)
    return np.round(good[:60], 4)


FIXED_SPLIT = seeded_split()
CASES: dict[str, tuple[str, Callable[[np.random.Generator, str], Rep]]] = {
    "review_all": ("1. every audit part reviewed", verdict_review(1.0)),
    "review_ng_30": ("1. NG-verdict audit parts 30 % reviewed", verdict_review(0.3)),
    "review_ng_0": ("1. NG-verdict audit parts never reviewed", verdict_review(0.0)),
    "recalibrated": ("2. a re-calibrated station's parts (shift -0.06)", recalibrated_station),
    "day_one_60": ("3. 60 never-trained + 240 out-of-fold", day_one(60)),
    "day_one_99": ("3. 99 never-trained + 240 out-of-fold", day_one(99)),
    "day_one_150": ("3. 150 never-trained + 240 out-of-fold", day_one(150)),
    "day_one_198": ("3. 198 never-trained + 240 out-of-fold", day_one(198)),
    "oof100_audit200": ("3. 100 out-of-fold, then 200 audited", lighter_plus_audited(100, 200)),
    "oof100_audit50": ("3. 100 out-of-fold, then 50 audited", lighter_plus_audited(100, 50)),
    "two_stations": ("4. stations A 1/2000, B 1/200 (camera x1.15)", two_stations),
    "judged_split": ("5. threshold chosen on the judged split", judged_split(None)),
    "judged_fixed_split": ("5. ... the same light split every time", judged_split(FIXED_SPLIT)),
}


def holdout_rerun(reps: int, seed: int) -> list[dict[str, Any]]:
    """``reports/statistics/thresholds_holdout.md``'s 3 of 16 over budget, re-run: the page's
    95 % budget threshold on the bundle's 60 held-out goods + 600 audited goods, over budget
    how often, with the seeded site's one split (``FIXED_SPLIT``) or a fresh split each time."""
    rows = []
    for budget in (0.01, 0.05):
        point = OperatingPoint(budget=budget)
        for name, fixed in (("the seeded site's split", FIXED_SPLIT), ("a fresh split", None)):
            over = []
            for r in range(reps):
                rng = np.random.default_rng([seed, 5, r])
                split = goods(rng, 60) if fixed is None else fixed
                choice = choose_threshold(np.r_[split, goods(rng, 600)], point, confidence=0.95)
                over.append(realised(choice.threshold) > budget)
            rows.append({"budget": budget, "split": name, "over_budget": float(np.mean(over))})
    return rows


def run_case(case: Callable[[np.random.Generator, str], Rep], mode: str, reps: int, seed: int):
    """``reps`` repetitions of ``case`` in ``mode`` (each its own seeded generator)."""
    out = []
    for r in range(reps):
        try:
            out.append(case(np.random.default_rng([seed, r]), mode))
        except NotImplementedError:
            return None
    return summary(out)


def summary(reps: list[Rep]) -> dict[str, Any]:
    signed = [r for r in reps if r.certified and r.stated is not None]
    rates = np.array([r.realised for r in signed]) if signed else np.zeros(0)
    station = [r.station_realised for r in reps if r.station_realised is not None]
    station_stated = [r.station_stated for r in reps if r.station_stated is not None]
    refusals = [why for why, _ in Counter(r.refused for r in reps if r.refused).most_common()]
    return {
        "reps": len(reps),
        "certified": len(signed) / len(reps),
        "refused": sum(r.stated is None for r in reps) / len(reps),
        "refusal": refusals[0] if refusals else "",
        "stated": float(np.mean([r.stated for r in signed])) if signed else None,
        "realised": float(rates.mean()) if signed else None,
        "realised_se": float(rates.std(ddof=1) / np.sqrt(rates.size)) if rates.size > 1 else None,
        "over_budget": float((rates > BUDGET).mean()) if signed else None,
        "station_realised": float(np.mean(station)) if station else None,
        "station_stated": float(np.mean(station_stated)) if station_stated else None,
    }


def markdown(report: dict[str, Any]) -> str:
    env = report["env"]
    rows = []
    for key, (title, _) in CASES.items():
        for mode in ("before", "now"):
            row = report["cases"].get(key, {}).get(mode)
            rows.append([title, mode, *_cells(row)])
    lines = [
        "# The certificate against the false-reject rate it lets the line realise (issue #93)",
        "",
        f"`{env['command']}` at {env['commit']}; {env['cpu']}; load {env['load_before']} -> "
        f"{env['load_after']}. Budget {BUDGET:.0%}, {report['reps']:,} repetitions per row, "
        f"seed {report['seed']}. Good parts ~ Beta(2.2, 7): the realised rate of a threshold "
        "is exact. Stated and realised are means over the repetitions signed as certified "
        "(for 5.: those model health passed); 'over 1 %': share of them realising more than "
        "the budget.",
        "",
        *table(["case", "code", "certified", "refused", "stated", "realised (± s.e.)",
                "over 1 %", "station B stated", "station B realised", "refused or left out"],
               rows),
    ]  # fmt: skip
    lines += ["", *READING]
    rerun = report.get("thresholds_holdout_rerun") or []
    if rerun:
        lines += [
            "",
            "## The 3 of 16 of `thresholds_holdout.md`, re-run",
            "",
            "The page's 95 % budget threshold on 60 held-out + 600 audited goods; share of "
            f"{report['reps']:,} draws over the budget (promised: at most 5 %).",
            "",
            *table(["budget", "held-out split", "over budget"],
                   [[f"{r['budget']:.0%}", r["split"], f"{r['over_budget']:.1%}"]
                    for r in rerun]),
        ]  # fmt: skip
    return "\n".join(lines) + "\n"


READING = (
    "How to read NOW (the mechanisms of docs/statistics.md):",
    "",
    "1. Certification refuses when NG-verdict audit parts were reviewed less completely than "
    "OK ones (one-sided Fisher test); the repetitions it accepts are those where every "
    "NG-verdict part happened to be reviewed, and hold their bound. Windows of 50 reviewed "
    "whole keep a skipped part from ever selecting what counts.",
    "2. The re-calibrated station's parts carry another normalisation fingerprint: left out "
    "and named; the certificate rests on the signed scale's parts and holds.",
    "3. From `n_needed` (99) never-trained scores the threshold rests on them alone (within "
    "its bound); below, the pooled certificate says NOT certified (not exchangeable). With 100 "
    "out-of-fold scores, 200 audited parts drop them (stated: the bound on the audited parts).",
    "4. Each audit part weighs its audit rate; the line and each station get their own "
    "bound: station B's (about 2 %) is above the budget, so the line is not certified and B's "
    "realised rate stays within B's stated bound. 'certified' is near 0 % there: that is the "
    "honest answer for 200 audited parts a station.",
    "5. At 1 % the page's 95 % choice keeps the budget on either split; what changes is that "
    "model health no longer judges the split the threshold was chosen on (before, its check "
    "passed by construction) and the page quotes the confidence bound, not an in-sample "
    "interval.",
)


def _cells(row: dict[str, Any] | None) -> list[str]:
    if row is None:
        return ["—"] * 8

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v:.2%}"

    realised = pct(row["realised"])
    if row["realised_se"] is not None:
        realised += f" ± {row['realised_se']:.2%}"
    return [f"{row['certified']:.0%}", f"{row['refused']:.0%}", pct(row["stated"]), realised,
            "—" if row["over_budget"] is None else f"{row['over_budget']:.0%}",
            pct(row.get("station_stated") or (row["stated"] if row["station_realised"] else None)),
            pct(row["station_realised"]),
            row["refusal"] or ""]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=93)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "statistics")
    args = parser.parse_args(argv)
    chosen = [c for c in args.cases.split(",") if c]
    with recorded(argv) as env:
        cases = {
            key: {mode: run_case(CASES[key][1], mode, args.reps, args.seed)
                  for mode in ("before", "now")}
            for key in chosen
        }  # fmt: skip
        rerun = holdout_rerun(args.reps, args.seed)
    report = {"env": env, "budget": BUDGET, "reps": args.reps, "seed": args.seed, "cases": cases,
              "thresholds_holdout_rerun": rerun}  # fmt: skip
    path = save_report(args.out, "certificate_honesty", report, markdown(report))
    print(path.with_suffix(".md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
