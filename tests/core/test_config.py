from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from inspection.core.config import SiteConfig, deep_merge, from_mapping, load_site_config, read_yaml
from inspection.core.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    size: tuple[int, int] = (256, 256)
    mode: Literal["fast", "exact"] = "fast"


@dataclass(frozen=True)
class Outer:
    name: str
    ratio: float = 0.1
    enabled: bool = True
    inner: Inner = field(default_factory=Inner)
    layers: tuple[str, ...] = ()
    path: Path | None = None


def test_valid_mapping_builds_typed_frozen_objects() -> None:
    cfg = from_mapping(
        Outer, {"name": "a", "ratio": 1, "inner": {"size": [64, 32]}, "layers": ["x"]}
    )
    assert cfg == Outer(name="a", ratio=1.0, inner=Inner(size=(64, 32)), layers=("x",))
    assert isinstance(cfg.ratio, float)
    assert from_mapping(Outer, {"name": "a", "path": "x/y"}).path == Path("x/y")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"name": "a", "ratoi": 0.2},
            "cfg: unknown key(s) 'ratoi'; valid keys: enabled, inner, layers, name, path, ratio",
        ),
        ({"name": "a", "inner": {"sise": [1, 2]}}, "cfg.inner: unknown key(s) 'sise'"),
        ({"name": "a", "ratio": "high"}, "cfg.ratio: expected a number, got 'high'"),
        ({"name": "a", "enabled": "yes"}, "cfg.enabled: expected true or false, got 'yes'"),
        ({"name": "a", "inner": {"size": [1, 2, 3]}}, "cfg.inner.size: expected 2 items, got 3"),
        (
            {"name": "a", "inner": {"mode": "slow"}},
            "cfg.inner.mode: must be one of ['fast', 'exact'], got 'slow'",
        ),
        ({"name": 3}, "cfg.name: expected a string, got 3"),
        ({"name": "a", "ratio": True}, "cfg.ratio: expected a number, got True"),
        ({"name": "a", "inner": {"size": [1, False]}}, "cfg.inner.size[1]: expected an integer"),
        ({"name": "a", "enabled": 1}, "cfg.enabled: expected true or false, got 1"),
        ({"name": "a", "path": 5}, "cfg.path: expected a path, got 5"),
        ({}, "cfg: missing required key(s) 'name'"),
    ],
)
def test_bad_config_names_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping(Outer, data, where="cfg")
    assert str(info.value).startswith(message)


@dataclass(frozen=True)
class Checked:
    """Raises from ``__post_init__`` the way the package's config classes do."""

    timeout_s: float = 1.0
    port: int = 80
    where: str = ""

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigError(f"line config: timeout_s must be > 0, got {self.timeout_s}")
        if self.port > 65535:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.where:
            raise ConfigError(f"{self.where}: already located")


@dataclass(frozen=True)
class Holder:
    station_id: str
    checked: Checked = field(default_factory=Checked)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"station_id": "a", "checked": {"timeout_s": 0}},
            "l.yaml.checked: line config: timeout_s must be > 0, got 0.0",
        ),
        (
            {"station_id": "a", "checked": {"port": 70000}},
            "l.yaml.checked: port must be in 1..65535, got 70000",
        ),
        (  # a message that already names the path is not prefixed twice
            {"station_id": "a", "checked": {"where": "l.yaml.checked"}},
            "l.yaml.checked: already located",
        ),
        (  # a message naming the last key gets the full path instead
            {"station_id": "a", "checked": {"where": "checked"}},
            "l.yaml.checked: already located",
        ),
        ({}, "l.yaml: missing required key(s) 'station_id'"),
        ({"checked": {}}, "l.yaml: missing required key(s) 'station_id'"),
    ],
)
def test_post_init_errors_name_the_file(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping(Holder, data, where="l.yaml")
    assert str(info.value) == message


def test_an_empty_file_names_the_file_and_the_missing_keys(tmp_path: Path) -> None:
    empty = tmp_path / "line.yaml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        from_mapping(Holder, read_yaml(empty), where=str(empty))
    assert str(info.value) == f"{empty}: missing required key(s) 'station_id'"


def test_deep_merge_overrides_nested_values() -> None:
    merged = deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"c": 5}, "e": 6})
    assert merged == {"a": {"b": 1, "c": 5}, "d": 3, "e": 6}


def test_yaml_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        read_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        read_yaml(listing)


def test_site_config_from_repo_is_valid() -> None:
    checkout = Path(__file__).parents[2]
    site = load_site_config(checkout / "configs" / "site.yaml")
    assert isinstance(site, SiteConfig)
    assert site.registry_dir == checkout / "var" / "registry"  # the checkout's, from anywhere
