"""Scratch stations for the benches: a tiny trained bundle, PostgreSQL scratch databases, the
signature policy of a copied bundle, and one scratch line (soft PLC, Mosquitto, station)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from inspection.line.config import LinkSecurity
from inspection.line.mosquitto import Broker, free_port
from inspection.line.softplc import SoftPlc

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "inspection"]
"""The ``inspection`` command, run by this interpreter."""
PG_ADMIN_URL = os.environ.get(
    "INSPECTION_TEST_PG_URL",
    "postgresql+psycopg://inspection:inspection@127.0.0.1:55432/inspection_test",
)


class Child:
    """``inspection <args>`` as a subprocess, started at once, its output appended to ``log``;
    it can be killed (``kill -9``), started again and stopped. ``env``: variables set for it."""

    def __init__(self, args: list[str], log: Path, **env: str) -> None:
        self.args, self.log, self.env = args, log.open("ab"), env
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([*CLI, *self.args], stdout=self.log,
                                        stderr=subprocess.STDOUT, env=os.environ | self.env)  # fmt: skip

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()


STATION_ID = "bench-1"


class ScratchLine:
    """A line in the emptied folder ``work``: link security ``mode`` with its PKI there, a soft
    PLC over OPC UA (scanning every ``scan_s``), a private Mosquitto, and the station
    (``start``) as an ``inspection station run`` subprocess; ``close`` stops all three."""

    def __init__(self, work: Path, mode: str = "sign_and_encrypt", scan_s: float = 0.001) -> None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        self.work, self.station = work, None
        self.security = LinkSecurity(mode=mode, pki_dir=work / "pki")  # type: ignore[arg-type]
        self.plc = SoftPlc(f"opc.tcp://127.0.0.1:{free_port()}/plc", security=self.security,
                           scan_s=scan_s)  # fmt: skip
        self.plc.start()
        self.broker = Broker(work, persistent=True, security=self.security, stations=(STATION_ID,))
        self.broker.start()

    def opcua(self, sampling_ms: float, **more: Any) -> dict[str, Any]:
        """The station's ``opcua`` section on the soft PLC."""
        return {"enabled": True, "endpoint": self.plc.endpoint, "sampling_ms": sampling_ms} | more

    def core(self, registry: str | Path, products: list[str], **more: Any) -> dict[str, Any]:
        """A ``core`` section serving ``products``' live bundles of ``registry`` (copied here),
        on a SQLite store here unless ``more`` names another."""
        for product in products:
            serve_live_copy(registry, product, self.work / "registry", "bench")
        return {
            "products": sorted(products), "store_url": f"sqlite:///{self.work / 'line.db'}",
            "blob_dir": str(self.work / "blobs"), "registry_dir": str(self.work / "registry"),
        } | signature_policy(registry) | more  # fmt: skip

    def config(self, core: dict[str, Any], camera: Path | str | None, **sections: Any) -> Path:
        """``line.yaml`` here: ``core``, a file camera on ``camera`` (None: ``views`` give
        theirs), the results to the broker (sink ``mes``), and ``sections`` (links, …) on top."""
        config = {
            "station_id": STATION_ID, "core": core, "inspect_timeout_s": 10.0,
            **({"camera": {"kind": "file", "path": str(camera)}} if camera else {}),
            "sinks": [{"name": "mes", "kind": "mqtt", "port": self.broker.port, "timeout_s": 2.0}],
            "publisher": {"poll_s": 0.2, "backoff_initial_s": 0.2, "backoff_max_s": 2.0},
            "security": {"mode": self.security.mode, "pki_dir": str(self.security.pki_dir)},
        } | sections  # fmt: skip
        path = self.work / "line.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def start(self, config: Path, **env: str) -> float:
        """Run the station on ``config``; the seconds until it raised Ready on the PLC."""
        started = time.monotonic()
        log = self.work / "station.log"
        self.station = Child(["station", "run", "-c", str(config)], log, **env)
        while not self.plc.read("Ready"):
            if self.station.process.poll() is not None or time.monotonic() > started + 120:
                raise RuntimeError(f"the station raised no Ready on the PLC; see {log}")
            time.sleep(0.05)
        return round(time.monotonic() - started, 2)

    def close(self) -> None:
        if self.station is not None:
            self.station.stop()
        self.plc.stop()
        self.broker.kill()


def signature_policy(source_registry: str | Path) -> dict[str, Any]:
    """The station ``core`` keys for bundles copied from ``source_registry``: its site's
    public key pinned when the site has one (a demo site does), else unsigned allowed."""
    from inspection.core.signing import pin_file, site_public_key

    public = site_public_key(source_registry)
    if public is None:
        return {"allow_unsigned_bundles": True}
    pin = pin_file(public.resolve())
    return {"signing_keys": [{"fingerprint": pin.fingerprint, "path": str(pin.path)}]}


def serve_live_copy(
    source_registry: str | Path, product: str, registry_dir: Path, reason: str
) -> Path:
    """Copy ``product``'s live bundle of ``source_registry`` into a registry at
    ``registry_dir`` and make it live there; the source bundle's folder. A source that signs
    (a demo site) gives its signed live pointer and decisions, copied as signed (``mirror``),
    so a station pinning the site key serves them; an unsigned source is promoted here."""
    from inspection.core.registry import Registry

    source = Registry(source_registry)
    bundle_dir = source.journal.live_bundle_dir(product)
    registry = Registry(registry_dir)
    registry.bundles.add_bundle(product, bundle_dir, bundle_dir.name)
    live = source.journal.live(product)
    if live is None or not live.signature:
        registry.journal.promote(product, bundle_dir.name, actor="bench", reason=reason)
        return bundle_dir
    registry.journal.mirror(live, actor="bench")
    for record in (*source.journal.threshold_history(product), *source.journal.decisions(product)):
        registry.journal.mirror(record, actor="bench")
    return bundle_dir


def _admin(admin_url: str, sql: str, **params: str) -> tuple | None:
    """Run ``sql`` outside a transaction; its first row, if it returns rows."""
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        result = connection.execute(sa.text(sql), params)
        row = result.first() if result.returns_rows else None
    admin.dispose()
    return None if row is None else tuple(row)


def create_database(admin_url: str = PG_ADMIN_URL, *, template: str | None = None) -> str:
    """A fresh database (a copy of ``template`` when given) on the admin URL's server; returns
    its name (``database_url(name)`` to connect)."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    _admin(admin_url, f'CREATE DATABASE "{name}"{copy}')
    return name


def drop_database(name: str, admin_url: str = PG_ADMIN_URL) -> None:
    _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rename_database(old: str, new: str, admin_url: str = PG_ADMIN_URL) -> None:
    _admin(admin_url, f'ALTER DATABASE "{old}" RENAME TO "{new}"')


def database_exists(name: str, admin_url: str = PG_ADMIN_URL) -> bool:
    return (
        _admin(admin_url, "SELECT 1 FROM pg_database WHERE datname = :name", name=name) is not None
    )


PG_CA_FILE = os.environ.get("INSPECTION_TEST_PG_CA", "/tmp/inspection-postgres-tls/ca.pem")
"""The site CA of the machine's PostgreSQL (``scripts/services.sh``): store links verify it."""


def database_url(name: str, admin_url: str = PG_ADMIN_URL) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}?sslrootcert={PG_CA_FILE}"


def demo_test_images(
    folder: Path, product: str, *, seed: int, good: int, per_defect: int, size: int
) -> list[Path]:
    """The test PNGs (good and defective, sorted) of a demo ``product`` written to ``folder``."""
    from inspection.data.demo import write_demo_product

    test = write_demo_product(
        folder, product, seed=seed, n_train=1, n_test_good=good, n_test_per_defect=per_defect,
        size=size,
    ) / "test"  # fmt: skip
    return sorted(p for p in test.rglob("*.png") if "ground_truth" not in p.parts)


def tiny_registry(workdir: Path, product: str, *, int8: bool = False) -> Path:
    """A registry with one live bundle: PatchCore (128 px) trained on a demo product (~1 min),
    exported FP32 and, with ``int8``, INT8, which goes live when its gate passes
    (``retrain.demo.train_champion``)."""
    from inspection.core.product_config import model_config_from_mapping
    from inspection.core.registry import Registry
    from inspection.data.demo import write_demo_product
    from inspection.retrain.config import ChallengerExport
    from inspection.retrain.demo import train_champion

    root = workdir / ("source-registry-int8" if int8 else "source-registry")
    registry = Registry(root)
    if registry.journal.live(product) is not None:
        return root
    data = write_demo_product(
        workdir / "train-data", product, seed=3, n_train=24, n_test_good=6,
        n_test_per_defect=3, size=128,
    )  # fmt: skip
    config = model_config_from_mapping(
        {"kind": "patchcore", "image_size": [128, 128], "coreset_sampling_ratio": 0.1},
        where="bench/_station.py",
    )
    export = ChallengerExport(precisions=("int8", "fp32") if int8 else ("fp32",))
    train_champion(config, data, product=product, registry=registry, actor="bench", export=export)
    return root


PG_BIN = Path(os.environ.get("INSPECTION_PG_BIN", "/usr/lib/postgresql/15/bin"))


class ScratchPostgres:
    """A PostgreSQL server of the bench's own: ``initdb`` in ``data_dir``, run with ``pg_ctl``
    on ``port`` as the ``postgres`` OS user (when run as root), so a bench can stop and start
    it without touching the machine's clusters. Superuser ``postgres``, password ``password``
    over TCP (127.0.0.1 only)."""

    def __init__(self, data_dir: Path, port: int, password: str = "bench") -> None:
        self.data_dir, self.port, self.password = data_dir, port, password

    def _run(self, tool: str, *args: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_postgres, str(PG_BIN / tool), *args], check=True, capture_output=True)

    def init(self) -> ScratchPostgres:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        secret = self.data_dir / "pwfile"
        secret.write_text(self.password)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
            shutil.chown(secret, "postgres", "postgres")
        data = str(self.data_dir / "data")
        self._run("initdb", "-D", data, "-U", "postgres", f"--pwfile={secret}",
                  "--auth-local=trust", "--auth-host=scram-sha-256")  # fmt: skip
        with open(Path(data) / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.data_dir}'\n")  # fmt: skip
        return self

    def start(self) -> None:
        log = str(self.data_dir / "server.log")
        self._run("pg_ctl", "-D", str(self.data_dir / "data"), "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir / "data"), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres", user: str = "postgres", password: str = "") -> str:
        secret = password or self.password
        return f"postgresql+psycopg://{user}:{secret}@127.0.0.1:{self.port}/{database}"
