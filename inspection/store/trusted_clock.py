"""The time a scheduled prune trusts: a clock that jumped ahead must not age every row at once.

Each prune records the time it trusted in ``<blob folder>/.prune-clock`` with the boot's id and
the monotonic clock. The next one trusts, in the same boot, that time plus the monotonic time
since (a wall clock further off is logged); after a restart, the wall clock unless it is more
than ``clock_jump_days`` past the record (then it refuses until run with ``--trust-clock``);
never a time before the record, nor past the newest row plus ``clock_skew_seconds``. Without a
record (the first prune after an upgrade, a copy or restore that skipped the dot file) a store
holding rows is not pruned until run with ``--trust-clock``; a row stored more than
``clock_jump_days`` past the record (under a clock far ahead) is logged and does not move the cap.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select

from inspection.store.models import Inspection, as_utc
from inspection.store.store import Store

log = logging.getLogger(__name__)

STATE = ".prune-clock"
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
    state_path = store.blobs.root / STATE
    try:
        state = json.loads(state_path.read_text())
        last, monotonic = datetime.fromisoformat(state["wall"]), float(state["monotonic"])
    except (OSError, ValueError, KeyError, TypeError):
        state, last, monotonic = None, None, 0.0
    now = wall
    if last is None and not trust_clock and _holds_rows(store):
        log.error(
            "prune refused: no record of a trusted time (%s is missing: the first prune after "
            "an upgrade, or a copy or restore that skipped it), so a clock far ahead would age "
            "every row; check the time, then run `inspection store prune --trust-clock`",
            state_path,
        )  # fmt: skip
        return None
    if last is not None and not trust_clock:
        if state and state.get("boot") == _boot() and _boot() is not None:
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
    state_path.parent.mkdir(parents=True, exist_ok=True)
    record = {"wall": now.isoformat(), "boot": _boot(), "monotonic": time.monotonic()}
    state_path.write_text(json.dumps(record))
    return now
