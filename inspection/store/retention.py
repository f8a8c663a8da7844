"""Retention: which results and blobs are kept, for how long, and the prune that enforces it
(docs/retention.md).

Per product (``KeepPolicy`` over ``configs/retention.yaml``'s defaults): good parts keep their
blobs ``blob_days``, NG, reviewed and audit parts ``kept_blob_days``, rows ``row_days``. Never
touched: rows a retraining run used, rows with an undelivered outbox message, blobs of a part
still waiting for the central store. Past ``disk_budget_gb`` (a long outage),
``over_budget: drop_good_images`` strips good parts' blobs oldest first, counted and alarmed.

A row goes only when both its station time (``created_at``) and the store's receive time
(``received_at``) are past the window, so a station clock that jumped back loses nothing.
On a partitioned store whole months past every product's window are dropped first.

``prune`` works in short transactions of ``batch_size`` rows: rows are changed first, files
removed after the commit, so a crash leaves at worst unreferenced files, never a row pointing
at a missing file; each run's sweep removes files no row references.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from croniter import croniter
from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from sqlalchemy import and_, delete, exists, func, or_, select, text, tuple_, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from inspection.core.config import deep_merge, from_mapping, read_yaml, to_mapping
from inspection.core.errors import ConfigError
from inspection.core.registry import Registry
from inspection.core.retrain_report import RetrainEvent
from inspection.store import partitions, request_keys
from inspection.store.forward import CENTRAL
from inspection.store.models import Inspection, OutboxMessage, Review
from inspection.store.store import Store, sqlite_file
from inspection.store.trusted_clock import trusted_now

log = logging.getLogger(__name__)
_BLOB_COLUMNS = (Inspection.map_sha, Inspection.mask_sha, Inspection.overlay_sha, Review.region_sha)
"""Columns naming a blob a row holds (a painted review region lives as long as its review)."""
RETENTION_CONFIG_NAME = "retention.yaml"
GB = 1024**3


@dataclass(frozen=True)
class KeepPolicy:
    """How long one product's results are kept (days; ``None`` = forever) and what a good
    part stores. ``good_overlay`` / ``good_map``: store the overlay JPEG / 8-bit anomaly-map
    PNG of OK parts (audit-sample parts always keep their map)."""

    blob_days: float = 7.0
    kept_blob_days: float | None = 90.0
    row_days: float | None = 365.0
    good_overlay: bool = False
    good_map: bool = True

    def __post_init__(self) -> None:
        for name in ("blob_days", "kept_blob_days", "row_days"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name}: must be >= 0 days, got {value}")
        longest_blobs = _days(self.kept_blob_days)
        if _days(self.row_days) < max(longest_blobs, self.blob_days):
            raise ConfigError(
                f"row_days: result rows must be kept at least as long as their blobs "
                f"(blob_days {self.blob_days}, kept_blob_days {self.kept_blob_days}), "
                f"got {self.row_days}"
            )
        if longest_blobs < self.blob_days:
            raise ConfigError(
                f"kept_blob_days: NG/reviewed/audit parts must be kept at least as long as "
                f"good ones (blob_days {self.blob_days}), got {self.kept_blob_days}"
            )


def _days(value: float | None) -> float:
    """Days, with ``None`` (forever) as infinity."""
    return float("inf") if value is None else value


@dataclass(frozen=True)
class RetentionConfig:
    """``configs/retention.yaml``: site defaults, per-product overrides, the prune's pace and the
    disk budget. ``audit_rate``: 1 in N parts is audited (0: none); ``grace_minutes``: younger blob
    files are never removed (a write in flight); the alarm goes at ``alarm_fraction`` of the budget."""

    default: KeepPolicy = KeepPolicy()
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    audit_rate: int = 500
    outbox_days: float = 7.0
    batch_size: int = 500
    pause_seconds: float = 0.05
    grace_minutes: float = 60.0
    disk_budget_gb: float | None = None
    alarm_fraction: float = 0.8
    metrics_file: Path | None = None
    """Prometheus text file the prune writes its storage gauges to (node_exporter textfile
    collector); ``None``: ``storage.prom`` beside the blob folder."""
    prune_schedule: str = "17 * * * *"
    """Cron schedule on which ``inspection scheduler`` runs the prune (local time)."""
    over_budget: Literal["drop_good_images", "alarm"] = "drop_good_images"
    """Past ``disk_budget_gb``: strip ordinary good parts' blobs (oldest first, also those
    waiting for the central store) until under it, or only raise the alarm."""
    clock_skew_seconds: float = 300.0
    """A result whose station time is further than this from the central store's receive time
    is flagged ``clock_skewed`` (PostgreSQL; the prune sets the central tolerance)."""
    clock_jump_days: float = 7.0
    """After a restart, a clock further than this past the last scheduled prune is not trusted:
    the prune refuses until run with ``--trust-clock`` (``store.trusted_clock``)."""

    def __post_init__(self) -> None:
        if not croniter.is_valid(self.prune_schedule):
            raise ConfigError(f"prune_schedule: not a cron schedule: {self.prune_schedule!r}")
        if self.audit_rate < 0:
            raise ConfigError(f"audit_rate: 1 in N parts, N >= 0; got {self.audit_rate}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {self.batch_size}")
        if not 0 < self.alarm_fraction <= 1:
            raise ConfigError(f"alarm_fraction: must be in (0, 1], got {self.alarm_fraction}")
        if self.disk_budget_gb is not None and self.disk_budget_gb <= 0:
            raise ConfigError(f"disk_budget_gb: must be > 0, got {self.disk_budget_gb}")
        if self.clock_jump_days <= 0:
            raise ConfigError(f"clock_jump_days: must be > 0, got {self.clock_jump_days}")
        if self.clock_skew_seconds <= 0:
            raise ConfigError(f"clock_skew_seconds: must be > 0, got {self.clock_skew_seconds}")
        for product in self.products:
            self.policy(product)  # a bad override fails at load, naming the product

    def policy(self, product: str) -> KeepPolicy:
        """The product's policy: its override merged onto ``default``."""
        override = self.products.get(product)
        if not override:
            return self.default
        merged = deep_merge(to_mapping(self.default), override)
        return from_mapping(KeepPolicy, merged, f"products.{product}")


def load_retention(configs_dir: Path) -> RetentionConfig:
    """``<configs_dir>/retention.yaml``; the defaults when there is none."""
    path = Path(configs_dir) / RETENTION_CONFIG_NAME
    if not path.is_file():
        return RetentionConfig()
    return from_mapping(RetentionConfig, read_yaml(path), str(path))


def training_references(registry_dir: Path, products: Iterable[str]) -> frozenset[str]:
    """Inspection ids any recorded retraining run used or will retry (never pruned)."""
    registry = Registry(registry_dir)
    ids: set[str] = set()
    for product in products:
        for event in registry.journal.events(product):
            if event.get("action") == "retrain":
                run = RetrainEvent.from_event(event, f"{product} retrain event")
                ids.update(run.reviewed_good_ids, run.skipped_review_ids)
    return frozenset(ids)


@dataclass
class PruneReport:
    """What one prune run did, and the storage it left."""

    stripped: int = 0
    """Rows whose blobs were removed (the row kept)."""
    rows_deleted: int = 0
    """Rows deleted, those of the dropped partitions included."""
    partitions_dropped: int = 0
    partitions_failed: int = 0
    """Months ``partitions.upkeep`` could not make this run (logged; the next run retries)."""
    clock_skewed: int = 0
    """Rows held whose station clock was off the store's (``Inspection.clock_skewed``)."""
    outbox_deleted: int = 0
    files_removed: int = 0
    bytes_removed: int = 0
    blob_bytes: int = 0
    blob_files: int = 0
    database_bytes: int | None = None
    budget_bytes: int | None = None
    alarm: bool = False
    dropped: int = 0
    """Good parts whose blobs went to get back under the budget (``over_budget``)."""
    dropped_waiting: int = 0
    """Of ``dropped``, those still waiting for the central store: they arrive without blobs."""
    clock_refused: bool = False
    """The clock was not trusted (``store.trusted_clock``): nothing was pruned."""
    seconds: float = 0.0

    @property
    def used_bytes(self) -> int:
        return self.blob_bytes + (self.database_bytes or 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"used_bytes": self.used_bytes}

    def summary(self) -> str:
        if self.clock_refused:
            return "prune REFUSED: the clock is not trusted (see the log); nothing deleted"
        budget = "" if self.budget_bytes is None else f" of {self.budget_bytes / 1e9:.2f} GB"
        return (
            f"pruned in {self.seconds:.1f} s: {self.stripped} rows lost their blobs, "
            f"{self.rows_deleted} rows ({self.partitions_dropped} whole months) and "
            f"{self.outbox_deleted} delivered messages deleted, "
            f"{self.files_removed} files ({self.bytes_removed / 1e6:.1f} MB) removed; now "
            f"{self.used_bytes / 1e9:.2f} GB{budget} in {self.blob_files} blobs + database"
            f"{'; STORAGE ALARM' if self.alarm else ''}"
            f"{f'; over budget: {self.dropped} good parts lost their blobs' if self.dropped else ''}"
            f"{f'; {self.clock_skewed} rows with a skewed station clock kept' if self.clock_skewed else ''}"
            f"{f'; {self.partitions_failed} months not made' if self.partitions_failed else ''}"
        )


@dataclass(frozen=True)
class _Pass:
    """One selection of rows to process in keyset batches."""

    where: Any
    act: Callable[[Session, list[Any]], int]


def prune(
    store: Store,
    config: RetentionConfig,
    *,
    protected: Collection[str] = frozenset(),
    now: datetime | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> PruneReport:
    """Enforce ``config`` on ``store`` once (see module doc). ``protected``: inspection ids
    never touched (``training_references``). ``on_batch(step, n)`` is told of each batch."""
    started = time.perf_counter()
    now = now or datetime.now(timezone.utc)
    report = PruneReport()
    grace = config.grace_minutes * 60.0
    report.files_removed, report.bytes_removed = _discard(store, [], grace)  # a crash's leftovers
    _drop_partitions(store, config, frozenset(protected), now, report)
    for product in _products(store):
        policy = config.policy(product)
        for step, pass_ in _passes(product, policy, now, frozenset(protected)).items():
            done = _run_pass(store, pass_, config, lambda n, s=step: on_batch and on_batch(s, n))
            if step == "rows":
                report.rows_deleted += done
            else:
                report.stripped += done
    report.outbox_deleted = _prune_outbox(store, config, now - timedelta(days=config.outbox_days))
    _sweep(store, config, report)
    report.database_bytes = database_bytes(store)
    if config.over_budget == "drop_good_images" and _over_budget(
        store, report, config, protected, now
    ):
        report.blob_bytes = report.blob_files = 0
        _sweep(store, config, report)
    _check_budget(report, config)
    with store.session() as session:
        skewed = select(func.count()).select_from(Inspection).where(Inspection.clock_skewed)
        report.clock_skewed = int(session.scalar(skewed) or 0)
    report.seconds = time.perf_counter() - started
    return report


def _passes(
    product: str, policy: KeepPolicy, now: datetime, protected: frozenset[str]
) -> dict[str, _Pass]:
    """Strip ordinary good parts, strip kept parts, delete old rows (in this order)."""
    kept = or_(
        Inspection.verdict == "NG",
        Inspection.review_label.is_not(None),
        Inspection.audit_sample.is_(True),
    )
    holding = and_(
        Inspection.product == product, Inspection.blobs_pruned_at.is_(None), ~_waiting_central()
    )
    passes = {"strip": _Pass(and_(holding, _older(now, policy.blob_days), ~kept), _strip(now))}
    if policy.kept_blob_days is not None:
        passes["strip_kept"] = _Pass(
            and_(holding, _older(now, policy.kept_blob_days), kept), _strip(now)
        )
    if policy.row_days is not None:
        undelivered = exists().where(
            OutboxMessage.inspection_id == Inspection.id, OutboxMessage.delivered_at.is_(None)
        )
        stripped = Inspection.product == product, Inspection.blobs_pruned_at.is_not(None)
        old = and_(*stripped, _older(now, policy.row_days), ~undelivered)
        passes["rows"] = _Pass(old, _delete_rows)
    return {step: _Pass(_not_protected(p.where, protected), p.act) for step, p in passes.items()}


def _drop_partitions(
    store: Store,
    config: RetentionConfig,
    protected: frozenset[str],
    now: datetime,
    report: PruneReport,
) -> None:
    """Create the coming months, drop the months past every product's ``row_days`` (module
    doc); a month whose ``DROP`` waits over 10 s for its lock is left to the next run."""
    with store.engine.begin() as connection:
        if not partitions.partitioned(connection):
            return
        tolerance = {"s": config.clock_skew_seconds}
        connection.execute(text("UPDATE central_clock SET skew_tolerance_s = :s"), tolerance)
    report.partitions_failed = len(partitions.upkeep(store.engine, now)[1])
    with store.engine.begin() as connection:
        months = partitions.partitions(connection)
    days = [config.policy(product).row_days for product in _products(store)]
    if not days or None in days:
        return
    cutoff = now - timedelta(days=max(d for d in days if d is not None))
    for month in months:
        if month.end is None or month.end + timedelta(seconds=config.clock_skew_seconds) > cutoff:
            continue
        inside = Inspection.created_at >= month.start, Inspection.created_at < month.end
        late = select(Inspection.id).where(
            *inside, Inspection.clock_skewed, Inspection.received_at >= cutoff
        )
        waiting = (
            select(OutboxMessage.id)
            .join(Inspection, Inspection.id == OutboxMessage.inspection_id)
            .where(OutboxMessage.delivered_at.is_(None), *inside)
        )
        kept = select(Inspection.id).where(Inspection.id.in_(protected), *inside)
        ids = select(Inspection.id).where(*inside)
        try:
            with store.session() as session:
                if session.scalar(select(exists(waiting) | exists(late))) or (
                    protected and session.scalar(select(exists(kept)))
                ):
                    continue
                rows = session.scalar(select(func.count()).select_from(Inspection).where(*inside))
                session.execute(delete(Review).where(Review.inspection_id.in_(ids)))
                session.execute(delete(OutboxMessage).where(OutboxMessage.inspection_id.in_(ids)))
                session.execute(text("SET LOCAL lock_timeout = '10s'"))
                request_keys.release(session.connection(), month.start, month.end)
                session.execute(text(f'DROP TABLE "{month.name}"'))
        except OperationalError as exc:
            log.warning("partition %s kept until the next prune: %s", month.name, exc.orig)
            continue
        report.rows_deleted += rows or 0
        report.partitions_dropped += 1


def _waiting_central() -> Any:
    """Rows still waiting for the central store: one uncorrelated read of the pending
    messages (``ix_outbox_pending``), not a probe per row."""
    pending = OutboxMessage.sink == CENTRAL, OutboxMessage.delivered_at.is_(None)
    return Inspection.id.in_(select(OutboxMessage.inspection_id).where(*pending))


def _over_budget(
    store: Store,
    report: PruneReport,
    config: RetentionConfig,
    protected: Collection[str],
    now: datetime,
) -> bool:
    """Strip ordinary good parts' blobs, oldest first, until the bytes they free bring
    storage under ``disk_budget_gb``; count them. Returns whether anything was stripped."""
    if config.disk_budget_gb is None:
        return False
    excess = report.used_bytes - config.disk_budget_gb * GB
    ordinary = and_(
        Inspection.blobs_pruned_at.is_(None),
        Inspection.verdict == "OK",
        Inspection.review_label.is_(None),
        Inspection.audit_sample.is_(False),
    )
    where = _not_protected(ordinary, frozenset(protected))
    for batch in _keyset_batches(store, where, config.batch_size) if excess > 0 else ():
        # image, map and overlay: a good part's all-zero mask is shared, it frees nothing
        shas = {sha for row in batch for sha in (row.image_sha, row.map_sha, row.overlay_sha)}
        shas.discard(None)
        excess -= sum(_size(store, sha) for sha in shas)
        ids = [row.id for row in batch]
        with store.session() as session:
            waiting = session.scalar(
                select(func.count()).where(Inspection.id.in_(ids), _waiting_central())
            )
            _strip(now)(session, batch)
        report.dropped += len(ids)
        report.dropped_waiting += int(waiting or 0)
        if excess <= 0:
            break
    if report.dropped:
        log.warning(
            "storage over its %.2f GB budget: %d good parts lost their blobs (%d of them not "
            "yet in the central store); every row and NG image is kept",
            config.disk_budget_gb, report.dropped, report.dropped_waiting,
        )  # fmt: skip
    return report.dropped > 0


def _size(store: Store, sha: str) -> int:
    try:
        return store.blobs.path(sha).stat().st_size
    except FileNotFoundError:
        return 0


def _older(now: datetime, days: float) -> Any:
    """Past ``days`` by the station's clock and by the store's (``None``: before 0013)."""
    cutoff = now - timedelta(days=days)
    received = or_(Inspection.received_at.is_(None), Inspection.received_at < cutoff)
    return and_(Inspection.created_at < cutoff, received)


def _not_protected(where: Any, protected: frozenset[str]) -> Any:
    return and_(where, Inspection.id.not_in(protected)) if protected else where


def _run_pass(
    store: Store, pass_: _Pass, config: RetentionConfig, told: Callable[[int], Any]
) -> int:
    """Process rows matching ``pass_.where`` oldest first, one short transaction per batch."""
    done = 0
    for batch in _keyset_batches(store, pass_.where, config.batch_size):
        with store.session() as session:
            count = pass_.act(session, batch)
        done += count
        told(count)
        time.sleep(config.pause_seconds)
    return done


def _keyset_batches(store: Store, where: Any, size: int) -> Iterator[list[Any]]:
    """Rows (id, created_at and sha columns) in (created_at, id) order, ``size`` at a time;
    each batch is read in its own short transaction, after the previous one was acted on."""
    columns = (Inspection.id, Inspection.created_at, Inspection.image_sha, Inspection.map_sha)
    columns += (Inspection.mask_sha, Inspection.overlay_sha)
    order = (Inspection.created_at, Inspection.id)
    last: tuple[datetime, str] | None = None
    while True:
        query = select(*columns).where(where)
        if last is not None:
            query = query.where(tuple_(*order) > tuple_(*last))
        with store.session() as session:
            rows = list(session.execute(query.order_by(*order).limit(size)))
        if not rows:
            return
        yield rows
        last = (rows[-1].created_at, rows[-1].id)


def _strip(now: datetime) -> Callable[[Session, list[Any]], int]:
    """Mark the rows' blobs gone (map/mask/overlay cleared; image_sha kept as fingerprint).
    Their files are removed by the sweep of this run, after this commit."""

    def act(session: Session, rows: list[Any]) -> int:
        ids = [row.id for row in rows]
        session.execute(
            update(Inspection)
            .where(Inspection.id.in_(ids), Inspection.blobs_pruned_at.is_(None))
            .values(blobs_pruned_at=now, map_sha=None, mask_sha=None, overlay_sha=None)
        )
        return len(ids)

    return act


def _delete_rows(session: Session, rows: list[Any]) -> int:
    """Delete the rows with their reviews and (delivered) outbox messages."""
    ids = [row.id for row in rows]
    session.execute(delete(Review).where(Review.inspection_id.in_(ids)))
    session.execute(delete(OutboxMessage).where(OutboxMessage.inspection_id.in_(ids)))
    session.execute(delete(Inspection).where(Inspection.id.in_(ids)))
    return len(ids)


def _prune_outbox(store: Store, config: RetentionConfig, cutoff: datetime) -> int:
    """Delete outbox messages delivered before ``cutoff``, in batches."""
    deleted = 0
    while True:
        with store.session() as session:
            ids = list(
                session.scalars(
                    select(OutboxMessage.id)
                    .where(OutboxMessage.delivered_at < cutoff)
                    .limit(config.batch_size)
                )
            )
            session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        if not ids:
            return deleted
        deleted += len(ids)
        time.sleep(config.pause_seconds)


_PRODUCTS = text(
    "WITH RECURSIVE p(name) AS (SELECT min(product) FROM inspections UNION ALL "
    "SELECT (SELECT min(product) FROM inspections WHERE product > p.name) FROM p "
    "WHERE p.name IS NOT NULL) SELECT name FROM p WHERE name IS NOT NULL"
)


def _products(store: Store) -> list[str]:
    """The stored products, sorted: one probe of the (product, created_at) index per product
    (``DISTINCT`` reads every row's entry: seconds at 50M rows)."""
    with store.session() as session:
        return list(session.scalars(_PRODUCTS))


def referenced(session: Session, shas: Iterable[str]) -> set[str]:
    """The shas some row still points at (a pruned row's ``image_sha`` does not count): one
    indexed ``IN`` probe per sha column (migration 0006) per call, never a table scan."""
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return set()
    held = Inspection.image_sha.in_(wanted) & Inspection.blobs_pruned_at.is_(None)
    found = set(session.scalars(select(Inspection.image_sha).where(held).distinct()))
    for column in _BLOB_COLUMNS:
        found.update(session.scalars(select(column).where(column.in_(wanted)).distinct()))
    return found


def _sweep(store: Store, config: RetentionConfig, report: PruneReport) -> None:
    """Remove every blob file no row references; count what goes and stays in ``report``."""
    for chunk in _chunks(store.blobs.files(), config.batch_size):
        with store.session() as session:
            used = referenced(session, (sha for sha, _size in chunk))
        unused = [sha for sha, _size in chunk if sha not in used]
        gone, gone_bytes = _discard(store, unused, config.grace_minutes * 60.0)
        report.files_removed += gone
        report.bytes_removed += gone_bytes
        report.blob_files += len(chunk) - gone
        report.blob_bytes += sum(size for _sha, size in chunk) - gone_bytes


def _discard(store: Store, shas: list[str], grace_s: float) -> tuple[int, int]:
    """Move ``shas`` (plus anything left in the trash) aside, then unlink those no row
    references and not written within ``grace_s``; the rest go back (count, bytes)."""
    trashed = store.blobs.trash(shas)

    def still_used(candidates: list[str]) -> set[str]:
        with store.session() as session:
            return referenced(session, candidates)

    return store.blobs.empty_trash(trashed, still_used, grace_s)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def database_bytes(store: Store) -> int | None:
    """Size of the database: its SQLite files, or PostgreSQL's ``pg_database_size``."""
    path = sqlite_file(store.url)
    if path is not None:
        files = (path, path.with_name(path.name + "-wal"))
        return sum(f.stat().st_size for f in files if f.exists())
    if store.engine.dialect.name == "postgresql":
        with store.session() as session:
            size = func.pg_database_size(func.current_database())
            return int(session.scalar(select(size)) or 0)
    return None


def _check_budget(report: PruneReport, config: RetentionConfig) -> None:
    """Raise the alarm (log) when storage passes ``alarm_fraction`` of the budget."""
    if config.disk_budget_gb is None:
        return
    report.budget_bytes = int(config.disk_budget_gb * GB)
    report.alarm = report.used_bytes >= config.alarm_fraction * report.budget_bytes
    if report.alarm:
        log.warning(
            "storage alarm: %.2f GB used of the %.2f GB budget (alarm at %.0f %%); shorten "
            "retention in %s or add disk",
            report.used_bytes / GB,
            config.disk_budget_gb,
            config.alarm_fraction * 100,
            RETENTION_CONFIG_NAME,
        )


def prune_configured(
    store: Store,
    configs_dir: Path,
    registry_dir: Path,
    products: Iterable[str],
    *,
    trust_clock: bool = False,
) -> tuple[PruneReport, Path]:
    """One prune as configured (training references protected, rows aged by the trusted time:
    an untrusted clock prunes nothing), its gauges written; the report and the gauges' file."""
    config = load_retention(configs_dir)
    now = trusted_now(
        store,
        skew_s=config.clock_skew_seconds,
        jump_days=config.clock_jump_days,
        trust_clock=trust_clock,
    )
    if now is None:
        report = PruneReport(clock_refused=True)
    else:
        protected = training_references(registry_dir, products)
        report = prune(store, config, protected=protected, now=now)
    metrics = config.metrics_file or store.blobs.root.parent / "storage.prom"
    write_metrics(report, metrics)
    return report, metrics


def write_metrics(report: PruneReport, path: Path) -> None:
    """Storage gauges in Prometheus text format (node_exporter's textfile collector)."""
    registry = CollectorRegistry()
    gauges = {
        "inspection_storage_used_bytes": ("Database plus blob bytes", report.used_bytes),
        "inspection_storage_blob_bytes": ("Blob file bytes", report.blob_bytes),
        "inspection_storage_budget_bytes": ("Disk budget (0: none)", report.budget_bytes or 0),
        "inspection_storage_alarm": ("1 when usage passed the alarm fraction", int(report.alarm)),
        "inspection_prune_rows_deleted": ("Rows the last prune deleted", report.rows_deleted),
        "inspection_prune_files_removed": (
            "Blob files the last prune removed",
            report.files_removed,
        ),
        "inspection_storage_budget_dropped": (
            "Good parts whose blobs the last prune dropped to keep the budget",
            report.dropped,
        ),
        "inspection_clock_skewed_rows": (
            "Rows held whose station clock was off the store's receive time (kept)",
            report.clock_skewed,
        ),
        "inspection_prune_clock_refused": (
            "1 when the last prune refused to run on an untrusted clock",
            int(report.clock_refused),
        ),
        "inspection_partitions_failed": (
            "Months the last prune could not make (retried next run)",
            report.partitions_failed,
        ),
    }
    for name, (help_text, value) in gauges.items():
        Gauge(name, help_text, registry=registry).set(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
