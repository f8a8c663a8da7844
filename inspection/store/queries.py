"""SQL aggregations for the review dashboard, on SQLite and PostgreSQL, times in UTC.

Counts, rates and histograms read the hourly rollups (``store.rollups``), never the results
table, so a page costs the same at any size; windows count whole UTC hours. The review queue
pages by keyset over a covering index and counts up to a cap; reviewed parts are read live.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

import numpy as np
from sqlalchemy import Select, and_, func, literal, select, tuple_

from inspection.core.certificate import CONFIRMED_GOOD, AuditedPart
from inspection.store import rollups
from inspection.store.models import (
    REVIEW_CONFLICT,
    REVIEW_LABELS,
    Inspection,
    Review,
    StationBacklog,
    as_utc,
)
from inspection.store.rollups import HourlyRollup, ScoreRollup, hour_of
from inspection.store.store import Store, StoreError

Period = Literal["hour", "day"]
QueueKind = Literal["ng", "borderline", "ng_or_borderline", "audit", "all"]
QueueStatus = Literal["unreviewed", "reviewed", "conflict", "all"]
QueueOrder = Literal["score_desc", "newest", "oldest", "closest_to_threshold"]
PERIODS, QUEUE_KINDS = get_args(Period), get_args(QueueKind)
QUEUE_STATUSES, QUEUE_ORDERS = get_args(QueueStatus), get_args(QueueOrder)
GOOD_LABELS = CONFIRMED_GOOD  # review labels that confirm a part good
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
class BacklogRow:
    """A forwarding station's last report of its central backlog (``station_backlog``)."""

    station_id: str
    rows: int
    bytes: int
    oldest_age_s: float | None
    rate_per_s: float
    alarm_after_s: float | None
    reported_at: datetime
    quarantined: int = 0
    """Rows the central store refused for good, parked at the station."""


@dataclass(frozen=True)
class QueueQuery:
    """Which inspections the review queue shows. ``borderline``: OK with ``score >= threshold
    - margin`` (the row's threshold); ``audit``: the random audit sample, OK and NG alike."""

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


_QUEUE_COLUMNS = [getattr(Inspection, name) for name in QueueRow.__dataclass_fields__]


def _filters(
    table: Any,
    product: str | None,
    station_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[Any]:
    """Conditions on ``inspections`` (``created_at``) or a rollup table (``hour``: ``since`` and
    ``until`` count the whole hours they fall in)."""
    if table is Inspection:
        moment = table.created_at
    else:
        moment, since, until = table.hour, since and hour_of(since), until and hour_of(until)
    conditions = [table.product == product] if product else []
    if station_id:
        conditions.append(table.station_id == station_id)
    if since is not None:
        conditions.append(moment >= since)
    if until is not None:
        conditions.append(moment < until)
    return conditions


def _bucket(store: Store, period: Period, column: Any) -> Any:
    if period not in PERIODS:
        raise StoreError(f"period must be one of {list(PERIODS)}, got {period!r}")
    if store.engine.dialect.name == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' text
        length, padding = _SQLITE_BUCKETS[period]
        return func.substr(column, 1, length).concat(padding)
    return func.date_trunc(period, column)


def distinct_values(store: Store, column: Literal["product", "station_id"]) -> list[str]:
    """Sorted distinct products or stations that have inspections (read from the rollups)."""
    if column not in ("product", "station_id"):
        raise StoreError(f"column must be 'product' or 'station_id', got {column!r}")
    attribute = getattr(HourlyRollup, column)
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
    """Inspections, NG count, mean score and mean latency per time bucket, product and station
    (from ``rollup_hourly``: whole UTC hours)."""
    r = HourlyRollup
    bucket = _bucket(store, period, r.hour).label("bucket")
    total = func.sum(r.total)
    means = (func.sum(r.score_sum) / total, func.sum(r.latency_sum) / total)
    query = (
        select(bucket, r.product, r.station_id, total, func.sum(r.ng), *means)
        .where(*_filters(r, product, station_id, since, until))
        .group_by(bucket, r.product, r.station_id)
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
    """Per station and product: volume, NG, reviewed count, first/last seen, latency, model
    (from ``rollup_hourly``; the reviewed count through the label index)."""
    r = HourlyRollup
    total = func.sum(r.total)
    seen = (func.min(r.first_seen), func.max(r.last_seen))
    latency = (func.sum(r.latency_sum) / total, func.max(r.latency_max))
    query = (
        select(r.station_id, r.product, total, func.sum(r.ng), *seen, *latency)
        .where(*_filters(r, product, None, since, None))
        .group_by(r.station_id, r.product)
        .order_by(r.station_id, r.product)
    )
    with store.session() as session:
        rows = session.execute(query).all()
        reviewed = _reviewed_counts(session, since, product)
        models = _newest_models(session, since, product)
    return [
        StationRow(s, p, int(t), int(n or 0), reviewed.get((s, p), 0), as_utc(first),
                   as_utc(last), float(mean or 0.0), float(peak or 0.0), models.get((s, p), ""))
        for s, p, t, n, first, last, mean, peak in rows
    ]  # fmt: skip


def _reviewed_counts(session: Any, since: datetime | None, product: str | None) -> dict:
    """{(station, product): reviewed inspections since ``since``} (label index range scans)."""
    conditions = [Inspection.review_label.in_(REVIEW_LABELS)]
    conditions += _filters(Inspection, product, None, since and hour_of(since), None)
    query = (
        select(Inspection.station_id, Inspection.product, func.count())
        .where(*conditions)
        .group_by(Inspection.station_id, Inspection.product)
    )
    return {(s, p): int(n) for s, p, n in session.execute(query)}


def _newest_models(session: Any, since: datetime | None, product: str | None) -> dict:
    """{(station, product): the model version of its newest rollup hour} (later hours overwrite)."""
    r = HourlyRollup
    query = select(r.station_id, r.product, r.model_version).where(
        *_filters(r, product, None, since, None)
    )
    return {(s, p): model for s, p, model in session.execute(query.order_by(r.hour))}


def score_histogram(
    store: Store,
    product: str,
    *,
    bins: int = 100,
    since: datetime | None = None,
    until: datetime | None = None,
    exclude_labels: Sequence[str] = (),
    station_id: str | None = None,
) -> np.ndarray:
    """Counts of scores in ``bins`` equal bins over [0, 1]: (bins,) int64, 1.0 in the last.
    Read from ``rollup_scores`` (whole UTC hours; ``bins`` divides ``rollups.BINS``); parts
    reviewed with one of ``exclude_labels`` are read live and left out."""
    if not 1 <= bins <= rollups.BINS or rollups.BINS % bins:
        raise StoreError(f"bins must divide {rollups.BINS}, got {bins}")
    fine = np.zeros(rollups.BINS, dtype=np.int64)
    r = ScoreRollup
    query = (
        select(r.bin, func.sum(r.count))
        .where(*_filters(r, product, station_id, since, until))
        .group_by(r.bin)
    )
    excluded = select(Inspection.score).where(
        Inspection.review_label.in_(list(exclude_labels)),
        *_filters(
            Inspection, product, station_id, since and hour_of(since), until and hour_of(until)
        ),
    )
    with store.session() as session:
        for bin_index, count in session.execute(query):
            fine[bin_index] += int(count)
        if exclude_labels:
            for score in session.scalars(excluded):
                fine[rollups.bin_of(float(score))] -= 1
    return np.maximum(fine, 0).reshape(bins, -1).sum(axis=1)


def labelled_scores(
    store: Store,
    product: str,
    *,
    audit_only: bool = False,
    bundle_id: str | None = None,
    scale: str | None = None,
) -> list[tuple[float, str]]:
    """(score, latest review label) of every reviewed inspection of ``product``; with
    ``audit_only`` only those of the random audit sample; ``bundle_id``/``scale``: only those
    that bundle scored under that normalisation (``Inspection.score_scale``), one scale."""
    query = select(Inspection.score, Inspection.review_label).where(
        Inspection.product == product, Inspection.review_label.in_(REVIEW_LABELS)
    )
    if audit_only:
        query = query.where(Inspection.audit_sample)
    if bundle_id is not None:
        query = query.where(Inspection.bundle_id == bundle_id)
    if scale is not None:
        query = query.where(Inspection.score_scale == scale)
    with store.session() as session:
        return [(float(s), str(label)) for s, label in session.execute(query)]


def audit_parts(store: Store, product: str, *, since: datetime | None = None) -> list[AuditedPart]:
    """Every part of ``product``'s random audit sample (since ``since``), reviewed or not,
    oldest first: what ``core.certificate.select_audited`` cuts into review windows."""
    query = (
        select(Inspection.id, Inspection.bundle_id, Inspection.score, Inspection.station_id,
               Inspection.verdict, Inspection.review_label, Inspection.audit_rate,
               Inspection.score_scale)
        .where(Inspection.product == product, Inspection.audit_sample.is_(True),
               *_filters(Inspection, None, None, since, None))
        .order_by(Inspection.created_at, Inspection.id)
    )  # fmt: skip
    with store.session() as session:
        return [
            AuditedPart(str(i), str(b), float(s), str(st), str(v), label, rate, scale)
            for i, b, s, st, v, label, rate, scale in session.execute(query)
        ]


def defect_types(store: Store, product: str | None = None) -> list[str]:
    """Defect types reviewers have used before (for the type picker)."""
    query = select(Review.defect_type).where(Review.defect_type.is_not(None)).distinct()
    if product:
        query = query.join(Inspection, Inspection.id == Review.inspection_id).where(
            Inspection.product == product
        )
    with store.session() as session:
        return sorted(v for v in session.scalars(query) if v)


def _queue_conditions(query: QueueQuery, lowest: float | None) -> list[Any]:
    """``lowest``: the lowest score an NG or borderline part can have (from the rollups'
    thresholds), a range the score index answers; ``None`` when nothing is stored."""
    # Product, station and verdict are compared through coalesce() so that no index on them
    # competes with the sort-key index the queue walks (a planner picking (product, created_at)
    # or (verdict, created_at) would sort all of their rows for one page).
    conditions = _filters(Inspection, None, None, query.since, None)
    for column, value in (
        (Inspection.product, query.product),
        (Inspection.station_id, query.station_id),
    ):
        if value:
            conditions.append(func.coalesce(column, "") == value)
    near = Inspection.score >= Inspection.threshold - query.margin
    verdict = func.coalesce(Inspection.verdict, "")
    kinds = {
        "ng": verdict == "NG",
        "borderline": and_(verdict == "OK", near),
        "ng_or_borderline": near,  # an NG part scores >= its threshold (core rule)
        "audit": Inspection.audit_sample.is_(True),
    }
    conditions += [kinds[query.kind]] if query.kind in kinds else []
    if query.kind not in ("all", "audit") and lowest is not None:
        conditions.append(
            Inspection.score >= lowest - (0.0 if query.kind == "ng" else query.margin)
        )
    statuses = {
        "unreviewed": Inspection.review_label.is_(None),
        "reviewed": Inspection.review_label.is_not(None),
        "conflict": Inspection.review_label == REVIEW_CONFLICT,
    }
    return conditions + ([statuses[query.status]] if query.status in statuses else [])


def _lowest_threshold(session: Any, query: QueueQuery) -> float | None:
    r = HourlyRollup
    conditions = _filters(r, query.product, query.station_id, query.since, None)
    return session.scalar(select(func.min(r.threshold_min)).where(*conditions))


@dataclass(frozen=True)
class QueueCursor:
    """Where a queue page ended: the last row's sort key and id. The next page starts after
    it (keyset pagination: page 1000 costs what page 1 does)."""

    key: float | datetime
    id: str


_SORT_KEYS: dict[str, tuple[Any, Callable[[QueueRow], float | datetime]]] = {
    "score_desc": (Inspection.score, lambda row: row.score),
    "newest": (Inspection.created_at, lambda row: row.created_at),
    "oldest": (Inspection.created_at, lambda row: row.created_at),
    "closest_to_threshold": (
        func.abs(Inspection.score - Inspection.threshold),
        lambda row: abs(row.score - row.threshold),
    ),
}
"""Each order's sort key in SQL and as a cursor reads it from a row, side by side."""
_DESCENDING = ("score_desc", "newest")


def cursor_after(row: QueueRow, order: QueueOrder) -> QueueCursor:
    """The cursor that continues a queue ordered by ``order`` after ``row``."""
    return QueueCursor(_SORT_KEYS[order][1](row), row.id)


def _queue_order(order: QueueOrder) -> tuple[Any, Any]:
    key = _SORT_KEYS[order][0]
    return (key.desc(), Inspection.id.desc()) if order in _DESCENDING else (key, Inspection.id)


def review_queue(
    store: Store, query: QueueQuery, *, limit: int = 20, after: QueueCursor | None = None
) -> list[QueueRow]:
    """One page of the review queue: ``limit`` rows after ``after`` (from the start: None)."""
    if limit < 1:
        raise StoreError(f"a queue page needs limit >= 1, got {limit}")
    key = _SORT_KEYS[query.order][0]
    statement = select(*_QUEUE_COLUMNS).order_by(*_queue_order(query.order))
    if after is not None:
        position = tuple_(key, Inspection.id)
        bound = tuple_(literal(after.key, key.type), literal(after.id))
        statement = statement.where(
            position < bound if query.order in _DESCENDING else position > bound
        )
    with store.session() as session:
        conditions = _queue_conditions(query, _lowest_threshold(session, query))
        rows = session.execute(statement.where(*conditions).limit(limit)).all()
    return [QueueRow(*row[:1], as_utc(row[1]), *row[2:]) for row in rows]


def queue_anchor(store: Store, query: QueueQuery, position: int) -> QueueCursor | None:
    """The cursor after the queue's row at 0-based ``position`` (a page jump), ``None`` unless a
    row follows it; it reads sort keys and ids only, index entries (migration 0008)."""
    if position < 0:
        raise StoreError(f"a queue position must be >= 0, got {position}")
    statement = select(_SORT_KEYS[query.order][0], Inspection.id).order_by(
        *_queue_order(query.order)
    )
    with store.session() as session:
        conditions = _queue_conditions(query, _lowest_threshold(session, query))
        rows = session.execute(statement.where(*conditions).offset(position).limit(2)).all()
    if len(rows) < 2:
        return None
    key, row_id = rows[0]
    return QueueCursor(as_utc(key) if query.order in ("newest", "oldest") else float(key), row_id)


QUEUE_COUNT_CAP = 10_000
"""The queue counts its rows up to this many; beyond, pages say 'more than'."""


def count_review_queue(store: Store, query: QueueQuery, *, cap: int = QUEUE_COUNT_CAP) -> int:
    """How many inspections the queue holds, counted up to ``cap`` (O(cap), not O(table))."""
    with store.session() as session:
        conditions = _queue_conditions(query, _lowest_threshold(session, query))
        capped = select(Inspection.id).where(*conditions).limit(cap).subquery()
        return int(session.scalar(select(func.count()).select_from(capped)) or 0)


def daily_volume(store: Store, product: str, *, since: datetime, until: datetime) -> float:
    """Mean inspections per day of ``product`` in [since, until) (whole UTC hours, rollups)."""
    days = max((until - since).total_seconds() / 86400.0, 1e-9)
    r = HourlyRollup
    statement = select(func.sum(r.total)).where(*_filters(r, product, None, since, until))
    with store.session() as session:
        return int(session.scalar(statement) or 0) / days


PART_WINDOW = timedelta(hours=1)
"""How far apart in time the views of one part may be stored (``part_views``)."""


def part_views(
    store: Store,
    station_id: str,
    part_id: str,
    around: datetime,
    *,
    window: timedelta = PART_WINDOW,
) -> list[tuple[str | None, QueueRow]]:
    """(stored request id, row) of each view of part ``part_id`` at ``station_id`` stored
    within ``window`` of ``around``, oldest first (the window keeps the read on an index)."""
    with store.session() as session:
        rows = session.execute(part_views_statement(station_id, part_id, around, window)).all()
    return [(row[0], QueueRow(row[1], as_utc(row[2]), *row[3:])) for row in rows]


def part_views_statement(
    station_id: str, part_id: str, around: datetime, window: timedelta
) -> Select:
    """The SELECT of ``part_views`` (its plan is checked by the tests)."""
    return (
        select(Inspection.request_id, *_QUEUE_COLUMNS)
        .where(
            Inspection.station_id == station_id,
            Inspection.created_at >= around - window,
            Inspection.created_at <= around + window,
            Inspection.part_id == part_id,
        )
        .order_by(Inspection.created_at, Inspection.request_id)
    )


def station_backlogs(store: Store) -> list[BacklogRow]:
    """Every forwarding station's last backlog report, by station id (one row per station)."""
    b = StationBacklog
    columns = (b.backlog_rows, b.backlog_bytes, b.oldest_age_s, b.rate_per_s, b.alarm_after_s)
    query = select(b.station_id, *columns, b.reported_at, b.quarantined).order_by(b.station_id)
    with store.session() as session:
        rows = session.execute(query).all()
    return [
        BacklogRow(s, int(n), int(size), age, float(rate), alarm, as_utc(at), int(parked))
        for s, n, size, age, rate, alarm, at, parked in rows
    ]
