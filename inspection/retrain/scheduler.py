"""Cron-style scheduling of retrain jobs with retries and exponential backoff.

Due jobs run one after another; each product's last run is kept in
``<work_dir>/scheduler-state.json``. A locked product is skipped; a failed attempt is retried.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from inspection.core.errors import ConfigError, DatasetError
from inspection.core.jsonl import write_json
from inspection.retrain.config import RetrainConfig, RetryPolicy
from inspection.retrain.lock import RetrainBusy

log = logging.getLogger(__name__)
STATE_FILE = "scheduler-state.json"
# Errors a retry cannot fix: the operator has to change a file first.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DatasetError, RetrainBusy)


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one scheduled job: ``status`` is done, skipped or failed."""

    product: str
    status: str
    attempts: int
    detail: str
    result: Any = None


def run_with_retries(
    job: Callable[[], Any],
    policy: RetryPolicy,
    *,
    what: str = "job",
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Any, int]:
    """Call ``job`` until it returns, at most ``policy.attempts`` times; returns (result,
    attempts). ``PERMANENT_ERRORS`` are raised at once, the last transient error re-raised."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return job(), attempt
        except PERMANENT_ERRORS:
            raise
        except Exception as exc:
            if attempt == policy.attempts:
                raise
            delay = policy.delay(attempt)
            log.warning("%s failed (attempt %d of %d): %s; retrying in %.1f s",
                        what, attempt, policy.attempts, exc, delay)  # fmt: skip
            sleep(delay)
    raise RuntimeError("unreachable")  # pragma: no cover


def next_fire(schedule: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that matches the cron ``schedule``."""
    # deferred: croniter (optional)
    from croniter import croniter

    return croniter(schedule, after).get_next(datetime)


@dataclass
class Housekeeping:
    """A site job (the store prune) on its own cron ``schedule``; a failure waits for the next."""

    name: str
    schedule: str
    job: Callable[[], Any]
    last_run: datetime | None = None

    def next_due(self) -> datetime | None:
        return None if self.last_run is None else next_fire(self.schedule, self.last_run)

    def run_if_due(self, now: datetime) -> None:
        when = self.next_due()
        if when is not None and when > now:
            return
        self.last_run = now
        try:
            log.info("%s: %s", self.name, _describe(self.job()))
        except Exception as exc:
            log.error("%s failed; next try at the next fire time: %s", self.name, exc)


class Scheduler:
    """Runs ``run_job(product)`` for each enabled product when due, and ``housekeeping`` jobs."""

    def __init__(
        self,
        config: RetrainConfig,
        run_job: Callable[[str], Any],
        *,
        state_path: str | Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        housekeeping: tuple[Housekeeping, ...] = (),
    ) -> None:
        self.config = config
        self.run_job = run_job
        self.housekeeping = housekeeping
        self.state_path = Path(state_path or config.work_dir / STATE_FILE)
        self._sleep = sleep

    def state(self) -> dict[str, dict[str, Any]]:
        if not self.state_path.is_file():
            return {}
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            log.warning("%s is unreadable; treating every job as never run", self.state_path)
            return {}

    def _save(self, product: str, outcome: JobOutcome, at: datetime) -> None:
        state = self.state()
        state[product] = {
            "last_run": at.isoformat(timespec="seconds"),
            "status": outcome.status,
            "attempts": outcome.attempts,
            "detail": outcome.detail,
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.state_path, state)

    def products(self) -> list[str]:
        return sorted(name for name, job in self.config.products.items() if job.enabled)

    def next_due(self, product: str) -> datetime | None:
        """When ``product`` is next due (local time); ``None`` if it never ran (due now)."""
        last = self.state().get(product, {}).get("last_run")
        if last is None:
            return None
        return next_fire(self.config.job(product).schedule, datetime.fromisoformat(last))

    def due(self, now: datetime) -> list[str]:
        return [p for p in self.products() if (when := self.next_due(p)) is None or when <= now]

    def run_product(self, product: str, now: datetime | None = None) -> JobOutcome:
        """Run one job with retries; never raises for a job failure (it is logged)."""
        started = now or _now()
        try:
            result, attempts = run_with_retries(
                lambda: self.run_job(product), self.config.retry, what=f"retrain of {product}",
                sleep=self._sleep,
            )  # fmt: skip
            outcome = JobOutcome(product, "done", attempts, _describe(result), result)
        except RetrainBusy as exc:
            log.info("skipped: %s", exc)
            outcome = JobOutcome(product, "skipped", 0, str(exc))
        except Exception as exc:
            log.error("retrain of %s failed; the champion stays live: %s", product, exc)
            attempts = 1 if isinstance(exc, PERMANENT_ERRORS) else self.config.retry.attempts
            outcome = JobOutcome(product, "failed", attempts, f"{type(exc).__name__}: {exc}")
        self._save(product, outcome, started)
        return outcome

    def run_due(self, now: datetime | None = None) -> list[JobOutcome]:
        """Run every job due at ``now`` (default: the current local time), in name order."""
        now = now or _now()
        outcomes = [self.run_product(product, now) for product in self.due(now)]
        for job in self.housekeeping:
            job.run_if_due(now)
        return outcomes

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Loop: run due jobs, then sleep until the next fire time (at most ``poll_seconds``)."""
        stop = stop or threading.Event()
        if not self.products():
            raise ConfigError("the retrain config lists no enabled products; nothing to schedule")
        log.info("scheduler started for %s", ", ".join(self.products()))
        while not stop.is_set():
            self.run_due()
            upcoming = [t for p in self.products() if (t := self.next_due(p)) is not None]
            upcoming += [t for job in self.housekeeping if (t := job.next_due()) is not None]
            wait = self.config.poll_seconds
            if upcoming:
                wait = min(wait, max(0.0, (min(upcoming) - _now()).total_seconds()))
                log.info("next job at %s", min(upcoming).isoformat(timespec="seconds"))
            stop.wait(max(wait, 0.5))


def _now() -> datetime:
    return datetime.now().astimezone()


def _describe(result: Any) -> str:
    describe = getattr(result, "summary", None)
    return describe() if callable(describe) else str(result)
