"""Hostile central store: a line PC's own credentials and SQL, a file share and the wire turned
against the central PostgreSQL and blob folder (issue #66, item 6).

Each case runs against the test PostgreSQL of ``scripts/services.sh`` (TLS from the site CA in
``/tmp/inspection-postgres-tls``) in a fresh database, with the station role and the code of
one checkout: ``--tree`` (default: this one) is put first on ``PYTHONPATH`` of a child process
that attempts every case and prints one JSON object (case -> what happened). ``--before TREE``
runs the cases on that checkout too (``git worktree add /tmp/before-central e60fb7e``) and
writes ``reports/plant/hostile_central.md`` and ``.json``. The blob-share case switches to two
OS accounts (uid 1 and 65534, group 65534) and needs root; the server-log case reads the
Debian cluster's log as root.

    python bench/hostile_central.py --before /tmp/before-central
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports" / "plant"
ADMIN_URL = "postgresql+psycopg://inspection:inspection@127.0.0.1:5432/inspection_test"
CA_FILE = Path("/tmp/inspection-postgres-tls/ca.pem")
PG_LOG = Path("/var/log/postgresql/postgresql-15-main.log")
CASES = {
    "plaintext": "Station link without TLS verification (no CA configured)",
    "wrong_ca": "Server certificate from another CA than the station trusts",
    "tampered_dashboard": "Tampered blob read by the dashboard (review image)",
    "tampered_retrain": "Tampered blob read by a retraining run (training set)",
    "blob_overwrite": "Station B's account replaces station A's blob on the share",
    "rollup_update": "Station's own SQL: `UPDATE rollup_hourly`",
    "rollup_scores": "Station's own SQL: write/read `rollup_scores` (shared by all stations)",
    "rls": "Station's own SQL against row-level security (12 statements)",
    "password_sent": "Station password in the statements the server receives",
    "password_log": "Station password in the server log (`log_statement = all`)",
    "writes_foreign": "`station-role --writes inspection` (the owner), then flip an NG",
}
_ROW = (
    "INSERT INTO inspections (id, product, station_id, source, score, threshold, verdict, "
    "model_version, bundle_id, latency_ms, mask_source, regions, width, height, image_sha, "
    "created_at) VALUES (md5(random()::text), 'brick', {who}, 'api', 0.1, 0.5, 'OK', 'm', "
    "'b', 1, 'raw', '[]', 8, 8, 'x', now())"
)
HOSTILE = {
    "update another's result": "UPDATE inspections SET verdict = 'OK'",
    "delete results": "DELETE FROM inspections",
    "insert as another station": _ROW.format(who="'{other}'"),
    "SET ROLE the group, insert as it": "SET ROLE inspection_station; "
    + _ROW.format(who="current_user"),
    "set_config role, insert as the group": "SELECT set_config('role', 'inspection_station', "
    "false); " + _ROW.format(who="'inspection_station'"),
    "SET ROLE the owner": "SET ROLE inspection",
    "set_config session_authorization": "SELECT set_config('session_authorization', "
    "'inspection', false)",
    "update another's backlog row": "UPDATE station_backlog SET backlog_rows = 0 "
    "WHERE station_id = '{other}'",
    "truncate": "TRUNCATE inspections",
    "disable row security": "ALTER TABLE inspections DISABLE ROW LEVEL SECURITY",
    "row_security off, read": "SET row_security = off; SELECT count(*) FROM inspections",
    "function in public": "CREATE FUNCTION public.lower(text) RETURNS text AS 'SELECT $1' "
    "LANGUAGE sql",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="Checkout whose code is tried.")
    parser.add_argument("--before", type=Path, help="Also try this checkout; write the report.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(attempt_all()))
        return
    now = run_tree(args.tree)
    if args.before is None:
        print(json.dumps(now, indent=2))
        return
    before = run_tree(args.before)
    sys.path.insert(0, str(ROOT))
    from bench._report import recorded, save_report

    with recorded(argv) as env:
        pass
    report = {"env": env, "before": before, "now": now, "before_tree": str(args.before)}
    save_report(REPORTS, "hostile_central", report, markdown(report))


def run_tree(tree: Path) -> dict[str, str]:
    """The cases attempted with ``tree``'s code, in a child process."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    command = [sys.executable, str(Path(__file__).resolve()), "--child"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode:
        raise RuntimeError(f"{tree}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def markdown(report: dict) -> str:
    env = report["env"]
    lines = [
        "# Hostile central store: before and now",
        "",
        f"`{env['command']}` at {env['commit']}; before = `{report['before_tree']}` (e60fb7e), "
        f"same .venv. CPU {env['cpu']}; load {env['load_before']} -> {env['load_after']}.",
        "Each case is attempted with a station's own credentials, SQL or file-share account "
        "against the test PostgreSQL 15 (TLS from the site CA) and blob folder. ACCEPTED: the "
        "attack worked; refused: it did not, with the server's or the code's reason.",
        "",
        "| Case | Before | Now |",
        "|---|---|---|",
    ]
    for key, title in CASES.items():
        before, now = report["before"].get(key, "-"), report["now"].get(key, "-")
        lines.append(f"| {title} | {_cell(before)} | {_cell(now)} |")
    accepted = sum(v.startswith("ACCEPTED") for v in report["now"].values())
    lines += ["", f"Now: {accepted} of {len(CASES)} cases accepted.", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:400]


# ------------------------------------------------------------------ the child: one checkout


def attempt_all() -> dict[str, str]:
    import uuid

    import sqlalchemy as sa

    from inspection.store.store import Store

    name, tag = f"hc_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex[:6]
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    work = Path(f"/tmp/{name}")
    station, roles = f"hc-{tag}", [f"hc-{tag}", f"hc-{tag}-watch", f"hc-x-{tag}"]
    try:
        central = Store.migrated(url, work / "central-blobs")
        password = _grant(central, station, (f"{station}-watch",))
        station_url = url.replace("inspection:inspection@", f"{station}:{password}@")
        outcomes = {
            "plaintext": _plaintext(work, station, station_url),
            "wrong_ca": _wrong_ca(work, station, station_url),
            **_tampered(central),
            "blob_overwrite": _blob_overwrite(work),
        }
        outcomes |= _station_sql(work, central, station, station_url, tag)
        outcomes |= _password(central, url, name, f"hc-p-{tag}")
        roles.append(f"hc-p-{tag}")
        outcomes["writes_foreign"] = _writes_foreign(central, url, f"hc-x-{tag}")
        central.engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            for role in roles:
                connection.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
    return outcomes


def _grant(central, station: str, writes: tuple[str, ...] = ()) -> str:
    try:
        from inspection.store.central_roles import grant_station
    except ImportError:  # before: in store.forward
        from inspection.store.forward import grant_station
    return grant_station(central, station, writes)


def _verified(url: str) -> str:
    return f"{url}?sslmode=verify-full&sslrootcert={CA_FILE}"


def _local(work: Path, station: str):
    """A station's local store with one result waiting for the central store."""
    from inspection.store.forward import central_entry
    from inspection.store.store import Store

    folder = work / f"local-{os.urandom(3).hex()}"
    store = Store.migrated(f"sqlite:///{folder / 'local.db'}", folder / "blobs")
    key = f"{station}/r{os.urandom(4).hex()}"
    store.add_inspection(
        outbox=[central_entry(key, 5)], request_id=key, product="brick", station_id=station,
        score=0.7, threshold=0.5, verdict="NG", model_version="brick/v0001", bundle_id="v0001",
        latency_ms=10.0, width=8, height=8, image_sha=store.blobs.put(b"image", ".png"),
    )  # fmt: skip
    return store


def _forward(work: Path, station: str, url: str, **link: object) -> str:
    """Forward one row over ``url``; what happened."""
    from inspection.store.forward import Forwarder

    try:
        forwarder = Forwarder(_local(work, station), url, work / "central-blobs", **link)
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {_first(exc)}"
    try:
        moved = forwarder.drain()
        with forwarder.engine.connect() as connection:
            ssl = connection.exec_driver_sql(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).scalar()
            dsn = connection.connection.dbapi_connection.info.dsn  # without the password
        mode = next((p for p in dsn.split() if p.startswith("sslmode=")), "sslmode=prefer")
        return f"ACCEPTED: forwarded {moved} row (TLS {ssl}, {mode}: certificate not verified)"
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {_first(exc)}"
    finally:
        forwarder.stop()


def _plaintext(work: Path, station: str, url: str) -> str:
    """The station's config names no CA (before: it had no such setting)."""
    return _forward(work, station, url)


def _wrong_ca(work: Path, station: str, url: str) -> str:
    """The station trusts a CA that did not sign the server (before: no CA setting at all:
    whatever certificate the server shows is taken)."""
    from inspection.line.pki import LinePki
    from inspection.store.forward import Forwarder

    other = LinePki(work / "other-pki").ca_file
    if "ca_file" not in Forwarder.__init__.__code__.co_varnames:
        return _forward(work, station, url) + " — no CA setting exists"
    return _forward(work, station, url, ca_file=other)


def _tampered(central) -> dict[str, str]:
    import io

    import numpy as np
    from PIL import Image

    from inspection.dashboard.review import _blob_image as dashboard_image
    from inspection.retrain.assemble import _blob_image as training_image

    def png(value: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()

    sha = central.blobs.put(png(10), ".png")
    path = central.blobs.path(sha)
    path.chmod(0o644)
    path.write_bytes(png(200))  # another valid image under the same name
    missing: list[str] = []
    shown = dashboard_image(central, sha, "image", missing)
    skipped: dict[str, str] = {}
    trained = training_image(central, sha, "r1", skipped)
    return {
        "tampered_dashboard": "refused: shown as missing (" + _counted(central) + ")"
        if shown is None
        else f"ACCEPTED: shown (pixel value {int(shown[0, 0, 0])}, stored was 10)",
        "tampered_retrain": "refused: left out (" + skipped.get("r1", "").rsplit(": ", 1)[-1] + ")"
        if trained is None
        else f"ACCEPTED: {trained.name} in the training set",
    }


def _counted(central) -> str:
    refused = getattr(type(central.blobs), "refused", None)
    return "not counted" if refused is None else f"BlobStore.refused = {refused}"


_AS_USER = """
import os, pathlib, sys
from inspection.store.blobs import BlobStore
os.umask(0o002)  # a share both stations' group may write
os.setgid(65534); os.setuid(int(sys.argv[1]))
root, action = pathlib.Path(sys.argv[2]), sys.argv[3]
if action == "write":
    print(BlobStore(root).put(b"station A's image", ".png"))
    sys.exit()
target = next(root.glob("*/*.png"))
try:
    (target.parent / "forged").write_bytes(b"forged")
    os.replace(target.parent / "forged", target)
    print("ACCEPTED: replaced " + target.name[:12] + "...")
except PermissionError as exc:
    print("refused: " + str(exc))
"""


def _blob_overwrite(work: Path) -> str:
    """Two stations' accounts in one group on a group-writable share."""
    import shutil
    import tempfile

    if os.geteuid() != 0:
        return "not run (needs root to switch accounts)"
    root = Path(tempfile.mkdtemp(prefix="hc-share-"))
    os.chown(root, 0, 65534)
    root.chmod(0o2775)

    def as_user(uid: int, action: str) -> str:
        run = [sys.executable, "-c", _AS_USER, str(uid), str(root), action]
        done = subprocess.run(run, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        as_user(1, "write")
        return as_user(65534, "replace")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _station_sql(work: Path, central, station: str, url: str, tag: str) -> dict[str, str]:
    """The station's own SQL session against rollups and row-level security (it has
    forwarded one row, so it has rollups of its own)."""
    import sqlalchemy as sa

    _forward(work, station, _verified(url))
    other = f"other-{tag}"
    central.add_inspection(
        product="grass", station_id=other, score=0.9, threshold=0.5, verdict="NG",
        model_version="m", bundle_id="b", latency_ms=1.0, width=8, height=8, image_sha="a" * 64,
    )  # fmt: skip
    with central.engine.begin() as owner:
        owner.execute(
            sa.text("INSERT INTO station_backlog VALUES (:s, 7, 70, 9.0, 0.5, 300, now())"),
            {"s": other},
        )
    engine = sa.create_engine(_verified(url), poolclass=sa.NullPool)
    outcomes = {
        "rollup_update": _run(engine, ["UPDATE rollup_hourly SET total = total + 1000"]),
        "rollup_scores": _run(
            engine,
            [
                "INSERT INTO rollup_scores VALUES (date_trunc('hour', now()), 'grass', 99, 1000)"
                " ON CONFLICT (hour, product, bin) DO UPDATE SET count = 1000",
                "SELECT count(*) FROM rollup_scores",
            ],
        ),
    }
    accepted = []
    for label, sql in HOSTILE.items():
        result = _run(engine, sql.format(other=other).split("; "))
        if result.startswith("ACCEPTED"):
            accepted.append(f"{label} ({result[10:]})")
    engine.dispose()
    outcomes["rls"] = (
        f"ACCEPTED {len(accepted)} of {len(HOSTILE)}: " + "; ".join(accepted)
        if accepted
        else f"refused: all {len(HOSTILE)}"
    )
    return outcomes


def _run(engine, statements: list[str]) -> str:
    """Run ``statements`` in one autocommit session; ACCEPTED with the last one's rowcount."""
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for statement in statements:
                result = connection.exec_driver_sql(statement.replace("%", "%%"))
        rows = result.rowcount
        if statements[-1].startswith("UPDATE") and rows == 0:
            return "refused: 0 rows changed (row-level security)"
        return f"ACCEPTED: {rows} row(s)"
    except DBAPIError as exc:
        return f"refused: {_first(exc)}"


def _password(central, url: str, database: str, station: str) -> dict[str, str]:
    import sqlalchemy as sa

    sent: list[str] = []
    sa.event.listen(central.engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    logged = os.geteuid() == 0 and PG_LOG.exists()
    if logged:
        sql = f"ALTER DATABASE \"{database}\" SET log_statement = 'all'"
        subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-qc", sql], check=True)
        central.engine.dispose()
        start = PG_LOG.stat().st_size
    password = _grant(central, station)
    statement = next((s for s in sent if "PASSWORD" in s), "")
    shown = statement[statement.index("PASSWORD") :][:40] if statement else "?"
    shown = shown.replace(password[:30], "<the cleartext password>")
    outcomes = {
        "password_sent": f"ACCEPTED: sent as text ({shown}...)"
        if any(password in s for s in sent)
        else f"refused: only a verifier is sent ({shown}...)"
    }
    if logged:
        with PG_LOG.open(encoding="utf-8", errors="replace") as log:
            log.seek(start)
            text = log.read()
        outcomes["password_log"] = (
            "ACCEPTED: the cleartext is in the server log"
            if password in text
            else "refused: the log holds the SCRAM verifier only"
        )
    return outcomes


def _writes_foreign(central, url: str, station: str) -> str:
    import sqlalchemy as sa

    try:
        password = _grant(central, station, ("inspection",))
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {_first(exc)}"
    engine = sa.create_engine(
        _verified(url.replace("inspection:inspection@", f"{station}:{password}@")),
        poolclass=sa.NullPool,
    )
    flipped = _run(
        engine,
        ["SET ROLE inspection", "UPDATE inspections SET verdict = 'OK' WHERE verdict = 'NG'"],
    )
    engine.dispose()
    return f"ACCEPTED: granted; SET ROLE inspection + UPDATE NG->OK: {flipped}"


def _first(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


if __name__ == "__main__":
    main()
