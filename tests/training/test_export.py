"""Export options and ``--tolerance`` parsing (end-to-end export tests live in tests/runtime)."""

from __future__ import annotations

import pytest
import typer

from inspection.cli.export import parse_tolerances
from inspection.core.export_gate import GateTolerances
from inspection.training.export import ExportOptions


def test_tolerances_parse_by_name_and_keep_defaults() -> None:
    parsed = parse_tolerances(["aupro=0.1", "miss_rate=0"])
    assert parsed == GateTolerances(aupro=0.1, miss_rate=0.0)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["max_drop=0.01"], "unknown figure 'max_drop'; valid: false_reject_rate"),
        (["aupro=lots"], "'lots' is not a number"),
        (["aupro=-1"], "tolerance aupro must be in [0, 1], got -1.0"),
    ],
)
def test_bad_tolerances_are_refused_with_the_reason(items: list[str], message: str) -> None:
    with pytest.raises(typer.BadParameter) as info:
        parse_tolerances(items)
    assert message in str(info.value)


def test_export_options_validate() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        ExportOptions(precision="int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="calibration_size must be >= 1"):
        ExportOptions(calibration_size=0)
