"""Retrain settings: numbers out of range are refused by key before any run starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspection.core.errors import ConfigError
from inspection.retrain.config import (
    ChallengerExport,
    RetrainConfig,
    RetryPolicy,
    load_retrain_config,
    retrain_config_from_mapping,
)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"keep_work_dirs": 0}, "retrain.yaml: keep_work_dirs must be at least 1, got 0"),
        ({"keep_work_dirs": -1}, "retrain.yaml: keep_work_dirs must be at least 1, got -1"),
        ({"warmup": -3}, "retrain.yaml: warmup must be at least 0, got -3"),
        ({"poll_seconds": 0}, "retrain.yaml: poll_seconds must be a number > 0, got 0.0"),
        ({"poll_seconds": -5}, "retrain.yaml: poll_seconds must be a number > 0, got -5.0"),
        (
            {"poll_seconds": float("inf")},
            "retrain.yaml: poll_seconds must be a number > 0, got inf",
        ),
        ({"retry": {"factor": 0.5}}, "retrain.yaml.retry: factor must be a number >= 1, got 0.5"),
        (
            {"retry": {"initial_delay_s": -1}},
            "retrain.yaml.retry: initial_delay_s must be a number >= 0, got -1.0",
        ),
        (
            {"retry": {"max_delay_s": float("nan")}},
            "retrain.yaml.retry: max_delay_s must be a number >= 0, got nan",
        ),
        (
            {"export": {"precisions": ["int4"]}},
            "retrain.yaml.export: precisions must name one or more of fp32, fp16, bf16, int8, "
            "got ['int4']",
        ),
        (
            {"export": {"precisions": []}},
            "retrain.yaml.export: precisions must name one or more of fp32, fp16, bf16, int8, "
            "got []",
        ),
        (
            {"export": {"tolerances": {"miss_rate": 2}}},
            "retrain.yaml.export.tolerances: tolerance miss_rate must be in [0, 1], got 2.0",
        ),
    ],
)
def test_out_of_range_numbers_are_refused_by_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        retrain_config_from_mapping(data, "retrain.yaml")
    assert str(info.value) == message


def test_smallest_accepted_values() -> None:
    config = retrain_config_from_mapping(
        {"keep_work_dirs": 1, "warmup": 0, "poll_seconds": 0.01, "retry": {"initial_delay_s": 0}}
    )
    assert (config.keep_work_dirs, config.warmup, config.poll_seconds) == (1, 0, 0.01)
    assert config.retry.delay(3) == 0


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ValueError, match="keep_work_dirs must be at least 1"):
        RetrainConfig(keep_work_dirs=0)
    with pytest.raises(ValueError, match="factor must be a number >= 1"):
        RetryPolicy(factor=0.0)


def test_audit_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "retrain.yaml"
    path.write_text("keep_work_dirs: -1\nwarmup: -3\npoll_seconds: -5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}: keep_work_dirs must be at least 1"):
        load_retrain_config(path)


def test_the_default_gate_is_the_shipped_one() -> None:
    """A policy built in code (no config file) gates what configs/retrain.yaml gates, the
    operating-point rates included: it left them out, so a challenger rejecting more good parts
    was promoted."""
    from inspection.retrain.gate import GatePolicy

    config = load_retrain_config(Path(__file__).parents[2] / "configs" / "retrain.yaml")
    shipped = config.gate
    assert shipped == GatePolicy()
    assert {"false_reject_rate", "miss_rate"} <= {rule.name for rule in shipped.metrics}
    assert config.export == ChallengerExport()  # INT8 when its gate passes, else FP32
