"""Hostile central store, round 2 (issue #80): the way to the central store, before and now.

Each case runs against the test PostgreSQL 15 (TLS from the site CA, ``scripts/services.sh``)
with a station's own role made by ``grant_station``, the tree's own forwarder and blob folders,
and prints one JSON line per case. Run it once per tree and compare:

    cd <tree> && PYTHONPATH=$PWD python <this file> > out.jsonl
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import sqlalchemy as sa

from inspection.line.pki import LinePki
from inspection.store.central_roles import grant_station
from inspection.store.forward import Forwarder, backlog
from inspection.store.retention import RetentionConfig, prune
from inspection.store.store import Store
from tests.conftest import (
    PG_ADMIN_URL,
    PG_CA_FILE,
    _drop_postgres_database,
    _fresh_postgres_database,
    verified,
)
from tests.store.test_forward import _local

logging.disable(logging.CRITICAL)


class Central:
    """A fresh central database, its owner's store and one station role."""

    def __init__(self, work: Path) -> None:
        self.url, self.name = _fresh_postgres_database()
        self.plain = self.url.split("?")[0]
        self.store = Store.migrated(verified(self.plain), work / "central-blobs")
        self.blob_dir = work / "central-blobs"
        self.station = f"hc-{uuid.uuid4().hex[:6]}"
        password = grant_station(self.store, self.station, writes=(f"{self.station}-b",))
        self.station_url = verified(
            self.plain.replace("inspection:inspection@", f"{self.station}:{password}@")
        )

    def close(self) -> None:
        self.store.engine.dispose()
        _drop_postgres_database(self.name)
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for role in (self.station, f"{self.station}-b"):
                connection.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()

    def rows(self, sql: str) -> list[Any]:
        with self.store.engine.connect() as connection:
            return list(connection.execute(sa.text(sql)))


def _drain(forwarder: Forwarder, tries: int = 20) -> str:
    """Forward as ``run`` would, ``tries`` rounds; the first error, if any."""
    error = ""
    for _ in range(tries):
        try:
            if not forwarder.forward_once():
                break
        except Exception as exc:  # the old forwarder retries these for ever
            error = error or f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return error


def token_name_differs(central: Central, work: Path) -> str:
    local = _local(work, "probe1", 3)  # the station's configured id is not its role's
    _local(work, central.station, 4, start=3)
    forwarder = Forwarder(local, central.station_url, central.blob_dir, batch=5)
    error = _drain(forwarder)
    forwarder.stop()
    own = central.rows(f"SELECT count(*) FROM inspections WHERE station_id = '{central.station}'")
    waiting = backlog(local)
    return (
        f"own rows central {own[0][0]} of 4; waiting {waiting.rows}, set aside "
        f"{waiting.quarantined}, alarm {waiting.alarm(3600)}"
        + (f"; stalled on {error}" if error else "")
    )


def reimaged(central: Central, work: Path) -> str:
    first = _local(work / "before", central.station, 5)
    Forwarder(first, central.station_url, central.blob_dir).drain()
    again = _local(work / "after", central.station, 5)  # fresh store, ids from 0 again
    forwarder = Forwarder(again, central.station_url, central.blob_dir)
    error = _drain(forwarder)
    forwarder.stop()
    ids = {row.id for store in (first, again) for row in store.list_inspections()}
    held = {r[0]: r[1] for r in central.rows("SELECT id, request_id FROM inspections")}
    per_key = central.rows("SELECT request_id, count(*) FROM inspections GROUP BY 1")
    shared = sum(1 for _, n in per_key if n > 1)
    renamed = sum(1 for key in held.values() if "#" in key)
    return (
        f"central rows {len(held)} of 10, lost {len(ids - set(held))}; request ids held by "
        f"two rows {shared}; kept under a distinct key {renamed}" + (f"; {error}" if error else "")
    )


def owner_engine(central: Central, work: Path) -> str:
    other = LinePki(work / "other-pki").ca_file
    outcomes = []
    for what, url in (
        ("no CA", central.plain),
        ("another CA", f"{central.plain}?sslrootcert={other}"),
    ):
        try:
            with Store(url, work / "b").engine.connect() as connection:
                ssl = connection.scalar(
                    sa.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                )
            outcomes.append(f"{what}: ACCEPTED (connected, TLS {ssl}, certificate not verified)")
        except Exception as exc:
            outcomes.append(f"{what}: refused ({type(exc).__name__}: {_short(exc)})")
    return "; ".join(outcomes)


def temp_shadow(central: Central, work: Path) -> str:
    other = f"{central.station}-other"
    central.store.add_inspection(
        id="victim", product="brick", station_id=other, score=0.9, threshold=0.5,
        verdict="NG", model_version="m", bundle_id="b", latency_ms=1.0, width=8, height=8,
        image_sha="a" * 64,
    )  # fmt: skip
    station = sa.create_engine(central.station_url)
    try:
        with station.begin() as c:
            c.execute(
                sa.text(
                    "CREATE TEMP TABLE inspections (id text, station_id text, review_label text, "
                    "review_defect_type text, reviewed_by text, reviewed_at timestamptz)"
                )
            )
            c.execute(
                sa.text(
                    f"INSERT INTO inspections (id, station_id) VALUES ('victim', "
                    f"'{central.station}')"
                )
            )
            c.execute(sa.text("GRANT ALL ON inspections TO PUBLIC"))  # for the definer
            c.execute(
                sa.text("SELECT forward_review(1, 'victim', 'false_alarm', NULL, 'x', NULL, now())")
            )
        reviews = central.rows("SELECT label FROM reviews WHERE inspection_id = 'victim'")
        return f"ACCEPTED: a review of another station's NG recorded centrally: {reviews}"
    except Exception as exc:
        return f"refused: {_short(exc)}"
    finally:
        station.dispose()


def rollups(central: Central, work: Path) -> str:
    mine = _local(work / "mine", central.station, 3)
    other = _local(work / "other", f"{central.station}-b", 2)
    with other.session() as session:
        session.execute(sa.text("UPDATE inspections SET score = 0.05"))
    for local in (mine, other):
        Forwarder(local, central.station_url, central.blob_dir).drain()
    columns = [c[0] for c in central.rows(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'rollup_scores'"
    )]  # fmt: skip
    if "station_id" not in columns:
        total = central.rows("SELECT sum(count) FROM rollup_scores")[0][0]
        return f"ACCEPTED: one histogram for every station ({total} scores, 2 of them station B's)"
    mine_n = central.rows(
        f"SELECT sum(count) FROM rollup_scores WHERE station_id = '{central.station}'"
    )[0][0]
    return f"refused: per station (station A's histogram holds its {mine_n} scores only)"


def blobs(central: Central, work: Path) -> str:
    local = _local(work, central.station, 2)
    first, second = local.list_inspections()[::-1]
    folder = central.blob_dir / first.image_sha[:2]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{first.image_sha}.bin").write_bytes(b"decoy")
    tampered = local.blobs.path(second.image_sha)
    tampered.chmod(0o644)
    tampered.write_bytes(b"altered")
    forwarder = Forwarder(local, central.station_url, central.blob_dir)
    _drain(forwarder)
    forwarder.stop()
    try:
        read = "real bytes" if central.store.blobs.get(first.image_sha) == b"image 0" else "?"
    except Exception as exc:
        read = f"read refused ({_short(exc)})"
    altered = central.rows(f"SELECT image_sha FROM inspections WHERE id = '{second.id}'")
    held = central.store.blobs.exists(second.image_sha)
    copied = (
        "not forwarded (set aside)" if not altered else f"forwarded, its blob file there: {held}"
    )
    return f"decoy .bin beside .png: {read}; altered local blob: row {copied}"


def painted_mask(central: Central, work: Path) -> str:
    from inspection.retrain.assemble import _region

    store = Store.migrated(f"sqlite:///{work / 'site.db'}", work / "site-blobs")
    sha = store.blobs.put(b"painted mask", ".png")
    path = store.blobs.path(sha)
    path.chmod(0o644)
    path.write_bytes(b"another region")  # altered after the review
    row = type("Row", (), {"id": "r1", "review_region_sha": sha})()
    found = _region(store, row)
    if found is None:
        return "refused: left out (the defect counts image-level, logged)"
    return f"ACCEPTED: {found.name} handed to the training set ({found.read_bytes()!r})"


def clock_jump(central: Central, work: Path) -> str:
    store = Store.migrated(f"sqlite:///{work / 'pc.db'}", work / "pc-blobs")
    now = datetime.now(timezone.utc)
    for i in range(5):
        _local_row(store, i, now)
    try:
        from inspection.store.trusted_clock import trusted_now
    except ImportError:
        trusted_now = None
    if trusted_now is not None:
        trusted_now(store, skew_s=300, jump_days=7)  # the prune an hour before
        when = trusted_now(store, skew_s=300, jump_days=7, wall=now + timedelta(days=365))
    else:
        when = now + timedelta(days=365)  # the prune reads the jumped clock
    report = prune(store, _policy(), now=when)
    left = store.count_inspections()
    return f"rows deleted {report.rows_deleted} of 5, blobs stripped {report.stripped}; {left} left"


def _policy() -> RetentionConfig:
    from inspection.store.retention import KeepPolicy

    return RetentionConfig(default=KeepPolicy(blob_days=30, row_days=90), grace_minutes=0)


def _local_row(store: Store, i: int, at: datetime) -> None:
    store.add_inspection(
        product="brick", station_id="pc", score=0.1, threshold=0.5, verdict="OK",
        model_version="m", bundle_id="b", latency_ms=1.0, width=8, height=8, created_at=at,
        image_sha=store.blobs.put(f"pc image {i}".encode(), ".png"),
    )  # fmt: skip


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:140]


CASES: dict[str, Callable[[Central, Path], str]] = {
    "token name differs from the role (RLS 42501)": token_name_differs,
    "re-imaged line PC, ids restarting from 0": reimaged,
    "owner/dashboard engine TLS": owner_engine,
    "station TEMP TABLE inspections vs forward_review": temp_shadow,
    "rollup_scores per station": rollups,
    "blob hashes on the way to central": blobs,
    "painted mask altered, read for retraining": painted_mask,
    "line PC clock a year ahead, next prune": clock_jump,
}


def main() -> None:
    os.environ.setdefault("INSPECTION_TEST_PG_CA", str(PG_CA_FILE))
    for name, case in CASES.items():
        work = Path(mkdtemp(prefix="hc2-"))
        central = Central(work)
        try:
            outcome = case(central, work)
        except Exception as exc:
            outcome = f"error: {type(exc).__name__}: {_short(exc)}"
        finally:
            central.close()
        print(json.dumps({"case": name, "outcome": outcome}), flush=True)


if __name__ == "__main__":
    main()
