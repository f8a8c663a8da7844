"""``inspection inspect`` fails closed: it checks the bundle with the key the station config
pins, refuses without one, and loads unchecked only with an announced ``--allow-unsigned``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench._shared import write_mean_bundle
from inspection.cli import app
from inspection.core.errors import BundleError
from inspection.core.signing import (
    fingerprint,
    init_keys,
    load_private_key,
    load_public_key,
    sign_bundle,
)

PRODUCT = "washer"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a signed bundle, one image and no site config (outside the checkout)."""
    monkeypatch.chdir(tmp_path)
    keys = init_keys(tmp_path / "keys")
    bundle = write_mean_bundle(tmp_path / "bundle", input_size=(32, 32), product=PRODUCT)
    sign_bundle(bundle, load_private_key(keys.private))
    Image.fromarray(np.full((32, 32, 3), 40, np.uint8)).save(tmp_path / "part.png")
    return tmp_path


def _station_config(site: Path) -> Path:
    path = site / "station.yaml"
    pin = fingerprint(load_public_key(site / "keys" / "site-signing.pub"))
    path.write_text(
        f"core:\n  products: [{PRODUCT}]\n  registry_dir: registry\n  signing_keys:\n"
        f"    - {{fingerprint: '{pin}', path: keys/site-signing.pub}}\n"
    )
    return path


def _inspect(site: Path, *args: str):
    return CliRunner().invoke(app, ["inspect", str(site / "bundle"), str(site / "part.png"), *args])


def _alter_threshold(site: Path) -> None:
    path = site / "bundle" / "metadata.json"
    data = json.loads(path.read_text())
    data["image_threshold"] = 0.9999
    path.write_text(json.dumps(data))


def test_without_a_pinned_key_inspect_refuses(site: Path) -> None:
    empty = site / "empty.yaml"
    empty.write_text(f"core:\n  products: [{PRODUCT}]\n  allow_unsigned_bundles: true\n")
    result = _inspect(site, "--station-config", str(empty))
    assert result.exit_code == 2
    assert "refused: no pinned key" in result.output


def test_a_pinned_key_file_that_is_missing_refuses(site: Path) -> None:
    config = _station_config(site)
    (site / "keys" / "site-signing.pub").unlink()
    result = _inspect(site, "--station-config", str(config))
    assert result.exit_code == 2
    assert "refused: core: signing_keys: cannot read key" in result.output


def test_the_station_configs_pinned_key_is_used(site: Path) -> None:
    config = _station_config(site)
    assert _inspect(site, "--station-config", str(config)).exit_code == 0
    _alter_threshold(site)
    refused = _inspect(site, "--station-config", str(config))
    assert isinstance(refused.exception, BundleError)
    assert "bad bundle signature" in str(refused.exception)


def test_allow_unsigned_loads_an_altered_bundle_and_says_so(site: Path) -> None:
    _alter_threshold(site)
    result = _inspect(site, "--allow-unsigned")
    assert result.exit_code == 0, result.output
    assert "--allow-unsigned: the bundle's signature is NOT checked" in result.output


def test_an_unreadable_pinned_key_refuses(site: Path) -> None:
    config = _station_config(site)
    (site / "keys" / "site-signing.pub").write_text("not a key")
    result = _inspect(site, "--station-config", str(config))
    assert result.exit_code == 2
    assert "refused:" in result.output and "not a PEM key" in result.output


def test_a_replaced_key_file_refuses(site: Path) -> None:
    """The attacker's own key written over the pinned file: its fingerprint is not the pin."""
    config = _station_config(site)
    rogue = init_keys(site / "rogue")
    (site / "keys" / "site-signing.pub").write_bytes(rogue.public.read_bytes())
    sign_bundle(site / "bundle", load_private_key(rogue.private))
    result = _inspect(site, "--station-config", str(config))
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "the key file was replaced; it is not trusted" in said


def test_a_key_pinned_by_path_only_refuses_and_says_how_to_pin(site: Path) -> None:
    path = site / "station.yaml"
    path.write_text(f"core:\n  products: [{PRODUCT}]\n  bundle_public_key: keys/site-signing.pub\n")
    result = _inspect(site, "--station-config", str(path))
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "by path only, and a path is not trust" in said
    assert "inspection keys pin" in said
