from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspection.core.errors import ConfigError
from inspection.core.retrain_report import (
    SCHEMA_VERSION,
    ModelEvaluation,
    RetrainReport,
    read_retrain_report,
    retrain_report_from_mapping,
    write_retrain_report,
)


def _report(**overrides: object) -> RetrainReport:
    challenger = ModelEvaluation("v0002-int8", "p/v0002", 0.5, {"image_auroc": 0.97}, {}, (0.1,))
    fields = dict(
        run={"product": "p", "run": "r1"}, finished_at="2026-01-01T00:00:00+00:00",
        decision="promote", reasons=("image_auroc ok",), challenger=challenger,
    )  # fmt: skip
    return RetrainReport(**{**fields, **overrides})  # type: ignore[arg-type]


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    report = _report()
    path = write_retrain_report(report, tmp_path / "report.json")
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    assert read_retrain_report(path) == report
    assert (report.promote, report.product, list(report.sides())) == (True, "p", ["challenger"])


def test_unversioned_reports_written_before_the_schema_still_read() -> None:
    legacy = {
        "run": {"product": "p"}, "finished_at": None, "decision": "keep", "promote": False,
        "reasons": ["a", "b"], "reason": "a; b", "policy": {}, "data": {}, "figures": {},
        "champion": None,
        "challenger": {"bundle_id": "b", "model_version": "p/v1", "threshold": 0.4,
                       "metrics": {}, "full_metrics": {}, "scores": []},
    }  # fmt: skip
    report = retrain_report_from_mapping(legacy)
    assert (report.decision, report.reason, report.champion) == ("keep", "a; b", None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 99}, "schema 99 is not readable"),
        ({"decision": "maybe"}, "must be one of"),
        ({"verdict": "promote"}, "unknown key"),
    ],
)
def test_invalid_reports_are_refused_by_name(change: dict, message: str) -> None:
    data = json.loads(_report().to_json())
    with pytest.raises(ConfigError, match=message):
        retrain_report_from_mapping({**data, **change})


def test_unreadable_file_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("{oops")
    with pytest.raises(ConfigError, match=r"report\.json"):
        read_retrain_report(path)


def test_retrain_events_read_typed(tmp_path) -> None:
    from inspection.core.registry import Registry
    from inspection.core.retrain_report import RetrainEvent

    registry = Registry(tmp_path)
    registry.journal.record_event(
        "p", "retrain", actor="cron", reason="kept", decision="keep", status="kept", run="r1",
        champion="v0001-int8", challenger="v0002-int8", challenger_version="v0002",
        reviewed_good_ids=["a1", 7],
        metrics={"champion": {"image_auroc": 0.9, "note": "x"}, "challenger": {"aupro": 1}},
    )  # fmt: skip
    [event] = registry.journal.events("p")
    typed = RetrainEvent.from_event(event)
    assert (typed.run, typed.decision, typed.champion, typed.challenger) == (
        "r1",
        "keep",
        "v0001-int8",
        "v0002-int8",
    )
    assert typed.metrics == {"champion": {"image_auroc": 0.9}, "challenger": {"aupro": 1.0}}
    assert typed.at == event["at"] and typed.status == "kept"
    assert typed.reviewed_good_ids == ("a1", "7") and typed.figures("none") == {}
    with pytest.raises(ConfigError, match="decision: must be one of"):
        RetrainEvent.from_event({**event, "decision": "maybe"})
    with pytest.raises(ConfigError, match=r"event\.metrics: expected a mapping"):
        RetrainEvent.from_event({**event, "metrics": [0.9]})
