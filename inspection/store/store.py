"""Read/write API of the results store. Every layer talks to the database through here."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from inspection.core.certificate import CONFIRMED_GOOD
from inspection.core.errors import ConfigError, InspectionError
from inspection.store import rollups
from inspection.store.blobs import BlobStore
from inspection.store.central_link import store_link_args
from inspection.store.models import (
    REVIEW_CONFLICT,
    REVIEW_LABELS,
    SHA_COLUMNS,
    Inspection,
    OutboxEntry,
    OutboxMessage,
    Review,
    as_utc,
    utcnow,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Replicas sharing one PostgreSQL migrate under this advisory lock, one after another.
_MIGRATION_LOCK_KEY = 0x1D5EC7


class StoreError(InspectionError):
    """A store operation was refused (unknown id, bad label, ...)."""


class ReviewConflict(StoreError):
    """A label given on a stale view: another label was stored since the part was shown."""


@dataclass(frozen=True)
class SeenLabel:
    """An inspection's label and its reviewer as a reviewer was shown them (None: unreviewed)."""

    label: str | None
    reviewer: str | None


class StoreUnavailable(InspectionError):
    """The results database cannot be reached or upgraded (start-up, ``db`` commands)."""


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def schema_head() -> str | None:
    """The newest schema revision this code knows."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


@dataclass(frozen=True)
class InspectionFilter:
    """Filters for listing inspections; ``None`` means no filter."""

    product: str | None = None
    station_id: str | None = None
    verdict: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    review_label: str | None = None
    unreviewed: bool = False
    min_score: float | None = None
    max_score: float | None = None


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL; ``None`` for in-memory or other databases."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None


_URL_FORMS = "sqlite:///<file> or postgresql+psycopg://<user>:<password>@<host>:<port>/<db>"


def make_engine(url: str) -> Engine:
    """Engine for ``url``; a URL SQLAlchemy cannot use is a ``ConfigError`` naming the key."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"store_url: not a database URL; use {_URL_FORMS}") from None
    try:
        return _create_engine(url)
    except ArgumentError as exc:  # NoSuchModuleError: an unknown dialect or driver
        shown = parsed.render_as_string(hide_password=True)
        raise ConfigError(
            f"store_url: unknown database scheme {parsed.drivername!r} in {shown!r}; "
            f"use {_URL_FORMS}"
        ) from exc
    except ImportError as exc:  # the dialect is known but its driver package is missing
        raise ConfigError(
            f"store_url: the driver for {parsed.drivername!r} is not installed ({exc})"
        ) from exc


def _create_engine(url: str) -> Engine:
    """SQLite gets WAL, full fsync and a busy timeout; PostgreSQL verified TLS
    (``central_link.store_link_args``) and a liveness check per checkout."""
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return create_engine(url, pool_pre_ping=True)
    parsed.get_dialect()  # an unknown driver is named as such, before the TLS settings
    return create_engine(url, pool_pre_ping=True, connect_args=store_link_args(url))


class Store:
    """The results database plus its blob folder. Opening it never changes its schema:
    ``migrate()`` does (``db upgrade``, ``serve``, set-up); ``ensure_schema()`` creates an empty
    database's, so a shared database is never migrated as a side effect of reading it."""

    def __init__(self, url: str, blob_dir: str | Path) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.blobs = BlobStore(blob_dir)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def migrated(cls, url: str, blob_dir: str | Path) -> Store:
        """Open the store and bring its schema to the newest revision (set-up, ``serve``)."""
        store = cls(url, blob_dir)
        store.migrate()
        return store

    def migrate(self) -> None:
        """Bring the schema to the newest revision (``StoreUnavailable`` if it cannot). On
        PostgreSQL an advisory lock serialises replicas starting at once."""
        config = _alembic_config()
        with self._connect() as connection:
            try:
                with connection.begin():
                    if connection.dialect.name == "postgresql":
                        connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                        )
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
            except OperationalError as exc:
                raise StoreUnavailable(
                    f"results store {self._shown_url()}: upgrading the schema failed: "
                    f"{first_line(exc)}"
                ) from exc

    def schema_revision(self) -> str | None:
        """The database's Alembic revision; ``None`` for an empty database."""
        with self._connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def _connect(self) -> Connection:
        """A first connection, or ``StoreUnavailable`` in one line (start-up and schema paths
        only: request-time errors stay SQLAlchemy's, answered with 503)."""
        try:
            return self.engine.connect()
        except OperationalError as exc:
            raise StoreUnavailable(
                f"results store {self._shown_url()} unreachable: {first_line(exc)}"
            ) from exc

    def _shown_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def check_schema(self) -> None:
        """``StoreError`` unless the schema is at this code's head (a missing SQLite file is
        reported, not created)."""
        path = sqlite_file(self.url)
        missing = path is not None and not path.exists()
        current, head = (None if missing else self.schema_revision()), schema_head()
        if current != head:
            found = f"revision {current}" if current else "no schema"
            raise StoreError(
                f"the results database ({self._shown_url()}) "
                f"has {found}, this version needs {head}: run 'inspection db upgrade'"
            )

    def ensure_schema(self) -> None:
        """Create an empty database's schema, else ``check_schema()``; a SQLite file made by a
        failed first use is removed again."""
        path = sqlite_file(self.url)
        existed = path is None or path.exists()
        try:
            if self.schema_revision() is None:
                self.migrate()
            self.check_schema()
        except Exception:
            if not existed:
                self.engine.dispose()
                for leftover in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
                    leftover.unlink(missing_ok=True)
            raise

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # ------------------------------------------------------------- inspections
    def add_inspection(self, *, outbox: Sequence[OutboxEntry] = (), **fields: Any) -> Inspection:
        """Insert one inspection with its ``outbox`` messages in one commit; a repeated
        ``request_id`` returns the first row. On PostgreSQL (unique by request id and time
        only, migration 0011) writers of one request id take turns under an advisory lock."""
        fields.setdefault("id", uuid.uuid4().hex)
        fields.setdefault("created_at", utcnow())
        row = Inspection(**fields)
        request_id = fields.get("request_id")
        try:
            with self.session() as session:
                if request_id and session.get_bind().dialect.name == "postgresql":
                    session.execute(
                        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": request_id}
                    )
                    if (existing := _by_request_id(session, request_id)) is not None:
                        return existing
                session.add(row)
                rollups.record(session, [row])  # the dashboard's hourly aggregates, same commit
                session.add_all(_outbox_message(row, entry) for entry in outbox)
        except IntegrityError:
            existing = self.find_by_request_id(request_id) if request_id else None
            if existing is None:
                raise
            return existing
        return row

    def find_by_request_id(self, request_id: str) -> Inspection | None:
        with self.session() as session:
            return _by_request_id(session, request_id)

    def station_has_blob(self, station_id: str, sha: str) -> bool:
        """Whether any inspection of ``station_id`` names blob ``sha`` (an index probe a column)."""
        probes = [
            select(Inspection.id).where(column == sha, Inspection.station_id == station_id).limit(1)
            for column in (getattr(Inspection, name) for name in SHA_COLUMNS)
        ]
        with self.session() as session:
            return any(session.scalar(probe) is not None for probe in probes)

    def get_inspection(self, inspection_id: str) -> Inspection:
        with self.session() as session:
            row = session.get(Inspection, inspection_id)
            if row is None:
                raise StoreError(f"no inspection with id {inspection_id!r}")
            return row

    def list_inspections(
        self, filters: InspectionFilter = InspectionFilter(), *, limit: int = 50, offset: int = 0
    ) -> list[Inspection]:
        """Newest first, paged."""
        newest = (Inspection.created_at.desc(), Inspection.id)
        query = _filtered(select(Inspection), filters).order_by(*newest).limit(limit).offset(offset)
        with self.session() as session:
            return list(session.scalars(query))

    def count_inspections(self, filters: InspectionFilter = InspectionFilter()) -> int:
        query = _filtered(select(func.count()).select_from(Inspection), filters)
        with self.session() as session:
            return int(session.scalar(query) or 0)

    # ------------------------------------------------------------------ reviews
    def add_review(
        self,
        inspection_id: str,
        *,
        label: str,
        reviewer: str,
        defect_type: str | None = None,
        note: str | None = None,
        region_sha: str | None = None,
        outbox: Sequence[str] = (),
        seen: SeenLabel | None = None,
        settles: bool = False,
    ) -> Review:
        """Record a review label (audit trail) and mirror on the inspection what it decides
        (``review_outcome``: the label, or ``REVIEW_CONFLICT`` until a label that ``settles``,
        an admin's). ``region_sha``: the mask blob of the defect region the reviewer painted (a
        ``defect`` label only; without one, the region another reviewer painted stays).
        ``seen``: what the reviewer was shown; ``ReviewConflict`` naming who labelled the part
        since. ``outbox``: sinks the review waits for (key: its id), in the same transaction."""
        if label not in REVIEW_LABELS:
            raise StoreError(f"review label must be one of {list(REVIEW_LABELS)}, got {label!r}")
        if not reviewer or not reviewer.strip():
            raise StoreError("a review needs the reviewer's name")
        if region_sha is not None and label != "defect":
            raise StoreError(f"only a 'defect' review marks a region, got label {label!r}")
        if region_sha is not None and not self.blobs.exists(region_sha):
            raise StoreError(f"region blob {region_sha!r} is not in the blob store; put it first")
        with self.session() as session:
            row = _claimed(session, inspection_id, seen)
            review = Review(
                inspection_id=inspection_id,
                label=label,
                defect_type=defect_type if label == "defect" else None,
                reviewer=reviewer.strip(),
                note=note,
                region_sha=region_sha,
                settles=settles,
            )
            session.add(review)
            session.flush()
            session.add_all(
                OutboxMessage(
                    inspection_id=inspection_id, key=str(review.id), sink=sink, payload="0"
                )
                for sink in outbox
            )
            outcome = review_outcome(row.review_label, row.reviewed_by, review, settles=settles)
            if outcome == label:
                if region_sha is None and label == "defect" and row.reviewed_by != review.reviewer:
                    region_sha = row.review_region_sha  # another reviewer's region stays
                row.review_defect_type = review.defect_type
                row.review_region_sha = region_sha
            row.review_label = outcome
            row.reviewed_by = review.reviewer
            row.reviewed_at = review.created_at
        return review

    def reviews_of(self, inspection_id: str) -> list[Review]:
        with self.session() as session:
            query = select(Review).where(Review.inspection_id == inspection_id).order_by(Review.id)
            return list(session.scalars(query))

    def reviewed(
        self, product: str, labels: Sequence[str], *, since: datetime | None = None
    ) -> list[Inspection]:
        """Inspections of ``product`` whose latest review label is in ``labels``, oldest first."""
        query = select(Inspection).where(
            Inspection.product == product, Inspection.review_label.in_(list(labels))
        )
        if since is not None:
            query = query.where(Inspection.reviewed_at > since)
        with self.session() as session:
            return list(session.scalars(query.order_by(Inspection.reviewed_at)))


def review_outcome(
    current: str | None, current_by: str | None, review: Review, *, settles: bool
) -> str:
    """The inspection's label once ``review`` is added where ``current`` (by ``current_by``)
    stands: its label, unless another reviewer said otherwise about the part (a defect
    against a good part, or unsure against either; ``false_alarm`` and ``good`` agree), which
    is ``REVIEW_CONFLICT`` until a review that ``settles``. A reviewer changes their own label;
    an ``unsure`` yields to any label."""
    if settles or current is None:
        return review.label
    if current == REVIEW_CONFLICT:
        return REVIEW_CONFLICT
    if (
        current_by == review.reviewer
        or current == "unsure"
        or _part(current) == _part(review.label)
    ):
        return review.label
    return REVIEW_CONFLICT


def _part(label: str) -> str:
    """What a label says about the part: ``good`` for every label in ``CONFIRMED_GOOD``."""
    return "good" if label in CONFIRMED_GOOD else label


def _claimed(session: Session, inspection_id: str, seen: SeenLabel | None) -> Inspection:
    """The inspection, its row write-locked first (an UPDATE: two reviewers take turns on
    SQLite and PostgreSQL alike) where its label is still the one ``seen``; else
    ``ReviewConflict`` naming who labelled it since (``StoreError``: no such inspection)."""
    still = [] if seen is None else [
        Inspection.review_label.is_not_distinct_from(seen.label),
        Inspection.reviewed_by.is_not_distinct_from(seen.reviewer),
    ]  # fmt: skip
    claim = update(Inspection).where(Inspection.id == inspection_id, *still)
    claimed = session.execute(
        claim.values(reviewed_at=Inspection.reviewed_at),
        execution_options={"synchronize_session": False},
    ).rowcount
    row = session.get(Inspection, inspection_id, populate_existing=True)
    if row is None:
        raise StoreError(f"no inspection with id {inspection_id!r}")
    if not claimed:
        raise ReviewConflict(
            f"inspection {inspection_id} was labelled {row.review_label!r} by {row.reviewed_by} "
            f"at {as_utc(row.reviewed_at):%Y-%m-%d %H:%M:%S} UTC after it was shown to you; "
            "reload it: a different label then leaves the part to an admin to settle"
        )
    return row


def _by_request_id(session: Session, request_id: str) -> Inspection | None:
    return session.scalar(select(Inspection).where(Inspection.request_id == request_id))


def _outbox_message(row: Inspection, entry: OutboxEntry) -> OutboxMessage:
    delivered = row.created_at if entry.delivered else None
    return OutboxMessage(
        inspection_id=row.id, key=entry.key, sink=entry.sink, payload=entry.payload,
        delivered_at=delivered,
    )  # fmt: skip


def first_line(exc: BaseException) -> str:
    """The driver's first line, without SQLAlchemy's statement and background link."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(exc).__name__])[0].strip()


_FILTERS: dict[str, Callable[[Any], Any]] = {
    "product": lambda v: Inspection.product == v,
    "station_id": lambda v: Inspection.station_id == v,
    "verdict": lambda v: Inspection.verdict == v,
    "since": lambda v: Inspection.created_at >= v,
    "until": lambda v: Inspection.created_at < v,
    "review_label": lambda v: Inspection.review_label == v,
    "unreviewed": lambda _: Inspection.review_label.is_(None),
    "min_score": lambda v: Inspection.score >= v,
    "max_score": lambda v: Inspection.score <= v,
}
"""``InspectionFilter``'s fields as conditions; a field at ``None``, ``""`` or ``False`` is off."""


def _filtered(query: Any, filters: InspectionFilter) -> Any:
    values = {name: getattr(filters, name) for name in _FILTERS}
    on = {name: v for name, v in values.items() if v is not None and v is not False and v != ""}
    return query.where(*(_FILTERS[name](value) for name, value in on.items()))
