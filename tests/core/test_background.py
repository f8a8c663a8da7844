"""``core.background.Background``: one thread per start, ended by ``stop``."""

from __future__ import annotations

import threading
import time

from inspection.core.background import Background


def test_a_loop_runs_in_its_named_thread_until_stopped() -> None:
    ticks: list[str] = []
    worker = Background(
        "ticker", lambda: worker.every(0.01, lambda: ticks.append(threading.current_thread().name))
    )
    worker.start()
    worker.start()  # a second start while it runs starts nothing more
    deadline = time.monotonic() + 5
    while len(ticks) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [t.name for t in threading.enumerate()].count("ticker") == 1
    worker.stop()
    seen = len(ticks)
    time.sleep(0.05)
    assert seen >= 3 and set(ticks) == {"ticker"} and len(ticks) == seen
    assert "ticker" not in [t.name for t in threading.enumerate()]


def test_it_starts_again_after_a_stop_and_stop_without_start_is_harmless() -> None:
    runs: list[int] = []
    idle = Background("idle", lambda: runs.append(1))
    idle.stop()
    idle.start()
    idle.stop()
    idle.start()
    idle.stop()
    assert runs == [1, 1] and idle.stopping.is_set()
