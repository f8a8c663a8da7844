"""``inspection station status`` on the shipped serve config (``configs/station.yaml``) of a
fresh site, and the signing-key help of ``inspect`` and ``station sync`` (#70)."""

from __future__ import annotations

import shutil
from pathlib import Path
from shutil import ignore_patterns

import pytest
from typer.testing import CliRunner

from inspection.cli import app
from inspection.core.registry import Registry
from inspection.core.signing import key_id, load_private_key, load_public_key, sign_bundle

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _said(result: object) -> str:
    return " ".join((result.output + str(result.exception or "")).split())


@pytest.fixture
def site(tmp_path: Path, fp32_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's configs, ``keys init``, the session's bundle signed and live."""
    shutil.copytree(REPO / "configs", tmp_path / "configs", ignore=ignore_patterns("site-trust.*"))
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    signed = shutil.copytree(fp32_bundle, tmp_path / "export" / "v0001-fp32")
    sign_bundle(signed, load_private_key("var/keys/site-signing.key"))
    registry = Registry("var/registry")
    registry.bundles.add_bundle("brick", signed, "v0001-fp32")
    registry.journal.promote("brick", "v0001-fp32", actor="tests", reason="fresh site")
    return tmp_path


@pytest.mark.parametrize("config", ["configs/station.yaml", "configs/line.yaml"])
def test_status_reads_the_serve_and_the_line_config(site: Path, config: str) -> None:
    status = runner.invoke(app, ["station", "status", "-c", config], terminal_width=200)
    assert status.exit_code == 0, _said(status)
    pinned = key_id(load_public_key("var/keys/site-signing.pub"))
    assert f"bundle signatures: required, pinned key {pinned}" in _said(status)
    assert "None" not in status.output  # once "(None)" after the key: the old key path
    assert "brick: live bundle v0001-fp32 signed" in _said(status)
    assert ("line links:" in status.output) == config.endswith("line.yaml")


def test_status_of_a_file_that_is_no_station_config_names_the_line_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("core: {products: [brick]}\nwhatever: 1\n")
    status = runner.invoke(app, ["station", "status", "-c", str(path)])
    assert status.exit_code != 0 and "whatever" in _said(status)


@pytest.mark.parametrize("command", [["inspect"], ["station", "sync"]])
def test_help_names_the_trust_file_not_the_obsolete_key_path(command: list[str]) -> None:
    shown = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert shown.exit_code == 0
    assert "bundle_public_key" not in shown.output and "trust" in shown.output
