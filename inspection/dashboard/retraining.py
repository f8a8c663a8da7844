"""Retraining runs: champion vs challenger, from reports and the registry's audit log.

Sources, both optional and merged by run id:

- ``<reports_dir>/retrain/<product>/<run>/report.json``; read keys (others are kept raw):
  ``decision``, ``reason``, ``at``/``created_at``/``finished_at``, ``champion`` and
  ``challenger`` (each with ``metrics`` or metrics at its top level, plus ``bundle_id`` or
  ``version``);
- registry events with ``action == "retrain"``, their ``run`` (or ``run_id``) naming the run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from inspection.core.registry import Registry
from inspection.dashboard.models import flat_metrics, order_metrics

log = logging.getLogger(__name__)
REPORT_FILE = "report.json"


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


def _side(data: Any) -> tuple[str, dict[str, float]]:
    """(name, metrics) of a champion/challenger entry."""
    if not isinstance(data, Mapping):
        return (str(data) if data else "", {})
    name = data.get("bundle_id") or data.get("version") or data.get("model_version") or ""
    metrics = data.get("metrics", data)
    return str(name), flat_metrics(metrics if isinstance(metrics, Mapping) else {})


def _run_from(product: str, run: str, data: Mapping[str, Any], path: Path | None) -> RetrainRun:
    champion, champion_metrics = _side(data.get("champion"))
    challenger, challenger_metrics = _side(data.get("challenger"))
    at = data.get("at") or data.get("finished_at") or data.get("created_at") or ""
    return RetrainRun(
        product=product,
        run=run,
        at=str(at),
        decision=str(data.get("decision") or data.get("outcome") or ""),
        reason=str(data.get("reason") or ""),
        champion=champion,
        challenger=challenger,
        champion_metrics=champion_metrics,
        challenger_metrics=challenger_metrics,
        report_path=path,
        raw=dict(data),
    )


def report_runs(reports_dir: Path, product: str) -> list[RetrainRun]:
    """Runs found as ``reports/retrain/<product>/<run>/report.json`` (unreadable ones logged)."""
    root = Path(reports_dir) / "retrain" / product
    runs = []
    for path in sorted(root.glob(f"*/{REPORT_FILE}")) if root.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            log.warning("skipping unreadable retrain report %s: %s", path, exc)
            continue
        if isinstance(data, Mapping):
            runs.append(_run_from(product, path.parent.name, data, path))
    return runs


def retrain_runs(registry: Registry, reports_dir: Path, product: str) -> list[RetrainRun]:
    """Every retraining run of ``product``, newest first; reports win over bare events."""
    runs = {r.run: r for r in report_runs(reports_dir, product)}
    for index, event in enumerate(registry.events(product)):
        if event.get("action") != "retrain":
            continue
        run_id = str(event.get("run") or event.get("run_id") or f"event-{index + 1}")
        if run_id in runs:
            continue
        details = {"reason": event.get("reason"), **event, "at": event.get("at", "")}
        runs[run_id] = _run_from(product, run_id, details, None)
    return sorted(runs.values(), key=lambda r: (r.at, r.run), reverse=True)


def runs_frame(runs: list[RetrainRun], metric: str = "image_auroc") -> pd.DataFrame:
    """Summary table: when, run, decision, champion, challenger and ``metric`` for each."""
    return pd.DataFrame(
        [
            {
                "at": r.at,
                "run": r.run,
                "decision": r.decision,
                "champion": r.champion,
                "challenger": r.challenger,
                f"champion {metric}": r.champion_metrics.get(metric),
                f"challenger {metric}": r.challenger_metrics.get(metric),
                "reason": r.reason,
            }
            for r in runs
        ],
        columns=[
            "at",
            "run",
            "decision",
            "champion",
            "challenger",
            f"champion {metric}",
            f"challenger {metric}",
            "reason",
        ],
    )
