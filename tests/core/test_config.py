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
        ({}, "cfg: Outer.__init__() missing 1 required positional argument: 'name'"),
    ],
)
def test_bad_config_names_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping(Outer, data, where="cfg")
    assert str(info.value).startswith(message)


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
    site = load_site_config(Path(__file__).parents[2] / "configs" / "site.yaml")
    assert isinstance(site, SiteConfig)
    assert site.registry_dir == Path("var/registry")
