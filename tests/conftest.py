"""Shared session fixtures.

- ``tiny_product``: a small MVTec-style product written once per session.
- ``trained_patchcore`` / ``fp32_bundle`` / ``fp16_bundle``: a tiny PatchCore (64 px) trained on
  it and exported to OpenVINO bundles (runtime, service and retrain tests share them).
- ``store_url``: results-store backends, SQLite always and PostgreSQL when a server is
  reachable. ``.ci/run`` (via ``make test`` -> ``scripts/services.sh``) installs and starts
  PostgreSQL; in CI a missing server is a failure, not a skip.
- ``postgres_template``: a PostgreSQL database migrated once per session (per xdist worker);
  ``store_url`` and the central stores of the store tests are copies of it.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from inspection.core.model_record import ModelRecord
from inspection.core.registry import Registry

if TYPE_CHECKING:
    from inspection.store.store import Store
    from inspection.training.export import Converted, ExportResult

# Two cores in CI: keep numeric libraries from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Commands read the site this names when --site is not given: a shell's value must not point
# tests at a real site (tests that need it set it themselves).
os.environ.pop("INSPECTION_SITE_CONFIG", None)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_report_header() -> list[str]:
    """The CPU and its load at the start, so every run's timings say where they were taken
    (``runtime.hardware``; forced-ISA variables shown when set)."""
    from inspection.runtime.hardware import cpu_info, forced_isa

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    forced = forced_isa()
    return [f"cpu: {cpu_info().summary()}; load {load}" + (f"; {forced}" if forced else "")]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a ``slow`` or ``browser`` test first, then the others; in each group by
    their number of tests, most first. Each file's tests stay together and in their order.

    ``make test`` gives xdist whole files in this order (``--dist loadfile
    --no-loadscope-reorder``): a minute-long file started last kept one worker busy while the
    other sat idle (xdist's own order, by number of tests, put the one-test review loop near
    the end)."""
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def later(tests: list[pytest.Item]) -> tuple[bool, int]:
        slow = any(t.get_closest_marker("slow") or t.get_closest_marker("browser") for t in tests)
        return not slow, -len(tests)

    items[:] = [item for tests in sorted(files.values(), key=later) for item in tests]


# Property tests explore new examples on every local run; in CI they replay a fixed sequence,
# so a landing is judged on the same examples its author ran with CI=true.
settings.register_profile("ci", derandomize=True, database=None)
if IN_CI:
    settings.load_profile("ci")


# ------------------------------------------------------- the worker's own signals
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@pytest.fixture(autouse=True)
def _stop_signals_left_as_found() -> Iterator[None]:
    """Every test leaves pytest's SIGTERM and SIGINT handlers as it found them (Ray's driver and
    the GenTL harvester install their own): a handler left behind turns a later signal into a
    dead xdist worker. A handler of this project's own left behind is an error: a command that
    installs its handlers runs in a child process."""
    before = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    yield
    left = {
        s: signal.getsignal(s) for s, handler in before.items() if signal.getsignal(s) != handler
    }
    for signum, handler in before.items():
        signal.signal(signum, handler)
    ours = [s.name for s, handler in left.items() if _of_this_project(handler)]
    assert not ours, f"the test left this project's {' and '.join(ours)} handler in pytest"


def _of_this_project(handler: object) -> bool:
    return getattr(handler, "__module__", "").split(".")[0] in ("inspection", "tests")


@pytest.fixture(scope="session")
def tiny_product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MVTec AD tree (``train/good``, ``test/<defect>``, ``ground_truth``) at 128 px."""
    from inspection.data.demo import write_demo_product

    root = tmp_path_factory.mktemp("datasets")
    return write_demo_product(
        root, "brick", seed=7, n_train=24, n_test_good=6, n_test_per_defect=3, size=128
    )


# ------------------------------------------------------ OpenVINO CPU precision
@pytest.fixture(params=["f32", "bf16"])
def ov_precision(request: pytest.FixtureRequest) -> str:
    """The CPU inference precision a numeric OpenVINO test runs at (``tests/ov_precision.py``):
    f32 pinned, and bf16 native where the CPU has it, emulated elsewhere."""
    return request.param


# ----------------------------------------------------------- tiny trained model
TINY_PATCHCORE = {
    "kind": "patchcore",
    "image_size": [64, 64],
    "batch_size": 8,
    "coreset_sampling_ratio": 0.1,
    "num_neighbors": 3,
    "val_fraction": 0.3,
}


@dataclass(frozen=True)
class TrainedProduct:
    """A registry holding one trained version of ``product`` and the dataset it came from."""

    registry: Registry
    product: str
    record: ModelRecord
    dataset_root: Path

    @cached_property
    def converted(self) -> Converted:
        """The trained version converted once, for every precision the session exports."""
        from inspection.training.registry_export import RegistryExport, convert_registered

        source = RegistryExport(version=self.record.version)
        return convert_registered(self.registry, self.product, source)

    def export(self, precision: str, *, force: bool = False) -> ExportResult:
        """Export the trained version at ``precision`` into the registry (``v0001-<precision>``)."""
        from inspection.training.export import ExportOptions
        from inspection.training.registry_export import RegistryExport, export_bundle

        return export_bundle(
            self.registry,
            self.product,
            ExportOptions(precision=precision, force=force),
            RegistryExport(version=self.record.version),
            converted=self.converted,
        )


@pytest.fixture(scope="session")
def trained_patchcore(
    tiny_product: Path, tmp_path_factory: pytest.TempPathFactory
) -> TrainedProduct:
    """A tiny PatchCore (64 px) trained on ``tiny_product`` into a fresh registry."""
    from inspection.core.product_config import model_config_from_mapping
    from inspection.data.dataset import load_dataset
    from inspection.training.train import train

    registry = Registry(tmp_path_factory.mktemp("registry"))
    config = model_config_from_mapping(TINY_PATCHCORE, where="tests TINY_PATCHCORE")
    record = train(
        config, load_dataset(tiny_product), product="brick", registry=registry, progress=False
    )
    return TrainedProduct(registry, "brick", record, tiny_product)


@pytest.fixture(scope="session")
def fp32_bundle(trained_patchcore: TrainedProduct) -> Path:
    """The FP32 OpenVINO bundle of ``trained_patchcore``, registered as ``v0001-fp32``."""
    return trained_patchcore.export("fp32").bundle_dir


@pytest.fixture(scope="session")
def fp16_bundle(trained_patchcore: TrainedProduct) -> Path:
    """The FP16 bundle of ``trained_patchcore`` (``v0001-fp16``)."""
    return trained_patchcore.export("fp16").bundle_dir


# ------------------------------------------------------------- store backends
PG_ADMIN_URL = os.environ.get(
    "INSPECTION_TEST_PG_URL",
    "postgresql+psycopg://inspection:inspection@127.0.0.1:55432/inspection_test",
)


PG_CA_FILE = Path(os.environ.get("INSPECTION_TEST_PG_CA", "/tmp/inspection-postgres-tls/ca.pem"))
"""The site CA that signed the test PostgreSQL's certificate (``scripts/services.sh``)."""


def verified(url: str) -> str:
    """``url`` over TLS verified against ``PG_CA_FILE`` (what every store link uses); a URL
    that already says how is returned as it is."""
    if "?" in url:
        return url
    return f"{url}?sslmode=verify-full&sslrootcert={PG_CA_FILE}"


def _fresh_postgres_database(template: str | None = None) -> tuple[str, str]:
    """Create a database for one test, empty or a copy of the database ``template``; returns
    (url, name)."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{copy}'))
    except sa.exc.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN_URL} in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable ({PG_ADMIN_URL}); run scripts/services.sh")
    finally:
        admin.dispose()
    return verified(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"), name


def _drop_postgres_database(name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The name of a database migrated to the schema's head once per session (per xdist
    worker). A test's migrated database is a copy (``CREATE DATABASE ... TEMPLATE``): ~0.2 s
    instead of ~1 s of migrations. The copy holds what the migrations made at the session's
    start; a test that migrates an empty database itself uses ``_fresh_postgres_database()``."""
    from inspection.store.store import Store

    url, name = _fresh_postgres_database()
    Store.migrated(url, tmp_path_factory.mktemp("template-blobs")).engine.dispose()
    yield name
    _drop_postgres_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty SQLite store, or a PostgreSQL database at the schema's head (a copy of
    ``postgres_template``): every user opens it with ``Store.migrated``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'inspection.db'}"
        return
    url, name = _fresh_postgres_database(request.getfixturevalue("postgres_template"))
    yield url
    _drop_postgres_database(name)


class FilledStores:
    """Stores filled once per session and copied into a test's own ``store_url``: SQLite through
    its backup API, PostgreSQL as a template database. A test writes only to its copy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.databases: list[str] = []
        """The PostgreSQL sources, dropped at the session's end."""
        self._sources: dict[tuple[str, str], str] = {}

    def store(self, fill: Callable[[Store], None], store_url: str, blob_dir: Path) -> Store:
        """The store at ``store_url`` (a ``store_url``) holding what ``fill`` writes into an
        empty migrated store, ``fill`` run once per backend and session. ``fill`` writes rows
        only: the blob folder is not copied."""
        import sqlite3

        import sqlalchemy as sa

        from inspection.store.store import Store

        target = sa.make_url(store_url)
        key = (f"{fill.__module__}.{fill.__qualname__}", target.get_backend_name())
        if key not in self._sources:
            if target.get_backend_name() == "sqlite":
                self._sources[key] = str(self.root / f"{len(self._sources)}.db")
                url = f"sqlite:///{self._sources[key]}"
            else:
                url, self._sources[key] = _fresh_postgres_database()
                self.databases.append(self._sources[key])
            filled = Store.migrated(url, self.root / "blobs")
            fill(filled)
            filled.engine.dispose()
        if target.get_backend_name() == "sqlite":
            source, copy = sqlite3.connect(self._sources[key]), sqlite3.connect(target.database)
            source.backup(copy)
            source.close()
            copy.close()
        else:
            _drop_postgres_database(target.database)
            admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(
                    sa.text(f'CREATE DATABASE "{target.database}" TEMPLATE "{self._sources[key]}"')
                )
            admin.dispose()
        return Store.migrated(store_url, blob_dir)


@pytest.fixture(scope="session")
def filled_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilledStores]:
    """``FilledStores`` of the session (a test's fill runs once per backend)."""
    stores = FilledStores(tmp_path_factory.mktemp("filled-stores"))
    yield stores
    for name in stores.databases:
        _drop_postgres_database(name)
