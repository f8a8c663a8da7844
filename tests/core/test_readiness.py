"""The one LINE-READY rule (``core.readiness``): what it never calls ready, and the order it says
what lacks in."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta

from inspection.core.certificate import Certificate, certified_choice
from inspection.core.operating_point import OperatingPoint
from inspection.core.readiness import UNSHOWABLE, HeldOut, kind_misses, line_readiness

SHOWN = {"crack": (0, 36), "stain": (0, 40)}
"""Kinds each shown to be missed at most 10 % (0 of 36 is the fewest that shows it)."""
CERTIFIED = Certificate("p/v1", 0.01, 218, 0, 217, 0.0091, None)


def _held(counts=SHOWN, *, certificate=CERTIFIED, rejected=0, n_good=42) -> HeldOut:
    return HeldOut("p/v1", n_good, rejected, kind_misses(counts), 0.01, 0.10, certificate)


def test_line_ready_names_its_counts_and_what_its_bound_is() -> None:
    """The bound is marginal (averaged over calibration sets): the line says so and carries
    the 95 % quantile of this calibration set's own rate, from the certificate's one wording."""
    readiness = line_readiness(_held())
    assert readiness.ready and readiness.word == "LINE-READY"
    quantile = beta.ppf(0.95, 218 + 1 - 217, 217)
    assert readiness.line("inspection serve") == (
        "LINE-READY p/v1: rejects 0 of 42 good held-out parts, misses 0 of 76 defects "
        "(crack 0/36, stain 0/40), false alarms <= 0.91% on average over calibration sets, "
        f"below {quantile:.2%} with 95% probability (218 never-trained good images). "
        "Next: inspection serve"
    )


def test_a_certified_bound_is_not_called_not_for_the_line_beside_line_ready() -> None:
    """138 never-trained good images certify 1 %: LINE-READY, and the certificate says what
    is not yet done (checked on audited parts), not a second verdict."""
    _, cert = certified_choice(
        np.linspace(0, 1, 138), np.ones(138), ["calibration"] * 138, [],
        OperatingPoint(budget=0.01), "p/v1",
    )  # fmt: skip
    assert line_readiness(_held(certificate=cert)).ready
    assert "not yet for the line" not in cert.describe()
    assert cert.describe().endswith(
        "not yet checked on the line's own audited parts (none audited)"
    )
    assert cert.marginal() in line_readiness(_held(certificate=cert)).summary


def test_audited_line_parts_above_the_budget_are_never_line_ready() -> None:
    """A certified bound whose line's audited good parts bound the false alarms above the
    budget (as a whole or at one station) is NOT LINE-READY, saying so in counts; within it,
    LINE-READY."""
    from dataclasses import replace

    over_line = replace(CERTIFIED, n_audited=60, line=0.031, stations={"s1": 0.004})
    over_station = replace(CERTIFIED, n_audited=60, line=0.008, stations={"s1": 0.02, "s2": 0.0})
    within = replace(CERTIFIED, n_audited=60, line=0.008, stations={"s1": 0.009})
    for cert, said in (
        (over_line, "bound at 3.10%, above the 1.0% budget"),
        (over_station, "bound at 0.80%, station s1 2.00%, above the 1.0% budget"),
    ):
        readiness = line_readiness(_held(certificate=cert))
        assert not readiness.ready
        assert readiness.lacks == (
            f"on the line's 60 audited good parts its false alarms are {said}",
        )
        assert "audited" in readiness.advice[0] and said in cert.describe()
    assert line_readiness(_held(certificate=within)).ready


def test_out_of_fold_scores_lack_never_trained_images_not_a_none_count() -> None:
    """40 calibration images (58 never-trained scores) and 60 out-of-fold training scores: the
    bound is within the budget but not exchangeable. The lack says so in counts (it once
    printed "None are needed") and the advice counts the never-trained images still to add
    (it once said 81, ignoring the 58): adding that many certifies it."""
    rng = np.random.default_rng(0)
    oof, never = rng.uniform(0, 0.5, 60), rng.uniform(0, 1, 99)
    sources = ["out_of_fold_train"] * 60 + ["calibration"] * 99
    point = OperatingPoint(budget=0.01)
    _, pooled = certified_choice(
        np.r_[oof, never[:58]], np.ones(118), sources[:118], [], point, "p"
    )
    assert pooled.n_needed is None and not pooled.certified
    readiness = line_readiness(_held(certificate=pooled))
    assert "None" not in readiness.line()
    assert (
        "its false alarms are not shown within the 1.0% budget: 118 good images bound them at "
        "0.84%, but 60 of the 118 come from training images, which do not certify new parts: "
        "99 never-trained good images are needed, it has 58" in readiness.lacks
    )
    add = pooled.still_needed()
    assert f"add {add} good images in calibration/good/ (never trained on) to show the budget" in (
        readiness.advice
    )
    assert pooled.shortfall() in pooled.describe()  # one wording, in the certificate's text too
    _, added = certified_choice(
        np.r_[oof, never[: 58 + add]], np.ones(118 + add), sources[: 118 + add], [], point, "p"
    )
    _, one_short = certified_choice(
        np.r_[oof, never[: 57 + add]], np.ones(117 + add), sources[: 117 + add], [], point, "p"
    )
    assert added.certified and not one_short.certified


@pytest.mark.parametrize(
    ("held", "lack"),
    [
        (_held({}), "nothing shows what it misses: no defective parts held out"),
        (
            _held(certificate=Certificate("p/v1", 0.01, 17, 0, 17, 1 / 18, 99)),
            "its false alarms are not shown within the 1.0% budget: 17 good images bound them "
            "at 5.56%, 99 are needed",
        ),
        (_held(rejected=3), "rejects 3 of 42 good held-out parts (a 1.0% budget allows 2)"),
        (_held({"crack": (0, 35)}), "35 crack held out (0 missed) are too few to show at most "
         "10% missed: that takes at least 36 crack images with no miss"),
        (_held({"crack": (1, 36)}), "36 crack held out (1 missed) are too few to show at most "
         "10% missed: that takes at least 54 crack images with no miss beyond the 1 already "
         "missed"),
        (_held({"crack": (2, 36)}), "36 crack held out (2 missed) are too few to show at most "
         "10% missed: that takes at least 70 crack images with no miss beyond the 2 already "
         "missed"),
        (_held(n_good=0), "no held-out good parts: its false alarms are not measured"),
    ],
)  # fmt: skip
def test_never_line_ready_without_each_showing(held: HeldOut, lack: str) -> None:
    readiness = line_readiness(held)
    assert not readiness.ready and readiness.line().startswith("NOT LINE-READY p/v1: ")
    assert lack in readiness.lacks


def test_a_kind_missing_too_many_comes_first_and_so_does_what_lowers_it() -> None:
    """ "Too few held-out images" once ended the line while a kind missed 53 %."""
    counts = {"crack": (19, 36), "scratch": (1, 36), "hole": (14, 36)}
    uncertified = Certificate("p/v1", 0.01, 17, 0, 17, 1 / 18, 99)
    readiness = line_readiness(_held(counts, certificate=uncertified))
    assert [lack.split(" (")[0] for lack in readiness.lacks] == [
        "misses 19 of 36 crack",
        "misses 14 of 36 hole",
        "its false alarms are not shown within the 1.0% budget: 17 good images bound them at "
        "5.56%, 99 are needed",
        "36 scratch held out",
    ]
    assert readiness.advice[0].startswith("to miss fewer crack, hole: label more crack, hole")
    assert readiness.advice[-1] == (
        "hold out 54 scratch images to show it (36 now): 77 in test/scratch/, as training keeps "
        "30% of a test folder to set the threshold (val_fraction 0.3, the default)"
    )


@pytest.mark.parametrize("counts", [{}, {"scratch": (0, 3)}])
def test_a_zero_miss_bound_says_no_sample_shows_it(counts: dict[str, tuple[int, int]]) -> None:
    """``miss_bound: 0`` is a valid config; no finite sample shows a 0 % miss rate, and the
    verdict said "at least None images" (or failed) instead of saying so."""
    held = HeldOut("p/v1", 60, 0, kind_misses(counts), 0.01, miss_bound=0.0)
    readiness = line_readiness(held)
    assert not readiness.ready and "None" not in readiness.line()
    assert readiness.advice[-1] == UNSHOWABLE
