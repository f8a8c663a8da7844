"""Store backends under test: SQLite always; PostgreSQL when a server is reachable.

``.ci/run`` (via ``make test`` → ``scripts/services.sh``) installs and starts PostgreSQL.
In CI a missing server is a failure, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get(
    "INSPECTION_TEST_PG_URL",
    "postgresql+psycopg://inspection:inspection@127.0.0.1:5432/inspection_test",
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _fresh_postgres_database() -> tuple[str, str]:
    """Create an empty database for one test; returns (url, name)."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN_URL} in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable ({PG_ADMIN_URL}); run scripts/services.sh")
    finally:
        admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", name


def _drop_postgres_database(name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'inspection.db'}"
        return
    url, name = _fresh_postgres_database()
    yield url
    _drop_postgres_database(name)
