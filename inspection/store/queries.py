"""SQL aggregations for the review dashboard: counts, rates and histograms computed in the database.

Every function selects only the columns it needs and aggregates with ``GROUP BY`` so the
dashboard stays fast with hundreds of thousands of inspections. Works on SQLite and PostgreSQL.
Times are UTC; SQLite returns naive datetimes, which are read as UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
from sqlalchemy import Float, Integer, and_, case, cast, func, or_, select

from inspection.store.models import Inspection, Review
from inspection.store.store import Store, StoreError

Period = Literal["hour", "day"]
QueueKind = Literal["ng", "borderline", "ng_or_borderline", "all"]
QueueStatus = Literal["unreviewed", "reviewed", "all"]
QueueOrder = Literal["score_desc", "newest", "oldest", "closest_to_threshold"]
PERIODS: tuple[str, ...] = ("hour", "day")
QUEUE_KINDS: tuple[str, ...] = ("ng", "borderline", "ng_or_borderline", "all")
QUEUE_STATUSES: tuple[str, ...] = ("unreviewed", "reviewed", "all")
QUEUE_ORDERS: tuple[str, ...] = ("score_desc", "newest", "oldest", "closest_to_threshold")
_SQLITE_BUCKETS = {"hour": (13, ":00:00"), "day": (10, " 00:00:00")}  # prefix length, padding


@dataclass(frozen=True)
class VolumeRow:
    """Inspections of one product at one station in one time bucket."""

    bucket: datetime
    product: str
    station_id: str
    total: int
    ng: int
    mean_score: float
    mean_latency_ms: float


@dataclass(frozen=True)
class StationRow:
    """Health of one station for one product over a time window."""

    station_id: str
    product: str
    total: int
    ng: int
    reviewed: int
    first_seen: datetime
    last_seen: datetime
    mean_latency_ms: float
    max_latency_ms: float
    model_version: str


@dataclass(frozen=True)
class QueueQuery:
    """Which inspections the review queue shows.

    ``borderline`` means verdict OK with ``score >= threshold - margin`` (the row's own threshold).
    """

    product: str | None = None
    station_id: str | None = None
    kind: QueueKind = "ng_or_borderline"
    status: QueueStatus = "unreviewed"
    margin: float = 0.1
    since: datetime | None = None
    order: QueueOrder = "score_desc"

    def __post_init__(self) -> None:
        for name, value, valid in (
            ("kind", self.kind, QUEUE_KINDS),
            ("status", self.status, QUEUE_STATUSES),
            ("order", self.order, QUEUE_ORDERS),
        ):
            if value not in valid:
                raise StoreError(f"queue {name} must be one of {list(valid)}, got {value!r}")
        if not 0.0 <= self.margin <= 1.0:
            raise StoreError(f"borderline margin must be in [0, 1], got {self.margin}")


@dataclass(frozen=True)
class QueueRow:
    """One review-queue entry: the columns the queue needs, no JSON or blobs."""

    id: str
    created_at: datetime
    product: str
    station_id: str
    part_id: str | None
    score: float
    threshold: float
    verdict: str
    model_version: str
    image_sha: str
    map_sha: str | None
    mask_sha: str | None
    overlay_sha: str | None
    review_label: str | None
    review_defect_type: str | None
    reviewed_by: str | None
    source_name: str | None = None  # the watch folder's file name, an upload's file name

    @property
    def part(self) -> str:
        """What names the part: its part id, else the file it came from, else ''."""
        return self.part_id or self.source_name or ""


def as_utc(value: datetime | str) -> datetime:
    """A timezone-aware UTC datetime from a database value (naive means UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _time_filters(product: str | None, station_id: str | None, since, until) -> list[Any]:
    conditions = []
    if product:
        conditions.append(Inspection.product == product)
    if station_id:
        conditions.append(Inspection.station_id == station_id)
    if since is not None:
        conditions.append(Inspection.created_at >= since)
    if until is not None:
        conditions.append(Inspection.created_at < until)
    return conditions


def _bucket(store: Store, period: Period) -> Any:
    if period not in PERIODS:
        raise StoreError(f"period must be one of {list(PERIODS)}, got {period!r}")
    if store.engine.dialect.name == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' text
        length, padding = _SQLITE_BUCKETS[period]
        return func.substr(Inspection.created_at, 1, length).concat(padding)
    return func.date_trunc(period, Inspection.created_at)


def _ng() -> Any:
    return func.sum(case((Inspection.verdict == "NG", 1), else_=0))


def distinct_values(store: Store, column: Literal["product", "station_id"]) -> list[str]:
    """Sorted distinct products or stations that have inspections."""
    if column not in ("product", "station_id"):
        raise StoreError(f"column must be 'product' or 'station_id', got {column!r}")
    attribute = getattr(Inspection, column)
    with store.session() as session:
        return sorted(v for v in session.scalars(select(attribute).distinct()) if v)


def volume_over_time(
    store: Store,
    *,
    period: Period = "hour",
    since: datetime | None = None,
    until: datetime | None = None,
    product: str | None = None,
    station_id: str | None = None,
) -> list[VolumeRow]:
    """Inspections, NG count, mean score and mean latency per time bucket, product and station."""
    bucket = _bucket(store, period).label("bucket")
    query = (
        select(
            bucket,
            Inspection.product,
            Inspection.station_id,
            func.count().label("total"),
            _ng().label("ng"),
            func.avg(Inspection.score),
            func.avg(Inspection.latency_ms),
        )
        .where(*_time_filters(product, station_id, since, until))
        .group_by(bucket, Inspection.product, Inspection.station_id)
        .order_by(bucket)
    )
    with store.session() as session:
        rows = session.execute(query).all()
    return [
        VolumeRow(as_utc(b), p, s, int(t), int(n or 0), float(ms or 0.0), float(lat or 0.0))
        for b, p, s, t, n, ms, lat in rows
    ]


def station_health(
    store: Store, *, since: datetime | None = None, product: str | None = None
) -> list[StationRow]:
    """Per station and product: volume, NG, reviewed count, first/last seen, latency, model."""
    reviewed = func.sum(case((Inspection.review_label.is_not(None), 1), else_=0))
    query = (
        select(
            Inspection.station_id,
            Inspection.product,
            func.count(),
            _ng(),
            reviewed,
            func.min(Inspection.created_at),
            func.max(Inspection.created_at),
            func.avg(Inspection.latency_ms),
            func.max(Inspection.latency_ms),
            func.max(Inspection.model_version),
        )
        .where(*_time_filters(product, None, since, None))
        .group_by(Inspection.station_id, Inspection.product)
        .order_by(Inspection.station_id, Inspection.product)
    )
    with store.session() as session:
        rows = session.execute(query).all()
    return [
        StationRow(
            station_id=s,
            product=p,
            total=int(t),
            ng=int(n or 0),
            reviewed=int(r or 0),
            first_seen=as_utc(first),
            last_seen=as_utc(last),
            mean_latency_ms=float(mean or 0.0),
            max_latency_ms=float(peak or 0.0),
            model_version=model or "",
        )
        for s, p, t, n, r, first, last, mean, peak, model in rows
    ]


def score_histogram(
    store: Store,
    product: str,
    *,
    bins: int = 100,
    since: datetime | None = None,
    until: datetime | None = None,
    exclude_labels: Sequence[str] = (),
) -> np.ndarray:
    """Counts of scores in ``bins`` equal bins over [0, 1]: (bins,) int64; 1.0 goes in the last.

    ``exclude_labels``: leave out inspections whose review label is one of these (e.g.
    ``("defect",)`` to compare production with good parts only).
    """
    if not 1 <= bins <= 10_000:
        raise StoreError(f"bins must be between 1 and 10000, got {bins}")
    scaled = Inspection.score * bins
    if store.engine.dialect.name == "sqlite":
        index = cast(scaled, Integer)  # truncation == floor for the non-negative scores stored
    else:
        index = cast(func.floor(cast(scaled, Float)), Integer)
    index = index.label("bin")
    conditions = list(_time_filters(product, None, since, until))
    if exclude_labels:
        conditions.append(
            or_(Inspection.review_label.is_(None), Inspection.review_label.not_in(exclude_labels))
        )
    query = select(index, func.count()).where(*conditions).group_by(index)
    counts = np.zeros(bins, dtype=np.int64)
    with store.session() as session:
        for bin_index, count in session.execute(query):
            counts[min(max(int(bin_index), 0), bins - 1)] += int(count)
    return counts


def labelled_scores(store: Store, product: str) -> list[tuple[float, str]]:
    """(score, latest review label) of every reviewed inspection of ``product``."""
    query = select(Inspection.score, Inspection.review_label).where(
        Inspection.product == product, Inspection.review_label.is_not(None)
    )
    with store.session() as session:
        return [(float(s), str(label)) for s, label in session.execute(query)]


def label_counts(store: Store, product: str | None = None) -> dict[str, int]:
    """How many inspections carry each latest review label."""
    query = select(Inspection.review_label, func.count()).where(
        Inspection.review_label.is_not(None)
    )
    if product:
        query = query.where(Inspection.product == product)
    with store.session() as session:
        rows = session.execute(query.group_by(Inspection.review_label)).all()
    return {str(label): int(count) for label, count in rows}


def defect_types(store: Store, product: str | None = None) -> list[str]:
    """Defect types reviewers have used before (for the type picker)."""
    query = select(Review.defect_type).where(Review.defect_type.is_not(None)).distinct()
    if product:
        query = query.join(Inspection, Inspection.id == Review.inspection_id).where(
            Inspection.product == product
        )
    with store.session() as session:
        return sorted(v for v in session.scalars(query) if v)


def _queue_conditions(query: QueueQuery) -> list[Any]:
    conditions = _time_filters(query.product, query.station_id, query.since, None)
    ng = Inspection.verdict == "NG"
    borderline = and_(
        Inspection.verdict == "OK", Inspection.score >= Inspection.threshold - query.margin
    )
    if query.kind == "ng":
        conditions.append(ng)
    elif query.kind == "borderline":
        conditions.append(borderline)
    elif query.kind == "ng_or_borderline":
        conditions.append(or_(ng, borderline))
    if query.status == "unreviewed":
        conditions.append(Inspection.review_label.is_(None))
    elif query.status == "reviewed":
        conditions.append(Inspection.review_label.is_not(None))
    return conditions


_QUEUE_ORDER = {
    "score_desc": (Inspection.score.desc(), Inspection.id),
    "newest": (Inspection.created_at.desc(), Inspection.id),
    "oldest": (Inspection.created_at.asc(), Inspection.id),
    "closest_to_threshold": (func.abs(Inspection.score - Inspection.threshold), Inspection.id),
}


def review_queue(
    store: Store, query: QueueQuery, *, limit: int = 20, offset: int = 0
) -> list[QueueRow]:
    """One page of the review queue."""
    if limit < 1 or offset < 0:
        raise StoreError(f"page needs limit >= 1 and offset >= 0, got {limit} and {offset}")
    columns = [getattr(Inspection, name) for name in QueueRow.__dataclass_fields__]
    statement = (
        select(*columns)
        .where(*_queue_conditions(query))
        .order_by(*_QUEUE_ORDER[query.order])
        .limit(limit)
        .offset(offset)
    )
    with store.session() as session:
        rows = session.execute(statement).all()
    return [QueueRow(*row[:1], as_utc(row[1]), *row[2:]) for row in rows]


def count_review_queue(store: Store, query: QueueQuery) -> int:
    """How many inspections the queue holds in total (for paging)."""
    statement = select(func.count()).select_from(Inspection).where(*_queue_conditions(query))
    with store.session() as session:
        return int(session.scalar(statement) or 0)


def daily_volume(store: Store, product: str, *, since: datetime, until: datetime) -> float:
    """Mean inspections per day of ``product`` in [since, until)."""
    days = max((until - since).total_seconds() / 86400.0, 1e-9)
    statement = (
        select(func.count())
        .select_from(Inspection)
        .where(*_time_filters(product, None, since, until))
    )
    with store.session() as session:
        return int(session.scalar(statement) or 0) / days
