"""Overview figures: volume, NG rate and throughput over time, station health, each forwarding
station's central backlog, score drift."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from inspection.core.registry import Registry
from inspection.dashboard import thresholds
from inspection.store import queries
from inspection.store.store import Store

WINDOWS: dict[str, tuple[timedelta | None, queries.Period]] = {
    "Last 24 hours": (timedelta(days=1), "hour"),
    "Last 7 days": (timedelta(days=7), "day"),
    "Last 30 days": (timedelta(days=30), "day"),
    "All time": (None, "day"),
}
DEFAULT_WINDOW = "Last 7 days"
DRIFT_BINS = 10
PSI_WARN = 0.1
PSI_ALERT = 0.25
MIN_DRIFT_PARTS = 30
"""Fewer parts on either side than this: drift says 'not enough data' instead of a verdict."""


def window(name: str, now: datetime | None = None) -> tuple[datetime | None, queries.Period]:
    """(since, bucket period) for a window name from ``WINDOWS``."""
    if name not in WINDOWS:
        raise ValueError(f"window must be one of {list(WINDOWS)}, got {name!r}")
    span, period = WINDOWS[name]
    now = now or datetime.now(timezone.utc)
    return (now - span if span else None), period


def volume_frame(
    store: Store,
    *,
    period: queries.Period,
    since: datetime | None,
    product: str | None = None,
    station_id: str | None = None,
) -> pd.DataFrame:
    """One row per bucket, product and station: total, ng, ng_rate, mean_score, mean_latency_ms."""
    rows = queries.volume_over_time(
        store, period=period, since=since, product=product, station_id=station_id
    )
    columns = [f.name for f in fields(queries.VolumeRow)]
    frame = pd.DataFrame([r.__dict__ for r in rows], columns=columns)
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True)
    frame["ng_rate"] = (frame["ng"] / frame["total"].where(frame["total"] > 0)).fillna(0.0)
    return frame


def per_product(frame: pd.DataFrame) -> pd.DataFrame:
    """Volume frame summed over stations: bucket, product, total, ng, ng_rate, mean_score."""
    if frame.empty:
        return frame.drop(columns=["station_id", "mean_latency_ms"], errors="ignore")
    weighted = frame.assign(score_sum=frame["mean_score"] * frame["total"])
    grouped = weighted.groupby(["bucket", "product"], as_index=False)[
        ["total", "ng", "score_sum"]
    ].sum()
    grouped["ng_rate"] = grouped["ng"] / grouped["total"]
    grouped["mean_score"] = grouped["score_sum"] / grouped["total"]
    return grouped.drop(columns="score_sum")


@dataclass(frozen=True)
class Kpis:
    inspections: int
    ng: int
    ng_rate: float
    per_hour: float


def kpis(frame: pd.DataFrame, hourly: pd.DataFrame) -> Kpis:
    """Totals over a volume frame; throughput per *active* hour of ``hourly``, so a line that
    ran one shift this week is not averaged over seven days."""
    if frame.empty:
        return Kpis(0, 0, 0.0, 0.0)
    total, ng = int(frame["total"].sum()), int(frame["ng"].sum())
    active_hours = max(int(hourly.loc[hourly["total"] > 0, "bucket"].nunique()), 1)
    return Kpis(total, ng, ng / total, int(hourly["total"].sum()) / active_hours)


STATION_COLUMNS = {
    "station_id": "station",
    "product": "product",
    "status": "status",
    "last_seen": "last seen",
    "total": "inspections",
    "ng_rate": "NG rate",
    "reviewed": "reviewed",
    "mean_latency_ms": "mean latency",
    "max_latency_ms": "max latency",
    "model_version": "model",
}
"""``station_frame``'s columns, in order, with the headers ``station_table`` shows."""


def station_frame(
    store: Store, *, since: datetime | None, now: datetime | None = None
) -> pd.DataFrame:
    """Station health table: one row per station and product, with an ``status`` column."""
    now = now or datetime.now(timezone.utc)
    rows = queries.station_health(store, since=since)
    frame = pd.DataFrame([r.__dict__ for r in rows])
    if frame.empty:
        return frame
    frame["ng_rate"] = frame["ng"] / frame["total"]
    heard = {row.station_id: row.reported_at for row in queries.station_backlogs(store)}
    frame["status"] = [
        station_status(now, seen, heard.get(station))
        for station, seen in zip(frame["station_id"], frame["last_seen"], strict=True)
    ]
    return frame[list(STATION_COLUMNS)]


def station_status(now: datetime, last_result: datetime, heard: datetime | None) -> str:
    """'online' only while the station's own report (its heartbeat to the central store) is
    younger than ``SILENT_REPORT_AFTER``; otherwise when it was last heard, or, for a station
    that sends no report, when its last result came (which says nothing about whether it runs)."""
    if heard is not None:
        silent = now - heard
        return (
            "online"
            if silent <= SILENT_REPORT_AFTER
            else f"not heard for {_duration(silent.total_seconds())}"
        )
    return f"last result {_duration((now - last_result).total_seconds())} ago"


BACKLOG_ALARM_AFTER_S = 300.0
"""``central.alarm_after_seconds``'s default, for a report without it."""
SILENT_REPORT_AFTER = timedelta(minutes=2)
"""A forwarding station reports every few seconds; silent longer than this, it is alarmed."""
BACKLOG_COLUMNS = {
    "station_id": "station",
    "alarm": "alarm",
    "rows": "waiting",
    "bytes": "bytes",
    "oldest_age_s": "oldest",
    "rate_per_s": "forwarded",
    "quarantined": "quarantined",
    "reported_at": "last heard",
}
"""``backlog_frame``'s columns, in order, with the headers ``backlog_table`` shows."""


def backlog_alarm(row: queries.BacklogRow, now: datetime) -> str:
    """Why a forwarding station is alarmed ('' when it is not): silent, rows quarantined, or
    its oldest waiting result older than its alarm setting."""
    silent = now - row.reported_at
    if silent > SILENT_REPORT_AFTER:
        return f"not heard for {_duration(silent.total_seconds())}"
    if row.quarantined:
        return f"{row.quarantined:,} rows refused by the central store, quarantined"
    limit = BACKLOG_ALARM_AFTER_S if row.alarm_after_s is None else row.alarm_after_s
    if row.oldest_age_s is not None and row.oldest_age_s > limit:
        return f"oldest waiting {_duration(row.oldest_age_s)} (alarm after {_duration(limit)})"
    return ""


def backlog_frame(store: Store, *, now: datetime | None = None) -> pd.DataFrame:
    """Each forwarding station's last backlog report with its ``alarm``."""
    now = now or datetime.now(timezone.utc)
    rows = queries.station_backlogs(store)
    frame = pd.DataFrame(
        [r.__dict__ for r in rows], columns=[f.name for f in fields(queries.BacklogRow)]
    )
    frame["alarm"] = [backlog_alarm(row, now) for row in rows]
    return frame[list(BACKLOG_COLUMNS)]


def backlog_table(frame: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """``backlog_frame`` as text for a static table: a marker on alarmed stations, units."""
    if frame.empty:
        return frame.rename(columns=BACKLOG_COLUMNS)
    heard = pd.to_datetime(frame["reported_at"], utc=True)
    shown = frame.assign(
        alarm=frame["alarm"].map(lambda why: f"⚠ {why}" if why else "ok"),
        rows=frame["rows"].map("{:,}".format),
        bytes=frame["bytes"].map(_size),
        oldest_age_s=frame["oldest_age_s"].map(lambda s: "—" if pd.isna(s) else _duration(s)),
        rate_per_s=frame["rate_per_s"].map("{:.1f}/s".format),
        quarantined=frame["quarantined"].map("{:,}".format),
        reported_at=[
            f"{at:%Y-%m-%d %H:%M:%S} ({_duration((now - at).total_seconds())} ago)" for at in heard
        ],
    )
    return shown.rename(columns=BACKLOG_COLUMNS).reset_index(drop=True)


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:,.1f} GB"


@dataclass(frozen=True)
class Drift:
    """Production scores (reviewed defects left out) against the live bundle's held-out good
    scores, as (DRIFT_BINS,) fraction histograms; ``psi``: the population stability index
    (None without a reference)."""

    product: str
    production: np.ndarray
    production_count: int
    production_mean: float | None
    reference: np.ndarray | None
    reference_source: str | None
    reference_mean: float | None
    psi: float | None
    reference_count: int = 0

    @property
    def enough(self) -> bool:
        return min(self.production_count, self.reference_count) >= MIN_DRIFT_PARTS

    @property
    def status(self) -> str:
        if self.psi is None:
            return "no reference"
        if not self.enough:
            return "not enough data"
        if self.psi > PSI_ALERT:
            return "drifted"
        return "watch" if self.psi > PSI_WARN else "stable"


def population_stability_index(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI between two (B,) fraction histograms; empty bins are floored at 1e-4."""
    e = np.clip(np.asarray(expected, np.float64), 1e-4, None)
    a = np.clip(np.asarray(actual, np.float64), 1e-4, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def drift(
    store: Store,
    registry: Registry,
    product: str,
    *,
    since: datetime | None,
    station_id: str | None = None,
) -> Drift:
    """Production score distribution since ``since`` vs the live bundle's held-out good scores."""
    defects = thresholds.DEFECT_LABELS
    fine = queries.score_histogram(
        store, product, bins=100, since=since, exclude_labels=defects, station_id=station_id
    )
    count = int(fine.sum())
    production = fine.reshape(DRIFT_BINS, -1).sum(axis=1) / max(count, 1)
    centres = (np.arange(100) + 0.5) / 100
    production_mean = float((fine * centres).sum() / count) if count else None
    validation = thresholds.validation_scores(
        registry, product, thresholds.default_bundle(registry, product)
    )
    good = validation.scores[validation.labels == 0] if validation is not None else np.zeros(0)
    if len(good) == 0:
        return Drift(product, production, count, production_mean, None, None, None, None)
    reference = np.histogram(np.clip(good, 0, 1), bins=DRIFT_BINS, range=(0, 1))[0] / len(good)
    psi = population_stability_index(reference, production) if count else None
    source, mean = f"{validation.source}, {len(good)} good parts", float(good.mean())
    return Drift(
        product, production, count, production_mean, reference, source, mean, psi, len(good)
    )


def drift_line(item: Drift) -> str:
    head = f"**{item.product}**"
    if item.psi is None:
        return (
            f"{head} — no held-out scores to compare against (the live bundle ships no "
            f"`validation_scores.json`): {item.production_count:,} production parts only"
        )
    if not item.enough:
        return (
            f"{head} — not enough data (PSI {item.psi:.3f}): {item.production_count:,} "
            f"production parts vs {item.reference_count} reference good parts"
        )
    return (
        f"{head} — PSI {item.psi:.3f} ({item.status}): {item.production_count:,} production "
        f"parts vs {item.reference_source}"
    )


def station_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``station_frame`` as text for a static table: readable headers, units in the cells."""
    if frame.empty:
        return frame
    shown = frame.assign(
        last_seen=pd.to_datetime(frame["last_seen"], utc=True).dt.strftime("%Y-%m-%d %H:%M"),
        total=frame["total"].map("{:,}".format),
        ng_rate=frame["ng_rate"].map("{:.1%}".format),
        reviewed=frame["reviewed"].map("{:,}".format),
        mean_latency_ms=frame["mean_latency_ms"].map("{:.0f} ms".format),
        max_latency_ms=frame["max_latency_ms"].map("{:.0f} ms".format),
        model_version=frame["model_version"].fillna("—").astype(str),
    )
    return shown.rename(columns=STATION_COLUMNS).reset_index(drop=True)
