"""The one LINE-READY rule (``core.readiness``): what it never calls ready, and the order it says
what lacks in."""

from __future__ import annotations

import pytest

from inspection.core.certificate import Certificate
from inspection.core.readiness import HeldOut, kind_misses, line_readiness

SHOWN = {"crack": (0, 36), "stain": (0, 40)}
"""Kinds each shown to be missed at most 10 % (0 of 36 is the fewest that shows it)."""
CERTIFIED = Certificate("p/v1", 0.01, 218, 0, 217, 0.0091, None)


def _held(counts=SHOWN, *, certificate=CERTIFIED, rejected=0, n_good=42) -> HeldOut:
    return HeldOut("p/v1", n_good, rejected, kind_misses(counts), 0.01, 0.10, certificate)


def test_line_ready_names_its_counts() -> None:
    readiness = line_readiness(_held())
    assert readiness.ready and readiness.word == "LINE-READY"
    assert readiness.line("inspection serve") == (
        "LINE-READY p/v1: rejects 0 of 42 good held-out parts, misses 0 of 76 defects "
        "(crack 0/36, stain 0/40), false alarms <= 0.91%. Next: inspection serve"
    )


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
         "10% missed: that takes at least 54 crack images with no miss beyond these 1"),
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
    assert readiness.advice[-1] == "hold out 54 scratch images in test/scratch/ to show it"
