"""The champion/challenger gate: ``decide`` is a pure decision on two metric tables."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

LATENCY_KEY = "latency_p50_ms"
GATEABLE_METRICS: Mapping[str, bool] = MappingProxyType({
    "image_auroc": True, "image_f1": True, "pixel_auroc": True, "aupro": True, "pixel_f1": True,
    "false_reject_rate": False, "miss_rate": False,
})  # fmt: skip
"""The figures a rule may name (the ones ``scoring.BundleEvaluation.gate_metrics`` provides),
each with its direction: True when a higher value is better. Latency has
``latency_tolerance``."""


@dataclass(frozen=True)
class MetricRule:
    """One gated metric: ``tolerance`` is the largest allowed regression in its direction
    (``higher_is_better``, default from ``GATEABLE_METRICS``). ``required``: missing or NaN on
    either side keeps the champion; an optional metric neither side has is skipped."""

    name: str
    tolerance: float = 0.0
    higher_is_better: bool | None = None
    required: bool = True

    def __post_init__(self) -> None:
        # a misspelt name would never be found: kept champions, or a check silently skipped
        if self.name not in GATEABLE_METRICS:
            raise ValueError(
                f"unknown gate metric {self.name!r}; valid: {', '.join(GATEABLE_METRICS)}"
            )
        direction = GATEABLE_METRICS[self.name]
        if self.higher_is_better is None:
            object.__setattr__(self, "higher_is_better", direction)
        elif self.higher_is_better != direction:
            # compared the wrong way round, a worse challenger reads as "not worse"
            better = "higher" if direction else "lower"
            raise ValueError(
                f"higher_is_better: {str(self.higher_is_better).lower()} contradicts "
                f"{self.name}, which is better when {better}; remove the key"
            )


@dataclass(frozen=True)
class GatePolicy:
    """What a challenger must match: metric rules and ``latency_tolerance``, the allowed relative
    p50 slowdown (None: unchecked). Defaults: the shipped ``configs/retrain.yaml`` (tested)."""

    metrics: tuple[MetricRule, ...] = field(
        default_factory=lambda: (
            MetricRule("image_auroc", 0.01),
            MetricRule("image_f1", 0.02),
            MetricRule("aupro", 0.02, required=False),
            # at each bundle's own operating point: good parts rejected, defects missed
            MetricRule("false_reject_rate", 0.02, required=False),
            MetricRule("miss_rate", 0.02, required=False),
        )
    )
    latency_tolerance: float | None = 0.25

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("a gate policy needs at least one metric rule")
        for rule in self.metrics:
            if rule.tolerance < 0 or not math.isfinite(rule.tolerance):
                raise ValueError(
                    f"tolerance of {rule.name!r} must be a finite number >= 0, got {rule.tolerance}"
                )
        names = [rule.name for rule in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"each metric may appear once in a gate policy, got {names}")
        if self.latency_tolerance is not None and not (
            self.latency_tolerance >= 0 and math.isfinite(self.latency_tolerance)
        ):
            raise ValueError(
                f"latency_tolerance must be a number >= 0 or null, got {self.latency_tolerance}"
            )


@dataclass(frozen=True)
class Decision:
    """The gate's verdict. ``reasons`` explains every check, passing or failing."""

    promote: bool
    reasons: list[str]


def decide(
    champion: Mapping[str, float] | None,
    challenger: Mapping[str, float],
    policy: GatePolicy,
) -> Decision:
    """Promote the challenger only if no gated metric regresses beyond its tolerance
    (``champion`` None, no live bundle yet: if it has every required metric)."""
    if champion is None:
        missing = [
            r.name for r in policy.metrics if r.required and _value(challenger, r.name) is None
        ]
        if missing:
            return Decision(False, [f"challenger lacks required metric(s) {', '.join(missing)}"])
        return Decision(True, ["no live champion: the challenger becomes the first live bundle"])
    checks = [_check_metric(rule, champion, challenger) for rule in policy.metrics]
    if policy.latency_tolerance is not None:
        checks.append(_check_latency(champion, challenger, policy.latency_tolerance))
    promote = all(ok for ok, _ in checks)
    return Decision(promote, [reason for _, reason in checks])


def _value(metrics: Mapping[str, float], name: str) -> float | None:
    value = metrics.get(name)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _check_metric(
    rule: MetricRule, champion: Mapping[str, float], challenger: Mapping[str, float]
) -> tuple[bool, str]:
    old, new = _value(champion, rule.name), _value(challenger, rule.name)
    if old is None and new is None and not rule.required:
        return True, f"{rule.name}: not available for either model; skipped (optional)"
    if new is None:
        return False, f"{rule.name}: missing for the challenger; keeping the champion"
    if old is None:
        return False, f"{rule.name}: missing for the champion, cannot compare; keeping the champion"
    regression = (old - new) if rule.higher_is_better else (new - old)
    text = f"{rule.name}: champion {old:.4f}, challenger {new:.4f}"
    if regression > rule.tolerance + 1e-12:
        return False, f"{text}: worse by {regression:.4f} > tolerance {rule.tolerance:.4f}"
    if regression > 0:
        return True, f"{text}: worse by {regression:.4f}, within tolerance {rule.tolerance:.4f}"
    return True, f"{text}: not worse"


def _check_latency(
    champion: Mapping[str, float], challenger: Mapping[str, float], tolerance: float
) -> tuple[bool, str]:
    old, new = _value(champion, LATENCY_KEY), _value(challenger, LATENCY_KEY)
    if old is None or new is None or old <= 0:
        return False, f"{LATENCY_KEY}: missing or invalid (champion {old}, challenger {new})"
    slowdown = new / old - 1.0
    text = f"{LATENCY_KEY}: champion {old:.2f} ms, challenger {new:.2f} ms ({slowdown:+.1%})"
    if slowdown > tolerance + 1e-12:
        return False, f"{text}: slower than the allowed {tolerance:.0%}"
    return True, f"{text}: within the allowed {tolerance:.0%}"
