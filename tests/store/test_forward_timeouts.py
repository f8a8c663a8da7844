"""The forwarder against a central side that hangs: the batch fails within its deadline and is
retried with a jittered backoff; nothing is lost or doubled."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from inspection.store.forward import Forwarder, backlog
from inspection.store.outbox import backoff_s
from tests.store.test_forward import Central, _central_keys, _local, _rollup_total, central

pytestmark = pytest.mark.postgres
__all__ = ["central"]  # the fixture


def test_a_central_that_stops_answering_fails_the_batch_within_its_deadline(
    central: Central, tmp_path: Path
) -> None:
    """The batch's INSERT waits on a lock nobody releases, as on a hung host: libpq would wait
    forever; the forwarder cuts its connection after ``timeout_s`` and a later try sends it."""
    local = _local(tmp_path, central.station, 3)
    forwarder = Forwarder(local, central.url, central.blob_dir, timeout_s=1.0)
    assert forwarder.report() is True  # a pooled connection the cut must also reach
    with central.store.engine.connect() as locker:
        locker.execute(sa.text("LOCK TABLE inspections IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        with pytest.raises(OperationalError):
            forwarder.forward_once()
        took = time.monotonic() - started
        locker.rollback()
    assert 1.0 <= took < 5.0
    assert backlog(local).rows == 3 and _central_keys(central) == []
    assert forwarder.drain() == 3
    assert len(_central_keys(central)) == 3 and _rollup_total(central) == 3
    forwarder.stop()


def test_the_running_forwarder_retries_a_hung_central_and_drains(
    central: Central, tmp_path: Path
) -> None:
    local = _local(tmp_path, central.station, 4)
    forwarder = Forwarder(local, central.url, central.blob_dir, timeout_s=0.5, backoff_max_s=0.5)
    forwarder.backoff_initial_s = 0.1
    with central.store.engine.connect() as locker:
        locker.execute(sa.text("LOCK TABLE inspections IN ACCESS EXCLUSIVE MODE"))
        forwarder.start()
        time.sleep(2.0)  # several tries, each cut
        hung = threading.active_count()
        locker.rollback()
    deadline = time.monotonic() + 10
    while backlog(local).rows and time.monotonic() < deadline:
        time.sleep(0.1)
    forwarder.stop()
    assert backlog(local).rows == 0 and len(_central_keys(central)) == 4
    assert _rollup_total(central) == 4
    assert hung < 10, "each deadline's timer ends with its try"


def test_the_forwarder_backs_off_with_jitter(central: Central, tmp_path: Path) -> None:
    forwarder = Forwarder(_local(tmp_path, central.station, 0), central.url, central.blob_dir)
    delays = [backoff_s(3, forwarder) for _ in range(50)]
    assert all(4.0 <= delay <= 4.8 for delay in delays)
    assert len(set(delays)) > 1, "stations retrying after one outage must not move in lockstep"
    assert 30.0 <= backoff_s(20, forwarder) <= 36.0
    forwarder.stop()
