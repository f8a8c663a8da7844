"""Every ``configs/*.yaml`` the README and docs name is in the checkout and loads with the
loader its command uses (``site-trust.yaml`` excepted: ``inspection keys init`` writes it)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inspection.core.config import load_site_config
from inspection.core.product_config import load_model_config, load_product_config
from inspection.line.config import load_line_config
from inspection.refine.config import load_refine_config
from inspection.retrain.config import load_retrain_config
from inspection.service.config import load_station_config
from inspection.store.retention import load_retention

REPO = Path(__file__).resolve().parents[1]
WRITTEN_BY_COMMANDS = {"configs/site-trust.yaml"}
LOADERS: dict[str, Callable[[Path], Any]] = {
    "site.yaml": load_site_config,
    "line.yaml": load_line_config,
    "refine.yaml": load_refine_config,
    "retrain.yaml": load_retrain_config,
    "retention.yaml": lambda path: load_retention(path.parent),
}


def named_configs() -> list[str]:
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    text = "\n".join(doc.read_text(encoding="utf-8") for doc in docs)
    return sorted(set(re.findall(r"configs/[\w./-]+\.yaml", text)) - WRITTEN_BY_COMMANDS)


def _load(path: Path) -> Any:
    if path.parent.name == "products":
        return load_product_config(path.stem, path.parent.parent)
    if path.parent.name == "models":
        return load_model_config(path.stem)
    if path.name.endswith("station.yaml") or path.name.startswith("station-"):
        return load_station_config(path)
    return LOADERS[path.name](path)


@pytest.mark.parametrize("name", named_configs())
def test_every_config_the_docs_name_exists_and_loads(name: str) -> None:
    path = REPO / name
    assert path.is_file(), f"{name} is named in the docs but not in the checkout"
    assert _load(path) is not None


def test_the_central_station_config_names_the_central_store() -> None:
    """``tokens create -c configs/central-station.yaml`` issues the tokens the catalog
    (``registry serve``, reading the site's store) checks: both name PostgreSQL, no password."""
    central = load_station_config(REPO / "configs" / "central-station.yaml")
    assert central.core.store_url.startswith("postgresql+psycopg://inspection@")
    assert central.port != load_station_config(REPO / "configs" / "station.yaml").port


def test_the_station_configs_listen_on_ports_of_their_own() -> None:
    """Following the README's blocks starts several stations at once: no two share a port."""
    configs = ["station.yaml", "station-watch.yaml", "central-station.yaml"]
    ports = [load_station_config(REPO / "configs" / name).port for name in configs]
    assert len(set(ports)) == len(ports), dict(zip(configs, ports, strict=True))
