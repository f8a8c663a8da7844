"""The site file's ``retrain:`` section: merged over retrain.yaml, its errors name the site file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from inspection.cli import app
from inspection.cli.retrain import _configs
from inspection.core.errors import ConfigError


def _write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"gaet": {}}, "site.yaml.retrain: unknown key(s) 'gaet'; valid keys: export, gate,"),
        ({"keep_work_dirs": 0}, "site.yaml.retrain: keep_work_dirs must be at least 1, got 0"),
        (
            {"gate": {"metrics": [{"name": "image_aurok"}]}},
            "site.yaml.retrain.gate.metrics[0]: unknown gate metric 'image_aurok'",
        ),
    ],
)
def test_site_section_errors_name_the_site_file(
    tmp_path: Path, section: dict, message: str
) -> None:
    site = _write(tmp_path / "site.yaml", {"retrain": section})
    config = _write(tmp_path / "retrain.yaml", {"warmup": 1})
    with pytest.raises(ConfigError) as info:
        _configs(site, config)
    assert str(info.value).startswith(f"{tmp_path}/{message}")
    assert "retrain.yaml" not in str(info.value)


def test_retrain_file_errors_still_name_the_retrain_file(tmp_path: Path) -> None:
    site = _write(tmp_path / "site.yaml", {"retrain": {"warmup": 1}})
    config = _write(tmp_path / "retrain.yaml", {"poll_seconds": 0})
    with pytest.raises(ConfigError, match=rf"^{tmp_path}/retrain\.yaml: poll_seconds must be"):
        _configs(site, config)


def test_site_section_is_merged_over_the_retrain_file(tmp_path: Path) -> None:
    site = _write(tmp_path / "site.yaml", {"retrain": {"gate": {"latency_tolerance": 0.5}}})
    config = _write(tmp_path / "retrain.yaml", {"warmup": 1, "gate": {"latency_tolerance": 0.1}})
    _, retrain = _configs(site, config)
    assert (retrain.warmup, retrain.gate.latency_tolerance) == (1, 0.5)


def test_retrain_command_blames_the_site_file(tmp_path: Path) -> None:
    site = _write(tmp_path / "site.yaml", {"retrain": {"gaet": {}}})
    config = _write(tmp_path / "retrain.yaml", {})
    result = CliRunner().invoke(
        app, ["retrain", "--product", "brick", "--site", site, "--config", config]
    )
    assert isinstance(result.exception, ConfigError), result.output
    assert str(result.exception).startswith(f"{site}.retrain: unknown key(s) 'gaet'")


def test_retrain_yaml_is_read_beside_the_site_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like products/ and refine.yaml: it was read from ./configs of the working directory, so
    a second site (or a job started elsewhere) ran on another site's gate and schedules."""
    site_dir = tmp_path / "plant2"
    site_dir.mkdir()
    site = _write(site_dir / "site.yaml", {})
    _write(site_dir / "retrain.yaml", {"warmup": 5, "products": {"widget": {}}})
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "configs").mkdir(parents=True)
    _write(elsewhere / "configs" / "retrain.yaml", {"warmup": 1})
    monkeypatch.chdir(elsewhere)

    _, retrain = _configs(site, None)

    assert (retrain.warmup, list(retrain.products)) == (5, ["widget"])
