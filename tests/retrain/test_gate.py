from __future__ import annotations

import math
from pathlib import Path

import pytest

from inspection.core.errors import ConfigError
from inspection.retrain.config import retrain_config_from_mapping
from inspection.retrain.gate import (
    GATEABLE_METRICS,
    LATENCY_KEY,
    GatePolicy,
    MetricRule,
    decide,
)

POLICY = GatePolicy(
    metrics=(
        MetricRule("image_auroc", 0.01),
        MetricRule("image_f1", 0.02),
        MetricRule("aupro", 0.02, required=False),
    ),
    latency_tolerance=0.25,
)
CHAMPION = {"image_auroc": 0.90, "image_f1": 0.80, "aupro": 0.70, "latency_p50_ms": 10.0}


def _with(**changes: float | None) -> dict[str, float]:
    metrics = {**CHAMPION, **changes}
    return {k: v for k, v in metrics.items() if v is not None}


@pytest.mark.parametrize(
    ("challenger", "promote", "reason"),
    [
        (
            _with(image_auroc=0.95, image_f1=0.85),
            True,
            "image_auroc: champion 0.9000, challenger 0.9500: not worse",
        ),
        (_with(), True, "image_f1: champion 0.8000, challenger 0.8000: not worse"),
        (_with(image_auroc=0.895), True, "worse by 0.0050, within tolerance 0.0100"),
        (
            _with(image_auroc=0.85),
            False,
            "image_auroc: champion 0.9000, challenger 0.8500: worse by 0.0500 > tolerance 0.0100",
        ),
        (
            _with(image_f1=0.70),
            False,
            "image_f1: champion 0.8000, challenger 0.7000: worse by 0.1000 > tolerance 0.0200",
        ),
        (_with(image_f1=None), False, "image_f1: missing for the challenger; keeping the champion"),
        (_with(image_auroc=math.nan), False, "image_auroc: missing for the challenger"),
        (_with(aupro=None), False, "aupro: missing for the challenger"),
        (_with(latency_p50_ms=12.4), True, "(+24.0%): within the allowed 25%"),
        (_with(latency_p50_ms=13.0), False, "(+30.0%): slower than the allowed 25%"),
        (_with(latency_p50_ms=None), False, "latency_p50_ms: missing or invalid"),
    ],
)
def test_gate_table(challenger: dict[str, float], promote: bool, reason: str) -> None:
    decision = decide(CHAMPION, challenger, POLICY)
    assert decision.promote is promote
    assert any(reason in line for line in decision.reasons), decision.reasons
    assert len(decision.reasons) == len(POLICY.metrics) + 1  # every check explains itself


def test_optional_metric_missing_on_both_sides_is_skipped() -> None:
    champion = {k: v for k, v in CHAMPION.items() if k != "aupro"}
    decision = decide(champion, dict(champion), POLICY)
    assert decision.promote
    assert "aupro: not available for either model; skipped (optional)" in decision.reasons


def test_required_metric_missing_on_champion_keeps_it() -> None:
    champion = {k: v for k, v in CHAMPION.items() if k != "image_f1"}
    decision = decide(champion, dict(CHAMPION), POLICY)
    assert not decision.promote
    assert "image_f1: missing for the champion, cannot compare; keeping the champion" in (
        decision.reasons
    )


@pytest.mark.parametrize(
    "rule", [MetricRule("miss_rate", 0.01), MetricRule("miss_rate", 0.01, higher_is_better=False)]
)
def test_lower_is_better_metric_and_disabled_latency(rule: MetricRule) -> None:
    policy = GatePolicy(metrics=(rule,), latency_tolerance=None)
    assert decide({"miss_rate": 0.10}, {"miss_rate": 0.105}, policy).promote
    assert decide({"miss_rate": 0.10}, {"miss_rate": 0.02}, policy).promote
    kept = decide({"miss_rate": 0.10}, {"miss_rate": 0.2}, policy)
    assert not kept.promote and "worse by 0.1000" in kept.reasons[0]


DIRECTIONS = {"image_auroc": True, "image_f1": True, "pixel_auroc": True, "aupro": True,
              "pixel_f1": True, "false_reject_rate": False, "miss_rate": False}  # fmt: skip


@pytest.mark.parametrize(("name", "higher_is_better"), DIRECTIONS.items())
def test_every_gateable_metric_is_compared_in_its_own_direction(
    name: str, higher_is_better: bool
) -> None:
    """A rule written without a direction (as in a site's retrain.yaml) keeps a challenger
    that is worse by more than the tolerance and promotes one that is better."""
    assert dict(GATEABLE_METRICS) == DIRECTIONS
    policy = retrain_config_from_mapping(
        {"gate": {"metrics": [{"name": name, "tolerance": 0.02}], "latency_tolerance": None}},
        "retrain.yaml",
    ).gate
    good, bad = (0.9, 0.5) if higher_is_better else (0.1, 0.5)
    worse = decide({name: good}, {name: bad}, policy)
    assert not worse.promote and "worse by 0.4" in worse.reasons[0], worse.reasons
    assert decide({name: bad}, {name: good}, policy).reasons == [
        f"{name}: champion {bad:.4f}, challenger {good:.4f}: not worse"
    ]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("miss_rate", True, "higher_is_better: true contradicts miss_rate, which is better when lower"),
        ("false_reject_rate", True, "higher_is_better: true contradicts false_reject_rate, which is better when lower"),
        ("image_auroc", False, "higher_is_better: false contradicts image_auroc, which is better when higher"),
    ],
)  # fmt: skip
def test_a_direction_that_contradicts_the_metric_is_refused_by_key(
    name: str, value: bool, message: str
) -> None:
    data = {"gate": {"metrics": [{"name": "aupro"}, {"name": name, "higher_is_better": value}]}}
    with pytest.raises(ConfigError) as info:
        retrain_config_from_mapping(data, "retrain.yaml")
    assert str(info.value) == f"retrain.yaml.gate.metrics[1]: {message}; remove the key"


def test_no_champion_promotes_a_complete_challenger() -> None:
    assert decide(None, dict(CHAMPION), POLICY).promote
    first = decide(None, {"image_auroc": 0.9}, POLICY)
    assert not first.promote
    assert first.reasons == ["challenger lacks required metric(s) image_f1"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"gate": {"metrics": []}}, "a gate policy needs at least one metric rule"),
        (
            {"gate": {"metrics": [{"name": "image_auroc", "tolerance": -0.1}]}},
            "tolerance of 'image_auroc' must be a finite number >= 0",
        ),
        (
            {"gate": {"metrics": [{"name": "aupro"}, {"name": "aupro"}]}},
            "each metric may appear once",
        ),
        (
            {"gate": {"metrics": [{"name": "image_aurok", "tolerance": 0.01}]}},
            "retrain.yaml.gate.metrics[0]: unknown gate metric 'image_aurok'; valid: "
            "image_auroc, image_f1, pixel_auroc, aupro, pixel_f1, false_reject_rate, miss_rate",
        ),
        (  # an optional rule with a typo would silently skip its check
            {"gate": {"metrics": [{"name": "image_auroc"}, {"name": "miss", "required": False}]}},
            "retrain.yaml.gate.metrics[1]: unknown gate metric 'miss'",
        ),
        ({"gate": {"latency_tolerance": -1}}, "latency_tolerance must be a number >= 0 or null"),
        (
            {"gate": {"metrics": [{"name": "aupro", "tolerence": 0.1}]}},
            "unknown key(s) 'tolerence'",
        ),
        ({"gate": {"latency": 0.2}}, "unknown key(s) 'latency'"),
        ({"retry": {"attempts": 0}}, "retrain.yaml.retry: attempts must be at least 1"),
        (
            {"products": {"brick": {"schedule": "every sunday"}}},
            "products.brick.schedule: 'every sunday' is not a cron expression",
        ),
        (
            {"products": {"brick": {"shedule": "0 2 * * 0"}}},
            "products.brick: unknown key(s) 'shedule'",
        ),
        ({"products": ["brick"]}, "products: expected a mapping of product name to job"),
        (
            {"reviewed_since": "yesterday"},
            "reviewed_since: must be one of ['champion', 'latest_version', 'all']",
        ),
    ],
)
def test_bad_retrain_config_is_rejected_by_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        retrain_config_from_mapping(data, "retrain.yaml")
    assert message in str(info.value)


def test_latency_is_not_a_metric_rule() -> None:
    with pytest.raises(ValueError, match="unknown gate metric 'latency_p50_ms'"):
        MetricRule(LATENCY_KEY)  # latency is gated by latency_tolerance


def test_shipped_config_loads() -> None:
    from inspection.retrain.config import load_retrain_config

    config = load_retrain_config(Path(__file__).parents[2] / "configs" / "retrain.yaml")
    assert set(config.products) == {"brick", "grass", "gravel"}
    assert [rule.name for rule in config.gate.metrics] == [
        "image_auroc", "image_f1", "aupro", "false_reject_rate", "miss_rate",
    ]  # fmt: skip
    rates = [rule for rule in config.gate.metrics if rule.name.endswith("_rate")]
    assert all(not rule.higher_is_better and not rule.required for rule in rates)
    assert (
        config.retry.delay(1) == 60
        and config.retry.delay(2) == 120
        and config.retry.delay(9) == 900
    )
