"""Service fixtures: a registry serving the real exported ``fp32_bundle`` and a running station.

``fp32_bundle`` (a tiny PatchCore trained and exported once per session) and ``store_url``
(SQLite + PostgreSQL) come from ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._shared import copy_bundle

from .helpers import V2, V3, Bundles, Served, serve, serving_registry, station_config


@pytest.fixture(scope="session")
def bundles(fp32_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("service-bundles")
    return Bundles(
        fp32_bundle,
        copy_bundle(fp32_bundle, root / V2, V2),
        copy_bundle(fp32_bundle, root / V3, V3),
    )


@pytest.fixture(scope="session")
def sample_images(tiny_product: Path) -> dict[str, bytes]:
    """PNG bytes of a few real demo images: ``good0``, ``good1``, ``defect0``, ``defect1``."""
    good = sorted((tiny_product / "test" / "good").glob("*.png"))
    defects = sorted(p for p in (tiny_product / "test").rglob("*.png") if p.parent.name != "good")
    return {
        "good0": good[0].read_bytes(),
        "good1": good[1].read_bytes(),
        "defect0": defects[0].read_bytes(),
        "defect1": defects[-1].read_bytes(),
    }


def _serving(root: Path, bundles: Bundles) -> Iterator[Served]:
    serving_registry(root / "registry", bundles)
    with serve(station_config(root)) as running:
        yield running


@pytest.fixture
def served(tmp_path: Path, bundles: Bundles) -> Iterator[Served]:
    """A running station on its own registry and store, one per test."""
    yield from _serving(tmp_path, bundles)


@pytest.fixture(scope="module")
def module_served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bundles: Bundles
) -> Iterator[Served]:
    """One running station shared by the tests of a module (those that need no fresh store)."""
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield from _serving(root, bundles)
