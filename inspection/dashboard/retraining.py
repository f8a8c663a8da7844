"""Retraining runs: champion vs challenger, from this site's registry audit log; a run's
report adds its full comparison (a report whose run is not in the log is never shown)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from inspection.core.config import to_mapping
from inspection.core.errors import ConfigError
from inspection.core.registry import Registry
from inspection.core.retrain_report import RetrainEvent, RetrainReport, read_retrain_report
from inspection.dashboard.models import order_metrics

log = logging.getLogger(__name__)
REPORT_FILE = "report.json"
# How the pages word a run's decision (reports and audit events say promote / keep / failed).
DECISION_LABELS = {"promote": "promoted", "keep": "kept", "failed": "failed"}


@dataclass(frozen=True)
class RetrainRun:
    product: str
    run: str
    at: str
    decision: str
    reason: str
    champion: str
    challenger: str
    champion_metrics: dict[str, float] = field(default_factory=dict)
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    report_path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def comparison(self) -> pd.DataFrame:
        """Rows: metric; columns: champion, challenger, Δ (challenger − champion)."""
        keys = order_metrics(set(self.champion_metrics) | set(self.challenger_metrics))
        frame = pd.DataFrame(
            {
                "champion": [self.champion_metrics.get(k) for k in keys],
                "challenger": [self.challenger_metrics.get(k) for k in keys],
            },
            index=pd.Index(keys, name="metric"),
            dtype="float64",
        )
        frame["Δ"] = frame["challenger"] - frame["champion"]
        return frame


def _run_from_report(report: RetrainReport, run: str, path: Path) -> RetrainRun:
    champion = report.champion
    return RetrainRun(
        product=report.product,
        run=run,
        at=report.finished_at,
        decision=DECISION_LABELS[report.decision],
        reason=report.reason,
        champion=champion.bundle_id if champion else "",
        challenger=report.challenger.bundle_id,
        champion_metrics=dict(champion.metrics) if champion else {},
        challenger_metrics=dict(report.challenger.metrics),
        report_path=path,
        raw=to_mapping(report),
    )


def _run_from_event(
    product: str, run: str, typed: RetrainEvent, event: Mapping[str, Any]
) -> RetrainRun:
    """A run known only from its audit event (failed, or its report folder is gone)."""
    decision = str(typed.decision or "")
    return RetrainRun(
        product=product,
        run=run,
        at=typed.at,
        decision=DECISION_LABELS.get(decision, decision),
        reason=typed.reason,
        champion=typed.champion or "",
        challenger=typed.challenger or "",
        champion_metrics=typed.figures("champion"),
        challenger_metrics=typed.figures("challenger"),
        raw=dict(event),
    )


def report_runs(reports_dir: Path, product: str) -> list[RetrainRun]:
    """Runs found as ``reports/retrain/<product>/<run>/report.json`` (unreadable ones logged)."""
    root = Path(reports_dir) / "retrain" / product
    runs = []
    for path in sorted(root.glob(f"*/{REPORT_FILE}")) if root.is_dir() else []:
        try:
            report = read_retrain_report(path)
        except ConfigError as exc:
            log.warning("skipping retrain report: %s", exc)
            continue
        runs.append(_run_from_report(report, path.parent.name, path))
    return runs


def retrain_runs(registry: Registry, reports_dir: Path, product: str) -> list[RetrainRun]:
    """Every retraining run of ``product`` in this site's audit log, newest first."""
    reports = {r.run: r for r in report_runs(reports_dir, product)}
    runs: dict[str, RetrainRun] = {}
    for index, event in enumerate(registry.journal.events(product)):
        if event.get("action") != "retrain":
            continue
        try:
            typed = RetrainEvent.from_event(event, f"{product} retrain event {index + 1}")
        except ConfigError as exc:
            log.warning("skipping retrain event: %s", exc)
            continue
        run_id = typed.run or f"event-{index + 1}"
        runs[run_id] = reports.get(run_id) or _run_from_event(product, run_id, typed, event)
    return sorted(runs.values(), key=lambda r: (r.at, r.run), reverse=True)


def runs_frame(runs: list[RetrainRun], metric: str = "image_auroc") -> pd.DataFrame:
    """Summary table: when, run, decision, champion, challenger and ``metric`` for each."""
    columns = ["at", "run", "decision", "champion", "challenger"]
    columns += [f"champion {metric}", f"challenger {metric}", "reason"]
    rows = [
        (r.at, r.run, r.decision, r.champion, r.challenger, r.champion_metrics.get(metric),
         r.challenger_metrics.get(metric), r.reason)
        for r in runs
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
