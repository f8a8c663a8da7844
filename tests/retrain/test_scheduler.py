from __future__ import annotations

import itertools
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from inspection.core.errors import DatasetError
from inspection.retrain.config import RetryPolicy, retrain_config_from_mapping
from inspection.retrain.lock import RetrainBusy, lock_path, retrain_lock
from inspection.retrain.scheduler import Scheduler, next_fire, run_with_retries

LOCAL = datetime.now().astimezone().tzinfo
HOLDER = """
import sys, time
from inspection.retrain.lock import retrain_lock
with retrain_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def _config(tmp_path: Path, **retry: float):
    return retrain_config_from_mapping(
        {
            "products": {
                "brick": {"schedule": "0 2 * * *"},
                "grass": {"schedule": "30 2 * * 0"},
                "gravel": {"schedule": "0 3 * * *", "enabled": False},
            },
            "retry": {"attempts": 3, "initial_delay_s": 0.05, "factor": 2.0, **retry},
            "work_dir": str(tmp_path / "work"),
        }
    )


class _Holder:
    """Another process holding a product's retrain lock until closed."""

    def __init__(self, root: Path, product: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(root), product],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "held"

    def close(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


def test_lock_holds_across_processes(tmp_path: Path) -> None:
    holder = _Holder(tmp_path, "brick")
    try:
        busy = pytest.raises(RetrainBusy, match="a retrain of 'brick' is already running")
        with busy, retrain_lock(tmp_path, "brick"):
            pass
        with retrain_lock(tmp_path, "grass"):  # other products are independent
            pass
    finally:
        holder.close()
    with retrain_lock(tmp_path, "brick") as path:  # free again once the holder exits
        assert path == lock_path(tmp_path, "brick")


def test_scheduler_skips_a_product_locked_by_another_process(tmp_path: Path) -> None:
    ran: list[str] = []

    def job(product: str) -> str:
        with retrain_lock(tmp_path / "registry", product):
            ran.append(product)
            return "trained"

    scheduler = Scheduler(_config(tmp_path), job)
    holder = _Holder(tmp_path / "registry", "brick")
    try:
        outcomes = scheduler.run_due(datetime(2025, 3, 2, 4, 0, tzinfo=LOCAL))
    finally:
        holder.close()
    assert [(o.product, o.status) for o in outcomes] == [("brick", "skipped"), ("grass", "done")]
    assert ran == ["grass"]
    assert "already running" in scheduler.state()["brick"]["detail"]


def test_due_follows_the_cron_schedule(tmp_path: Path) -> None:
    scheduler = Scheduler(_config(tmp_path), lambda product: f"trained {product}")
    sunday = datetime(2025, 3, 2, 4, 0, tzinfo=LOCAL)  # a Sunday, after both fire times
    assert scheduler.due(sunday) == ["brick", "grass"]  # never ran: due now; gravel disabled
    assert [o.status for o in scheduler.run_due(sunday)] == ["done", "done"]
    assert scheduler.due(sunday + timedelta(hours=1)) == []
    assert scheduler.next_due("brick") == datetime(2025, 3, 3, 2, 0, tzinfo=LOCAL)
    assert scheduler.due(datetime(2025, 3, 3, 2, 0, tzinfo=LOCAL)) == ["brick"]
    assert scheduler.due(datetime(2025, 3, 9, 2, 30, tzinfo=LOCAL)) == ["brick", "grass"]
    assert next_fire("30 2 * * 0", sunday) == datetime(2025, 3, 9, 2, 30, tzinfo=LOCAL)


def test_transient_failures_are_retried_with_exponential_backoff() -> None:
    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise OSError("disk briefly unavailable")
        return "ok"

    result, attempts = run_with_retries(flaky, RetryPolicy(3, 0.05, 2.0, 1.0))
    assert (result, attempts) == ("ok", 3)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.10  # 0.05 s, then 0.05 * 2


def test_permanent_errors_are_not_retried_and_failures_are_recorded(tmp_path: Path) -> None:
    calls: list[str] = []

    def job(product: str) -> str:
        calls.append(product)
        if product == "brick":
            raise DatasetError("train/good folder not found")
        raise RuntimeError("out of memory")

    scheduler = Scheduler(_config(tmp_path), job)
    outcomes = scheduler.run_due(datetime(2025, 3, 2, 4, 0, tzinfo=LOCAL))
    assert [(o.status, o.attempts) for o in outcomes] == [("failed", 1), ("failed", 3)]
    assert calls == ["brick", "grass", "grass", "grass"]
    state = scheduler.state()
    assert state["brick"]["detail"] == "DatasetError: train/good folder not found"
    assert state["grass"]["status"] == "failed"


def test_run_forever_runs_due_jobs_and_stops_on_request(tmp_path: Path) -> None:
    import threading

    config = retrain_config_from_mapping(
        {
            "products": {"brick": {"schedule": "0 2 * * *"}, "grass": {"schedule": "0 3 * * *"}},
            "work_dir": str(tmp_path / "work"),
            "poll_seconds": 0.1,
        }
    )
    ran: list[str] = []
    stop = threading.Event()

    def job(product: str) -> str:
        ran.append(product)
        if len(ran) == 2:
            stop.set()
        return "trained"

    thread = threading.Thread(target=Scheduler(config, job).run_forever, args=(stop,))
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert ran == ["brick", "grass"]  # both never ran: due at once, then not again today
