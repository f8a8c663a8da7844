"""The retrain report (``report.json``), written by retraining and read by the dashboard: schema
1 is ``RetrainReport`` as ``to_mapping`` maps it; files from before it (no ``schema_version``,
a few redundant keys) read too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from inspection.core.config import from_mapping, to_mapping
from inspection.core.errors import ConfigError

SCHEMA_VERSION = 1
Decision = Literal["promote", "keep"]
# Keys that reports written before schema 1 carry and schema 1 derives instead.
_LEGACY_ONLY_KEYS = ("promote", "reason")


@dataclass(frozen=True)
class ModelEvaluation:
    """One side of the comparison (champion or challenger), measured on the same images."""

    bundle_id: str
    model_version: str
    threshold: float
    metrics: dict[str, float]  # flat: what the gate compares
    full_metrics: dict[str, Any] = field(default_factory=dict)  # overall + per defect type
    scores: tuple[float, ...] = ()


@dataclass(frozen=True)
class RetrainReport:
    """What one retraining run decided, and why."""

    run: dict[str, Any]  # product, run id, actor, start/finish, bundles, export figures
    finished_at: str
    decision: Decision
    reasons: tuple[str, ...]
    challenger: ModelEvaluation
    champion: ModelEvaluation | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ConfigError(
                f"retrain report schema {self.schema_version} is not readable here "
                f"(this version reads {SCHEMA_VERSION})"
            )

    @property
    def promote(self) -> bool:
        return self.decision == "promote"

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def product(self) -> str:
        return str(self.run.get("product", ""))

    def sides(self) -> dict[str, ModelEvaluation]:
        """The evaluated models by role, champion first when there was one."""
        sides = {"champion": self.champion} if self.champion is not None else {}
        return {**sides, "challenger": self.challenger}

    def to_json(self) -> str:
        return json.dumps(to_mapping(self), indent=2, sort_keys=True, default=str)


def retrain_report_from_mapping(data: Mapping[str, Any], where: str = "report") -> RetrainReport:
    """Validate ``data`` as a report; accepts schema 1 and the unversioned files before it."""
    data = dict(data)
    if "schema_version" not in data:
        for key in _LEGACY_ONLY_KEYS:
            data.pop(key, None)
        data["finished_at"] = data.get("finished_at") or ""
        data["schema_version"] = SCHEMA_VERSION
    return from_mapping(RetrainReport, data, where)


def read_retrain_report(path: str | Path) -> RetrainReport:
    """Read ``report.json``; unreadable or invalid files raise ``ConfigError`` naming the path."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable retrain report: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return retrain_report_from_mapping(data, str(path))


def write_retrain_report(report: RetrainReport, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(report.to_json(), encoding="utf-8")
    return path


@dataclass(frozen=True)
class RetrainEvent:
    """A retrain run as the audit log records it (action ``retrain``), for every decided or
    failed run; ``metrics``: the flat numeric gate figures by role (champion, challenger)."""

    at: str
    run: str | None = None
    decision: Literal["promote", "keep", "failed"] | None = None
    reason: str = ""
    champion: str | None = None
    challenger: str | None = None
    status: str | None = None
    """``promoted``, ``kept`` or ``failed`` (None in events older than the field)."""
    reviewed_good_ids: tuple[str, ...] = ()
    challenger_version: str | None = None
    reviews_until: str | None = None
    """When the run read the reviews (UTC, ISO 8601); None in events older than the field."""
    skipped_review_ids: tuple[str, ...] = ()
    """Reviewed inspections the run left out because their image was missing or unreadable;
    the next run tries the reviewed-good ones again, whatever its cut-off."""
    learned_images: tuple[str, ...] = ()
    """Images (paths relative to the registry) the run trained on because its champion had
    learned them by ``train --update`` (``retrain.lineage``)."""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def figures(self, role: str) -> dict[str, float]:
        """The gate figures of ``role`` (``champion`` or ``challenger``); empty if none."""
        return dict(self.metrics.get(role, {}))

    @classmethod
    def from_event(cls, event: Mapping[str, Any], where: str = "event") -> RetrainEvent:
        """The run's fields of one audit event (other keys are left to their readers)."""
        names = {f.name for f in fields(cls)} - {"metrics"}
        own = {k: v for k, v in event.items() if k in names and v is not None}
        for key in ("reviewed_good_ids", "skipped_review_ids"):
            if isinstance(own.get(key), list):  # ids: strings (older: numbers)
                own[key] = [str(i) for i in own[key]]
        metrics = event.get("metrics") or {}
        if not isinstance(metrics, Mapping):
            raise ConfigError(f"{where}.metrics: expected a mapping, got {metrics!r}")
        return from_mapping(cls, {**own, "metrics": _numeric_by_role(metrics)}, where)


def _numeric_by_role(metrics: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    return {
        str(role): {
            str(k): float(v)
            for k, v in figures.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        for role, figures in metrics.items()
        if isinstance(figures, Mapping)
    }
