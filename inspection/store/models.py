"""Results-store schema (SQLAlchemy 2.0). Alembic migrations mirror these tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

REVIEW_LABELS: tuple[str, ...] = ("defect", "false_alarm", "good", "unsure")
"""Reviewer labels: a true defect, an NG that was a good part, a confirmed good part, unsure."""
REVIEW_CONFLICT = "conflict"
"""``inspections.review_label`` while two reviewers disagree about a part (``store.review_outcome``):
no reviewer label, so retraining, certification and thresholds leave the part out until an
admin's label settles it; every label stays in ``reviews``."""


@dataclass(frozen=True)
class OutboxEntry:
    """One message to enqueue with an inspection: ``payload`` (JSON text) for ``sink``;
    ``delivered``: kept as delivered when written (a record no sink takes)."""

    sink: str
    key: str
    payload: str
    delivered: bool = False


SHA_COLUMNS: tuple[str, ...] = ("image_sha", "map_sha", "mask_sha", "overlay_sha")
"""The inspection columns that name a blob."""
ARTEFACTS = {"image": "image_sha", "overlay": "overlay_sha", "mask": "mask_sha", "map": "map_sha"}
"""Each blob's name in the API's and the payloads' links, and its column."""

REQUEST_KEY_LENGTH = 160
"""Stored idempotency keys are ``<station id (<= 64)>/<request id (<= 80)>``."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | str) -> datetime:
    """A timezone-aware UTC datetime from a database value: SQLite hands back naive datetimes
    (and its hour buckets as text), written in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[Any]: JSON}


class Inspection(Base):
    """One inspected image and its result. Written once; only the review fields change."""

    __tablename__ = "inspections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_KEY_LENGTH), unique=True)
    payload_digest: Mapped[str | None] = mapped_column(String(64))
    """sha256 of the uploaded bytes: a replayed request id must carry the same payload."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    """When the station says it inspected the part (its own clock): the partition key."""
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the store received the row: on PostgreSQL its own clock, set by a trigger whatever
    the writer sends (migration 0013); retention ages rows by it too. ``None`` (SQLite, a
    station's one clock; rows from before 0013): aged by ``created_at`` alone."""
    clock_skewed: Mapped[bool] = mapped_column(Boolean, server_default=false())
    """``created_at`` was further from ``received_at`` than the central tolerance: kept, counted."""
    product: Mapped[str] = mapped_column(String(64))
    station_id: Mapped[str] = mapped_column(String(64))
    part_id: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16), default="api")  # api | watch | import
    source_name: Mapped[str | None] = mapped_column(String(512))
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(2))  # OK | NG
    model_version: Mapped[str] = mapped_column(String(128))
    bundle_id: Mapped[str] = mapped_column(String(128))
    latency_ms: Mapped[float] = mapped_column(Float)
    mask_source: Mapped[str] = mapped_column(String(32), default="raw")
    regions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    image_sha: Mapped[str] = mapped_column(String(64))
    map_sha: Mapped[str | None] = mapped_column(String(64))
    mask_sha: Mapped[str | None] = mapped_column(String(64))
    overlay_sha: Mapped[str | None] = mapped_column(String(64))
    review_label: Mapped[str | None] = mapped_column(String(16))
    review_defect_type: Mapped[str | None] = mapped_column(String(64))
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    review_region_sha: Mapped[str | None] = mapped_column(String(64))
    """The latest review's painted defect region (a mask blob), mirrored like its label."""
    audit_sample: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Chosen at write time into the random audit sample (kept with its blobs by retention)."""
    audit_rate: Mapped[int | None] = mapped_column(Integer)
    """An audit part's station drew 1 in this many (its inclusion probability's inverse: the
    weight certification gives it, migration 0017); None: not an audit part, or before 0017."""
    score_scale: Mapped[str | None] = mapped_column(String(16))
    """The fingerprint of the normalisation ``score`` was scaled under
    (``core.calibration.Normalization.fingerprint``): a re-calibrated station's differs from
    its bundle's signed one (migration 0017); None: stored before."""
    blobs_pruned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set when retention removed this row's blobs; its ``*_sha`` fields then name no file."""

    reviews: Mapped[list[Review]] = relationship(back_populates="inspection", order_by="Review.id")

    __table_args__ = (
        Index("ix_inspections_created", "created_at"),
        Index("ix_inspections_product_created", "product", "created_at"),
        Index("ix_inspections_station_created", "station_id", "created_at"),
        Index("ix_inspections_verdict_created", "verdict", "created_at"),
        Index(  # reviewed rows only: the Thresholds page's scores from the index (0008)
            "ix_inspections_reviewed",
            "product",
            "review_label",
            "audit_sample",
            "score",
            sqlite_where=text("review_label IS NOT NULL"),
            postgresql_where=text("review_label IS NOT NULL"),
        ),
        Index("ix_inspections_blobs_held", "product", "blobs_pruned_at", "created_at"),
        Index(  # the few rows a wrong clock stamped: counted, and guard their month (0013)
            "ix_inspections_skewed",
            "station_id",
            "created_at",
            sqlite_where=text("clock_skewed"),
            postgresql_where=text("clock_skewed"),
        ),
        *(Index(f"ix_inspections_{c}", c) for c in SHA_COLUMNS),
    )


class Review(Base):
    """Append-only audit trail of review labels; the latest is mirrored on the inspection."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[str] = mapped_column(ForeignKey("inspections.id"), index=True)
    label: Mapped[str] = mapped_column(String(16))
    defect_type: Mapped[str | None] = mapped_column(String(64))
    reviewer: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    origin: Mapped[str | None] = mapped_column(String(160), unique=True)
    """``<station role>/<its review id>`` of a review forwarded from a station (migration 0013);
    ``None``: made here."""
    settles: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """An admin's label, which settles reviewers' conflict (``store.review_outcome``; migration
    0019): forwarded with it, so the central store decides the part as the station did."""
    region_sha: Mapped[str | None] = mapped_column(String(64), index=True)
    """The defect region the reviewer painted: a (H, W) 0/255 PNG mask blob at the image's size
    (``None``: no region drawn). Indexed: retention asks whether a blob is still referenced."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    inspection: Mapped[Inspection] = relationship(back_populates="reviews")


class ApiToken(Base):
    """A station's API token, stored as a sha256 hash (tokens are 256-bit random)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(String(64), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16), default="station", server_default="station")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DashboardUser(Base):
    """A reviewer or admin of the dashboard: an Argon2id password hash, never the password, and
    the lockout state kept across sessions."""

    __tablename__ = "dashboard_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("name", name="uq_dashboard_users_name"),)


class OutboxMessage(Base):
    """A result waiting for one sink, written in the inspection's own transaction; ``key`` is
    the idempotency key the sink sees, ``delivered_at`` set once it acknowledged (at least once)."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[str] = mapped_column(ForeignKey("inspections.id"))
    key: Mapped[str] = mapped_column(String(REQUEST_KEY_LENGTH))
    sink: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    quarantined_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set when the sink refused the message for good (``last_error`` says why): it waits
    aside, counted and alarmed, and the messages after it flow (migration 0013)."""

    __table_args__ = (
        UniqueConstraint("key", "sink", name="uq_outbox_key_sink"),
        Index("ix_outbox_pending", "sink", "delivered_at", "next_attempt_at"),
        Index("ix_outbox_delivered", "delivered_at"),
        Index("ix_outbox_inspection", "inspection_id", "sink"),  # migration 0015
    )


class StationBacklog(Base):
    """A forwarding station's last report of its central backlog (``store.forward``): one row per
    station role, upserted every few seconds; ``reported_at`` is the central clock."""

    __tablename__ = "station_backlog"

    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    backlog_rows: Mapped[int] = mapped_column(BigInteger)
    backlog_bytes: Mapped[int] = mapped_column(BigInteger)
    oldest_age_s: Mapped[float | None] = mapped_column(Float)
    """The oldest waiting result's age when reported; None: nothing waits."""
    rate_per_s: Mapped[float] = mapped_column(Float)
    """Rows forwarded per second over the minute before the report."""
    alarm_after_s: Mapped[float | None] = mapped_column(Float)
    quarantined: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Messages the central store refused for good, parked at the station (migration 0013)."""
    """The station's ``central.alarm_after_seconds``; None: not told (the dashboard's default)."""
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PruneClock(Base):
    """The time the last prune trusted (``store.trusted_clock``): one row (``id`` 1), kept in the
    store itself so a backup and restore of the database keeps it (migration 0018)."""

    __tablename__ = "prune_clock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wall: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """The trusted time of that prune (UTC)."""
    boot: Mapped[str | None] = mapped_column(String(64))
    """The machine's boot id then (``/proc/sys/kernel/random/boot_id``); None: unknown."""
    monotonic: Mapped[float] = mapped_column(Float)
    """The monotonic clock then (seconds), for the next prune in the same boot."""
