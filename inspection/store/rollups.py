"""Hourly rollups of the results: what every dashboard page reads instead of the results table.

``rollup_hourly`` per (hour, product, station): counts, score and latency sums, latency peak,
lowest threshold, first/last time, newest model version; ``rollup_scores`` per (hour, product,
station, score bin): a ``BINS``-bin histogram over [0, 1]. A page reads O(hours x stations).

``record`` adds inspections in the writer's transaction, so a rollup never disagrees with its
rows. Rollups only grow: review labels are read live, and retention's deletions keep counting.
``rebuild`` recomputes both tables with one ``INSERT ... SELECT ... GROUP BY`` each. Hours are
UTC (SQLite: SQLAlchemy's datetime text; PostgreSQL: ``timestamptz``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    bindparam,
    case,
    cast,
    column,
    delete,
    func,
    insert,
    select,
    table,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from inspection.store.models import Base, Inspection

BINS = 100
"""Score bins of ``rollup_scores`` over [0, 1]; a score of 1.0 goes in the last bin."""


class HourlyRollup(Base):
    """Inspections of one product at one station in one UTC hour."""

    __tablename__ = "rollup_hourly"

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    product: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    ng: Mapped[int] = mapped_column(Integer)
    score_sum: Mapped[float] = mapped_column(Float)
    latency_sum: Mapped[float] = mapped_column(Float)
    latency_max: Mapped[float] = mapped_column(Float)
    threshold_min: Mapped[float] = mapped_column(Float)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    model_version: Mapped[str] = mapped_column(String(128))
    """The model version of the newest inspection of the hour."""


class ScoreRollup(Base):
    """How many inspections of one product at one station in one UTC hour scored in one bin."""

    __tablename__ = "rollup_scores"

    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    product: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True, server_default="")
    bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


# The review queue's keyset pages, its filters evaluated on the index (migration 0008), and
# the reviewed-in-a-window lookups (0007).
Index(
    "ix_inspections_queue",
    Inspection.score,
    Inspection.id,
    Inspection.threshold,
    Inspection.verdict,
    Inspection.review_label,
    Inspection.product,
    Inspection.station_id,
)
Index("ix_inspections_created_id", Inspection.created_at, Inspection.id)
Index(
    "ix_inspections_label_created",
    Inspection.review_label,
    Inspection.created_at,
    Inspection.product,
    Inspection.station_id,
    sqlite_where=Inspection.review_label.is_not(None),
    postgresql_where=Inspection.review_label.is_not(None),
)


def hour_of(moment: datetime) -> datetime:
    """The UTC hour ``moment`` falls in (naive means UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.replace(minute=0, second=0, microsecond=0, tzinfo=timezone.utc)


def bin_of(score: float) -> int:
    """The histogram bin of a score in [0, 1] (out-of-range scores go to the end bins)."""
    return min(max(int(score * BINS), 0), BINS - 1)


def record(session: Session, rows: Sequence[Inspection]) -> None:
    """Add ``rows`` (``created_at`` set) to their hours' rollups inside ``session``'s
    transaction: one upsert per (hour, product, station) and per (hour, product, station, bin)."""
    if not rows:
        return
    hourly, scores = _upserts(session.get_bind().dialect.name)
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    bins: Counter[tuple[datetime, str, str, int]] = Counter()
    for row in rows:
        hour = hour_of(row.created_at)
        ng, at = int(row.verdict == "NG"), row.created_at
        group = groups.get((hour, row.product, row.station_id))
        if group is None:
            groups[(hour, row.product, row.station_id)] = {
                "hour": hour, "product": row.product, "station_id": row.station_id,
                "total": 1, "ng": ng, "score_sum": row.score, "latency_sum": row.latency_ms,
                "latency_max": row.latency_ms, "threshold_min": row.threshold,
                "first_seen": at, "last_seen": at, "model_version": row.model_version,
            }  # fmt: skip
        else:
            group["total"], group["ng"] = group["total"] + 1, group["ng"] + ng
            group["score_sum"] += row.score
            group["latency_sum"] += row.latency_ms
            group["latency_max"] = max(group["latency_max"], row.latency_ms)
            group["threshold_min"] = min(group["threshold_min"], row.threshold)
            group["first_seen"] = min(group["first_seen"], at)
            if at >= group["last_seen"]:
                group["last_seen"], group["model_version"] = at, row.model_version
        bins[(hour, row.product, row.station_id, bin_of(row.score))] += 1
    # in key order: forwarders of several stations adding to the same rows lock them in one
    # order, so they wait for each other instead of deadlocking
    session.execute(hourly, [groups[key] for key in sorted(groups)])
    counts = [
        {"hour": h, "product": p, "station_id": s, "bin": b, "count": n}
        for (h, p, s, b), n in sorted(bins.items())
    ]
    session.execute(scores, counts)


@cache
def _upserts(dialect: str) -> tuple[Any, Any]:
    """The two upserts ``record`` runs, built once per dialect with bound parameters (built per
    inspection they cost more than the rest of the write)."""
    insert_ = sqlite.insert if dialect == "sqlite" else postgresql.insert
    greatest, least = _extremes(dialect)
    hourly = insert_(HourlyRollup).values(_parameters(HourlyRollup))
    new, old = hourly.excluded, HourlyRollup
    hourly = hourly.on_conflict_do_update(
        index_elements=["hour", "product", "station_id"],
        set_={
            "total": old.total + new.total,
            "ng": old.ng + new.ng,
            "score_sum": old.score_sum + new.score_sum,
            "latency_sum": old.latency_sum + new.latency_sum,
            "latency_max": greatest(old.latency_max, new.latency_max),
            "threshold_min": least(old.threshold_min, new.threshold_min),
            "first_seen": least(old.first_seen, new.first_seen),
            "last_seen": greatest(old.last_seen, new.last_seen),
            "model_version": case(
                (new.last_seen >= old.last_seen, new.model_version), else_=old.model_version
            ),
        },
    )
    scores = insert_(ScoreRollup).values(_parameters(ScoreRollup))
    scores = scores.on_conflict_do_update(
        index_elements=["hour", "product", "station_id", "bin"],
        set_={"count": ScoreRollup.count + scores.excluded["count"]},
    )
    return hourly, scores


def _parameters(table: type[Base]) -> dict[str, Any]:
    """Each column's value from the bound parameter of its name."""
    return {column.name: bindparam(column.name) for column in table.__table__.columns}


def _extremes(dialect: str) -> tuple[Any, Any]:
    """Two-argument max and min: SQLite's scalar ``max``/``min``, PostgreSQL's ``greatest``."""
    if dialect == "sqlite":
        return func.max, func.min
    return func.greatest, func.least


def hour_expression(dialect: str, column: Any) -> Any:
    """SQL for the UTC hour of a datetime column, in the form the dialect stores datetimes."""
    if dialect == "sqlite":
        return func.substr(column, 1, 13).concat(":00:00.000000")
    return func.timezone("UTC", func.date_trunc("hour", func.timezone("UTC", column)))


def bin_expression(dialect: str, score: Any) -> Any:
    """SQL for ``bin_of(score)``."""
    scaled = score * BINS
    greatest, least = _extremes(dialect)
    if dialect == "sqlite":
        index = cast(scaled, Integer)  # truncation == floor for the non-negative scores stored
    else:
        index = cast(func.floor(cast(scaled, Float)), Integer)
    return least(greatest(index, 0), BINS - 1)


def rebuild(connection: Connection | Session, *, per_station: bool = True) -> None:
    """Recompute both rollup tables from every stored inspection, inside ``connection``'s
    transaction. About a minute per few million rows; run once per store (migration 0007,
    whose ``rollup_scores`` has no station yet: ``per_station=False``)."""
    bind = connection.get_bind() if isinstance(connection, Session) else connection
    dialect = bind.dialect.name
    hour = hour_expression(dialect, Inspection.created_at).label("hour")
    connection.execute(delete(HourlyRollup))
    scores_table = table("rollup_scores")
    connection.execute(delete(scores_table))
    hourly = select(
        hour,
        Inspection.product,
        Inspection.station_id,
        func.count(),
        func.sum(case((Inspection.verdict == "NG", 1), else_=0)),
        func.sum(Inspection.score),
        func.sum(Inspection.latency_ms),
        func.max(Inspection.latency_ms),
        func.min(Inspection.threshold),
        func.min(Inspection.created_at),
        func.max(Inspection.created_at),
        func.max(Inspection.model_version),  # the backfill cannot tell the newest cheaply
    ).group_by(hour, Inspection.product, Inspection.station_id)
    columns = [c.name for c in HourlyRollup.__table__.columns]
    connection.execute(insert(HourlyRollup).from_select(columns, hourly))
    bin_ = bin_expression(dialect, Inspection.score).label("bin")
    keys = [hour, Inspection.product, *([Inspection.station_id] if per_station else []), bin_]
    names = ["hour", "product", *(["station_id"] if per_station else []), "bin", "count"]
    scores = select(*keys, func.count()).group_by(*keys)
    into = table("rollup_scores", *map(column, names))
    connection.execute(insert(into).from_select(names, scores))
