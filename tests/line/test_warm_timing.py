"""When warm-on-trigger starts its warm run: at once, or learned so it ends just before the
part's inference is due."""

from __future__ import annotations

import pytest

from inspection.line.config import WarmConfig
from inspection.line.warm import EMA_WEIGHT, TriggerWarmer

PART = {"decode": 2.0, "preprocess": 0.2, "infer": 4.0, "postprocess": 0.1}


def test_trigger_timing_starts_at_once_whatever_the_line() -> None:
    warmer = TriggerWarmer(WarmConfig(timing="trigger"))
    warmer.learn("brick", 20.0, PART)
    assert warmer.delay_ms("brick") == 0.0


def test_learned_timing_ends_the_warm_run_a_margin_before_the_inference() -> None:
    warmer = TriggerWarmer(WarmConfig(timing="learned", margin_ms=1.0))
    assert warmer.delay_ms("brick") == 0.0  # nothing timed yet: at once
    warmer.learn("brick", 20.0, PART)
    assert warmer.delay_ms("brick") == pytest.approx(20.0 + 2.0 + 0.2 - 4.0 - 1.0)
    warmer.learn("brick", 10.0, PART)  # a faster camera: the running mean follows
    lead = 22.2 + EMA_WEIGHT * (12.2 - 22.2)
    assert warmer.delay_ms("brick") == pytest.approx(lead - 4.0 - 1.0)
    assert warmer.delay_ms("grass") == 0.0  # per product


def test_learned_timing_uses_the_warm_runs_own_duration_once_timed() -> None:
    """A warm run starts cold and takes longer than a part's inference; timed by the part's
    inference it would still be running when the part comes, and be cancelled."""
    warmer = TriggerWarmer(WarmConfig(timing="learned", margin_ms=1.0))
    warmer.learn("brick", 20.0, PART)
    assert warmer.delay_ms("brick", warm_run_ms=7.0) == pytest.approx(22.2 - 7.0 - 1.0)
    assert warmer.delay_ms("brick", warm_run_ms=None) == pytest.approx(22.2 - 4.0 - 1.0)


def test_a_lead_shorter_than_the_inference_starts_at_once() -> None:
    warmer = TriggerWarmer(WarmConfig(timing="learned"))
    warmer.learn("brick", 0.5, {"decode": 1.0, "infer": 6.0})
    assert warmer.delay_ms("brick") == 0.0


def test_outcomes_are_reported_for_disabled_and_unwarmable_inspectors() -> None:
    seen: list[tuple[str, str]] = []
    TriggerWarmer(WarmConfig(enabled=False), lambda p, o: seen.append((p, o))).on_trigger(
        "brick", object()
    )
    TriggerWarmer(WarmConfig(), lambda p, o: seen.append((p, o))).on_trigger("brick", object())
    assert seen == [("brick", "disabled"), ("brick", "unsupported")]
