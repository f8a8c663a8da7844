"""The time a scheduled prune trusts: a clock that jumped ahead must not age every row at once.

Each prune records the time it trusted in the store's ``prune_clock`` row (migration 0018: a
backup and restore of the database keeps it) with the boot's id and the monotonic clock. The
next one trusts, in the same boot, that time plus the monotonic time since (a wall clock further
off is logged); after a restart, the wall clock unless it is more than ``clock_jump_days`` past
the record (then it refuses until run with ``--trust-clock``); never a time before the record,
nor past the newest row plus ``clock_skew_seconds``. Without a record (the first prune of a
store, or of a database restored from before 0018) a store holding rows is not pruned until run
with ``--trust-clock``; a row stored more than ``clock_jump_days`` past the record (under a clock
far ahead) is logged and does not move the cap. The ``<blob folder>/.prune-clock`` file earlier
versions kept is read once, moved into the row by the next prune.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select

from inspection.store.models import Inspection, PruneClock, as_utc
from inspection.store.store import Store

log = logging.getLogger(__name__)

LEGACY_STATE = ".prune-clock"
"""Where versions before migration 0018 kept the record, beside the blobs."""
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot() -> str | None:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return None


def _holds_rows(store: Store) -> bool:
    with store.session() as session:
        return session.scalar(select(Inspection.id).limit(1)) is not None


def trusted_now(
    store: Store,
    *,
    skew_s: float,
    jump_days: float,
    wall: datetime | None = None,
    trust_clock: bool = False,
) -> datetime | None:
    """The time to age ``store``'s rows by (module doc); ``None``: the clock is not trusted
    and nothing may be pruned. ``wall``: the wall clock (default: now)."""
    wall = wall or datetime.now(timezone.utc)
    legacy = store.blobs.root / LEGACY_STATE
    with store.session() as session:
        row = session.get(PruneClock, 1)
        state = None if row is None else (as_utc(row.wall), row.boot, row.monotonic)
    if state is None and legacy.exists():
        state = _legacy(legacy)
    last, boot, monotonic = state or (None, None, 0.0)
    now = wall
    if last is None and not trust_clock and _holds_rows(store):
        log.error(
            "prune refused: the store has no record of a trusted time (table prune_clock is "
            "empty: its first prune, or a database restored from before migration 0018), so a "
            "clock far ahead would age every row; check the time, then run "
            "`inspection store prune --trust-clock`"
        )  # fmt: skip
        return None
    if last is not None and not trust_clock:
        if boot == _boot() and boot is not None:
            now = last + timedelta(seconds=time.monotonic() - monotonic)
            if abs((wall - now).total_seconds()) > skew_s:
                log.error(
                    "clock jumped: the wall clock says %s, the time since the last prune says "
                    "%s; pruning by the latter", wall.isoformat(), now.isoformat()
                )  # fmt: skip
        elif wall - last > timedelta(days=jump_days):
            log.error(
                "prune refused: the clock says %s, %.1f days past the last prune (%s), across "
                "a restart; check the time, then run `inspection store prune --trust-clock`",
                wall.isoformat(), (wall - last).total_seconds() / 86400, last.isoformat(),
            )  # fmt: skip
            return None
        now = max(now, last)
    newest_query = select(func.max(Inspection.created_at))
    if last is not None:  # rows stored under a clock far ahead of the last trusted time
        bound = last + timedelta(days=jump_days)
        newest_query = newest_query.where(Inspection.created_at <= bound)
        ahead_query = select(func.count()).where(Inspection.created_at > bound)
        with store.session() as session:
            ahead = int(session.scalar(ahead_query) or 0)
        if ahead:
            log.error("%d rows stored under a clock more than %.0f days past the last trusted "
                      "time (%s): kept out of the prune's cap", ahead, jump_days,
                      last.isoformat())  # fmt: skip
    with store.session() as session:
        newest = session.scalar(newest_query)
    if newest is not None:
        cap = as_utc(newest) + timedelta(seconds=skew_s)
        now = min(now, cap if last is None else max(cap, last))
    with store.session() as session:
        session.merge(PruneClock(id=1, wall=now, boot=_boot(), monotonic=time.monotonic()))
    legacy.unlink(missing_ok=True)  # moved into the row
    return now


def _legacy(path: Path) -> tuple[datetime, str | None, float] | None:
    """The record an earlier version kept in ``<blob folder>/.prune-clock``; None: unreadable."""
    try:
        state = json.loads(path.read_text())
        return datetime.fromisoformat(state["wall"]), state.get("boot"), float(state["monotonic"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("%s is unreadable (%s): taken as no record", path, exc)
        return None
