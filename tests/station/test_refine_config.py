"""A station reads its refine.yaml once, when it is built: a bad key stops the start in one line
naming the file and key (it used to refuse every bundle as it loaded, each product then
answering 503 until the live pointer moved), and every bundle's refiner is seeded from it.
The file is the one beside the station (or line) config file, whatever the working directory
(it used to be ./configs/refine.yaml of the working directory, which systemd sets)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.config import from_mapping
from inspection.core.errors import ConfigError
from inspection.line.config import load_line_config
from inspection.refine.config import RefineConfig
from inspection.runtime.inspector import Inspector
from inspection.service.config import load_station_config
from inspection.station.config import StationCoreConfig
from inspection.station.core import StationCore, station_refine_config

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


def _plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, margins: dict[str, int]) -> Path:
    """A working directory ``work/`` (with ``configs/``) and a station config in ``etc/``;
    ``margins`` writes a refine.yaml with that classical margin in ``work/configs``/``etc``."""
    work, etc = tmp_path / "work", tmp_path / "etc"
    (work / "configs").mkdir(parents=True)
    (work / "registry").mkdir()
    etc.mkdir()
    folders = {"work": work / "configs", "etc": etc}
    for where, margin in margins.items():
        (folders[where] / "refine.yaml").write_text(
            f"refine:\n  classical: {{margin_px: {margin}}}\n"
        )
    config = etc / "station.yaml"
    config.write_text(
        f"core:\n  products: [brick]\n  registry_dir: {work / 'registry'}\n"
        "  allow_unsigned_bundles: true\n"
    )
    monkeypatch.chdir(work)
    return config


@pytest.mark.parametrize(
    ("margins", "expected", "said"),
    [
        ({"work": 7, "etc": 5}, 5, "etc/refine.yaml (the station's configs)"),
        ({"work": 7}, 7, "work/configs/refine.yaml (none in the station's configs folder"),
        ({}, 16, "refine config: the defaults (no refine.yaml in"),
    ],
    ids=["beside-the-config", "falls-back-to-cwd", "defaults"],
)
def test_a_station_reads_the_refine_yaml_beside_its_config_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    margins: dict[str, int],
    expected: int,
    said: str,
) -> None:
    config = _plant(tmp_path, monkeypatch, margins)
    core = load_station_config(config).core
    assert core.configs == tmp_path / "etc"
    with caplog.at_level(logging.INFO, logger="inspection.station.core"):
        assert station_refine_config(core).classical.margin_px == expected
    assert said in caplog.text


def test_a_line_config_reads_the_refine_yaml_beside_it_as_a_station_config_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``load_line_config`` gives the same configs folder ``load_station_config`` does (only
    ``station run`` applied it, by hand, after loading)."""
    config = _plant(tmp_path, monkeypatch, {"work": 7, "etc": 5})
    line = tmp_path / "etc" / "line.yaml"
    line.write_text("station_id: line1\ncamera: {kind: file, path: images}\n" + config.read_text())
    core = load_line_config(line).core
    assert core.configs == tmp_path / "etc"
    assert station_refine_config(core).classical.margin_px == 5


def test_core_configs_dir_names_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _plant(tmp_path, monkeypatch, {"work": 7, "etc": 5})
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "refine.yaml").write_text("refine:\n  classical: {margin_px: 3}\n")
    config.write_text(config.read_text() + f"  configs_dir: {shared}\n")
    assert station_refine_config(load_station_config(config).core).classical.margin_px == 3


def test_station_run_stops_on_a_bad_refine_yaml_beside_its_line_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``station run`` from a working directory whose configs/refine.yaml is fine: the file
    beside the line config is the one read (and refused), before the store is opened."""
    config = _plant(tmp_path, monkeypatch, {"work": 7})
    (tmp_path / "etc" / "refine.yaml").write_text("refine:\n  metod: sam\n")
    line = tmp_path / "etc" / "line.yaml"
    line.write_text(
        "station_id: line1\ncamera: {kind: file, path: images}\n" + config.read_text()
        + f"  store_url: sqlite:///{tmp_path / 'station.db'}\n"
    )  # fmt: skip
    result = CliRunner().invoke(app, ["station", "run", "--config", str(line)])
    assert isinstance(result.exception, ConfigError), result.output
    assert str(result.exception).startswith(
        f"{tmp_path / 'etc' / 'refine.yaml'}: refine: unknown key(s) 'metod'"
    )
    assert not (tmp_path / "station.db").exists()
