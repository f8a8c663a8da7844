"""Is a model LINE-READY? The one verdict ``train``, ``export``, ``demo``, ``station status`` and
the dashboard print, from what the model showed on parts it never trained on.

LINE-READY means all of: its false-reject bound (``Certificate``) is within its budget; its
held-out good parts are rejected no more often than that budget allows (``within_budget``);
and every defect kind held out is shown, by the upper end of its exact 95 % interval, to be
missed at most ``miss_bound``. Anything else is NOT LINE-READY, and the verdict names what is
lacking in counts and what would fix it. A model with no held-out defect images is never
LINE-READY: nothing shows what it misses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from inspection.core.bootstrap import count_interval
from inspection.core.certificate import Certificate
from inspection.core.metrics import EvaluationMetrics
from inspection.core.operating_point import (
    DEFAULT_MISS_BOUND,
    DEFAULT_VAL_FRACTION,
    KindMiss,
    ThresholdChoice,
    allowed_rejects,
    defects_needed,
    folder_count,
    lacking_kinds,
    within_budget,
)

READY = "LINE-READY"
UNSHOWABLE = "set operating_point.miss_bound above 0: no number of images shows a 0% miss rate"
NOT_READY = "NOT LINE-READY"
UNBUDGETED_REJECTS = 0.10
"""The share of held-out good parts a threshold set without a false-reject budget (F1, max
miss) may reject."""


@dataclass(frozen=True)
class HeldOut:
    """What a model of ``subject`` (``brick/v0001-fp32``) showed on held-out parts at its
    threshold: ``rejected_good`` of ``n_good`` good parts, ``kinds`` missed per defect kind
    (empty: none held out). ``budget`` None: the threshold has no false-reject budget
    (``UNBUDGETED_REJECTS`` applies); ``certificate``: its false-reject bound (None: none)."""

    subject: str
    n_good: int
    rejected_good: int
    kinds: Mapping[str, KindMiss]
    budget: float | None
    miss_bound: float = DEFAULT_MISS_BOUND
    certificate: Certificate | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.rejected_good <= self.n_good:
            raise ValueError(
                f"{self.subject}: rejected_good must be in [0, n_good={self.n_good}], "
                f"got {self.rejected_good}"
            )


@dataclass(frozen=True)
class Readiness:
    """The verdict on ``subject``: ``ready`` exactly when nothing ``lacks``; each lack is one
    sentence with its counts, ``advice`` what lowers the misses or shows the rates."""

    subject: str
    summary: str
    lacks: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return not self.lacks

    @property
    def word(self) -> str:
        return READY if self.ready else NOT_READY

    def line(self, next_step: str = "") -> str:
        """One line: the word, the subject, the counts or what lacks, and what to do next
        (``next_step`` when ready)."""
        if self.ready:
            then = f" Next: {next_step}" if next_step else ""
            return f"{READY} {self.subject}: {self.summary}.{then}"
        return (
            f"{NOT_READY} {self.subject}: {'; '.join(self.lacks)}. "
            f"Next: {'; '.join(dict.fromkeys(self.advice))}"
        )


def line_readiness(held: HeldOut) -> Readiness:
    """The verdict on ``held`` (see the module docstring)."""
    lacks: list[str] = []
    advice: list[str] = []
    cert = held.certificate
    shortfall = None if cert is None else cert.shortfall()
    if cert is not None and shortfall is not None:
        lacks.append(shortfall)
        advice.append(
            f"add {cert.still_needed()} good images in calibration/good/ (never trained on) "
            "to show the budget"
        )
    line = None if cert is None or shortfall is not None else cert.line_shortfall()
    if line is not None:
        lacks.append(line)
        advice.append(
            "retrain with good parts from the line in train/good/ (its audited ones), or certify "
            "again (`inspection operating certify`) once more parts are audited"
        )
    budget = UNBUDGETED_REJECTS if held.budget is None else held.budget
    if held.n_good == 0:
        lacks.append("no held-out good parts: its false alarms are not measured")
        advice.append("hold out good images in test/good/")
    elif not within_budget(held.rejected_good, held.n_good, budget):
        lacks.append(
            f"rejects {held.rejected_good} of {held.n_good} good held-out parts (a "
            f"{budget:.1%} budget allows {allowed_rejects(held.n_good, budget)})"
        )
        advice.append("add good training images like the ones it rejects (its report shows them)")
    (missing, unshown), (lower, show) = _kind_lacks(held.kinds, held.miss_bound)
    return Readiness(
        held.subject, _summary(held), (*missing, *lacks, *unshown), (*lower, *advice, *show)
    )


def _kind_lacks(
    kinds: Mapping[str, KindMiss], bound: float
) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """((kinds that miss too many, worst first; kinds too few to show the bound), (what lowers
    the misses; what would show them))."""
    needed = defects_needed(bound)
    if not kinds:
        show = (
            f"hold out at least {needed} images of each defect kind: {_folder(needed)}"
            if needed
            else UNSHOWABLE
        )
        return ([], ["nothing shows what it misses: no defective parts held out"]), ([], [show])
    lacking = lacking_kinds(kinds, bound)
    over = sorted((kinds[k] for k in lacking if kinds[k].rate > bound), key=lambda m: -m.rate)
    unshown = [
        (kinds[k], defects_needed(bound, 0.95, kinds[k].missed))
        for k in lacking
        if kinds[k].rate <= bound
    ]
    missing = [
        f"misses {m.missed} of {m.n} {m.kind} ({m.rate:.0%}; up to {m.interval.high:.0%} "
        f"at 95 %, the bound is {bound:.0%})"
        for m in over
    ]
    few = [
        f"{m.n} {m.kind} held out ({m.missed} missed) are too few to show at most {bound:.0%} "
        f"missed: that takes at least {n} {m.kind} images with "
        + (f"no miss beyond the {m.missed} already missed" if m.missed else "no miss")
        if n
        else f"{m.n} {m.kind} held out: no number of images shows a 0% miss rate"
        for m, n in unshown
    ]
    names = ", ".join(m.kind for m in over)
    lower = [
        f"to miss fewer {names}: label more {names} images (train/<kind>/ with masks: the "
        "mixed model learns from them, `supervised: auto`), add good training images, or "
        "train another model (--model)"
    ]
    show = [
        f"hold out {n} {m.kind} images to show it ({m.n} now): {_folder(n, f'test/{m.kind}/')}"
        for m, n in unshown
        if n
    ]
    if needed is None and unshown:
        show.append(UNSHOWABLE)
    return (missing, few), (lower if over else [], show)


def _folder(held_out: int, folder: str = "test/<kind>/") -> str:
    """'51 in test/crack/, as ...': the folder's images that leave ``held_out`` held out."""
    return (
        f"{folder_count(held_out)} in {folder}, as training keeps {DEFAULT_VAL_FRACTION:.0%} of "
        f"a test folder to set the threshold (val_fraction {DEFAULT_VAL_FRACTION:g}, the default)"
    )


def _summary(held: HeldOut) -> str:
    """'rejects 0 of 42 good held-out parts, misses 6 of 144 defects (crack 0/36, ...)'."""
    text = f"rejects {held.rejected_good} of {held.n_good} good held-out parts"
    if held.kinds:
        n = sum(m.n for m in held.kinds.values())
        missed = sum(m.missed for m in held.kinds.values())
        per_kind = ", ".join(f"{m.kind} {m.missed}/{m.n}" for m in held.kinds.values())
        text += f", misses {missed} of {n} defects ({per_kind})"
    cert = held.certificate
    if cert is not None and cert.certified:
        text += f", false alarms <= {cert.marginal()} ({cert.n_good} never-trained good images)"
    elif cert is not None:
        text += f", false alarms <= {cert.false_reject_bound:.2%}"
    return text


# ---------------------------------------------------------------- the inputs
def kind_misses(counts: Mapping[str, tuple[int, int]]) -> dict[str, KindMiss]:
    """Per defect kind ``{kind: (missed, n)}`` as ``KindMiss`` with its exact 95 % interval
    (kinds with n = 0 left out)."""
    return {
        kind: KindMiss(kind, n, missed, count_interval(missed, n))
        for kind, (missed, n) in counts.items()
        if n
    }


def certificate_of(subject: str, choice: ThresholdChoice | None) -> Certificate | None:
    """The false-reject certificate of a budget ``choice`` (None: no budget or none recorded)."""
    if choice is None or choice.policy != "false_reject_budget" or choice.rank is None:
        return None
    return Certificate.of(subject, choice)


def held_out_of(subject: str, metrics: EvaluationMetrics) -> HeldOut:
    """``HeldOut`` from a model's evaluation (training's or its bundle's recorded one)."""
    o = metrics.overall
    n_good = o.n_good or 0
    choice = metrics.calibration.operating if metrics.calibration is not None else None
    counts = {
        kind: (round((s.miss_rate or 0.0) * (s.n_defective or 0)), s.n_defective or 0)
        for kind, s in metrics.per_defect.items()
        if s.miss_rate is not None
    }
    if not counts and o.n_defective:  # kinds unknown: every defect as one kind
        counts = {"defects": (round((o.miss_rate or 0.0) * o.n_defective), o.n_defective)}
    return held_out_at(
        subject, n_good, round((o.false_reject_rate or 0.0) * n_good), kind_misses(counts), choice
    )


def held_out_at(
    subject: str,
    n_good: int,
    rejected_good: int,
    kinds: Mapping[str, KindMiss],
    choice: ThresholdChoice | None,
) -> HeldOut:
    """``HeldOut`` at the operating point ``choice`` (None: recorded before operating points,
    judged as unbudgeted at the default miss bound)."""
    budget = choice.budget if choice and choice.policy == "false_reject_budget" else None
    bound = choice.miss_bound if choice is not None else DEFAULT_MISS_BOUND
    return HeldOut(
        subject, n_good, rejected_good, kinds, budget, bound, certificate_of(subject, choice)
    )
