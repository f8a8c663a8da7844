"""The one refusal table: every station refusal has one HTTP status and one PLC error code."""

from __future__ import annotations

import pytest

from inspection.station import errors
from inspection.station.errors import (
    REFUSALS,
    ErrorCode,
    InputOutOfDomain,
    RefusalAnswer,
    RequestRefused,
    StationBusy,
    answer_to,
)


def test_every_refusal_of_the_station_is_in_the_table() -> None:
    kinds = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, RequestRefused)
    }
    assert kinds - {RequestRefused} == set(REFUSALS)


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (StationBusy("busy", retry_after_s=2), RefusalAnswer(503, ErrorCode.TIMEOUT)),
        (InputOutOfDomain("grey"), RefusalAnswer(422, ErrorCode.OUT_OF_DOMAIN)),
        (RequestRefused("other"), RefusalAnswer(422, ErrorCode.INTERNAL)),
    ],
)
def test_a_refusal_is_answered_by_its_most_specific_class(
    refusal: RequestRefused, expected: RefusalAnswer
) -> None:
    class Narrower(type(refusal)):  # a subclass answers as its parent
        pass

    assert answer_to(refusal) == expected
    assert answer_to(Narrower(refusal.message)) == expected
