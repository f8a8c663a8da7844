"""A station reads its refine.yaml once, when it is built: a bad key stops the start in one line
naming the file and key (it used to refuse every bundle as it loaded, each product then
answering 503 until the live pointer moved), and every bundle's refiner is seeded from it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from inspection.core.config import from_mapping
from inspection.core.errors import ConfigError
from inspection.refine.config import RefineConfig
from inspection.runtime.inspector import Inspector
from inspection.station.config import StationCoreConfig
from inspection.station.core import StationCore

CORE = {"products": ["brick"], "registry_dir": "registry", "allow_unsigned_bundles": True}


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StationCoreConfig:
    monkeypatch.chdir(tmp_path)
    Path("registry").mkdir()
    Path("configs").mkdir()
    core = {**CORE, "store_url": f"sqlite:///{tmp_path / 'station.db'}"}
    return from_mapping(StationCoreConfig, core, where="core")


def test_a_bad_refine_yaml_stops_the_station_at_build(
    station: StationCoreConfig, tmp_path: Path
) -> None:
    Path("configs/refine.yaml").write_text("refine:\n  metod: sam\n")
    with pytest.raises(ConfigError) as info:
        StationCore.build(station)
    assert str(info.value).startswith(
        "configs/refine.yaml: refine: unknown key(s) 'metod'; valid keys: classical,"
    )
    assert not (tmp_path / "station.db").exists()  # refused before the store was opened


def test_every_bundle_is_seeded_from_the_refine_yaml_read_at_build(
    station: StationCoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("configs/refine.yaml").write_text("refine:\n  classical: {margin_px: 5}\n")
    seen: list[RefineConfig | None] = []

    def from_bundle(bundle_dir: Path, **kwargs: object) -> object:
        seen.append(kwargs["refine"])  # type: ignore[arg-type]
        return SimpleNamespace(metadata=SimpleNamespace(product="brick", tiling=None))

    monkeypatch.setattr(Inspector, "from_bundle", staticmethod(from_bundle))
    core = StationCore.build(station)
    Path("configs/refine.yaml").write_text("refine:\n  metod: sam\n")  # edited after the start
    core.models._loader(Path("registry/brick/bundles/v0001-fp32"))
    core.models._loader(Path("registry/brick/bundles/v0002-fp32"))
    assert [config.classical.margin_px for config in seen] == [5, 5]  # type: ignore[union-attr]
    core.store.engine.dispose()
