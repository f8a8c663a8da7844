"""Resume after ``kill -9`` of the central side: a PostgreSQL of the test's own (``initdb``,
``pg_ctl``) whose postmaster is killed while a batch is open, then restarted; and kills of the
forwarder process and the postmaster repeated over one backlog. 0 lost, 0 duplicated, the
rollups counted once."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from inspection.store.central_roles import grant_station
from inspection.store.forward import Forwarder, backlog
from inspection.store.store import Store
from tests.conftest import PG_CA_FILE, verified
from tests.store.test_forward import (
    _KILLED_FORWARDER,
    Central,
    _central_keys,
    _local,
    _rollup_total,
    start_batch,
)

pytestmark = pytest.mark.slow  # a PostgreSQL cluster of its own, killed and restarted
PG_BIN = Path(os.environ.get("INSPECTION_PG_BIN", "/usr/lib/postgresql/15/bin"))
STATION = "line-kill"


class Postmaster:
    """A throw-away PostgreSQL cluster on a free port, run as the ``postgres`` OS user when
    the test runs as root (``trust`` auth on 127.0.0.1: the roles still confine the rows)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fwd-kill-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        # --no-sync: initdb's closing fsync of a cluster no OS crash will test (a kill -9 keeps
        # the page cache; the server itself still syncs its WAL): 3.3 s -> ~0.7 s a test
        self._pg("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust",
                 "--no-sync")  # fmt: skip
        for name in ("postgres.pem", "postgres-key.pem"):  # the test server's TLS identity
            shutil.copyfile(PG_CA_FILE.with_name(name), self.dir / "data" / name)
            os.chmod(self.dir / "data" / name, 0o600)
            if os.geteuid() == 0:
                shutil.chown(self.dir / "data" / name, "postgres", "postgres")
        with open(self.dir / "data" / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.dir}'\nssl = on\n"
                       "ssl_cert_file = 'postgres.pem'\nssl_key_file = 'postgres-key.pem'\n")  # fmt: skip

    def _pg(self, tool: str, *args: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_postgres, str(PG_BIN / tool), *args], check=True, capture_output=True)

    def start(self) -> None:
        """Start; after a ``kill -9`` its orphaned backends may hold the old shared memory for
        a moment, so retry."""
        for _ in range(60):
            try:
                return self._pg("pg_ctl", "-D", str(self.dir / "data"), "-w", "start",
                                "-l", str(self.dir / "log"))  # fmt: skip
            except subprocess.CalledProcessError:
                time.sleep(0.5)
        raise RuntimeError((self.dir / "log").read_text())

    def kill(self) -> None:
        pid = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)

    def url(self, user: str = "postgres") -> str:
        return verified(f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/postgres")


@pytest.fixture
def killable(tmp_path: Path) -> Iterator[tuple[Postmaster, Central]]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} (INSPECTION_PG_BIN)")
    if not PG_CA_FILE.exists():
        pytest.skip(f"no test PostgreSQL TLS identity beside {PG_CA_FILE}: run scripts/services.sh")
    server = Postmaster()
    server.start()
    store = Store.migrated(server.url(), tmp_path / "central-blobs")
    grant_station(store, STATION)
    yield server, Central(store, STATION, server.url(STATION), tmp_path / "central-blobs")
    store.engine.dispose()
    server._pg("pg_ctl", "-D", str(server.dir / "data"), "-m", "immediate", "stop")
    shutil.rmtree(server.dir, ignore_errors=True)


def test_the_postmaster_killed_inside_a_batch_keeps_none_of_it(
    killable: tuple[Postmaster, Central], tmp_path: Path
) -> None:
    server, central = killable
    local = _local(tmp_path, STATION, 50)
    forwarder = Forwarder(local, central.url, central.blob_dir, batch=50)
    locker = sa.create_engine(server.url()).connect()
    locker.execute(sa.text("LOCK TABLE inspections IN ACCESS EXCLUSIVE MODE"))
    worker, failed = start_batch(forwarder)
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE usename = :u AND wait_event_type = 'Lock'"
    )

    def batch_waits() -> bool:
        # pg_stat_activity is a snapshot for the rest of a transaction (the locker's): a fresh one
        locker.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        return bool(locker.scalar(sa.text(waiting), {"u": STATION}))

    deadline = time.monotonic() + 10
    while not batch_waits() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batch_waits(), "the batch's INSERT never waited on the lock"
    server.kill()  # the batch's INSERT is waiting inside its transaction
    worker.join(timeout=30)
    locker.invalidate()
    assert len(failed) == 1 and backlog(local).rows == 50
    server.start()
    central.store.engine.dispose()
    assert forwarder.drain() == 50
    assert len(_central_keys(central)) == 50 and _rollup_total(central) == 50
    forwarder.stop()


def test_repeated_kills_of_the_forwarder_and_the_postmaster_lose_and_double_nothing(
    killable: tuple[Postmaster, Central], tmp_path: Path
) -> None:
    server, central = killable
    local = _local(tmp_path, STATION, 600)
    left = [600]
    for victim in ("forwarder", "postmaster", "forwarder", "postmaster"):
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_FORWARDER, local.url, str(tmp_path / "blobs"),
             central.url, str(central.blob_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert child.stdout is not None and child.stdout.readline() == "forwarding\n"
        time.sleep(0.05)
        server.kill() if victim == "postmaster" else os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
        if victim == "postmaster":
            server.start()
            central.store.engine.dispose()
        left.append(backlog(local).rows)
        assert 0 < left[-1] < left[-2], f"the {victim} kill must land mid-backlog: {left}"
    forwarder = Forwarder(local, central.url, central.blob_dir)
    assert forwarder.drain() == left[-1]
    keys = _central_keys(central)
    assert keys == sorted({f"{STATION}/r{i:04d}" for i in range(600)})
    assert _rollup_total(central) == 600
    forwarder.stop()
